"""Checkpoints out of the semi-supervised model: the export tool, a plain config loading the
export with identical predictions, init_model, MMPoseInferencer and tools/test.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import SYNTHETIC
from mmengine.config import Config
from mmpose.apis import MMPoseInferencer, inference_topdown, init_model
from posemum_mmpose.export import main as export
from posemum_mmpose.export import plain_model_config
from stock import run_tool

NETWORKS = ["teacher", "student"]


def plain_config(path: Path) -> Path:
    """The synthetic config with the plain estimator (what a user's plain config holds)."""
    cfg = Config.fromfile(SYNTHETIC["hrnet"])
    cfg.model = plain_model_config(cfg.model)
    cfg.val_cfg = dict()
    cfg.custom_hooks = []
    cfg.default_hooks.checkpoint.save_best = "coco/AP"
    cfg.dump(str(path))
    return path


def a_person(root: Path) -> tuple[str, np.ndarray]:
    """A validation image and its first person's box (x1, y1, x2, y2)."""
    coco = json.loads((root / "synthetic" / "person_keypoints_val.json").read_text())
    image = coco["images"][0]
    x, y, w, h = next(a["bbox"] for a in coco["annotations"] if a["image_id"] == image["id"])
    return str(root / "synthetic" / "images" / image["file_name"]), np.array([[x, y, x + w, y + h]])


@pytest.fixture(scope="module")
def exported(semi_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("exported")
    for network in NETWORKS:
        export([str(semi_run / "iter_2.pth"), str(folder / f"{network}.pth"), "--network", network])
    return {network: folder / f"{network}.pth" for network in NETWORKS}


def test_the_export_is_a_plain_checkpoint(semi_run: Path, exported: dict[str, Path]) -> None:
    semi = torch.load(semi_run / "iter_2.pth", weights_only=False)["state_dict"]
    for network, prefix in [("teacher", "teacher.module."), ("student", "student.")]:
        plain = torch.load(exported[network], weights_only=False)
        assert plain["meta"]["posemum_mmpose"]["teacher_step"] == 2
        assert plain["meta"]["dataset_meta"]["dataset_name"] == "coco"
        assert plain["state_dict"].keys() == {
            k[len(prefix) :] for k in semi if k.startswith(prefix)
        }
        for key, value in plain["state_dict"].items():
            assert torch.equal(value, semi[prefix + key])


@pytest.mark.parametrize("network", NETWORKS)
def test_a_plain_config_predicts_what_the_semi_model_predicts(
    synthetic_root: Path, semi_run: Path, exported: dict[str, Path], tmp_path: Path, network: str
) -> None:
    image, box = a_person(synthetic_root)
    semi = init_model(
        str(SYNTHETIC["hrnet"]),
        str(semi_run / "iter_2.pth"),
        device="cpu",
        cfg_options={"model.semi_test_cfg.predict_on": network},
    )
    plain = init_model(
        str(plain_config(tmp_path / "plain.py")), str(exported[network]), device="cpu"
    )
    (ours,), (theirs,) = (inference_topdown(m, image, box) for m in (semi, plain))
    keypoints = ours.pred_instances.keypoints
    np.testing.assert_array_equal(keypoints, theirs.pred_instances.keypoints)
    np.testing.assert_array_equal(
        ours.pred_instances.keypoint_scores, theirs.pred_instances.keypoint_scores
    )
    # the two networks differ after two steps, so the comparison could fail
    other = init_model(str(SYNTHETIC["hrnet"]), str(semi_run / "iter_2.pth"), device="cpu")
    other.semi_test_cfg["predict_on"] = "student" if network == "teacher" else "teacher"
    assert not np.array_equal(
        inference_topdown(other, image, box)[0].pred_instances.keypoints, keypoints
    )


def test_mmpose_inferencer_runs_the_semi_config(
    synthetic_root: Path, semi_run: Path, exported: dict[str, Path], tmp_path: Path
) -> None:
    image, _ = a_person(synthetic_root)
    found: list[Any] = []
    for config, weights in [
        (SYNTHETIC["hrnet"], semi_run / "iter_2.pth"),
        (plain_config(tmp_path / "plain.py"), exported["teacher"]),
    ]:
        inferencer = MMPoseInferencer(
            pose2d=str(config), pose2d_weights=str(weights), det_model="whole_image", device="cpu"
        )
        (result,) = list(inferencer(image, return_vis=False))
        found.append(result["predictions"][0][0]["keypoints"])
    assert len(found[0]) == 17
    np.testing.assert_array_equal(found[0], found[1])


def test_tools_test_scores_the_export_as_the_semi_checkpoint(
    synthetic_root: Path, semi_run: Path, exported: dict[str, Path], tmp_path: Path
) -> None:
    metrics = []
    for config, weights, work_dir in [
        (SYNTHETIC["hrnet"], semi_run / "iter_2.pth", tmp_path / "semi"),
        (plain_config(tmp_path / "plain.py"), exported["teacher"], tmp_path / "plain"),
    ]:
        run_tool("test", config, str(weights), "--work-dir", str(work_dir))
        (log,) = work_dir.glob("*/*.json")  # tools/test.py's metrics
        found = json.loads(log.read_text())
        metrics.append({key: value for key, value in found.items() if key.startswith("coco/")})
    assert metrics[0] == metrics[1]
    assert "coco/AP" in metrics[0]


def test_bad_exports_raise(semi_run: Path, exported: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(SystemExit):  # the target exists
        export([str(semi_run / "iter_2.pth"), str(exported["teacher"])])
    with pytest.raises(SystemExit):  # a plain checkpoint has no teacher
        export([str(exported["teacher"]), str(tmp_path / "again.pth")])
    with pytest.raises(SystemExit):
        export([str(tmp_path / "missing.pth"), str(tmp_path / "out.pth")])
