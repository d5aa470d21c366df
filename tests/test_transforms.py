"""Tests for posemum_aug.transforms: sampled affine, flip and Joint Cutout on whole pose samples."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from posemum_aug.heatmap import decode_heatmaps, render_heatmaps
from posemum_aug.keypoints import (
    COCO_17,
    CROWDPOSE_14,
    Skeleton,
    affine_keypoints,
    invert_affine,
)
from posemum_aug.transforms import (
    JointCutout,
    JointCutoutParams,
    PoseTransformResult,
    RandomPoseAffine,
    RandomPoseFlip,
    apply_joint_cutout,
    apply_pose_affine,
    apply_pose_flip,
    compose_affine,
    flip_matrix,
    heatmap_stride,
    joint_cutout_mask,
    pose_affine_matrix,
    sample_joint_cutout,
    sample_pose_affine,
    sample_pose_flip,
    warp_images,
)
from tests.paths import CROWDPOSE, OCHUMAN, needs_shared_data
from tests.strategies import DEVICES, generator, seeds

SKELETONS = st.sampled_from([COCO_17, CROWDPOSE_14])


def pose_batch(
    seed: int,
    batch: int,
    joints: int,
    size: tuple[int, int],
    stride: int,
    device: str,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random ``(image, keypoints, visibility, heatmaps)``; keypoints may lie off the frame."""
    g = generator(seed)
    height, width = size
    image = torch.rand(batch, 3, height, width, generator=g, dtype=dtype)
    frame = torch.tensor([width, height], dtype=dtype)
    keypoints = torch.rand(batch, joints, 2, generator=g, dtype=dtype) * 1.2 * frame - 0.1 * frame
    visibility = torch.randint(0, 3, (batch, joints), generator=g).to(dtype)
    heatmaps = torch.rand(
        batch, joints, height // stride, width // stride, generator=g, dtype=dtype
    )
    return tuple(t.to(device) for t in (image, keypoints, visibility, heatmaps))


# --------------------------------------------------------------------------------------------
# Flip


