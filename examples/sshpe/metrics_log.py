"""``metrics.jsonl``: the run's training losses, diagnostics and evaluations, one JSON
object per line, optionally mirrored to TensorBoard.

Values that are not finite are written as ``null``, so every line is strict JSON. On
``--resume`` the lines a killed run logged after its checkpoint are dropped (the
checkpoint holds the number of lines logged before it, :attr:`MetricsLog.lines`), by
writing the kept lines to a temporary file that replaces the log in one rename.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sshpe.outputs import claim, replace_text

__all__ = ["METRICS_FILE", "MetricsLog", "finite_or_none"]

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


class MetricsLog:
    """``metrics.jsonl`` in ``folder``, written by the main process only.

    Args:
        folder: the run folder.
        enabled: whether this process writes (the main process of a run).
        resume_step: the checkpoint's step when resuming (``None``: a new, empty log):
            TensorBoard events from that step on are purged.
        resume_lines: the log's :attr:`lines` when that checkpoint was written: the lines
            after them, logged by a run killed after its checkpoint (also the final
            evaluation's), are dropped.
        tensorboard: also write every numeric value as a TensorBoard scalar, tagged by
            its key (``eval/student/AP`` for evaluations), into ``folder/tb``.

    Attributes:
        lines: the lines in the log.

    Raises:
        ValueError: if ``tensorboard`` is asked and the ``tensorboard`` package is missing.
    """

    def __init__(
        self,
        folder: Path,
        enabled: bool,
        resume_step: int | None = None,
        resume_lines: int = 0,
        *,
        tensorboard: bool = False,
    ) -> None:
        self.path, self.enabled = folder / METRICS_FILE, enabled
        self.writer: Any = None
        self.lines = 0
        if not enabled:
            return
        kept = []
        if resume_step is not None and self.path.is_file():
            kept = self.path.read_text().splitlines()[:resume_lines]
        self.lines = len(kept)
        claim(folder, self.path)
        replace_text(self.path, "".join(line + "\n" for line in kept))
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ValueError(
                    "--tensorboard needs the tensorboard package: pip install tensorboard"
                ) from None
            events = folder / "tb"
            before = set(events.iterdir()) if events.is_dir() else set()
            self.writer = SummaryWriter(str(events), purge_step=resume_step)
            claim(folder, *sorted(set(events.iterdir()) - before))  # the new event file

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (with a ``step``)."""
        if not self.enabled:
            return
        record = _strict(record)
        with self.path.open("a") as f:
            f.write(json.dumps(record, allow_nan=False) + "\n")
        self.lines += 1
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
