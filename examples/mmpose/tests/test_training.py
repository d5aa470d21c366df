"""Training through mmpose's stock tools/train.py: logs, checkpoints, --resume, --auto-scale-lr,
--amp's autocast, load_from a plain checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import SMALL, SYNTHETIC, as_options, scalars
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.runner import Runner
from mmengine.runner.checkpoint import save_checkpoint
from mmpose.registry import MODELS
from posemum_mmpose.export import plain_model_config
from posemum_mmpose.rank_generator import CHECKPOINT_KEY
from stock import run_tool
from torch.testing import assert_close


def perturb_(module: torch.nn.Module, seed: int) -> None:
    """Move every entry of ``module``'s state away from its initial value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for value in module.state_dict().values():
            if value.is_floating_point():
                value.add_(torch.rand(value.shape, generator=generator) * 0.1)
            else:
                value.add_(7)


def checkpoint(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    return loaded


def teacher_step(path: Path) -> int:
    return int(checkpoint(path)["state_dict"]["teacher._extra_state"][0])


def test_train_logs_checkpoints_and_validates_both_networks(semi_run: Path) -> None:
    assert teacher_step(semi_run / "iter_2.pth") == 2
    rows = scalars(semi_run)
    train = [row for row in rows if "loss" in row]
    assert [row["iter"] for row in train] == [1, 2]
    for row in train:  # mmdet's names; the logged momentum is the teacher's weight
        assert row["sup_loss_kpt"] > 0 and row["unsup_loss_kpt"] > 0 and "sup_acc_pose" in row
        assert row["teacher_momentum"] == pytest.approx(0.99)
        assert row["lr"] == pytest.approx(3e-3 * 4 / 32)  # --auto-scale-lr: batch 4 of 32
    (val,) = [row for row in rows if "teacher/coco/AP" in row]
    assert "student/coco/AP" in val
    # every rank's generator is saved beside the weights
    assert len(checkpoint(semi_run / "iter_2.pth")[CHECKPOINT_KEY]) == 1


def test_resume_continues_the_teacher_and_the_generator(semi_run: Path, tmp_path: Path) -> None:
    work_dir = tmp_path / "resumed"
    shutil.copytree(semi_run, work_dir)
    # the uninterrupted run to iteration 3, for comparison
    straight = tmp_path / "straight"
    options = as_options(SMALL | {"train_cfg.max_iters": 3, "train_cfg.val_interval": 10})
    run_tool(
        "train", SYNTHETIC["hrnet"], "--work-dir", str(straight), "--auto-scale-lr", options=options
    )
    run_tool(
        "train",
        SYNTHETIC["hrnet"],
        "--work-dir",
        str(work_dir),
        "--resume",
        "--auto-scale-lr",
        options=options,
    )
    resumed, uninterrupted = (
        checkpoint(work_dir / "iter_3.pth"),
        checkpoint(straight / "iter_3.pth"),
    )
    assert int(resumed["state_dict"]["teacher._extra_state"][0]) == 3  # a fresh teacher: 1
    assert torch.equal(resumed[CHECKPOINT_KEY][0], uninterrupted[CHECKPOINT_KEY][0])
    for key, value in uninterrupted["state_dict"].items():
        assert_close(resumed["state_dict"][key], value, rtol=0, atol=0, msg=key)


def test_load_from_a_plain_checkpoint_fills_student_and_teacher(
    synthetic_root: Path, tmp_path: Path
) -> None:
    cfg = Config.fromfile(SYNTHETIC["hrnet"])
    plain = MODELS.build(plain_model_config(cfg.model))
    plain.init_weights()
    perturb_(plain, seed=0)
    save_checkpoint({"meta": {}, "state_dict": plain.state_dict()}, str(tmp_path / "plain.pth"))
    cfg.merge_from_dict({"load_from": str(tmp_path / "plain.pth"), "work_dir": str(tmp_path)})
    runner = Runner.from_cfg(cfg)
    runner.load_or_resume()  # what tools/train.py does with load_from
    model = runner.model
    assert model.teacher.step == 0
    for network in (model.student, model.teacher.module):
        for key, value in plain.state_dict().items():
            assert torch.equal(network.state_dict()[key], value), key
    # torch's strict loader sees every entry filled too
    fresh = MODELS.build(cfg.model)
    fresh.load_state_dict(plain.state_dict(), strict=True)
    assert torch.equal(fresh.teacher.module.head.final_layer.weight, plain.head.final_layer.weight)


def test_a_training_step_under_autocast(synthetic_root: Path) -> None:
    """``--amp`` builds mmengine's AmpOptimWrapper, which runs only on GPUs; on a CPU the
    same step runs under autocast (float16, as on a GPU: mmpose turns its accuracy into
    numpy, which has no bfloat16)."""
    cfg = Config.fromfile(SYNTHETIC["hrnet"])
    cfg.merge_from_dict(SMALL, allow_list_keys=True)
    model = MODELS.build(cfg.model)
    model.init_weights()
    batch = next(iter(Runner.build_dataloader(cfg.train_dataloader)))
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    with torch.autocast("cpu", dtype=torch.float16):
        log = model.train_step(batch, optim)
        assert model.teacher(torch.zeros(1, 3, 128, 96), None, mode="tensor").dtype == torch.float16
    assert all(torch.isfinite(value) for value in log.values())
    assert float(log["unsup_loss_kpt"]) > 0
    assert model.update_teacher() == pytest.approx(0.999)  # the model's default before the hook
