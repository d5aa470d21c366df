"""Tests for posemum_aug.filters: per-joint pseudo-label weights from teacher heatmaps."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from posemum_aug.filters import confidence_weights, flip_consistency_weights, hard_targets
from posemum_aug.heatmap import decode_heatmaps, flip_heatmaps, render_heatmaps
from posemum_aug.keypoints import COCO_17, CROWDPOSE_14, Skeleton
from tests.strategies import DEVICES, generator, seeds

DTYPES = [torch.float16, torch.float32, torch.float64]
SKELETONS = st.sampled_from([COCO_17, CROWDPOSE_14])
SIZE = (32, 24)


def teacher_heatmaps(
    seed: int, batch: int, joints: int, device: str, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Heatmaps like a teacher's: Gaussians of random heights over low noise."""
    g = generator(seed)
    keypoints = torch.rand(batch, joints, 2, generator=g) * torch.tensor([SIZE[1], SIZE[0]])
    maps, _ = render_heatmaps(keypoints, torch.ones(batch, joints), SIZE, unbiased=True)
    height = torch.rand(batch, joints, 1, 1, generator=g)
    noise = 0.02 * torch.rand(batch, joints, *SIZE, generator=g)
    return (height * maps + noise).to(device=device, dtype=dtype)


def poison(heatmaps: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Put a NaN, +inf or -inf at one random pixel of random joints; return the bad joints."""
    g = generator(seed)
    batch, joints = heatmaps.shape[:2]
    bad = torch.rand(batch, joints, generator=g) < 0.3
    kind = torch.randint(0, 3, (batch, joints), generator=g)
    pixel = torch.randint(0, SIZE[0] * SIZE[1], (batch, joints), generator=g)
    values = torch.tensor([math.nan, math.inf, -math.inf])[kind]
    flat = heatmaps.flatten(2).clone()
    b, k = bad.nonzero(as_tuple=True)
    flat[b, k, pixel[b, k]] = values[b, k].to(flat)
    return flat.view_as(heatmaps), bad.to(heatmaps.device)


FILTERS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "absolute": lambda h: confidence_weights(h, 0.3),
    "percentile": lambda h: confidence_weights(h, 0.4, mode="percentile"),
    "flip": lambda h: flip_consistency_weights(
        h, flip_heatmaps(h, COCO_17.flip_index), COCO_17.flip_index
    ),
    "hard": lambda h: hard_targets(h, threshold=0.3)[1],
}


# --------------------------------------------------------------------------------------------
# Shapes, dtypes, devices, non-finite values


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(FILTERS))
def test_filters_keep_shape_dtype_and_device(device: str, dtype: torch.dtype, name: str) -> None:
    heatmaps = teacher_heatmaps(0, 5, 17, device, dtype)
    weights = FILTERS[name](heatmaps)
    assert weights.shape == (5, 17) and weights.dtype == dtype and weights.device == heatmaps.device
    assert ((weights == 0) | (weights == 1)).all()
    if name == "hard":
        targets, _ = hard_targets(heatmaps)
        assert targets.shape == heatmaps.shape and targets.dtype == dtype
        assert targets.device == heatmaps.device


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(FILTERS))
@given(seed=seeds, batch=st.integers(1, 5))
def test_non_finite_heatmaps_get_weight_zero(device: str, name: str, seed: int, batch: int) -> None:
    clean = teacher_heatmaps(seed, batch, 17, device)
    heatmaps, bad = poison(clean, seed)
    weights = FILTERS[name](heatmaps)
    assert torch.isfinite(weights).all()
    assert not weights[bad].any()
    if name != "percentile":  # a percentile moves when a joint leaves the batch
        assert torch.equal(weights[~bad], FILTERS[name](clean)[~bad])
    if name == "hard":
        targets, _ = hard_targets(heatmaps, threshold=0.3)
        assert torch.isfinite(targets).all() and not targets[bad].any()


def test_all_non_finite_batch_gives_zero_weights() -> None:
    heatmaps = torch.full((3, 2, 4, 4), math.nan)
    for weights in (
        confidence_weights(heatmaps),
        confidence_weights(heatmaps, 0.5, mode="percentile"),
        flip_consistency_weights(heatmaps, heatmaps, [1, 0]),
        hard_targets(heatmaps, threshold=0.0)[1],
    ):
        assert torch.equal(weights, torch.zeros(3, 2))


# --------------------------------------------------------------------------------------------
# Confidence


@pytest.mark.parametrize("device", DEVICES)
@given(
    seed=seeds,
    batch=st.integers(1, 6),
    thresholds=st.tuples(st.floats(0, 1.1), st.floats(0, 1.1)).map(sorted),
)
def test_confidence_absolute_is_the_peak_test_and_monotone(
    device: str, seed: int, batch: int, thresholds: list[float]
) -> None:
    heatmaps = teacher_heatmaps(seed, batch, 5, device)
    low, high = (confidence_weights(heatmaps, t) for t in thresholds)
    assert (high <= low).all()
    expected = heatmaps.amax(dim=(-2, -1)) >= thresholds[0]
    assert torch.equal(low, expected.float())


@pytest.mark.parametrize("device", DEVICES)
@given(
    seed=seeds,
    batch=st.integers(1, 8),
    quantiles=st.tuples(st.floats(0, 1), st.floats(0, 1)).map(sorted),
)
def test_confidence_percentile_keeps_the_top_of_each_joint_and_is_monotone(
    device: str, seed: int, batch: int, quantiles: list[float]
) -> None:
    heatmaps = teacher_heatmaps(seed, batch, 5, device, torch.float64)
    low, high = (confidence_weights(heatmaps, q, mode="percentile") for q in quantiles)
    assert (high <= low).all()
    # Distinct peaks: the q-quantile (linear) keeps B - ceil((B - 1) q) of each joint.
    kept = low.sum(0)
    position = (batch - 1) * quantiles[0]
    assert (kept >= batch - math.ceil(position + 1e-9)).all()
    assert (kept <= batch - math.ceil(position - 1e-9)).all()
    peaks = heatmaps.amax(dim=(-2, -1))
    top = confidence_weights(heatmaps, 1.0, mode="percentile")
    assert torch.equal(top, (peaks == peaks.amax(0)).double())
    assert torch.equal(confidence_weights(heatmaps, 0.0, mode="percentile"), torch.ones_like(low))


# --------------------------------------------------------------------------------------------
# Flip consistency


@pytest.mark.parametrize("device", DEVICES)
@given(seed=seeds, batch=st.integers(1, 4), skeleton=SKELETONS, max_distance=st.floats(0.5, 4.5))
def test_flip_consistency_keeps_joints_whose_peaks_agree(
    device: str, seed: int, batch: int, skeleton: Skeleton, max_distance: float
) -> None:
    g = generator(seed)
    joints = skeleton.num_joints
    keypoints = 16 + torch.rand(batch, joints, 2, generator=g, dtype=torch.float64) * 16
    # The teacher's mirror-view answer, flipped back, misses by a known distance per joint.
    angle = 2 * math.pi * torch.rand(batch, joints, generator=g, dtype=torch.float64)
    miss = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64)
    distance = miss[torch.randint(0, len(miss), (batch, joints), generator=g)]
    moved = keypoints + distance[..., None] * torch.stack((angle.cos(), angle.sin()), -1)
    visible = torch.ones(batch, joints, dtype=torch.float64)
    size = (64, 48)  # peaks stay 11 px away from the border, where DARK is exact
    heatmaps, _ = render_heatmaps(keypoints.to(device), visible.to(device), size, unbiased=True)
    answer, _ = render_heatmaps(moved.to(device), visible.to(device), size, unbiased=True)
    mirror_view = flip_heatmaps(answer, skeleton.flip_index)

    weights = flip_consistency_weights(heatmaps, mirror_view, skeleton.flip_index, max_distance)
    clear = (distance - max_distance).abs() > 0.1  # decoding is exact to ~0.05 px
    expected = (distance <= max_distance).double().to(device)
    assert torch.equal(weights[clear.to(device)], expected[clear.to(device)])
    looser = flip_consistency_weights(heatmaps, mirror_view, skeleton.flip_index, max_distance + 1)
    assert (looser >= weights).all()


@pytest.mark.parametrize("device", DEVICES)
@given(seed=seeds, batch=st.integers(1, 4))
def test_flip_consistency_of_a_mirror_symmetric_teacher_is_one(
    device: str, seed: int, batch: int
) -> None:
    heatmaps = teacher_heatmaps(seed, batch, 14, device)
    mirror_view = flip_heatmaps(heatmaps, CROWDPOSE_14.flip_index)
    weights = flip_consistency_weights(heatmaps, mirror_view, CROWDPOSE_14.flip_index, 0.0)
    assert torch.equal(weights, torch.ones_like(weights))


@pytest.mark.parametrize("stride", [4.0, 2.5])
def test_flip_consistency_follows_the_image_flip_at_any_stride(stride: float) -> None:
    # A teacher that is exactly right on the image and on its mirror image (keypoints
    # flipped by x -> W - 1 - x) is consistent at distance 0, whatever the stride.
    g = generator(0)
    size = (64, 48)
    width = size[1] * stride
    keypoints = torch.tensor([[16.0, 16.0]]) * stride + torch.rand(3, 17, 2, generator=g) * 60
    flipped = keypoints.index_select(1, torch.tensor(COCO_17.flip_index))
    flipped[..., 0] = width - 1 - flipped[..., 0]
    visible = torch.ones(3, 17)
    heatmaps, _ = render_heatmaps(keypoints / stride, visible, size, unbiased=True)
    mirror_view, _ = render_heatmaps(flipped / stride, visible, size, unbiased=True)
    weights = flip_consistency_weights(
        heatmaps, mirror_view, COCO_17.flip_index, 0.05, stride=stride
    )
    assert torch.equal(weights, torch.ones_like(weights))


# --------------------------------------------------------------------------------------------
# Hard targets


@pytest.mark.parametrize("device", DEVICES)
@given(seed=seeds, batch=st.integers(1, 4), sigma=st.sampled_from([1.5, 2.0, 3.0]))
def test_hard_targets_re_render_clean_targets(
    device: str, seed: int, batch: int, sigma: float
) -> None:
    g = generator(seed)
    keypoints = (torch.rand(batch, 6, 2, generator=g) * torch.tensor([23.0, 31.0])).to(device)
    visibility = torch.randint(0, 2, (batch, 6), generator=g).to(device)
    targets, weights = render_heatmaps(keypoints, visibility, SIZE, sigma)
    again, again_weights = hard_targets(targets, sigma, threshold=0.5, refine="none")
    assert torch.equal(again, targets) and torch.equal(again_weights, weights)
    # Sub-pixel targets come back through DARK decoding to within a small error.
    soft, soft_weights = render_heatmaps(keypoints, visibility, SIZE, sigma, unbiased=True)
    hard, hard_weights = hard_targets(soft, sigma, threshold=0.5, unbiased=True)
    assert torch.equal(hard_weights, soft_weights)
    peaks, _ = decode_heatmaps(hard)
    margin = 6  # DARK's blur pads with zeros: keep the peaks away from the border
    low = torch.tensor([margin, margin], device=device)
    high = torch.tensor([SIZE[1] - 1 - margin, SIZE[0] - 1 - margin], device=device)
    inside = soft_weights.bool() & ((keypoints >= low) & (keypoints <= high)).all(-1)
    # Two decodes in a row (soft teacher map, then the re-rendered target).
    assert ((peaks - keypoints).norm(dim=-1)[inside] < 0.1).all()


@pytest.mark.parametrize("device", DEVICES)
@given(
    seed=seeds,
    batch=st.integers(1, 5),
    thresholds=st.tuples(st.floats(0, 1), st.floats(0, 1)).map(sorted),
)
def test_hard_targets_monotone_in_threshold(
    device: str, seed: int, batch: int, thresholds: list[float]
) -> None:
    heatmaps = teacher_heatmaps(seed, batch, 17, device)
    (low_targets, low), (high_targets, high) = (
        hard_targets(heatmaps, threshold=t) for t in thresholds
    )
    assert (high <= low).all()
    assert torch.equal(low, (heatmaps.amax(dim=(-2, -1)) >= thresholds[0]).float())
    assert not high_targets[~high.bool()].any()
    assert torch.equal(high_targets[high.bool()], low_targets[high.bool()])


# --------------------------------------------------------------------------------------------
# Empty batches


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_empty_batch_gives_empty_weights(name: str) -> None:
    weights = FILTERS[name](torch.zeros(0, 17, *SIZE))
    assert weights.shape == (0, 17) and weights.dtype == torch.float32


def test_empty_batch_gives_empty_hard_targets() -> None:
    targets, weights = hard_targets(torch.zeros(0, 3, *SIZE))
    assert targets.shape == (0, 3, *SIZE) and weights.shape == (0, 3)


# --------------------------------------------------------------------------------------------
# Validation

BAD_CALLS: dict[str, Callable[[], object]] = {
    "dims": lambda: confidence_weights(torch.zeros(2, 3, 4)),
    "integer": lambda: confidence_weights(torch.zeros(1, 1, 2, 2, dtype=torch.long)),
    "empty_map": lambda: hard_targets(torch.zeros(1, 1, 0, 2)),
    "mode": lambda: confidence_weights(torch.zeros(1, 1, 2, 2), mode="relative"),
    "percentage": lambda: confidence_weights(torch.zeros(1, 1, 2, 2), 50.0, mode="percentile"),
    "max_distance": lambda: flip_consistency_weights(
        torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), [0], -1.0
    ),
    "flip_shape": lambda: flip_consistency_weights(
        torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 3), [1, 0]
    ),
    "flip_index": lambda: flip_consistency_weights(
        torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2), [0]
    ),
    "sigma": lambda: hard_targets(torch.zeros(1, 1, 2, 2), sigma=0.0),
    "refine": lambda: hard_targets(torch.zeros(1, 1, 2, 2), refine="cubic"),
}


@pytest.mark.parametrize("name", sorted(BAD_CALLS))
def test_bad_inputs_raise_value_error(name: str) -> None:
    with pytest.raises(ValueError):
        BAD_CALLS[name]()


def test_confidence_weights_of_no_joints_and_of_a_nan_threshold() -> None:
    no_joints = torch.zeros(2, 0, 4, 3)
    assert confidence_weights(no_joints, 0.5, mode="percentile").shape == (2, 0)
    with pytest.raises(ValueError, match="threshold must be a number, got nan"):
        confidence_weights(torch.zeros(2, 3, 4, 3), math.nan)
