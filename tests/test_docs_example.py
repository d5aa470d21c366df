"""The docs' training-loop example (``docs/examples/own_loop.py``) runs and trains."""

from __future__ import annotations

import math
import runpy

import pytest

from tests.paths import ROOT

SCRIPT = ROOT / "docs" / "examples" / "own_loop.py"


def test_own_loop_runs_every_step(capsys: pytest.CaptureFixture[str]) -> None:
    namespace = runpy.run_path(str(SCRIPT), run_name="__main__")
    steps = namespace["STEPS"]
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed] == [f"step {i}" for i in range(steps)]
    assert math.isfinite(namespace["loss"].item())
    assert namespace["teacher"].step == steps
