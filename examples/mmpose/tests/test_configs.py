"""The real-data configs on the small real COCO-format files of ../shared/data (skipped
without them): every config builds its data and 256 x 192 batches; the 1K config of each
student trains a step through mmpose's stock tools/train.py on smaller crops and validates
teacher and student with detector boxes and flip test. The configs' ImageNet init_cfg is
kept in them and never fetched here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import CONFIGS, SHARED_DATA, SMALL, SYNTHETIC, scalars
from mmengine.config import Config
from mmengine.runner import Runner
from stock import run_tool

#: Every real-data config, with its labelled instances (None: all).
REAL = {
    "posemum_res50_coco-sshpe-1k-256x192.py": 1000,
    "posemum_res50_coco-sshpe-5k-256x192.py": 5000,
    "posemum_res50_coco-sshpe-10k-256x192.py": 10000,
    "posemum_hrnet-w32_coco-sshpe-1k-256x192.py": 1000,
    "posemum_hrnet-w32_coco-sshpe-5k-256x192.py": 5000,
    "posemum_hrnet-w32_coco-sshpe-10k-256x192.py": 10000,
    "posemum_res50_coco-all-unlabeled2017-256x192.py": None,
    "posemum_hrnet-w32_coco-all-unlabeled2017-256x192.py": None,
}
#: The configs that train a step here: one per student. The others differ from them only
#: in their data (the labelled `indices`, or the unlabeled2017 detector boxes), which the
#: batches test builds for every config.
DISTINCT = [
    "posemum_res50_coco-sshpe-1k-256x192.py",
    "posemum_hrnet-w32_coco-sshpe-1k-256x192.py",
]
#: The crops of the training runs: a quarter of the configs' pixels, for CI's CPU time (the
#: batches test checks the configs' own 256 x 192).
SMALL_CODEC = dict(type="MSRAHeatmap", input_size=(96, 128), heatmap_size=(24, 32), sigma=2)
#: The students' ImageNet weights.
IMAGENET = {
    "res50": "torchvision://resnet50",
    "hrnet-w32": "https://download.openmmlab.com/mmpose/pretrain_models/hrnet_w32-36af842e.pth",
}
OCHUMAN = SHARED_DATA / "ochuman-mini"
needs_data = pytest.mark.skipif(not OCHUMAN.is_dir(), reason="needs ../shared/data")


def detector_files(folder: Path) -> dict[str, Path]:
    """OCHuman's people as a person detector's results (one below the 0.5 score threshold),
    and its images as an image-info file without annotations (like unlabeled2017's)."""
    coco = json.loads((OCHUMAN / "test_ochuman.json").read_text())
    boxes = [
        {
            "image_id": a["image_id"],
            "category_id": 1,
            "bbox": a["bbox"],
            "score": 0.9 - 0.5 * (i == 0),
        }
        for i, a in enumerate(coco["annotations"])
    ]
    image_info = {key: value for key, value in coco.items() if key != "annotations"}
    files = {"boxes": folder / "boxes.json", "image_info": folder / "image_info.json"}
    files["boxes"].write_text(json.dumps(boxes))
    files["image_info"].write_text(json.dumps(image_info))
    return files


def on_ochuman(cfg: Any, files: dict[str, Path]) -> None:
    """Point ``cfg``'s data at ../shared/data, with 2 labelled + 2 unlabelled crops per step."""
    labelled, unlabelled = cfg.train_dataloader.dataset.datasets
    for part in (labelled, unlabelled, cfg.val_dataloader.dataset):
        part.update(data_root=str(OCHUMAN), ann_file="test_ochuman.json", data_prefix=dict(img=""))
    if "bbox_file" in unlabelled:  # unlabeled2017: detector boxes on images without labels
        unlabelled.update(ann_file=str(files["image_info"]), bbox_file=str(files["boxes"]))
    cfg.val_dataloader.dataset.bbox_file = str(files["boxes"])
    cfg.val_evaluator.ann_file = str(OCHUMAN / "test_ochuman.json")
    cfg.test_dataloader, cfg.test_evaluator = cfg.val_dataloader, cfg.val_evaluator
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.update(num_workers=0, persistent_workers=False)
    cfg.train_dataloader.batch_size = cfg.train_dataloader.sampler.batch_size = 4
    cfg.train_dataloader.sampler.labelled_per_batch = 2
    cfg.model.semi_train_cfg.mix.group_size = 2
    cfg.model.backbone.init_cfg = None  # ImageNet weights: never downloaded in tests
    # a training step and a validation, without writing checkpoints (500 MB each)
    cfg.train_cfg.update(max_iters=1, val_interval=1)
    cfg.default_hooks.checkpoint.update(interval=-1, save_last=False, save_best=None)
    cfg.default_hooks.logger.interval = 1


def smaller_crops(cfg: Any) -> None:
    """Train and validate ``cfg`` on :data:`SMALL_CODEC`'s crops."""
    labelled, unlabelled = cfg.train_dataloader.dataset.datasets
    for step in [*labelled.pipeline, *unlabelled.pipeline, *cfg.val_dataloader.dataset.pipeline]:
        if step.type == "TopdownAffine":
            step.input_size = SMALL_CODEC["input_size"]
        elif step.type == "GenerateTarget":
            step.encoder = SMALL_CODEC
    cfg.model.head.decoder = SMALL_CODEC


@pytest.mark.parametrize("name", list(REAL))
def test_configs_keep_their_protocol_and_imagenet_weights(name: str) -> None:
    cfg = Config.fromfile(CONFIGS / name)
    labelled, unlabelled = cfg.train_dataloader.dataset.datasets
    assert labelled.get("indices") == REAL[name]
    assert labelled.ann_file == "annotations/person_keypoints_train2017.json"
    if REAL[name] is None:
        assert unlabelled.bbox_file.endswith("unlabeled2017_detections_person.json")
        assert unlabelled.ann_file == "annotations/image_info_unlabeled2017.json"
    else:
        assert unlabelled.ann_file == labelled.ann_file and "indices" not in unlabelled
    assert cfg.model.backbone.init_cfg.checkpoint == IMAGENET[name.split("_")[1]]
    # validation: the person detector's boxes and flip test, teacher and student
    assert "detections" in cfg.val_dataloader.dataset.bbox_file
    assert cfg.model.test_cfg.flip_test is True
    assert cfg.val_cfg.type == "TeacherStudentValLoop"


@needs_data
@pytest.mark.parametrize("name", list(REAL))
def test_each_config_makes_its_batches_from_real_files(name: str, tmp_path: Path) -> None:
    cfg = Config.fromfile(CONFIGS / name)
    on_ochuman(cfg, detector_files(tmp_path))
    loader = Runner.build_dataloader(cfg.train_dataloader)
    labelled, unlabelled = loader.dataset.datasets
    assert len(labelled) == 5  # min(indices, the 5 people of the file)
    assert len(unlabelled) == (4 if REAL[name] is None else 5)  # a box below 0.5 dropped
    batch = next(iter(loader))
    assert [s.metainfo["labelled"] for s in batch["data_samples"]] == [True] * 2 + [False] * 2
    assert batch["inputs"][0].shape == (3, 256, 192)


@needs_data
@pytest.mark.parametrize("name", DISTINCT)
def test_each_student_trains_and_validates_on_real_files(name: str, tmp_path: Path) -> None:
    cfg = Config.fromfile(CONFIGS / name)
    on_ochuman(cfg, detector_files(tmp_path))
    smaller_crops(cfg)
    cfg.dump(str(tmp_path / name))
    run_tool("train", tmp_path / name, "--work-dir", str(tmp_path))
    rows = scalars(tmp_path)
    (step,) = [row for row in rows if "loss" in row]
    assert step["sup_loss_kpt"] > 0 and step["unsup_loss_kpt"] > 0
    (val,) = [row for row in rows if "teacher/coco/AP" in row]
    assert "student/coco/AP" in val


@needs_data
def test_crowdpose_trains_with_its_own_skeleton(tmp_path: Path) -> None:
    """CrowdPose's 14 joints (other names, order and flip pairs) through a training step of
    the small demo model: the skeleton, not the network, is under test."""
    cfg = Config.fromfile(SYNTHETIC["resnet"])
    cfg.merge_from_dict(SMALL, allow_list_keys=True)
    folder = SHARED_DATA / "crowdpose-mini"
    for part in cfg.train_dataloader.dataset.datasets:
        part.update(type="CrowdPoseDataset", data_root=str(folder), ann_file="test_crowdpose.json")
        part.data_prefix = dict(img="")
        part.pop("indices", None)
    cfg.model.head.out_channels = 14
    cfg.train_cfg.update(max_iters=1, val_interval=1)
    cfg.dump(str(tmp_path / "crowdpose.py"))
    run_tool("train", tmp_path / "crowdpose.py", "--work-dir", str(tmp_path), "--no-validate")
    (step,) = [row for row in scalars(tmp_path) if "loss" in row]
    assert step["sup_loss_kpt"] > 0 and step["unsup_loss_kpt"] > 0
