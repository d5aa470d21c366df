"""The run folder (``--out``): what a run writes there, the rules for reusing one, and the
lock that keeps two runs out of one folder.

Every file the trainer writes into the folder is first recorded in the folder's
manifest (:func:`sshpe.outputs.claim`); the names an older ``train.py`` wrote are
:data:`RUN_FILES`. Together they are the folder's *outputs*: a folder that holds an
earlier run's outputs is only reused by ``--resume`` (which continues that run) or
``--overwrite`` (which first deletes those outputs, and nothing else in the folder);
otherwise the run refuses to start, so an earlier run is never silently destroyed or
mixed with a new one. A run holds the folder's lock (:func:`locked_run_folder`) from
before it looks at the folder until it ends: a second run into the same folder refuses.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sshpe.checkpoint import CHECKPOINT
from sshpe.config import CONFIG_FILE, TrainConfig
from sshpe.metrics_log import METRICS_FILE
from sshpe.outputs import MANIFEST, claim, claimed, replace_text

__all__ = [
    "LOCK",
    "RUN_FILES",
    "earlier_outputs",
    "locked_run_folder",
    "prepare_run_folder",
    "write_json",
]

#: The lock file of a run folder; it stays (deleting it would break a holder's lock).
LOCK = ".train-lock"
#: The files an older ``train.py``, which kept no manifest, wrote into a run folder.
RUN_FILES = (
    CONFIG_FILE,
    CHECKPOINT,
    METRICS_FILE,
    "results.json",
    "results_student.json",
    "results_teacher.json",
    "predictions.png",
    "curves.png",
)


def earlier_outputs(folder: Path) -> list[Path]:
    """The outputs of an earlier run in ``folder`` that exist, the manifest and the
    temporary files a killed write left (``.NAME.tmp``) included, sorted."""
    if not folder.is_dir():
        return []
    paths = [folder / name for name in (MANIFEST, *RUN_FILES, *claimed(folder))]
    paths += [p.with_name(f".{p.name}.tmp") for p in paths]
    return sorted({p for p in paths if p.is_file()})


def write_json(path: Path, value: object, *, indent: int | None = 2) -> None:
    """``value`` as JSON, claimed (:func:`~sshpe.outputs.claim`) and written to a temporary
    file renamed over ``path``."""
    claim(path.parent, path)
    replace_text(path, json.dumps(value, indent=indent, allow_nan=False) + "\n")


@contextmanager
def locked_run_folder(out: Path) -> Iterator[None]:
    """Hold the lock of the run folder ``out`` (created if missing) while in the context.

    The lock is an ``flock`` on :data:`LOCK`, which the system releases when the process
    ends, however it ends: a killed run leaves no stale lock.

    Raises:
        ValueError: if ``out`` is a file, or another run holds the folder.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    with (out / LOCK).open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise ValueError(
                f"--out {out} is in use by another run ({holder}); wait for it to end, or "
                "give another --out"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def prepare_run_folder(config: TrainConfig) -> None:
    """Prepare the (locked) run folder of a new run, or check it for ``--resume``.

    A new run refuses a folder with an earlier run's outputs unless ``--overwrite``,
    which deletes them (and the folders they leave empty), nothing else. The resolved
    configuration is written to ``config.json``.

    Raises:
        ValueError: if the folder holds an earlier run and neither ``--resume`` nor
            ``--overwrite`` is given.
    """
    runtime = config.runtime
    out = runtime.out
    if runtime.resume:  # the command line checked that the checkpoint is there
        return
    found = earlier_outputs(out)
    # a run that wrote no checkpoint, log line or result has nothing to lose
    worth_keeping = [
        p
        for p in found
        if p.name not in (CONFIG_FILE, MANIFEST)
        and not p.name.endswith(".tmp")
        and p.stat().st_size > 0
    ]
    if worth_keeping and not runtime.overwrite:
        names = ", ".join(p.relative_to(out).as_posix() for p in worth_keeping[:3])
        names += ", ..." if len(worth_keeping) > 3 else ""
        raise ValueError(
            f"--out {out} holds an earlier run ({names}): give --resume to continue it, "
            "--overwrite to replace it, or another --out"
        )
    for path in found:
        path.unlink()
    for folder in sorted({p.parent for p in found if p.parent != out}, reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    write_json(out / CONFIG_FILE, config.to_json())
