"""Pseudo-label diagnostics (``examples/sshpe/diagnostics.py``)."""

from __future__ import annotations

import math
from typing import cast

import pytest
import torch
from sshpe.diagnostics import (
    batch_statistics,
    batchnorm_gap,
    joint_groups,
    keypoints_in_view,
    pseudo_label_quality,
    step_diagnostics,
)
from sshpe.methods import PseudoLabels, unwrap
from torch import nn

from posemum_aug.heatmap import render_heatmaps
from posemum_aug.keypoints import COCO_17
from posemum_aug.transforms import compose_affine, flip_matrix
from tests.test_sshpe_models import SKELETON, _images, _method


def test_joint_groups_cover_coco_once() -> None:
    groups = joint_groups(COCO_17.names)
    assert list(groups) == ["head", "arms", "legs"]
    assert sorted(i for idx in groups.values() for i in idx) == list(range(17))
    assert groups["head"] == [0, 1, 2, 3, 4]


def test_keypoints_in_view_follow_the_flip() -> None:
    """A flipped view maps x -> W - 1 - x and swaps the left and right joints."""
    keypoints = torch.tensor([[[10.0, 5.0], [20.0, 6.0]]])
    visibility = torch.tensor([[1.0, 0.0]])
    flags = torch.tensor([True])
    matrix = compose_affine(torch.eye(2, 3)[None], flip_matrix(32, flags))
    points, labelled = keypoints_in_view(keypoints, visibility, matrix, flags, [1, 0], (16, 32))
    torch.testing.assert_close(points, torch.tensor([[[11.0, 6.0], [21.0, 5.0]]]))
    assert labelled.tolist() == [[False, True]]


def _perfect(points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    maps, _ = render_heatmaps(points / 4, torch.ones(points.shape[:2]), size, 1.5, unbiased=True)
    return maps


def test_quality_is_perfect_on_rendered_labels_and_drops_with_the_shift() -> None:
    generator = torch.Generator().manual_seed(0)
    points = 8 + torch.rand(4, 3, 2, generator=generator) * torch.tensor([40.0, 80.0])
    labelled = torch.ones(4, 3, dtype=torch.bool)
    groups = {"head": [0], "legs": [1, 2]}
    weights = torch.ones(4, 3)
    stats = pseudo_label_quality(_perfect(points, (24, 16)), weights, points, labelled, groups, 96)
    assert stats["pseudo_pck"] == 1.0 and stats["pseudo_err"] < 0.3
    shifted = pseudo_label_quality(
        _perfect(points + 6.0, (24, 16)), weights, points, labelled, groups, 96
    )
    assert shifted["pseudo_pck"] == 0.0  # 8.5 px > 0.05 x 96 px
    assert shifted["pseudo_err"] == pytest.approx(6 * 2**0.5, abs=0.3)


def test_kept_share_and_accuracy_of_the_kept() -> None:
    points = torch.tensor([[[20.0, 20.0], [40.0, 60.0]]])
    maps = _perfect(points, (24, 16))
    wrong = torch.tensor([[[20.0, 20.0], [10.0, 10.0]]])  # second joint labelled elsewhere
    labelled = torch.ones(1, 2, dtype=torch.bool)
    keep_first = torch.tensor([[1.0, 0.0]])
    stats = pseudo_label_quality(maps, keep_first, wrong, labelled, {"all": [0, 1]}, 96)
    assert (stats["pseudo_pck"], stats["pseudo_kept"], stats["pseudo_pck_kept"]) == (0.5, 0.5, 1)
    none = pseudo_label_quality(maps, keep_first, wrong, torch.zeros_like(labelled), {}, 96)
    assert math.isnan(none["pseudo_pck"]) and math.isnan(none["pseudo_kept"])


def test_batch_statistics_restores_every_buffer_and_mode() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    net[1].running_mean.fill_(0.5)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(4, 3, 8, 8)
    with batch_statistics(net):
        assert net[1].training
        inside = net(x)
    assert not net[1].training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not torch.allclose(inside, net(x))


def test_batchnorm_gap_reports_both_modes_without_changing_the_model() -> None:
    net = nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2))
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    stats = batchnorm_gap(
        net, torch.randn(2, 3, 8, 8), torch.zeros(2, 2, 2), torch.ones(2, 2, dtype=torch.bool), "x"
    )
    assert net.training
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert stats["pseudo_x_peak_eval"] != stats["pseudo_x_peak_batch"]


@pytest.mark.parametrize("name", ["posemum", "posemum_dual"])
def test_the_teacher_gap_measures_the_network_that_makes_the_pseudo_labels(name: str) -> None:
    """``pseudo_teacher_*`` measured network A's EMAN evaluation copy also for the dual
    methods, where network B makes A's pseudo-labels: now it is B there (mixing paused),
    the teacher elsewhere; and the step's pseudo-labels are B's batch-statistics heatmaps."""
    method = _method(name, mix_p_feature=1.0)
    g = torch.Generator().manual_seed(0)
    labeled = {
        "image": _images(8),
        "keypoints": 8 + 48 * torch.rand(8, 3, 2, generator=g),
        "visibility": torch.ones(8, 3),
    }
    method.losses(labeled, {"image": _images(8, seed=1)})
    pseudo = cast(PseudoLabels, method.last_pseudo)
    dual = name == "posemum_dual"
    source = unwrap(method.learners[1].student) if dual else method.teacher.module
    if dual:  # B made them: in training mode, mixing paused, on batch statistics
        with method.unmixed(), batch_statistics(source), torch.no_grad():
            assert torch.equal(source(pseudo.view.image), pseudo.targets)
    for learner in method.learners:  # the students have moved away from their teachers
        with torch.no_grad():
            learner.student.head.bias.add_(0.5)
    keypoints, visibility = 8 + 48 * torch.rand(8, 3, 2, generator=g), torch.ones(8, 3)
    stats = step_diagnostics(method, keypoints, visibility, {})
    points, labelled = keypoints_in_view(
        keypoints, visibility, pseudo.matrix, pseudo.flipped, SKELETON.flip_index, (64, 64)
    )
    with method.unmixed():
        expected = batchnorm_gap(source, pseudo.view.image, points, labelled, "teacher")
    assert {k: v for k, v in stats.items() if "_teacher_" in k} == expected
    method.close()
