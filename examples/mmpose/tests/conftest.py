"""Set-up of the mmpose example's tests: run in a venv with mmpose (see ../README.md).

The pip-only CPU install lacks full mmcv and torchvision: :func:`posemum_mmpose.lite.install`
puts stand-ins in their place before mmpose is imported (its docstring says why each one).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent
sys.path.insert(0, str(EXAMPLE))

pytest.importorskip("mmpose", reason="the mmpose example's tests need mmpose (../README.md)")

from posemum_mmpose import lite  # noqa: E402

lite.install()

import posemum_mmpose  # noqa: E402, F401  (registers the example's modules)
from mmpose.utils import register_all_modules  # noqa: E402

register_all_modules(init_default_scope=True)

#: The real COCO-format fixtures beside a CI checkout (absent in a user's clone).
SHARED_DATA = EXAMPLE.parents[2] / "shared" / "data"
CONFIGS = {
    "resnet": EXAMPLE / "configs" / "posemum_resnet18_synthetic.py",
    "hrnet": EXAMPLE / "configs" / "posemum_hrnet_synthetic.py",
}


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic set split by prepare_data.py; the configs read it."""
    from prepare_data import main

    root = tmp_path_factory.mktemp("posemum_mmpose")
    main(["--out", str(root), "--num-train", "48", "--num-val", "8", "--labelled-images", "6"])
    os.environ["POSEMUM_MMPOSE_DATA"] = f"{root}/"
    return root
