"""The mixing probe (benchmarks/mixing_probe.py): its routing rule and its mixed pass."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import torch
from torch import nn

from posemum_aug.heatmap import render_heatmaps
from posemum_aug.mix import TilePlan, sample_tile_plan
from tests.paths import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

from mixing_probe import pairs, probe_run, routed_right


def test_routing_is_right_everywhere_on_a_divisible_map() -> None:
    points = torch.rand(8, 17, 2) * torch.tensor([95.0, 127.0])
    plan = sample_tile_plan(8, grid=(4, 3), group_size=4, generator=torch.Generator())
    assert routed_right(points, (128, 96), (4, 3), plan).all()
    assert routed_right(points, (128, 96), (8, 6), plan).all()


def test_routing_of_a_4_by_4_grid_on_resnets_4_by_3_layer4() -> None:
    # tile columns of 24 px; layer4 cells of 32 px; tile_bounds(3, 4) = [0, 0, 1, 2, 3]
    # gives cell 0 to tile 1, cell 1 to tile 2, cell 2 to tile 3. Pixels by rounding.
    xs = [0.0, 23.4, 23.6, 31.4, 31.6, 47.4, 47.6, 63.4, 63.6, 71.4, 71.6, 95.0]
    points = torch.tensor([[x, 60.0] for x in xs]).expand(2, -1, -1)
    # neighbouring tiles from other samples: a joint is right only where cell and tile agree
    swap = TilePlan(torch.tensor([[[0, 1, 0, 1]], [[1, 0, 1, 0]]]).expand(-1, 4, -1))
    right = routed_right(points, (128, 96), (4, 3), swap)
    expected = [False, False, True, True, False, False, True, True, False, False, True, True]
    assert right.tolist() == [expected, expected]
    # tiles 0 and 1 drawn from one sample: the joints misplaced between them are right too
    pairs = TilePlan(torch.tensor([[[1, 1, 0, 1]], [[0, 0, 1, 0]]]).expand(-1, 4, -1))
    right = routed_right(points, (128, 96), (4, 3), pairs)
    expected = [True, True, True, True, False, False, True, True, False, False, True, True]
    assert right.tolist() == [expected, expected]


def _crops(n: int, size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Crops whose first channel is a Gaussian at their one keypoint."""
    g = torch.Generator().manual_seed(0)
    keypoints = torch.rand(n, 1, 2, generator=g) * torch.tensor([size[1] - 1.0, size[0] - 1.0])
    maps, _ = render_heatmaps(keypoints, torch.ones(n, 1), size, 1.5, unbiased=True)
    image = torch.cat([maps, torch.zeros(n, 2, *size)], dim=1)
    return {"image": image, "keypoints": keypoints, "labelled": torch.ones(n, 1, dtype=torch.bool)}


def _config(unmix_at: str) -> dict[str, Any]:
    return {
        "method": {
            "decode": "dark", "mix_group": 4, "mix_grid": [4, 3], "mix_at": [""],
            "unmix_at": unmix_at,
        },
        "schedule": {"unlabeled_batch_size": 8},
    }  # fmt: skip


def test_a_pointwise_network_unmixed_scores_as_on_clean_crops() -> None:
    """Mixing then unmixing commutes with a per-pixel network: the mixed PCK is the clean
    one. Unmixing at the wrong place (here: never) is caught."""
    crops = _crops(16, (32, 24))
    net = nn.Sequential(nn.Conv2d(3, 1, 1), nn.Identity())
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
        net[0].bias.zero_()
    scores = probe_run(net, _config("0"), crops, plan_seed=0)
    assert scores["clean_pck"] == 1.0 and scores["mixed_pck"] == 1.0
    assert scores["unmix_map"] == [32, 24] and scores["routed_right_share"] == 1.0
    with pytest.raises(ValueError, match="not a submodule"):
        probe_run(net, _config("head"), crops, plan_seed=0)


def test_the_mixed_pass_feeds_the_network_tiles_of_its_group() -> None:
    """The network sees other inputs in the mixed pass than in the clean one, each pixel's
    values permuted within its group of 4 (a probe that never mixed would score the
    pointwise network above the same)."""
    crops = _crops(16, (32, 24))
    crops["image"] = torch.randn(16, 3, 32, 24, generator=torch.Generator().manual_seed(1))
    seen: list[torch.Tensor] = []
    net = nn.Sequential(nn.Conv2d(3, 1, 1), nn.Identity())
    net[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    scores = probe_run(net, _config("1"), crops, plan_seed=0)
    clean, mixed = torch.cat(seen[:2]), torch.cat(seen[2:])  # two batches of 8 per pass
    assert torch.equal(clean, crops["image"]) and not torch.equal(mixed, clean)
    grouped = lambda x: x.view(4, 4, -1).sort(dim=1).values  # noqa: E731
    assert torch.equal(grouped(mixed), grouped(clean))
    assert scores["unmix_map"] == [32, 24]


def test_peaks_of_heatmaps_at_stride_4_are_scored_in_crop_pixels() -> None:
    """A network whose heatmaps are a quarter of the crop's size: its peaks are scaled back
    to crop pixels before they are compared with the labels."""
    crops = _crops(16, (128, 96))
    net = nn.Sequential(nn.Conv2d(3, 1, 1), nn.AvgPool2d(4))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
        net[0].bias.zero_()
    # 4 x 3 tiles of 32 px: no pooling window straddles two tiles, so mixing commutes too
    scores = probe_run(net, _config("1"), crops, plan_seed=0)
    assert scores["unmix_map"] == [32, 24]
    assert scores["clean_pck"] == 1.0 and scores["mixed_pck"] == 1.0


def test_pairs_take_the_seeds_both_arms_have() -> None:
    def row(arm: str, seed: int, clean: float, mixed: float) -> dict[str, Any]:
        return {"regime": "scratch", "arm": arm, "seed": seed, "clean_pck": clean,
                "mixed_pck": mixed}  # fmt: skip

    rows = [
        row("posemum", 0, 0.6, 0.5), row("posemum", 1, 0.7, 0.5), row("posemum", 2, 0.7, 0.6),
        row("consistency", 0, 0.5, 0.3), row("consistency", 2, 0.6, 0.3),
    ]  # fmt: skip
    headline = pairs(rows)["scratch"]["headline"]
    assert headline["seeds"] == [0, 2]
    assert headline["clean_pck"]["diffs"] == pytest.approx([0.1, 0.1])
    assert headline["mixed_pck"]["diffs"] == pytest.approx([0.2, 0.3])
