"""Checkpoints: what a run saves to continue exactly, written atomically and read with
one-line errors.

A checkpoint holds the step, the configuration, the student, the teacher, the optimiser
and scheduler, every process's random states and the loss sums of the open log window.
It is written to a temporary file and renamed over the last one, so a kill or a full disk
never leaves a damaged checkpoint in place of a good one.
"""

from __future__ import annotations

import errno
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from sshpe.config import TrainConfig

__all__ = [
    "CHECKPOINT",
    "KEYS",
    "CheckpointError",
    "load_checkpoint",
    "resume_checkpoint",
    "rng_state",
    "save_atomic",
    "set_rng_state",
]

#: The checkpoint's file name in the run folder.
CHECKPOINT = "checkpoint.pt"
#: The entries every checkpoint has.
KEYS = (
    "step",
    "total_steps",
    "config",
    "world_size",
    "student",
    "teacher",
    "optimizer",
    "scheduler",
    "rng",
    "loss_window",
)


class CheckpointError(Exception):
    """A checkpoint that cannot be written or read; the message names the file."""


def rng_state(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """This process's random states: the step's generators (one per kind of draw, see
    ``sshpe.methods.STREAMS``), torch's CPU and CUDA generators.

    Every draw of a step comes from ``generators``; the global generators are saved too so
    that code added to the step stays exact. Python's and numpy's are not used.
    """
    return {
        "generators": {name: g.get_state() for name, g in generators.items()},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(
    generators: dict[str, torch.Generator], state: dict[str, Any], path: Path
) -> None:
    """Restore what :func:`rng_state` returned into ``generators``.

    Raises:
        CheckpointError: if ``state`` (read from ``path``) lacks one of ``generators``'
            streams: a checkpoint of an older ``train.py``, whose step drew from one
            generator, cannot continue exactly.
    """
    saved = state.get("generators", {})
    missing = sorted(set(generators) - set(saved))
    if missing:
        raise CheckpointError(
            f"--resume: {path} has no random state for {', '.join(missing)} (written by an "
            "older train.py, whose step drew from one generator); start the run over"
        )
    for name, generator in generators.items():
        generator.set_state(saved[name])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename it over ``path``.

    Raises:
        CheckpointError: if the file cannot be written (the old one is kept).
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        tmp.unlink(missing_ok=True)
        full = (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "write failed" in str(e)
        reason = "the disk is full" if full else str(e).splitlines()[0]
        raise CheckpointError(f"cannot write the checkpoint {path}: {reason}") from None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by :func:`save_atomic`, checked to have every entry of
    :data:`KEYS`.

    Raises:
        CheckpointError: if the file is missing, truncated, not a checkpoint, or lacks an
            entry; the message names the file.
    """
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(
            f"{path} is damaged or not a checkpoint ({reason}); remove it to start over"
        ) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is not a checkpoint of this trainer")
    missing = [key for key in KEYS if key not in ckpt]
    if missing:
        raise CheckpointError(
            f"{path} is not a checkpoint of this trainer (no {', '.join(missing)}; "
            "written by an older train.py?)"
        )
    return ckpt


def resume_checkpoint(path: Path, config: TrainConfig, world_size: int) -> dict[str, Any]:
    """The checkpoint at ``path``, checked to continue the run of ``config`` on
    ``world_size`` processes: every option but the runtime ones must be the same.

    Raises:
        CheckpointError: if the checkpoint is unreadable, holds another configuration, or
            was written by another number of processes.
    """
    ckpt = load_checkpoint(path)
    try:
        saved = TrainConfig.from_json(ckpt["config"])
    except ValueError as e:
        raise CheckpointError(f"{path}: its configuration is unreadable: {e}") from None
    changed = config.differences(saved)
    if changed:
        raise CheckpointError(f"--resume: {path} was trained with other {', '.join(changed)}")
    if ckpt["world_size"] != world_size:
        raise CheckpointError(f"--resume: {path} was trained by {ckpt['world_size']} processes")
    return ckpt
