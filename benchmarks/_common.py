"""Shared benchmark plumbing: CLI flags, median timing, metadata and JSON output.

Every ``bench_*.py`` builds on these helpers so that timings are taken, labelled and
saved one way: ``torch.utils.benchmark.Timer.blocked_autorange`` medians, CUDA
synchronised by the timer, and a JSON file with the torch version, device, thread
count and git sha beside the printed table.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils import benchmark

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Flags every benchmark takes: ``--quick``, ``--devices``, ``--min-run-time``, ``--out``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sweep on CPU, for CI")
    parser.add_argument(
        "--devices",
        nargs="+",
        default=None,
        help="devices to time (default: cpu, plus cuda when available; cpu only with --quick)",
    )
    parser.add_argument("--min-run-time", type=float, default=None, help="seconds per timing")
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    args = parser.parse_args(argv)
    if args.devices is None:
        cuda = torch.cuda.is_available() and not args.quick
        args.devices = ["cpu", "cuda"] if cuda else ["cpu"]
    if args.min_run_time is None:
        args.min_run_time = 0.05 if args.quick else 0.5
    return args


def median_time(fn: Callable[[], Any], min_run_time: float) -> float:
    """Median seconds per call of ``fn`` (``blocked_autorange``; CUDA is synchronised)."""
    fn()  # warm-up: allocator, lazy init, compilation
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn})
    return float(timer.blocked_autorange(min_run_time=min_run_time).median)


def metadata() -> dict[str, Any]:
    """Where and with what a run was taken: versions, threads, devices, git sha."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        sha = "unknown"
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "git_sha": sha,
    }


def write_json(name: str, rows: list[dict[str, Any]], out: Path | None = None) -> Path:
    """Write ``{"meta": metadata(), "rows": rows}`` to ``out`` (default ``results/NAME.json``)."""
    path = out if out is not None else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": metadata(), "rows": rows}, indent=2) + "\n")
    return path


def print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    """Print ``rows`` as an aligned text table with the given columns."""
    cells = [[_fmt(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for r in cells:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 else f"{value:.3f}"
    return str(value)
