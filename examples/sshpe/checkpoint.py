"""Checkpoints: what a run saves to continue exactly, written atomically and read with
one-line errors.

A checkpoint holds the step, the configuration, the student, the teacher, the optimiser
and scheduler, every process's random states and the loss sums of the open log window.
It is written to a temporary file and renamed over the last one, so a kill or a full disk
never leaves a damaged checkpoint in place of a good one, with a SHA-256 :func:`checksum`
of its whole content (every tensor's bytes included), so that bytes changed on disk later
are found when it is read: a flipped bit in a weight would otherwise resume silently.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from sshpe.config import TrainConfig
from sshpe.errors import error_reason
from sshpe.outputs import claim

__all__ = [
    "CHECKPOINT",
    "KEYS",
    "CheckpointError",
    "checksum",
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
    "log_lines",
    "checksum",
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


def checksum(obj: object) -> str:
    """SHA-256 of a checkpoint's content, the same before ``torch.save`` and after
    ``torch.load``: every tensor's dtype, shape and bytes, every scalar's type and ``repr``
    (``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``), dicts (``OrderedDict``,
    ``Counter``, ...) in the order of their keys' ``repr``, lists and tuples in order.

    Args:
        obj: the content: tensors and scalars nested in dicts, lists and tuples.

    Returns:
        The digest, 64 hexadecimal digits.

    Raises:
        TypeError: on a value of another type, which could hold a tensor its ``repr``
            leaves out.

    Example:
        >>> state = {"step": 3, "w": torch.ones(2)}
        >>> checksum(state) == checksum({"w": torch.ones(2), "step": 3})
        True
        >>> checksum(state) == checksum({"step": 3, "w": torch.tensor([1.0, 1.5])})
        False
    """
    digest = hashlib.sha256()
    for chunk in _chunks(obj):
        digest.update(chunk)
    return digest.hexdigest()


#: The types :func:`checksum` hashes by their ``repr`` (exactly these: a subclass may
#: hold more than it prints).
_SCALARS = (type(None), bool, int, float, str, bytes)


def _chunks(obj: object) -> Iterator[bytes | memoryview]:
    """The bytes :func:`checksum` hashes for ``obj``, in order."""
    if isinstance(obj, torch.Tensor):
        tensor = obj.detach().cpu().contiguous()
        yield f"tensor {tensor.dtype} {tuple(tensor.shape)};".encode()
        yield tensor.reshape(-1).view(torch.uint8).numpy().data
    elif isinstance(obj, dict):
        yield f"dict {len(obj)};".encode()
        for key in sorted(obj, key=repr):
            yield from _chunks(key)
            yield from _chunks(obj[key])
    elif isinstance(obj, list | tuple):
        yield f"{type(obj).__name__} {len(obj)};".encode()
        for item in obj:
            yield from _chunks(item)
    elif type(obj) in _SCALARS:
        yield f"{type(obj).__name__} {obj!r};".encode()
    else:
        raise TypeError(
            f"checksum: cannot hash a {type(obj).__name__} (its repr may leave out what it "
            "holds); checkpoints hold tensors and scalars in dicts, lists and tuples"
        )


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """``torch.save`` of ``obj`` and its :func:`checksum` (under ``"checksum"``) to a
    temporary file in the same folder, then rename it over ``path`` (claimed first, see
    :func:`sshpe.outputs.claim`); an interrupted or failed write leaves no temporary file.

    Raises:
        CheckpointError: if the file cannot be written (the old one is kept).
    """
    tmp = path.with_name(f".{path.name}.tmp")
    claim(path.parent, path)
    try:
        torch.save({**obj, "checksum": checksum(obj)}, tmp)
        os.replace(tmp, path)
    except BaseException as e:  # also Ctrl-C: never leave a full-size temporary file
        tmp.unlink(missing_ok=True)
        if not isinstance(e, OSError | RuntimeError):
            raise
        raise CheckpointError(
            f"cannot write the checkpoint {path}: {_write_failure(e, path)}"
        ) from None


def _write_failure(error: OSError | RuntimeError, path: Path) -> str:
    """Why ``torch.save`` failed, in words: a full disk (``torch.save`` reports a short
    write as ``file write failed`` or ``unexpected pos``), else its first line without
    the C++ source location."""
    message = re.sub(r"\[enforce fail at [^\]]*\]\W*", "", str(error)).strip()
    short = "write failed" in message or "unexpected pos" in message
    if (isinstance(error, OSError) and error.errno == errno.ENOSPC) or short:
        free = shutil.disk_usage(path.parent).free / 2**20
        return f"the disk is full or the write was cut short ({free:.0f} MiB free there)"
    return message.splitlines()[0] if message else type(error).__name__


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by :func:`save_atomic`, checked to have every entry of
    :data:`KEYS` and the content its checksum was computed on.

    Returns:
        The checkpoint, without its ``"checksum"``.

    Raises:
        CheckpointError: if the file is missing, empty, truncated, not a checkpoint, lacks
            an entry, holds a value :func:`checksum` cannot hash, or its content no longer
            matches its checksum; the message names the file.
    """
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty; remove it to start over")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any bytes reach the unpickler: KeyError, ValueError, ...
        raise CheckpointError(
            f"{path} is damaged or not a checkpoint written by torch.save ({error_reason(e)}); "
            "remove it to start over"
        ) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is not a checkpoint of this trainer")
    missing = [key for key in KEYS if key not in ckpt]
    if missing:
        raise CheckpointError(
            f"{path} is not a checkpoint of this trainer (no {', '.join(missing)}; "
            "written by an older train.py?)"
        )
    stored = ckpt.pop("checksum")
    try:
        computed = checksum(ckpt)
    except TypeError as e:
        raise CheckpointError(f"{path} is not a checkpoint of this trainer ({e})") from None
    if computed != stored:
        raise CheckpointError(
            f"{path} is damaged: its content no longer matches the checksum written with it "
            "(bytes changed on disk); resume from a copy, or remove it to start over"
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
