"""The example end to end: train.py trains, checkpoints and resumes on both backbones, and
the data path reads the real COCO-format files of ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import CONFIGS, SHARED_DATA
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.runner import Runner
from mmpose.registry import MODELS
from train import main as train


def teacher_step(checkpoint: Path) -> int:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    return int(state["teacher._extra_state"]["step"])


def scalars(work_dir: Path) -> list[dict[str, Any]]:
    (log,) = work_dir.glob("*/vis_data/scalars.json")
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.parametrize("backbone", list(CONFIGS))
def test_train_checkpoint_and_resume(synthetic_root: Path, tmp_path: Path, backbone: str) -> None:
    options = ["default_hooks.logger.interval=1", "default_hooks.checkpoint.interval=2"]
    run = ["--work-dir", str(tmp_path), "--data-root", str(synthetic_root), "--cfg-options"]
    train([str(CONFIGS[backbone]), *run, *options, "train_cfg.max_iters=2"])
    assert teacher_step(tmp_path / "iter_2.pth") == 2
    first = scalars(tmp_path)
    assert [row["iter"] for row in first if "loss" in row] == [1, 2]
    assert all(row["loss_unsup"] > 0 and row["loss_kpt"] > 0 for row in first if "loss" in row)
    assert any("coco/AP" in row for row in first)  # validated at the end
    train([str(CONFIGS[backbone]), "--resume", *run, *options, "train_cfg.max_iters=4"])
    # the resumed run continued the teacher's step (a fresh teacher would be at 2)
    assert teacher_step(tmp_path / "iter_4.pth") == 4
    state = torch.load(tmp_path / "iter_4.pth", map_location="cpu", weights_only=False)
    assert state["meta"]["iter"] == 4


def real_data_config(tmp_path: Path, name: str) -> tuple[Any, int]:
    """The ResNet config reading a ../shared/data file as both parts of the batches."""
    folder, ann, dataset, joints = {
        "ochuman": ("ochuman-mini", "test_ochuman.json", "CocoDataset", 17),
        "crowdpose": ("crowdpose-mini", "test_crowdpose.json", "CrowdPoseDataset", 14),
    }[name]
    coco = json.loads((SHARED_DATA / folder / ann).read_text())
    boxes = [
        {"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 1.0}
        for a in coco["annotations"]
    ]
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    cfg = Config.fromfile(CONFIGS["resnet"])
    for part in cfg.train_dataloader.dataset.datasets:
        part.update(type=dataset, data_root=str(SHARED_DATA / folder), ann_file=ann)
        part.data_prefix = dict(img="")
        if part.get("bbox_file"):
            part.bbox_file = str(tmp_path / "boxes.json")
    cfg.model.student.head.out_channels = joints
    cfg.model.mix.group_size = 2
    return cfg, joints


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data beside the checkout")
@pytest.mark.parametrize("name", ["ochuman", "crowdpose"])
def test_a_training_step_on_the_real_files(tmp_path: Path, name: str) -> None:
    cfg, joints = real_data_config(tmp_path, name)
    batch = next(iter(Runner.build_dataloader(cfg.train_dataloader)))
    labelled = [sample.metainfo["labelled"] for sample in batch["data_samples"]]
    assert labelled == [True] * 4 + [False] * 4
    assert all(len(s.metainfo["flip_indices"]) == joints for s in batch["data_samples"])
    model = MODELS.build(cfg.model)
    model.init_weights()
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    log = model.train_step(batch, optim)
    assert set(log) >= {"loss", "loss_kpt", "loss_unsup"}
    assert all(torch.isfinite(value) for value in log.values())
    assert float(log["loss_unsup"]) > 0
