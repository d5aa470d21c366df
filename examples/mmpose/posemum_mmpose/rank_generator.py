"""Each rank's mixing and hard-view generator in the checkpoint, restored per rank on resume.

mmengine saves checkpoints from rank 0, so a generator kept in the model's ``state_dict``
would come back as rank 0's on every rank, and the ranks would draw the same mixing plans,
hard views and Joint Cutouts after ``--resume``. The data pipeline's streams need no saving:
mmengine re-seeds them (per rank with ``randomness.diff_rank_seed``, and per worker) and
replays the data loader up to the resumed iteration.
"""

from __future__ import annotations

from typing import Any

import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmpose.registry import HOOKS

#: The checkpoint key of the gathered generator states, one per rank.
CHECKPOINT_KEY = "rank_generator_states"


def model_generator(runner: Any) -> torch.Generator:
    """The ``generator`` of the runner's model.

    Raises:
        ValueError: if the model has none (it is not a ``SemiTopdownPoseEstimator``).
    """
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    generator = getattr(model, "generator", None)
    if not isinstance(generator, torch.Generator):
        raise ValueError(
            f"RankGeneratorHook needs a model with a generator, got {type(model).__name__}"
        )
    return generator


@HOOKS.register_module()
class RankGeneratorHook(Hook):
    """Save every rank's model generator in checkpoints; give each rank its own back on resume.

    mmengine saves checkpoints on rank 0 alone, so the ranks' states are gathered after
    every training iteration (one small collective: a generator state is 5 KB), before
    ``CheckpointHook`` runs, and rank 0 writes the latest gathered states into every
    checkpoint it saves, under :data:`CHECKPOINT_KEY`; validation draws nothing, so they
    hold for a best checkpoint saved after it too. When a run resumes,
    each rank restores its own entry before training goes on, so every rank continues its
    own stream exactly. A checkpoint loaded with ``load_from`` (a new run) keeps the fresh
    streams. Ranks that the checkpoint does not have (more processes than when it was
    saved) keep fresh streams and say so.
    """

    priority = "LOW"  # after the model's update, before CheckpointHook (VERY_LOW)

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None
        self._gathered: list[torch.Tensor] | None = None

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
    ) -> None:
        """Gather every rank's generator state (all ranks take part)."""
        self._gathered = all_gather_object(model_generator(runner).get_state())

    def before_save_checkpoint(self, runner: Any, checkpoint: dict[str, Any]) -> None:
        """Write the gathered states into ``checkpoint`` (called on rank 0 only)."""
        gathered = self._gathered or [model_generator(runner).get_state()]
        checkpoint[CHECKPOINT_KEY] = gathered

    def after_load_checkpoint(self, runner: Any, checkpoint: dict[str, Any]) -> None:
        """Keep the saved states until the loop starts (resume or load_from is not known yet)."""
        states = checkpoint.get(CHECKPOINT_KEY)
        self._pending = None
        if states is not None:
            self._pending = {"iter": checkpoint["meta"]["iter"], "states": states}

    def before_train(self, runner: Any) -> None:
        """In a resumed run (at the checkpoint's iteration), restore this rank's state."""
        pending, self._pending = self._pending, None
        if pending is None or runner.iter != pending["iter"] or runner.iter == 0:
            return
        rank, states = get_rank(), pending["states"]
        if rank >= len(states):
            print_log(
                f"rank {rank} has no generator state in the checkpoint ({len(states)} ranks "
                f"saved, {get_world_size()} now): it keeps a fresh stream",
                logger="current",
                level=30,
            )
            return
        model_generator(runner).set_state(states[rank])
