"""The mmengine hook that moves the teacher after each optimizer step."""

from __future__ import annotations

from typing import Any

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpose.registry import HOOKS


@HOOKS.register_module()
class EMANTeacherHook(Hook):
    """Call the model's ``update_teacher()`` after every iteration that stepped the optimizer.

    With gradient accumulation the teacher moves once per optimizer step. It runs before
    the checkpoint hook (priority ``NORMAL``), so a checkpoint holds the teacher of its
    iteration; the teacher and its step live in the model's ``state_dict``, so checkpoints
    and resumed runs carry them without help from this hook.
    """

    priority = "NORMAL"

    def after_train_iter(
        self,
        runner: Any,
        batch_idx: int,
        data_batch: Any = None,
        outputs: Any = None,
    ) -> None:
        """Update the teacher if this iteration stepped the optimizer."""
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        should_update = getattr(runner.optim_wrapper, "should_update", None)
        if should_update is None or should_update():
            momentum = model.update_teacher()
            runner.message_hub.update_scalar("train/teacher_momentum", momentum)
