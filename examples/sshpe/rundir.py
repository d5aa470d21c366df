"""The run folder (``--out``): what a run writes there, and the rules for reusing one.

A folder that holds an earlier run's outputs is only reused by ``--resume`` (which
continues that run) or ``--overwrite`` (which first deletes those outputs, and nothing
else in the folder); otherwise the run refuses to start, so an earlier run is never
silently destroyed or mixed with a new one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from sshpe.checkpoint import CHECKPOINT
from sshpe.config import CONFIG_FILE, TrainConfig
from sshpe.metrics_log import METRICS_FILE

__all__ = ["RUN_FILES", "earlier_outputs", "prepare_run_folder", "write_json"]
#: What a run writes into its folder (glob patterns).
RUN_FILES = (
    CONFIG_FILE,
    CHECKPOINT,
    f".{CHECKPOINT}.tmp",
    METRICS_FILE,
    f".{METRICS_FILE}.tmp",
    "results*.json",
    "predictions.png",
    "curves.png",
    "tb",
)


def earlier_outputs(folder: Path) -> list[Path]:
    """The outputs of an earlier run in ``folder``, sorted."""
    if not folder.is_dir():
        return []
    return sorted({p for pattern in RUN_FILES for p in folder.glob(pattern)})


def write_json(path: Path, value: object) -> None:
    """``value`` as indented JSON, written to a temporary file renamed over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


def prepare_run_folder(config: TrainConfig) -> None:
    """Create the run folder of a new run, or check it for ``--resume``.

    A new run refuses a folder with an earlier run's outputs unless ``--overwrite``,
    which deletes them. The resolved configuration is written to ``config.json``.

    Raises:
        ValueError: if the folder holds an earlier run and neither ``--resume`` nor
            ``--overwrite`` is given.
    """
    runtime = config.runtime
    out = runtime.out
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    found = earlier_outputs(out)
    # a run that wrote no checkpoint, log line or result has nothing to lose
    worth_keeping = [p for p in found if p.name != CONFIG_FILE and p.stat().st_size > 0]
    if runtime.resume:  # the command line checked that the checkpoint is there
        return
    if worth_keeping and not runtime.overwrite:
        names = ", ".join(p.name for p in worth_keeping[:3])
        names += ", ..." if len(worth_keeping) > 3 else ""
        raise ValueError(
            f"--out {out} holds an earlier run ({names}): give --resume to continue it, "
            "--overwrite to replace it, or another --out"
        )
    for path in found:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CONFIG_FILE, config.to_json())