@pytest.mark.parametrize("device", DEVICES)
@given(seed=seeds, batch=st.integers(1, 4), skeleton=SKELETONS, p=st.sampled_from([0.0, 0.5, 1.0]))
def test_flip_twice_is_identity(
    device: str, seed: int, batch: int, skeleton: Skeleton, p: float
) -> None:
    image, keypoints, visibility, heatmaps = pose_batch(
        seed, batch, skeleton.num_joints, (16, 12), 4, device
    )
    flip = RandomPoseFlip(skeleton.flip_index, p=p, generator=generator(seed))
    once = flip(image, keypoints, visibility, heatmaps)
    twice = flip(once.image, once.keypoints, once.visibility, once.heatmaps, params=once.params)
    torch.testing.assert_close(twice.keypoints, keypoints, rtol=0, atol=1e-5)
    assert torch.equal(twice.image, image)
    assert torch.equal(twice.visibility, visibility)
    # Heatmaps move by a fraction f = 1 - 1 / stride of a pixel each time and are resampled
    # bilinearly: twice is the identity smoothed by (f (1 - f), f^2 + (1 - f)^2, f (1 - f)),
    # except in column 0, which the first flip fills from beyond the map's last column.
    f = 0.75
    taps = torch.tensor([f * (1 - f), f * f + (1 - f) * (1 - f), f * (1 - f)], device=device)
    rows = heatmaps.reshape(-1, 1, heatmaps.shape[-1])
    smoothed = torch.nn.functional.conv1d(rows, taps.view(1, 1, 3), padding=1)
    flagged = once.params.view(-1, 1, 1, 1)
    expected = torch.where(flagged, smoothed.view_as(heatmaps), heatmaps)
    torch.testing.assert_close(twice.heatmaps[..., 1:], expected[..., 1:])
    if p in (0.0, 1.0):
        assert torch.equal(once.params, torch.full((batch,), p == 1.0, device=device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("size", "stride"), [((256, 192), 4), ((40, 30), 2.5), ((24, 18), 1)], ids=str
)
@given(seed=seeds, batch=st.integers(1, 3), skeleton=SKELETONS)
def test_flipped_heatmaps_are_the_targets_of_the_flipped_keypoints(
    device: str,
    size: tuple[int, int],
    stride: float,
    seed: int,
    batch: int,
    skeleton: Skeleton,
) -> None:
    # One flip, one answer: flipping rendered targets with the image equals rendering the
    # flipped keypoints, up to bilinear resampling, away from the side columns.
    g = generator(seed)
    joints = skeleton.num_joints
    heatmap_size = (round(size[0] / stride), round(size[1] / stride))
    height, width = heatmap_size
    low = torch.tensor([4.0, 4.0], dtype=torch.float64)
    span = torch.tensor([width - 9.0, height - 9.0], dtype=torch.float64)
    points = (torch.rand(batch, joints, 2, generator=g, dtype=torch.float64) * span + low) * stride
    points, visible = points.to(device), torch.ones(batch, joints, device=device)
    image = torch.zeros(batch, 1, *size, device=device)
    flags = torch.ones(batch, dtype=torch.bool, device=device)

    def targets(keypoints: torch.Tensor) -> torch.Tensor:
        return render_heatmaps(
            keypoints / stride, visible, heatmap_size, 2.0, unbiased=True, truncate=6.0
        )[0]

    out = apply_pose_flip(image, flags, skeleton.flip_index, points, visible, targets(points))
    assert out.heatmaps is not None and out.keypoints is not None
    expected = targets(out.keypoints)
    # bilinear resampling of a sigma-2 Gaussian is off by at most about 0.03
    torch.testing.assert_close(out.heatmaps[..., 1:-1], expected[..., 1:-1], rtol=0, atol=0.035)
    peaks, _ = decode_heatmaps(out.heatmaps, blur_kernel=1)
    torch.testing.assert_close(peaks, out.keypoints / stride, rtol=0, atol=0.05)


@pytest.mark.parametrize("device", DEVICES)
@given(seed=seeds, batch=st.integers(1, 4))
def test_flip_moves_heatmaps_like_the_affine_with_the_flip_matrix(
    device: str, seed: int, batch: int
) -> None:
    image, keypoints, visibility, heatmaps = pose_batch(seed, batch, 17, (64, 48), 4, device)
    flags = sample_pose_flip(batch, generator=generator(seed), device=device)
    flipped = apply_pose_flip(image, flags, COCO_17.flip_index, keypoints, visibility, heatmaps)
    moved = apply_pose_affine(image, flip_matrix(48, flags), keypoints, visibility, heatmaps)
    index = torch.tensor(COCO_17.flip_index, device=device)
    swap = flags.view(-1, 1, 1, 1)
    assert moved.heatmaps is not None and flipped.heatmaps is not None
    swapped = torch.where(swap, moved.heatmaps[:, index], moved.heatmaps)
    torch.testing.assert_close(flipped.heatmaps, swapped)
    assert flipped.keypoints is not None and moved.keypoints is not None
    unswapped = torch.where(swap[..., 0], flipped.keypoints[:, index], flipped.keypoints)
    torch.testing.assert_close(unswapped, moved.keypoints)


@pytest.mark.parametrize("device", DEVICES)
@given(seed=seeds, batch=st.integers(1, 4), skeleton=SKELETONS)
def test_flip_moves_pixels_and_swaps_joints(
    device: str, seed: int, batch: int, skeleton: Skeleton
) -> None:
    height, width = 10, 13
    g = generator(seed)
    joints = skeleton.num_joints
    # One image channel per joint, lit at the joint's (integer) position.
    x = torch.randint(0, width, (batch, joints), generator=g)
    y = torch.randint(0, height, (batch, joints), generator=g)
    image = torch.zeros(batch, joints, height, width)
    image[torch.arange(batch)[:, None], torch.arange(joints), y, x] = 1.0
    keypoints = torch.stack((x, y), dim=-1).float()
    flags = sample_pose_flip(batch, generator=g)
    image, keypoints, flags = (t.to(device) for t in (image, keypoints, flags))

    out = apply_pose_flip(image, flags, skeleton.flip_index, keypoints)
    index = torch.tensor(skeleton.flip_index, device=device)
    for b in range(batch):
        if flags[b]:
            assert torch.equal(out.image[b], image[b].flip(-1))
            expected = keypoints[b, index]
            expected[:, 0] = width - 1 - expected[:, 0]
            assert torch.equal(out.keypoints[b], expected)
        else:
            assert torch.equal(out.image[b], image[b])
            assert torch.equal(out.keypoints[b], keypoints[b])
    # Image channel k is lit where the output puts joint flip_index[k] (flipped) or k (not).
    owner = torch.where(flags[:, None], index, torch.arange(joints, device=device))
    lit = out.keypoints.gather(1, owner[..., None].expand(-1, -1, 2)).long()
    values = out.image[torch.arange(batch)[:, None], torch.arange(joints), lit[..., 1], lit[..., 0]]
    assert torch.equal(values, torch.ones_like(values))


@pytest.mark.parametrize("device", DEVICES)
@given(seed=seeds, batch=st.integers(1, 4), width=st.integers(1, 50))
def test_flip_matrix_moves_points_like_flip_keypoints(
    device: str, seed: int, batch: int, width: int
) -> None:
    g = generator(seed)
    keypoints = (100 * torch.rand(batch, 17, 2, generator=g, dtype=torch.float64)).to(device)
    flags = sample_pose_flip(batch, generator=g, device=device)
    moved = affine_keypoints(keypoints, flip_matrix(width, flags, dtype=torch.float64))
    image = torch.zeros(batch, 1, 2, width, device=device)
    flipped = apply_pose_flip(image, flags, COCO_17.flip_index, keypoints).keypoints
    unswapped = flipped[:, list(COCO_17.flip_index)]
    expected = torch.where(flags[:, None, None], unswapped, keypoints)
    torch.testing.assert_close(moved, expected)


# --------------------------------------------------------------------------------------------
# Affine


@pytest.mark.parametrize("device", DEVICES)
@given(seed=seeds, batch=st.integers(1, 4), rotation_p=st.sampled_from([0.0, 0.6, 1.0]))
def test_affine_then_inverse_returns_keypoints(
    device: str, seed: int, batch: int, rotation_p: float
) -> None:
    image, keypoints, visibility, _ = pose_batch(
        seed, batch, 14, (24, 18), 2, device, torch.float64
    )
    affine = RandomPoseAffine(rotation_p=rotation_p, generator=generator(seed))
    out = affine(image, keypoints, visibility)
    assert out.params.dtype == torch.float64
    back = affine(out.image, out.keypoints, params=invert_affine(out.params))
    torch.testing.assert_close(back.keypoints, keypoints, rtol=0, atol=1e-4)


SIDES = st.integers(4, 20)


@pytest.mark.parametrize("device", DEVICES)
@given(
    seed=seeds, batch=st.integers(1, 3), size=st.tuples(SIDES, SIDES), out=st.tuples(SIDES, SIDES)
)
def test_warp_images_samples_at_inverse_mapped_pixel_centres(
    device: str, seed: int, batch: int, size: tuple[int, int], out: tuple[int, int]
) -> None:
    # Bilinear sampling reproduces a linear ramp exactly, so every output pixel whose
    # pre-image lies inside the source must read the ramp at that pre-image.
    g = generator(seed)
    matrix = sample_pose_affine(
        batch, size, rotation_p=1.0, generator=g, device=device, dtype=torch.float64
    )
    slope = torch.randn(batch, 3, generator=g, dtype=torch.float64).to(device)

    def pixel_centres(height: int, width: int) -> torch.Tensor:
        ys, xs = torch.meshgrid(
            torch.arange(height, dtype=torch.float64, device=device),
            torch.arange(width, dtype=torch.float64, device=device),
            indexing="ij",
        )
        return torch.stack((xs, ys), dim=-1).view(1, -1, 2).expand(batch, -1, -1)

    def ramp(points: torch.Tensor) -> torch.Tensor:
        return (
            slope[:, None, 0] * points[..., 0] + slope[:, None, 1] * points[..., 1] + slope[:, 2:]
        )

    image = ramp(pixel_centres(*size)).view(batch, 1, *size)
    warped = warp_images(image, matrix, out).view(batch, -1)
    source = affine_keypoints(pixel_centres(*out), invert_affine(matrix))
    margin = 1e-6
    inside = (source[..., 0] >= -margin) & (source[..., 0] <= size[1] - 1 + margin)
    inside &= (source[..., 1] >= -margin) & (source[..., 1] <= size[0] - 1 + margin)
    torch.testing.assert_close(warped[inside], ramp(source)[inside], rtol=0, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@given(seed=seeds, batch=st.integers(1, 3))
def test_heatmaps_follow_keypoints_between_two_views(device: str, seed: int, batch: int) -> None:
    # The teacher-to-student step: heatmaps of view A, warped with the matrix from view A to
    # view B (compose_affine(invert_affine(A), B)), peak on view B's keypoints.
    size, stride, joints = (128, 96), 4, 6
    g = generator(seed)
    centre = torch.tensor([47.5, 63.5], dtype=torch.float64)
    keypoints = centre + (torch.rand(batch, joints, 2, generator=g, dtype=torch.float64) - 0.5) * 40
    matrix_a = sample_pose_affine(batch, size, generator=g, dtype=torch.float64)
    matrix_b = sample_pose_affine(batch, size, rotation_p=0.8, generator=g, dtype=torch.float64)
    keypoints, matrix_a, matrix_b = (t.to(device) for t in (keypoints, matrix_a, matrix_b))
    visible = torch.ones(batch, joints, device=device)
    heatmap_size = (size[0] // stride, size[1] // stride)
    view_a = affine_keypoints(keypoints, matrix_a)
    heatmaps_a, _ = render_heatmaps(view_a / stride, visible, heatmap_size, unbiased=True)
    image_a = torch.zeros(batch, 1, *size, dtype=torch.float64, device=device)

    a_to_b = compose_affine(invert_affine(matrix_a), matrix_b)
    out = apply_pose_affine(image_a, a_to_b, view_a, visible, heatmaps_a)
    view_b = affine_keypoints(keypoints, matrix_b)
    torch.testing.assert_close(out.keypoints, view_b)
    peaks, _ = decode_heatmaps(out.heatmaps)
    error = (peaks - view_b / stride).norm(dim=-1)
    assert error.max() < 0.5, error


@pytest.mark.parametrize("device", DEVICES)
def test_affine_marks_keypoints_leaving_the_frame(device: str) -> None:
    image = torch.zeros(1, 1, 8, 10, device=device)
    keypoints = torch.tensor([[[1.0, 1.0], [5.0, 2.0], [8.0, 7.0]]], device=device)
    visibility = torch.tensor([[2.0, 1.0, 2.0]], device=device)
    shift = torch.tensor([[[1.0, 0.0, 3.0], [0.0, 1.0, 0.0]]], device=device)
    out = apply_pose_affine(image, shift, keypoints, visibility)
    assert torch.equal(out.keypoints, keypoints + torch.tensor([3.0, 0.0], device=device))
    assert torch.equal(out.visibility, torch.tensor([[2.0, 1.0, 0.0]], device=device))
    assert out.heatmaps is None


def test_pose_affine_matrix_rotates_counter_clockwise_about_the_centre() -> None:
    size = (9, 7)  # centre (3, 4)
    matrix = pose_affine_matrix(
        torch.tensor([1.0, 2.0], dtype=torch.float64),
        torch.tensor([90.0, 0.0], dtype=torch.float64),
        size,
    )
    right_of_centre = torch.tensor([[[4.0, 4.0], [3.0, 4.0]]] * 2, dtype=torch.float64)
    moved = affine_keypoints(right_of_centre, matrix)
    # y points down: counter-clockwise as displayed takes "right of" to "above" the centre.
    torch.testing.assert_close(
        moved[0], torch.tensor([[3.0, 3.0], [3.0, 4.0]], dtype=torch.float64)
    )
    torch.testing.assert_close(
        moved[1], torch.tensor([[5.0, 4.0], [3.0, 4.0]], dtype=torch.float64)
    )


def test_pose_affine_matrix_promotes_integer_inputs() -> None:
    # the centre of a 5 x 8 image is (3.5, 2): an integer matrix would truncate it
    expected = torch.tensor([[[2.0, 0.0, -3.5], [0.0, 2.0, -2.0]]])
    out = pose_affine_matrix(torch.tensor([2]), torch.tensor([0]), (5, 8))
    assert out.dtype == torch.get_default_dtype()
    torch.testing.assert_close(out, expected)
    wide = pose_affine_matrix(torch.tensor([2]), torch.tensor([0.0], dtype=torch.float64), (5, 8))
    torch.testing.assert_close(wide, expected.double())


def test_sample_pose_affine_follows_the_sshpe_distribution() -> None:
    batch, size = 4000, (256, 192)
    matrix = sample_pose_affine(batch, size, generator=generator(0), dtype=torch.float64)
    centre = torch.tensor([[95.5, 127.5]], dtype=torch.float64).expand(batch, 1, 2)
    torch.testing.assert_close(affine_keypoints(centre, matrix), centre)
    magnification = matrix[:, :, :2].det().sqrt()
    angle = torch.rad2deg(torch.atan2(matrix[:, 0, 1], matrix[:, 0, 0]))
    crop_scale = 1 / magnification
    assert crop_scale.min() >= 0.75 - 1e-12 and crop_scale.max() <= 1.25 + 1e-12
    assert math.isclose(crop_scale.mean().item(), 1.0, abs_tol=0.02)
    assert (crop_scale - 0.75).abs().lt(1e-9).any()  # the clip is reached
    assert angle.abs().max() <= 60 + 1e-9
    rotated = angle.abs() > 1e-9
    assert math.isclose(rotated.double().mean().item(), 0.6, abs_tol=0.03)
    assert math.isclose(angle[rotated].std().item(), 30 * 0.95, rel_tol=0.1)  # std of the clip

    fixed = sample_pose_affine(50, size, scale_sigma=0.0, rotation_p=0.0, generator=generator(1))
    identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(50, 2, 3)
    torch.testing.assert_close(fixed, identity)


@pytest.mark.parametrize("device", DEVICES)
@given(seed=seeds, batch=st.integers(1, 4))
def test_compose_affine_applies_first_then_second(device: str, seed: int, batch: int) -> None:
    g = generator(seed)
    # General affine maps: scale-rotations about one centre commute and would not tell.
    first, second = (torch.randn(batch, 2, 3, generator=g, dtype=torch.float64) for _ in "ab")
    first, second = first.to(device), second.to(device)
    points = 30 * torch.rand(batch, 5, 2, generator=g, dtype=torch.float64).to(device)
    expected = affine_keypoints(affine_keypoints(points, first), second)
    torch.testing.assert_close(affine_keypoints(points, compose_affine(first, second)), expected)
    identity = compose_affine(first, invert_affine(first))
    torch.testing.assert_close(
        identity, torch.eye(2, 3, dtype=torch.float64, device=device).expand_as(identity)
    )


# --------------------------------------------------------------------------------------------
# Joint Cutout


def naive_cutout_mask(params: JointCutoutParams, size: tuple[int, int]) -> torch.Tensor:
    """The boxes' pixels, rasterised one box at a time with slices."""
    height, width = size
    batch, boxes = params.active.shape
    mask = torch.zeros(batch, height, width, dtype=torch.bool)
    for b in range(batch):
        for n in range(boxes):
            if not params.active[b, n]:
                continue
            (cx, cy), half = params.centres[b, n].tolist(), params.half_sizes[b, n].item()
            x0, x1 = max(math.ceil(cx - half), 0), min(math.floor(cx + half), width - 1)
            y0, y1 = max(math.ceil(cy - half), 0), min(math.floor(cy + half), height - 1)
            if x0 <= x1 and y0 <= y1:
                mask[b, y0 : y1 + 1, x0 : x1 + 1] = True
    return mask


@pytest.mark.parametrize("device", DEVICES)
@given(
    seed=seeds,
    batch=st.integers(1, 4),
    num_joints=st.integers(1, 6),
    half_size=st.tuples(st.integers(1, 4), st.integers(0, 4)),
)
def test_joint_cutout_zeroes_exactly_the_boxes(
    device: str, seed: int, batch: int, num_joints: int, half_size: tuple[int, int]
) -> None:
    image, keypoints, visibility, heatmaps = pose_batch(seed, batch, 7, (20, 16), 4, device)
    image = image + 1  # no pixel is zero before the cutout
    cutout = JointCutout(
        num_joints, jitter=3.0, half_size=(half_size[0], sum(half_size)), generator=generator(seed)
    )
    out = cutout(image, keypoints, visibility, heatmaps)
    expected = naive_cutout_mask(out.params, (20, 16)).to(device)
    assert torch.equal(out.image == 0, expected[:, None].expand_as(image))
    assert torch.equal(
        out.image[~expected[:, None].expand_as(image)], image[~expected[:, None].expand_as(image)]
    )
    assert out.keypoints is keypoints and out.visibility is visibility and out.heatmaps is heatmaps
    assert torch.equal(joint_cutout_mask(out.params, (20, 16)), expected)


@pytest.mark.parametrize("device", DEVICES)
@given(seed=seeds, batch=st.integers(1, 5))
def test_sample_joint_cutout_picks_visible_joints(device: str, seed: int, batch: int) -> None:
    g = generator(seed)
    keypoints = (50 * torch.rand(batch, 6, 2, generator=g)).to(device)
    visibility = torch.randint(0, 3, (batch, 6), generator=g).float().to(device)
    visibility[0] = 0  # a sample without visible joints gets no box
    params = sample_joint_cutout(
        keypoints, visibility, num_joints=20, jitter=0.0, half_size=(3, 5), generator=g
    )
    assert params.centres.shape == (batch, 20, 2) and params.centres.device == keypoints.device
    assert torch.equal(params.active, (visibility > 0).any(-1, keepdim=True).expand(batch, 20))
    assert params.half_sizes.min() >= 3 and params.half_sizes.max() <= 5
    for b in range(1, batch):
        visible = keypoints[b, visibility[b] > 0]
        if len(visible):
            matches = (params.centres[b, :, None] == visible[None]).all(-1)
            assert matches.any(-1).all()
    assert not joint_cutout_mask(params, (60, 60))[0].any()


@pytest.mark.parametrize("device", DEVICES)
def test_sample_joint_cutout_is_uniform_over_visible_joints(device: str) -> None:
    keypoints = torch.arange(5.0, device=device)[None, :, None].expand(1, 5, 2)
    visibility = torch.tensor([[1.0, 0.0, 2.0, 1.0, 0.0]], device=device)
    params = sample_joint_cutout(
        keypoints, visibility, num_joints=6000, jitter=0.0, generator=generator(0)
    )
    counts = torch.bincount(params.centres[0, :, 0].long().cpu(), minlength=5)
    assert counts[1] == 0 and counts[4] == 0
    assert ((counts[[0, 2, 3]].double() / 6000 - 1 / 3).abs() < 0.03).all()


# --------------------------------------------------------------------------------------------
# Replay, seeds and devices


def make_transform(name: str, gen: torch.Generator | None = None) -> torch.nn.Module:
    if name == "affine":
        return RandomPoseAffine.hard_view(generator=gen)
    if name == "flip":
        return RandomPoseFlip(COCO_17.flip_index, generator=gen)
    return JointCutout(generator=gen)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["affine", "flip", "cutout"])
@given(seed=seeds, batch=st.integers(1, 4))
def test_replaying_params_gives_identical_output(
    device: str, name: str, seed: int, batch: int
) -> None:
    inputs = pose_batch(seed, batch, 17, (64, 48), 4, device)
    transform = make_transform(name, generator(seed))
    out = transform(*inputs)
    replay = transform(*inputs, params=out.params)
    again = make_transform(name, generator(seed))(*inputs)
    for result in (replay, again):
        for field in ("image", "keypoints", "visibility", "heatmaps"):
            assert torch.equal(getattr(result, field), getattr(out, field)), field


@pytest.mark.parametrize("device", DEVICES)
@given(seed=seeds, batch=st.integers(1, 4))
def test_same_seed_gives_same_params_on_every_device(device: str, seed: int, batch: int) -> None:
    affine = sample_pose_affine(batch, (64, 48), generator=generator(seed), device=device)
    assert affine.device.type == device
    assert torch.equal(affine.cpu(), sample_pose_affine(batch, (64, 48), generator=generator(seed)))
    flags = sample_pose_flip(batch, generator=generator(seed), device=device)
    assert torch.equal(flags.cpu(), sample_pose_flip(batch, generator=generator(seed)))
    keypoints = 40 * torch.rand(batch, 17, 2, generator=generator(seed))
    visibility = torch.randint(0, 2, (batch, 17), generator=generator(seed))
    here = sample_joint_cutout(
        keypoints.to(device), visibility.to(device), generator=generator(seed)
    )
    there = sample_joint_cutout(keypoints, visibility, generator=generator(seed))
    for field in ("centres", "half_sizes", "active"):
        assert torch.equal(getattr(here, field).cpu(), getattr(there, field)), field


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["affine", "flip", "cutout"])
def test_transforms_keep_dtype_and_device(device: str, dtype: torch.dtype, name: str) -> None:
    inputs = pose_batch(0, 2, 17, (32, 24), 4, device, dtype)
    out = make_transform(name, generator(0))(*inputs)
    for given_tensor, result in zip(
        inputs, (out.image, out.keypoints, out.visibility, out.heatmaps), strict=True
    ):
        assert result.dtype == dtype and result.device == given_tensor.device
        assert result.shape == given_tensor.shape


def test_flip_and_cutout_accept_integer_images() -> None:
    image = torch.randint(0, 255, (2, 3, 8, 6), dtype=torch.uint8)
    keypoints = torch.full((2, 17, 2), 3.0)
    assert RandomPoseFlip(COCO_17.flip_index, p=1.0)(image).image.dtype == torch.uint8
    out = JointCutout(jitter=0.0, half_size=1)(image, keypoints)
    assert out.image.dtype == torch.uint8 and not out.image[:, :, 2:5, 2:5].any()


def test_presets_match_sshpe_views() -> None:
    easy, hard = RandomPoseAffine.easy_view(), RandomPoseAffine.hard_view()
    assert (easy.scale_sigma, easy.scale_range, easy.rotation_sigma) == (0.25, (0.75, 1.25), 30.0)
    assert (easy.rotation_limit, easy.rotation_p, hard.rotation_p) == (60.0, 0.6, 0.8)
    cutout = JointCutout()
    assert (cutout.num_joints, cutout.jitter, cutout.half_size) == (5, 10.0, (10, 19))
    assert "rotation_p=0.8" in repr(hard)


@needs_shared_data
def test_real_annotations_swap_left_and_right_under_flip() -> None:
    for path in (CROWDPOSE, OCHUMAN):
        data: dict[str, Any] = json.loads(path.read_text())
        skeleton = Skeleton.from_coco_category(data["categories"][0])
        width = {img["id"]: img["width"] for img in data["images"]}
        for ann in data["annotations"]:
            raw = torch.tensor(ann["keypoints"], dtype=torch.float64).view(1, -1, 3)
            keypoints, visibility = raw[..., :2], raw[..., 2]
            image = torch.zeros(1, 1, 1, width[ann["image_id"]])
            out = RandomPoseFlip(skeleton.flip_index, p=1.0)(image, keypoints, visibility)
            left, right = (
                skeleton.names.index("left_shoulder"),
                skeleton.names.index("right_shoulder"),
            )
            mirrored = torch.stack(
                (width[ann["image_id"]] - 1 - keypoints[0, right, 0], keypoints[0, right, 1])
            )
            torch.testing.assert_close(out.keypoints[0, left], mirrored)
            assert out.visibility[0, left] == visibility[0, right]


# --------------------------------------------------------------------------------------------
# Empty batches


def empty_pose_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(image, keypoints, visibility, heatmaps)`` of a batch of 0 at stride 4, 17 joints."""
    return (
        torch.zeros(0, 3, 32, 24),
        torch.zeros(0, 17, 2),
        torch.ones(0, 17),
        torch.zeros(0, 17, 8, 6),
    )


def fields(result: PoseTransformResult[Any]) -> list[torch.Tensor | None]:
    return [result.image, result.keypoints, result.visibility, result.heatmaps]


NO_BOXES = JointCutoutParams(
    torch.zeros(0, 5, 2), torch.zeros(0, 5, dtype=torch.long), torch.zeros(0, 5, dtype=torch.bool)
)
NO_MATRIX = torch.zeros(0, 2, 3)
NO_FLAGS = torch.zeros(0, dtype=torch.bool)
POSE_SHAPES = [(0, 3, 32, 24), (0, 17, 2), (0, 17), (0, 17, 8, 6)]

EMPTY_CALLS: dict[str, tuple[Callable[[], list[Any]], list[tuple[int, ...]]]] = {
    "compose_affine": (lambda: [compose_affine(NO_MATRIX, torch.zeros(0, 3, 3))], [(0, 2, 3)]),
    "flip_matrix": (lambda: [flip_matrix(24, NO_FLAGS)], [(0, 2, 3)]),
    "pose_affine_matrix": (
        lambda: [pose_affine_matrix(torch.zeros(0), torch.zeros(0), (32, 24))],
        [(0, 2, 3)],
    ),
    "sample_pose_affine": (lambda: [sample_pose_affine(0, (32, 24))], [(0, 2, 3)]),
    "sample_pose_flip": (lambda: [sample_pose_flip(0)], [(0,)]),
    "sample_joint_cutout": (
        lambda: list(vars(sample_joint_cutout(*empty_pose_batch()[1:3])).values()),
        [(0, 5, 2), (0, 5), (0, 5)],
    ),
    "warp_images": (lambda: [warp_images(empty_pose_batch()[0], NO_MATRIX)], [(0, 3, 32, 24)]),
    "apply_pose_affine": (
        lambda: fields(
            apply_pose_affine(empty_pose_batch()[0], NO_MATRIX, *empty_pose_batch()[1:])
        ),
        POSE_SHAPES,
    ),
    "apply_pose_flip": (
        lambda: fields(
            apply_pose_flip(
                empty_pose_batch()[0], NO_FLAGS, COCO_17.flip_index, *empty_pose_batch()[1:]
            )
        ),
        POSE_SHAPES,
    ),
    "joint_cutout_mask": (lambda: [joint_cutout_mask(NO_BOXES, (32, 24))], [(0, 32, 24)]),
    "apply_joint_cutout": (
        lambda: [apply_joint_cutout(empty_pose_batch()[0], NO_BOXES)],
        [(0, 3, 32, 24)],
    ),
    **{
        f"module_{name}": (
            lambda name=name: fields(make_transform(name)(*empty_pose_batch())),
            POSE_SHAPES,
        )
        for name in ("affine", "flip", "cutout")
    },
}


@pytest.mark.parametrize("name", sorted(EMPTY_CALLS))
def test_empty_batch_gives_empty_outputs(name: str) -> None:
    call, shapes = EMPTY_CALLS[name]
    assert [tuple(t.shape) for t in call()] == shapes


# --------------------------------------------------------------------------------------------
# Validation

Bad = Callable[[], object]

BAD_CALLS: dict[str, Bad] = {
    "rotation_p": lambda: RandomPoseAffine(rotation_p=1.5),
    "scale_range_order": lambda: RandomPoseAffine(scale_range=(1.2, 0.8)),
    "scale_range_zero": lambda: RandomPoseAffine(scale_range=(0.0, 1.0)),
    "scale_sigma": lambda: RandomPoseAffine(scale_sigma=-0.1),
    "rotation_limit": lambda: RandomPoseAffine(rotation_limit=float("nan")),
    "flip_not_permutation": lambda: RandomPoseFlip([0, 0]),
    "flip_not_involution": lambda: RandomPoseFlip([1, 2, 0]),
    "flip_p": lambda: RandomPoseFlip([0], p=-0.1),
    "num_joints": lambda: JointCutout(num_joints=0),
    "jitter": lambda: JointCutout(jitter=-1.0),
    "half_size": lambda: JointCutout(half_size=(19, 10)),
    "batch_mismatch": lambda: RandomPoseFlip([0])(torch.zeros(2, 1, 4, 4), torch.zeros(3, 1, 2)),
    "joint_mismatch": lambda: RandomPoseAffine()(
        torch.zeros(1, 1, 8, 8), torch.zeros(1, 2, 2), heatmaps=torch.zeros(1, 3, 2, 2)
    ),
    "flip_index_length": lambda: RandomPoseFlip([1, 0])(
        torch.zeros(1, 1, 4, 4), torch.zeros(1, 3, 2)
    ),
    "aspect": lambda: RandomPoseAffine()(torch.zeros(1, 1, 8, 8), heatmaps=torch.zeros(1, 2, 2, 4)),
    "visibility_alone": lambda: RandomPoseFlip([0])(
        torch.zeros(1, 1, 4, 4), visibility=torch.ones(1, 1)
    ),
    "flags_dtype": lambda: RandomPoseFlip([0])(torch.zeros(2, 1, 4, 4), params=torch.ones(2)),
    "matrix_shape": lambda: RandomPoseAffine()(
        torch.zeros(2, 1, 4, 4), params=torch.zeros(2, 3, 2)
    ),
    "integer_affine": lambda: RandomPoseAffine()(torch.zeros(1, 1, 4, 4, dtype=torch.uint8)),
    "cutout_needs_keypoints": lambda: JointCutout()(torch.zeros(1, 1, 4, 4)),
    "image_dims": lambda: RandomPoseAffine()(torch.zeros(1, 4, 4)),
}


@pytest.mark.parametrize("name", sorted(BAD_CALLS))
def test_bad_inputs_raise_value_error(name: str) -> None:
    with pytest.raises(ValueError):
        BAD_CALLS[name]()


def test_heatmap_stride_is_one_ratio_for_both_axes() -> None:
    assert heatmap_stride(torch.zeros(2, 3, 128, 96), torch.zeros(2, 17, 32, 24)) == 4.0
    assert heatmap_stride(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64)) == 1.0
    with pytest.raises(ValueError, match=r"heatmaps 25x24 .* 128x96"):
        heatmap_stride(torch.zeros(1, 3, 128, 96), torch.zeros(1, 17, 25, 24))
    with pytest.raises(ValueError, match="heatmaps 0x0"):
        heatmap_stride(torch.zeros(1, 3, 128, 96), torch.zeros(1, 17, 0, 0))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_flips_and_warps_with_float32_geometry(dtype: torch.dtype) -> None:
    """At HRNet's 384 x 288 (heatmaps 96 x 72), a half-precision flip_matrix would read
    W - 1 = 287 as 288; the warps keep their geometry in float32 and only their values in
    ``dtype``."""
    keypoints = torch.tensor([[[200.0, 150.0]]])
    heatmaps, _ = render_heatmaps(keypoints / 4, torch.ones(1, 1), (96, 72), unbiased=True)
    image = torch.zeros(1, 3, 384, 288)
    flags = torch.tensor([True])
    exact = apply_pose_flip(image, flags, [0], heatmaps=heatmaps).heatmaps
    half = apply_pose_flip(image.to(dtype), flags, [0], heatmaps=heatmaps.to(dtype)).heatmaps
    assert exact is not None and half is not None and half.dtype == dtype
    torch.testing.assert_close(
        decode_heatmaps(half.float())[0], decode_heatmaps(exact)[0], rtol=0, atol=0.05
    )
    pattern = (torch.arange(288.0) % 7).expand(1, 1, 4, 288)  # small integers: exact in dtype
    flipped = warp_images(pattern.to(dtype), flip_matrix(288, flags)).float()
    torch.testing.assert_close(flipped, pattern.flip(-1), rtol=0, atol=0.05)
    moved = affine_keypoints(torch.tensor([[[100.0, 50.0]]], dtype=dtype), flip_matrix(288, flags))
    assert moved.dtype == dtype and moved[0, 0, 0].item() == 187.0


def test_joint_cutout_jitters_integer_keypoints_by_a_gaussian() -> None:
    keypoints = torch.tensor([[[20, 30]]]).expand(2000, 1, 2)
    params = sample_joint_cutout(keypoints, num_joints=1, jitter=10.0, generator=generator(0))
    offset = params.centres - keypoints
    assert params.centres.dtype == torch.get_default_dtype()
    assert (offset == offset.round()).float().mean() < 0.01  # not whole pixels
    assert 9.0 < float(offset.std()) < 11.0


def test_heatmap_flip_of_no_joints_and_compose_of_two_dtypes() -> None:
    out = apply_pose_flip(
        torch.zeros(1, 1, 8, 8), torch.tensor([True]), [], heatmaps=torch.zeros(1, 0, 2, 2)
    ).heatmaps
    assert out is not None and out.shape == (1, 0, 2, 2)
    shift = torch.tensor([[[1.0, 0.0, 5.0], [0.0, 1.0, 0.0]]])
    double = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]], dtype=torch.float64)
    composed = compose_affine(shift, double)
    assert composed.dtype == torch.float64 and composed[0, 0, 2] == 10.0
