"""mmpose's stock ``tools/train.py`` and ``tools/test.py``, run in this process as users do."""

from __future__ import annotations

import runpy
import sys
import uuid
from pathlib import Path

from conftest import MMPOSE_TOOLS


def run_tool(tool: str, config: Path, *args: str, options: list[str] | None = None) -> None:
    """``python tools/<tool>.py config *args --cfg-options *options`` in this process.

    Every run gets its own visualizer name: mmengine keeps one visualizer per name for the
    process, which would write a second run's logs into the first run's folder.
    """
    options = [*(options or []), f"visualizer.name=run-{uuid.uuid4().hex}"]
    argv = [str(MMPOSE_TOOLS / f"{tool}.py"), str(config), *args, "--cfg-options", *options]
    saved = sys.argv
    sys.argv = argv
    try:
        runpy.run_path(argv[0], run_name="__main__")
    finally:
        sys.argv = saved
