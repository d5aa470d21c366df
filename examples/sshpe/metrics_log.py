"""``metrics.jsonl``: the run's training losses, diagnostics and evaluations, one JSON
object per line, optionally mirrored to TensorBoard.

Values that are not finite are written as ``null``, so every line is strict JSON. On
``--resume`` the lines a killed run logged after its checkpoint are dropped, by writing
the kept lines to a temporary file that replaces the log in one rename.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["METRICS_FILE", "MetricsLog", "finite_or_none", "logged_step"]

#: The log's file name in the run folder.
METRICS_FILE = "metrics.jsonl"


def finite_or_none(value: float) -> float | None:
    """``value`` rounded for the log, or ``None`` (JSON ``null``) when it is not finite."""
    return round(value, 6) if math.isfinite(value) else None


def _strict(value: Any) -> Any:
    """``value`` with every non-finite float inside it replaced by ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def logged_step(line: str) -> float:
    """The step of a ``metrics.jsonl`` line; infinite for a line a kill cut short."""
    try:
        return float(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return math.inf


class MetricsLog:
    """``metrics.jsonl`` in ``folder``, written by the main process only.

    Args:
        folder: the run folder.
        enabled: whether this process writes (the main process of a run).
        resume_step: the checkpoint's step when resuming: later lines are dropped.
        tensorboard: also write every numeric value as a TensorBoard scalar, tagged by
            its key (``eval/student/AP`` for evaluations), into ``folder/tb``.

    Raises:
        ValueError: if ``tensorboard`` is asked and the ``tensorboard`` package is missing.
    """

    def __init__(
        self,
        folder: Path,
        enabled: bool,
        resume_step: int | None = None,
        *,
        tensorboard: bool = False,
    ) -> None:
        self.path, self.enabled = folder / METRICS_FILE, enabled
        self.writer: Any = None
        if not enabled:
            return
        kept = []
        if resume_step is not None and self.path.is_file():
            lines = self.path.read_text().splitlines()
            kept = [line for line in lines if logged_step(line) <= resume_step]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ValueError(
                    "--tensorboard needs the tensorboard package: pip install tensorboard"
                ) from None
            self.writer = SummaryWriter(str(folder / "tb"), purge_step=resume_step)

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (with a ``step``)."""
        if not self.enabled:
            return
        record = _strict(record)
        with self.path.open("a") as f:
            f.write(json.dumps(record, allow_nan=False) + "\n")
        if self.writer is not None:
            step = int(record["step"])
            for tag, value in _scalars(record):
                self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        """Flush and close the TensorBoard writer, if any."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _scalars(record: dict[str, Any], prefix: str = "") -> list[tuple[str, float]]:
    """The numeric values of a record as ``(tag, value)``; nested keys joined by ``/``."""
    out: list[tuple[str, float]] = []
    for key, value in record.items():
        if key == "step" and not prefix:
            continue
        if isinstance(value, dict):
            out += _scalars(value, f"{prefix}{key}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append((f"{prefix}{key}", float(value)))
    return out
