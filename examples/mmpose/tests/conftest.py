"""Set-up of the plugin's tests: a venv with mmpose and the plugin (../README.md).

On a CPU-only install from PyPI the stand-ins of ``../cpu_only`` must be loaded at start-up
(``PYTHONPATH=examples/mmpose/cpu_only``, as ``.ci/run`` does), in this process and in the
``dist_train.sh`` workers the tests start.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent
sys.path.insert(0, str(EXAMPLE))  # prepare_data

# mmengine 0.10 saves numpy objects in checkpoints, which torch >= 2.6 refuses by default
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

pytest.importorskip("mmpose", reason="the plugin's tests need mmpose (../README.md)")
try:
    importlib.import_module("mmpose.models")
except ImportError as error:
    raise pytest.UsageError(
        f"mmpose.models does not import ({error}): on a CPU-only pip install run the tests "
        "with PYTHONPATH=examples/mmpose/cpu_only (examples/mmpose/README.md)"
    ) from error

import mmpose  # noqa: E402
import posemum_mmpose  # noqa: E402, F401  (registers the plugin's modules)
from mmpose.utils import register_all_modules  # noqa: E402

register_all_modules(init_default_scope=True)

#: mmpose's stock tools, shipped in its wheel.
MMPOSE_TOOLS = Path(mmpose.__file__).parent / ".mim" / "tools"
CONFIGS = EXAMPLE / "configs"
#: The synthetic configs by backbone family.
SYNTHETIC = {
    "resnet": CONFIGS / "posemum_res18-w16_synthetic-128x96.py",
    "hrnet": CONFIGS / "posemum_hrnet-w8_synthetic-128x96.py",
}
#: The real COCO-format fixtures beside a CI checkout (absent in a user's clone).
SHARED_DATA = EXAMPLE.parents[2] / "shared" / "data"
#: Settings that make a synthetic config small: batches of 2 labelled + 2 unlabelled crops.
SMALL: dict[str, Any] = {
    "train_dataloader.batch_size": 4,
    "train_dataloader.sampler.batch_size": 4,
    "train_dataloader.sampler.labelled_per_batch": 2,
    "train_dataloader.dataset.datasets.0.indices": 12,
    "model.semi_train_cfg.mix.group_size": 2,
    "val_dataloader.batch_size": 8,
    "default_hooks.logger.interval": 1,
}


def as_options(settings: dict[str, Any]) -> list[str]:
    """``settings`` as ``--cfg-options`` arguments."""
    return [f"{key}={value}" for key, value in settings.items()]


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic set written by prepare_data.py; the synthetic configs read it."""
    from prepare_data import main

    root = tmp_path_factory.mktemp("posemum_mmpose")
    main(["--out", str(root), "--num-train", "32", "--num-val", "8"])
    os.environ["POSEMUM_MMPOSE_DATA"] = f"{root}/"
    return root


def scalars(work_dir: Path) -> list[dict[str, Any]]:
    """The rows of the run's ``scalars.json`` (one per logged iteration or validation)."""
    (log,) = work_dir.glob("*/vis_data/scalars.json")
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture(scope="session")
def semi_run(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The work folder of a 2-iteration run of the HRNet synthetic config through the stock
    ``tools/train.py`` with ``--auto-scale-lr``, checkpointed and validated at iteration 2."""
    from stock import run_tool

    work_dir = tmp_path_factory.mktemp("semi_run")
    options = as_options(
        SMALL
        | {"train_cfg.max_iters": 2, "train_cfg.val_interval": 2}
        | {"default_hooks.checkpoint.interval": 2}
    )
    run_tool(
        "train", SYNTHETIC["hrnet"], "--work-dir", str(work_dir), "--auto-scale-lr", options=options
    )
    return work_dir
