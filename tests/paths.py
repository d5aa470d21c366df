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
#: Marks a test that reads ``DATA``: skipped, with the reason, on a clone that has no
#: ``../shared`` beside it (every user's clone); CI has it and runs them.
needs_shared_data = pytest.mark.skipif(
    not DATA.is_dir(),
    reason=f"needs the real COCO-format sets in {DATA} (../shared/data), absent beside this clone",
)
#: Both real annotation files, as pytest parameters.
REAL = [pytest.param(OCHUMAN, id="ochuman"), pytest.param(CROWDPOSE, id="crowdpose")]
