"""SemiTopdownPoseEstimator: eval mode, the hooked mixing, the teacher update, its state dict,
plain checkpoints, the losses' names and the checks of its config."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import SMALL, SYNTHETIC
from mmengine.config import Config
from mmengine.runner import Runner
from mmengine.runner.checkpoint import load_checkpoint, save_checkpoint
from mmpose.registry import MODELS
from posemum_mmpose import SemiTopdownPoseEstimator
from posemum_mmpose.export import plain_model_config
from torch.testing import assert_close

from posemum_aug import mix_tiles, sample_tile_plan, unmix_tiles

BACKBONES = list(SYNTHETIC)


def config(backbone: str) -> Any:
    return Config.fromfile(SYNTHETIC[backbone])


def build(backbone: str, **semi_train: Any) -> SemiTopdownPoseEstimator:
    """The synthetic config's model with ``semi_train`` in its ``semi_train_cfg``."""
    cfg = config(backbone).model
    cfg.semi_train_cfg.update(semi_train)
    model: SemiTopdownPoseEstimator = MODELS.build(cfg)
    model.init_weights()
    return model


def val_batch(backbone: str, model: SemiTopdownPoseEstimator) -> dict[str, Any]:
    loader = Runner.build_dataloader(config(backbone).val_dataloader)
    batch: dict[str, Any] = model.data_preprocessor(next(iter(loader)), training=False)
    return batch


def perturb_(module: torch.nn.Module, seed: int) -> None:
    """Move every floating entry of ``module``'s state away from its initial value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for value in module.state_dict().values():
            if value.is_floating_point():
                value.add_(torch.rand(value.shape, generator=generator) * 0.1)
            else:
                value.add_(7)


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("predict_with", ["teacher", "student"])
def test_eval_mode_equals_the_plain_estimator(
    synthetic_root: Path, backbone: str, predict_with: str
) -> None:
    model = build(backbone)
    model.semi_test_cfg["predict_on"] = predict_with
    perturb_(model.student, seed=1)  # teacher and student differ
    chosen = model.teacher.module if predict_with == "teacher" else model.student
    plain = MODELS.build(plain_model_config(config(backbone).model))
    plain.load_state_dict(chosen.state_dict())
    model.eval()
    plain.eval()
    batch = val_batch(backbone, model)
    with torch.no_grad():
        assert_close(
            model(batch["inputs"], mode="tensor"),
            plain(batch["inputs"], None, mode="tensor"),
            rtol=0,
            atol=0,
        )
        ours = model(batch["inputs"], batch["data_samples"], mode="predict")
        theirs = plain(batch["inputs"], batch["data_samples"], mode="predict")
    for a, b in zip(ours, theirs, strict=True):
        assert_close(a.pred_instances.keypoints, b.pred_instances.keypoints, rtol=0, atol=0)
        assert_close(
            a.pred_instances.keypoint_scores, b.pred_instances.keypoint_scores, rtol=0, atol=0
        )


def hand_written_backbone(backbone: Any, name: str, x: torch.Tensor, plans: list[Any]) -> Any:
    """The backbone's forward written out, mixing at its four points and unmixing."""
    composed = plans[0].then(plans[1]).then(plans[2]).then(plans[3])
    x = mix_tiles(x, plans[0])
    if name == "resnet":
        x = backbone.maxpool(backbone.relu(backbone.norm1(backbone.conv1(x))))
        x = mix_tiles(backbone.layer1(x), plans[1])
        x = mix_tiles(backbone.layer2(x), plans[2])
        x = mix_tiles(backbone.layer3(x), plans[3])
        return (unmix_tiles(backbone.layer4(x), composed),)
    x = backbone.relu(backbone.norm1(backbone.conv1(x)))
    x = backbone.relu(backbone.norm2(backbone.conv2(x)))
    x = mix_tiles(backbone.layer1(x), plans[1])
    branches = [t(x) if t is not None else x for t in backbone.transition1]
    y = mix_tiles(backbone.stage2(branches), plans[2])
    branches = [t(y[-1]) if t is not None else y[i] for i, t in enumerate(backbone.transition2)]
    y = mix_tiles(backbone.stage3(branches), plans[3])
    branches = [t(y[-1]) if t is not None else y[i] for i, t in enumerate(backbone.transition3)]
    return tuple(unmix_tiles(backbone.stage4(branches), composed))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_hooked_forward_equals_a_hand_written_mixing_forward(backbone: str) -> None:
    mix = dict(group_size=2, grid=2, p=1.0, p_feature=1.0, feature_mode="all")
    model = build(backbone, mix=mix)
    model.train()
    x = torch.randn(6, 3, 128, 96, generator=torch.Generator().manual_seed(0))
    unhooked = copy.deepcopy(model.student.backbone)  # copies carry no mixing hooks
    model.generator.manual_seed(5)
    hooked = model.student.backbone(x)
    replay = torch.Generator().manual_seed(5)
    plans = [sample_tile_plan(6, group_size=2, grid=2, generator=replay) for _ in range(4)]
    by_hand = hand_written_backbone(unhooked, backbone, x, plans)
    assert len(hooked) == len(by_hand) == 1
    assert_close(hooked[0], by_hand[0], rtol=0, atol=0)
    # the mixing changed the features: the same forward without it differs
    assert model.mum is not None
    with model.mum.paused():
        assert not torch.allclose(model.student.backbone(x)[0], hooked[0])


