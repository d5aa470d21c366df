"""The mmengine hook that moves the EMAN teacher after each optimizer step, in mmdet's terms.

mmdet's ``MeanTeacherHook(momentum=0.001)`` gives the *student's* weight per update,
``teacher <- (1 - momentum) * teacher + momentum * student``; EMAN and posemum-aug give
the *teacher's* (0.999). This hook speaks mmdet's language and converts; a value that only
makes sense in the other convention (above 0.5) is refused with an explaining error.
"""

from __future__ import annotations

import functools
from typing import Any

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpose.registry import HOOKS

from posemum_aug import (
    MomentumSchedule,
    constant_momentum,
    cosine_momentum,
    linear_warmup_momentum,
)

#: The schedules ``momentum_schedule=dict(type=...)`` names, and their other keys.
SCHEDULES = {"constant": (), "linear_warmup": ("warmup_steps", "start"), "cosine": ("total_steps",)}


def check_student_weight(name: str, value: float) -> float:
    """``value`` as a float if it is a student's weight in ``(0, 0.5]``.

    Raises:
        ValueError: outside ``(0, 0.5]``; above 0.5 the message explains the two
            conventions, since 0.999 is EMAN's teacher weight, not a student's.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number in (0, 0.5], got {value!r}")
    if value > 0.5:
        raise ValueError(
            f"{name}={value!r} is read as the student's weight per update, as in mmdet's "
            "MeanTeacherHook: teacher <- (1 - momentum) * teacher + momentum * student. "
            f"{value!r} would make the teacher little more than a copy of the student; "
            f"EMAN's momentum={value!r} (the teacher's weight) is {name}={1 - value:.6g} here"
        )
    if not value > 0:
        raise ValueError(f"{name} must be > 0 (the teacher would never move), got {value!r}")
    return float(value)


def teacher_schedule(momentum: float, schedule: dict[str, Any] | None) -> MomentumSchedule:
    """The library schedule (teacher's weight) of a ``momentum_schedule`` config (student's).

    ``constant``: ``momentum`` at every step. ``linear_warmup`` (MUM): the student's weight
    falls linearly from ``start`` (default 0.5) to ``momentum`` over ``warmup_steps``
    (default 2000) teacher updates. ``cosine`` (BYOL): it falls from ``momentum`` to 0 at
    ``total_steps`` along a half cosine, so the teacher freezes at the end.

    Raises:
        ValueError: for an unknown ``type`` or key, a ``start`` below ``momentum`` or out
            of ``(0, 0.5]``, or (from the library) non-positive step counts.
    """
    config = dict(schedule or {"type": "constant"})
    kind = config.pop("type", None)
    if kind not in SCHEDULES:
        raise ValueError(f"momentum_schedule type must be one of {list(SCHEDULES)}, got {kind!r}")
    unknown = set(config) - set(SCHEDULES[kind])
    if unknown:
        raise ValueError(
            f"momentum_schedule {kind!r} takes {list(SCHEDULES[kind])}, got {sorted(unknown)}"
        )
    if kind == "constant":
        return constant_momentum
    if kind == "cosine":
        if "total_steps" not in config:
            raise ValueError("momentum_schedule 'cosine' needs total_steps")
        cosine_momentum(0, 1 - momentum, total_steps=config["total_steps"])  # checks it
        return functools.partial(cosine_momentum, total_steps=config["total_steps"])
    start = check_student_weight("momentum_schedule.start", config.get("start", 0.5))
    if start < momentum:
        raise ValueError(
            f"momentum_schedule.start ({start}) is the student's weight at step 0, which the "
            f"warm-up lowers to momentum ({momentum}): it must be >= momentum"
        )
    steps = config.get("warmup_steps", 2000)
    linear_warmup_momentum(0, 1 - momentum, warmup_steps=steps, start=1 - start)  # checks it
    return functools.partial(linear_warmup_momentum, warmup_steps=steps, start=1 - start)


@HOOKS.register_module()
class EMANTeacherHook(Hook):
    """Move the teacher of a ``SemiTopdownPoseEstimator`` after every optimizer step.

    Like mmdet's ``MeanTeacherHook``, ``momentum`` is the student's weight per update.
    Unlike it, the update is EMAN's: every floating entry of the state (BatchNorm
    statistics included) is averaged, integer entries are copied, the teacher stays in
    eval mode, and under distributed training the students' BatchNorm statistics are
    averaged across ranks first. With gradient accumulation the teacher moves once per
    optimizer step. The teacher's step, which drives ``momentum_schedule``, is saved in
    the model's ``state_dict``, so ``--resume`` goes on with the schedule. The momentum
    used is logged as ``teacher_momentum`` (the teacher's weight, EMAN's convention).

    Args:
        momentum: the student's weight per update, in ``(0, 0.5]`` (mmdet's default 0.001
            is EMAN's 0.999).
        momentum_schedule: ``None`` (constant) or ``dict(type="linear_warmup",
            warmup_steps=2000, start=0.5)`` (MUM's ramp; ``start`` is the student's weight
            at step 0) or ``dict(type="cosine", total_steps=N)`` (BYOL's; the student's
            weight falls to 0 at ``N``).
        skip_buffer: mmdet's switch to leave buffers out of the average. EMAN averages
            them: only ``False`` is accepted.

    Raises:
        ValueError: for a ``momentum`` outside ``(0, 0.5]`` (above 0.5 the message
            explains mmdet's and EMAN's conventions), a bad schedule, or ``skip_buffer``.
    """

    priority = "NORMAL"  # before CheckpointHook: a checkpoint holds its iteration's teacher

    def __init__(
        self,
        momentum: float = 0.001,
        momentum_schedule: dict[str, Any] | None = None,
        skip_buffer: bool = False,
    ) -> None:
        if skip_buffer is not False:
            raise ValueError(
                f"skip_buffer={skip_buffer!r}: the EMAN teacher averages the BatchNorm "
                "statistics with the weights and never normalises with batch statistics, so "
                "its buffers cannot be skipped (mmdet's MeanTeacherHook can)"
            )
        self.momentum = check_student_weight("momentum", momentum)
        self.schedule = teacher_schedule(self.momentum, momentum_schedule)

    def before_train(self, runner: Any) -> None:
        """Give the model's teacher this hook's momentum and schedule."""
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        teacher = getattr(model, "teacher", None)
        if teacher is None or not hasattr(model, "update_teacher"):
            raise ValueError(
                f"EMANTeacherHook needs a SemiTopdownPoseEstimator, got {type(model).__name__}"
            )
        teacher.base_momentum = 1.0 - self.momentum
        teacher.schedule = self.schedule

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
