"""Files the tests share: the real COCO-format sets in ``../shared/data`` (read in place,
never copied into the repository) and the example trainer's folder."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: ``examples/``: conftest.py puts it on ``sys.path`` so tests import ``train`` and ``sshpe``.
EXAMPLES = ROOT / "examples"
DATA = ROOT.parent / "shared" / "data"
OCHUMAN = DATA / "ochuman-mini" / "test_ochuman.json"
CROWDPOSE = DATA / "crowdpose-mini" / "test_crowdpose.json"
#: Both real annotation files, as pytest parameters.
REAL = [pytest.param(OCHUMAN, id="ochuman"), pytest.param(CROWDPOSE, id="crowdpose")]