@pytest.mark.parametrize("backbone", BACKBONES)
def test_teacher_update_is_exact_on_every_state_entry(backbone: str) -> None:
    model = build(backbone)
    model.teacher.base_momentum = 0.75  # what EMANTeacherHook(momentum=0.25) sets
    perturb_(model.student, seed=2)
    before = {k: v.clone() for k, v in model.teacher.module.state_dict().items()}
    student = model.student.state_dict()
    assert model.update_teacher() == 0.75
    after = model.teacher.module.state_dict()
    assert after.keys() == student.keys() == before.keys()
    kinds = {"running_mean": 0, "running_var": 0, "num_batches_tracked": 0}
    for key, value in after.items():
        if value.is_floating_point():
            assert_close(value, torch.lerp(before[key], student[key], 0.25), rtol=0, atol=0)
        else:
            assert torch.equal(value, student[key]), key
        for kind in kinds:
            kinds[kind] += key.endswith(kind)
    assert min(kinds.values()) > 0  # BatchNorm statistics were among the entries
    assert model.teacher.step == 1
    model.train()
    assert not any(m.training for m in model.teacher.modules())


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_state_entry_is_a_tensor_and_round_trips(tmp_path: Path, backbone: str) -> None:
    model = build(backbone)
    for seed in range(3):
        perturb_(model.student, seed)
        model.update_teacher()
    state = model.state_dict()
    # mmengine broadcasts every entry from rank 0 after init_weights: each must be a tensor
    assert all(isinstance(value, torch.Tensor) for value in state.values())
    assert set(state) == {f"student.{k}" for k in model.student.state_dict()} | {
        f"teacher.{k}" for k in model.teacher.state_dict()
    }
    save_checkpoint({"state_dict": state}, str(tmp_path / "ckpt.pth"))
    restored = build(backbone)
    load_checkpoint(restored, str(tmp_path / "ckpt.pth"), strict=True)
    assert restored.teacher.step == 3
    for key, value in state.items():
        assert torch.equal(restored.state_dict()[key], value), key


def test_a_plain_state_fills_both_networks_and_restarts_the_teacher() -> None:
    model = build("resnet")
    for seed in range(2):
        perturb_(model.student, seed)
        model.update_teacher()
    plain = MODELS.build(plain_model_config(config("resnet").model))
    perturb_(plain, seed=9)
    model.load_state_dict(plain.state_dict(), strict=True)
    assert model.teacher.step == 0
    for network in (model.student, model.teacher.module):
        for key, value in plain.state_dict().items():
            assert torch.equal(network.state_dict()[key], value), key


def test_the_losses_have_mmdets_prefixes(synthetic_root: Path) -> None:
    cfg = config("resnet")
    cfg.merge_from_dict(SMALL, allow_list_keys=True)
    model = MODELS.build(cfg.model)
    model.init_weights()
    batch = model.data_preprocessor(next(iter(Runner.build_dataloader(cfg.train_dataloader))), True)
    draws = model.generator.get_state()
    losses = model(**batch, mode="loss")
    assert set(losses) == {"sup_loss_kpt", "sup_acc_pose", "unsup_loss_kpt"}
    model.semi_train_cfg.update(sup_weight=0.5, unsup_weight=2.0)
    model.generator.set_state(draws)  # the same hard views and mixing
    weighted = model(**batch, mode="loss")
    assert_close(weighted["sup_loss_kpt"], 0.5 * losses["sup_loss_kpt"])
    assert_close(weighted["sup_acc_pose"], losses["sup_acc_pose"])  # a metric: not weighted
    assert_close(weighted["unsup_loss_kpt"], 2.0 * losses["unsup_loss_kpt"])
    model.semi_train_cfg.update(unsup_weight=0.0)  # supervised only: no hard view is drawn
    before = model.generator.get_state()
    assert float(model(**batch, mode="loss")["unsup_loss_kpt"]) == 0.0
    assert torch.equal(model.generator.get_state(), before)


def test_bad_configs_raise_at_build_time() -> None:
    base = config("resnet").model
    bad: list[tuple[dict[str, Any], str]] = [
        ({"semi_train_cfg": {"momentum": 0.999}}, "EMANTeacherHook"),
        ({"semi_train_cfg": {"unsup_weigth": 1.0}}, "unsup_weigth"),
        ({"semi_train_cfg": {"predict_on": "student"}}, "semi_test_cfg"),
        ({"semi_test_cfg": {"predict_on": "ema"}}, "predict_on"),
        ({"semi_train_cfg": {"burn_in": -1}}, "burn_in"),
        ({"semi_train_cfg": {"unsup_weight": -1.0}}, "unsup_weight"),
        ({"semi_train_cfg": {"hard_bn_stats": "sync"}}, "hard_bn_stats"),
        ({"semi_train_cfg": {"mix": {"group_size": 2}, "mix_at": ["", "layer9"]}}, "layer9"),
        (
            {
                "head": dict(
                    type="SimCCHead",
                    in_channels=128,
                    out_channels=17,
                    input_size=(96, 128),
                    in_featuremap_size=(3, 4),
                    decoder=dict(type="SimCCLabel", input_size=(96, 128), sigma=(2.0, 2.0)),
                )
            },
            "SimCCHead",
        ),
    ]
    for change, message in bad:
        cfg = copy.deepcopy(base)
        for key, value in change.items():  # replaced, not merged
            cfg[key] = value
        with pytest.raises(ValueError, match=message):
            MODELS.build(cfg)


def test_bad_batches_and_modes_raise() -> None:
    model = build("resnet")
    with pytest.raises(ValueError, match="SetLabelled"):
        model(torch.zeros(2, 3, 128, 96), [type("S", (), {"metainfo": {}})()] * 2, mode="loss")
    with pytest.raises(ValueError, match="mode"):
        model(torch.zeros(2, 3, 128, 96), None, mode="features")
