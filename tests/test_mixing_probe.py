"""The mixing probe (benchmarks/mixing_probe.py): its routing rule and its mixed pass."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import torch
from torch import nn

from posemum_aug.heatmap import render_heatmaps
from tests.paths import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

from mixing_probe import pairs, probe_run, routed_right


def test_routing_is_right_everywhere_on_a_divisible_map() -> None:
    points = torch.rand(5, 17, 2) * torch.tensor([96.0, 128.0])
    assert routed_right(points, (128, 96), (4, 3), (4, 3)).all()
    assert routed_right(points, (128, 96), (8, 6), (4, 3)).all()


def test_routing_of_a_4_by_4_grid_on_resnets_4_by_3_layer4() -> None:
    # tile columns of 24 px; layer4 cells of 32 px; tile_bounds(3, 4) = [0, 0, 1, 2, 3]
    # gives cell 0 to tile 1, cell 1 to tile 2, cell 2 to tile 3
    xs = [0.0, 23.0, 24.0, 31.0, 32.0, 47.0, 48.0, 63.0, 64.0, 71.0, 72.0, 95.0]
    points = torch.tensor([[[x, 60.0] for x in xs]])
    right = routed_right(points, (128, 96), (4, 3), (4, 4))[0].tolist()
    assert right == [False, False, True, True, False, False, True, True, False, False, True, True]


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
