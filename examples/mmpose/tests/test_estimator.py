"""SemiTopdownPoseEstimator: eval mode, the hooked mixing, the teacher update, checkpoints."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import CONFIGS
from mmengine.config import Config
from mmengine.runner import Runner
from mmengine.runner.checkpoint import load_checkpoint, save_checkpoint
from mmpose.registry import MODELS
from posemum_mmpose import SemiTopdownPoseEstimator
from torch.testing import assert_close

from posemum_aug import mix_tiles, sample_tile_plan, unmix_tiles

BACKBONES = list(CONFIGS)


def config(backbone: str) -> Any:
    return Config.fromfile(CONFIGS[backbone])


def build(backbone: str, **changes: Any) -> SemiTopdownPoseEstimator:
    cfg = config(backbone).model
    cfg.update(changes)
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
    model = build(backbone, predict_with=predict_with)
    perturb_(model.student, seed=1)  # teacher and student differ
    chosen = model.teacher.module if predict_with == "teacher" else model.student
    plain = MODELS.build(config(backbone).model.student)
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
    model = build(backbone, momentum=0.75)
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
def test_checkpoint_round_trip_keeps_teacher_step_and_generator(
    tmp_path: Path, backbone: str
) -> None:
    model = build(backbone)
    for seed in range(3):
        perturb_(model.student, seed)
        model.update_teacher()
    torch.randn(5, generator=model.generator)
    save_checkpoint({"state_dict": model.state_dict()}, str(tmp_path / "ckpt.pth"))
    restored = build(backbone)
    load_checkpoint(restored, str(tmp_path / "ckpt.pth"), strict=True)
    assert restored.teacher.step == 3
    for key, value in model.teacher.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(restored.teacher.state_dict()[key], value), key
    assert torch.equal(restored.generator.get_state(), model.generator.get_state())


def test_bad_options_and_batches_raise() -> None:
    with pytest.raises(ValueError, match="predict_with"):
        build("resnet", predict_with="ema")
    with pytest.raises(ValueError, match="burn_in"):
        build("resnet", burn_in=-1)
    with pytest.raises(ValueError, match="layer9"):
        build("resnet", mix_at=["", "layer9"])
    model = build("resnet")
    with pytest.raises(ValueError, match="SetLabelled"):
        model(torch.zeros(2, 3, 128, 96), [type("S", (), {"metainfo": {}})()] * 2, mode="loss")
    with pytest.raises(ValueError, match="mode"):
        model(torch.zeros(2, 3, 128, 96), None, mode="features")
