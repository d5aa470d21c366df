"""Tests of the example trainer's HRNet (``examples/sshpe/hrnet.py``): layout, shapes,
Pose-MUM mixing of every branch, and loading an ImageNet classifier."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sshpe.hrnet import HighResolutionModule, HRNet, classifier_state
from sshpe.models import build_model, load_pretrained, mix_points

from posemum_aug.mix import PoseMUM, mix_tiles, sample_tile_plan, unmix_tiles


def _images(batch: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))


def imagenet_classifier_state(arch: str, width: float) -> dict[str, torch.Tensor]:
    """A state dict in the layout of the common ImageNet HRNet releases, filled with seeded
    values: ``conv1/bn1/conv2/bn2`` stem, the same backbone names, all four fuse rows in the
    last stage-4 module, and a classifier head (``incre_modules``, ``downsamp_modules``,
    ``final_layer``, ``classifier``)."""
    network = HRNet(arch, 17, width)  # type: ignore[arg-type]
    stem = {"stem.0.": "conv1.", "stem.1.": "bn1.", "stem.3.": "conv2.", "stem.4.": "bn2."}
    state: dict[str, torch.Tensor] = {}
    for key, value in network.state_dict().items():
        if key.startswith("head."):
            continue
        old = next((o for o in stem if key.startswith(o)), None)
        state[key if old is None else stem[old] + key[len(old) :]] = value
    channels = [m.bn2.num_features for m in (b[0] for b in network.stage4[-1].branches)]
    multi_scale = HighResolutionModule(channels, 1, multi_scale_output=True)
    last = f"stage4.{len(network.stage4) - 1}.fuse_layers."
    for key, value in multi_scale.fuse_layers.state_dict().items():
        if not key.startswith("0."):
            state[last + key] = value
    state |= {
        "incre_modules.0.0.conv1.weight": torch.zeros(32, channels[0], 1, 1),
        "downsamp_modules.0.0.weight": torch.zeros(256, 128, 3, 3),
        "final_layer.0.weight": torch.zeros(2048, 1024, 1, 1),
        "classifier.weight": torch.zeros(1000, 2048),
        "classifier.bias": torch.zeros(1000),
    }
    g = torch.Generator().manual_seed(0)
    return {
        k: torch.randn(v.shape, generator=g) if v.is_floating_point() else v
        for k, v in state.items()
    }


@pytest.mark.parametrize(("arch", "params"), [("hrnet_w32", 28.5e6), ("hrnet_w48", 63.6e6)])
def test_hrnet_has_the_papers_parameter_count(arch: str, params: float) -> None:
    """Sun et al. 2019, Table 1: 28.5 M (W32) and 63.6 M (W48) parameters with 17 joints."""
    model = HRNet(arch, 17, 1.0)  # type: ignore[arg-type]
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(params, abs=0.05e6)


@pytest.mark.parametrize(("arch", "base"), [("hrnet_w32", 32), ("hrnet_w48", 48)])
def test_hrnet_branches_channels_and_strides(arch: str, base: int) -> None:
    model = HRNet(arch, 5, 0.25)  # type: ignore[arg-type]
    names = [name for name, _ in model.named_children()]
    assert names == [
        "stem", "layer1", "transition1", "stage2", "transition2", "stage3", "transition3",
        "stage4", "head",
    ]  # fmt: skip
    assert [len(s) for s in (model.stage2, model.stage3, model.stage4)] == [1, 4, 3]
    x = _images(2, (128, 96))
    stem = model.stem(x)
    assert stem.shape == (2, 16, 32, 24)  # two stride-2 convolutions, 64 x 0.25 channels
    branches = [model.layer1(stem)]
    shapes = []
    for transition, stage in (
        (model.transition1, model.stage2),
        (model.transition2, model.stage3),
        (model.transition3, model.stage4),
    ):
        opened = transition(branches)
        branches = stage(opened)
        shapes.append([tuple(m.shape[1:]) for m in opened])
    channels = [round(base * 2**i * 0.25) for i in range(4)]
    sizes = [(32, 24), (16, 12), (8, 6), (4, 3)]
    for count, opened in zip((2, 3, 4), shapes, strict=True):
        assert opened == [(c, *s) for c, s in zip(channels[:count], sizes, strict=False)]
    assert [tuple(m.shape[1:]) for m in branches] == [(channels[0], 32, 24)]  # stride 4 only
    assert model(x).shape == (2, 5, 32, 24)


@pytest.mark.parametrize("size", [(64, 48), (96, 64), (64, 64)])
def test_hrnet_heatmaps_at_stride_4_for_any_size(size: tuple[int, int]) -> None:
    model = build_model("hrnet_w32", 3, 0.125)
    assert model(_images(2, size)).shape == (2, 3, size[0] // 4, size[1] // 4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"arch": "hrnet_w18"}, "arch"), ({"num_joints": 0}, "num_joints"), ({"width": 0}, "width")],
)
def test_hrnet_rejects_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HRNet(**kwargs)  # type: ignore[arg-type]


def test_hooked_forward_equals_the_hand_written_one_with_the_same_plans() -> None:
    """The default mixing points of HRNet (input, stem, every branch of stages 2 and 3,
    unmixed at the stage-4 output) do what a hand-written forward does with the same
    seeded plans: mix the input, the stem's map, both stage-2 branches and all three
    stage-3 branches (each branch at its own resolution, one plan per point), then
    unmix the composed plan before the head."""
    torch.manual_seed(0)
    model = HRNet("hrnet_w32", 5, 0.125).train()
    x = _images(8, (64, 48))
    mum = PoseMUM(4, (4, 4), p=1.0, p_feature=1.0, feature_mode="all",
                  generator=torch.Generator().manual_seed(1))  # fmt: skip
    with mum.attach(model, *mix_points("hrnet_w32")):
        hooked = model(x)

    g = torch.Generator().manual_seed(1)
    plans = [sample_tile_plan(8, group_size=4, grid=(4, 4), generator=g) for _ in range(4)]
    y = mix_tiles(model.stem(mix_tiles(x, plans[0])), plans[1])
    branches = model.stage2(model.transition1([model.layer1(y)]))
    branches = mix_tiles(branches, plans[2])
    branches = mix_tiles(model.stage3(model.transition2(branches)), plans[3])
    composed = plans[0].then(plans[1]).then(plans[2]).then(plans[3])
    final = unmix_tiles(model.stage4(model.transition3(branches)), composed)
    by_hand = model.head(final[0])

    torch.testing.assert_close(hooked, by_hand, rtol=0, atol=0)
    assert not torch.allclose(hooked, model(x), atol=1e-4)  # mixing changed the output


def test_imagenet_classifier_loads_through_load_pretrained(tmp_path: Path) -> None:
    classifier = imagenet_classifier_state("hrnet_w32", 0.125)
    torch.save({"state_dict": classifier}, tmp_path / "hrnet_w32_imagenet.pth")
    model = HRNet("hrnet_w32", 17, 0.125)
    head = model.head.weight.clone()
    skipped = load_pretrained(model, tmp_path / "hrnet_w32_imagenet.pth")
    assert skipped == ["head.weight", "head.bias"]
    assert torch.equal(model.head.weight, head)
    own = model.state_dict()
    loaded, _ = classifier_state(classifier, model)
    assert sorted(loaded) == sorted(k for k in own if not k.startswith("head."))
    for key, value in loaded.items():
        assert torch.equal(own[key], value), key
    assert torch.equal(own["stem.3.weight"], classifier["conv2.weight"])
    assert torch.equal(own["stage4.2.fuse_layers.0.3.0.weight"],
                       classifier["stage4.2.fuse_layers.0.3.0.weight"])  # fmt: skip


@pytest.mark.parametrize("joints", [17, 14])
def test_the_pose_release_loads_its_heatmap_head(joints: int, tmp_path: Path) -> None:
    """The common pose HRNet release (``pose_hrnet_w32_256x192.pth``) names its 1x1 heatmap
    head ``final_layer``, which was dropped as a classifier's head: it is the model's
    ``head`` where the shapes match (the same joints), else the head keeps its init."""
    release = imagenet_classifier_state("hrnet_w32", 0.125)
    for key in [k for k in release if k.startswith(("incre_", "downsamp_", "final_", "class"))]:
        del release[key]
    g = torch.Generator().manual_seed(1)
    release["final_layer.weight"] = torch.randn(17, 4, 1, 1, generator=g)
    release["final_layer.bias"] = torch.randn(17, generator=g)
    torch.save({"state_dict": release}, tmp_path / "pose_hrnet_w32.pth")
    model = HRNet("hrnet_w32", joints, 0.125)
    head = model.head.weight.clone()
    skipped = load_pretrained(model, tmp_path / "pose_hrnet_w32.pth")
    if joints == 17:
        assert skipped == []
        assert torch.equal(model.head.weight, release["final_layer.weight"])
        assert torch.equal(model.head.bias, release["final_layer.bias"])
    else:
        assert skipped == ["head.weight", "head.bias"]
        assert torch.equal(model.head.weight, head)
    assert torch.equal(model.state_dict()["stem.3.weight"], release["conv2.weight"])


def test_a_classifier_of_another_network_is_one_error(tmp_path: Path) -> None:
    torch.save(imagenet_classifier_state("hrnet_w48", 0.125), tmp_path / "w48.pth")
    with pytest.raises(ValueError, match=r"transition1\.0\.0\.weight has shape \(6, 32, 3, 3\)"):
        load_pretrained(HRNet("hrnet_w32", 17, 0.125), tmp_path / "w48.pth")
    partial = imagenet_classifier_state("hrnet_w32", 0.125)
    del partial["transition2.2.0.0.weight"]
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"missing transition2\.2\.0\.0\.weight"):
        load_pretrained(HRNet("hrnet_w32", 17, 0.125), tmp_path / "partial.pth")
