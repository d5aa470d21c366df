"""Tests for posemum_aug.heatmap: render, decode, flip and warp heatmaps."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Literal

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from posemum_aug.heatmap import decode_heatmaps, flip_heatmaps, render_heatmaps, warp_heatmaps
from posemum_aug.keypoints import (
    COCO_17,
    CROWDPOSE_14,
    affine_keypoints,
    flip_keypoints,
    heatmap_matrix,
)
from tests.strategies import DEVICES, generator, output_shapes, seeds
from tests.test_keypoints import random_affine

SIZE = (64, 48)  # (h, w): 256 x 192 crops at stride 4
REFINES: list[Literal["dark", "quarter", "none"]] = ["dark", "quarter", "none"]


def random_points(batch: int, joints: int, g: torch.Generator, margin: float) -> torch.Tensor:
    """``(B, K, 2)`` sub-pixel points at least ``margin`` px inside the 64 x 48 map."""
    span = torch.tensor([SIZE[1] - 1 - 2 * margin, SIZE[0] - 1 - 2 * margin], dtype=torch.float64)
    return (torch.rand(batch, joints, 2, generator=g, dtype=torch.float64) * span + margin).float()


# --- render -------------------------------------------------------------------------------


def test_render_classic_matches_simplebaseline_target() -> None:
    kp = torch.tensor([[[10.4, 20.6]]])
    hm, w = render_heatmaps(kp, torch.ones(1, 1), SIZE, sigma=2.0)
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(48.0), indexing="ij")
    d2 = (xs - 10) ** 2 + (ys - 21) ** 2  # centre rounded to the nearest pixel
    window = ((xs - 10).abs() <= 6) & ((ys - 21).abs() <= 6)  # the 13 x 13 window
    torch.testing.assert_close(hm[0, 0], torch.exp(-d2 / 8) * window)
    assert hm[0, 0, 21, 10] == 1.0 and w.item() == 1.0


def test_render_unbiased_is_centred_on_the_point() -> None:
    kp = torch.tensor([[[10.4, 20.6]]], dtype=torch.float64)
    hm, _ = render_heatmaps(kp, torch.ones(1, 1), SIZE, sigma=2.0, unbiased=True)
    ys, xs = torch.meshgrid(
        torch.arange(64.0, dtype=torch.float64),
        torch.arange(48.0, dtype=torch.float64),
        indexing="ij",
    )
    d2 = (xs - 10.4) ** 2 + (ys - 20.6) ** 2
    window = ((xs - 10.4).abs() <= 6) & ((ys - 20.6).abs() <= 6)
    torch.testing.assert_close(hm[0, 0], torch.exp(-d2 / 8) * window)


@pytest.mark.parametrize("unbiased", [False, True])
def test_render_weights(unbiased: bool) -> None:
    kp = torch.tensor(
        [
            [
                [5.0, 5.0],  # visible
                [5.0, 5.0],  # not labelled
                [-6.0, 5.0],  # centre outside, window reaches column 0
                [-6.6, 5.0],  # window ends before column 0 (rounded: -7)
                [5.0, 69.6],  # below the map
                [math.nan, 5.0],  # broken coordinate
            ]
        ]
    )
    vis = torch.tensor([[2, 0, 1, 1, 2, 2]])
    hm, w = render_heatmaps(kp, vis, SIZE, sigma=2.0, unbiased=unbiased)
    assert w.tolist() == [[1.0, 0.0, 1.0, 0.0, 0.0, 0.0]]
    assert torch.isfinite(hm).all()
    assert (hm.flatten(2).amax(-1) > 0).tolist() == [[True, False, True, False, False, False]]
    assert hm.max() <= 1.0


def test_render_gradcheck_unbiased() -> None:
    kp = torch.tensor([[[4.3, 5.6], [2.2, 7.9]]], dtype=torch.float64, requires_grad=True)

    def fn(p: torch.Tensor) -> torch.Tensor:
        return render_heatmaps(p, torch.ones(1, 2), (12, 10), sigma=1.5, unbiased=True)[0]

    assert torch.autograd.gradcheck(fn, (kp,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_render_tiny_sigma_is_the_gaussian_limit(dtype: torch.dtype) -> None:
    # classic: one-hot at the nearest pixel; unbiased: a pixel exactly on the point, or none
    kp = torch.tensor([[[2.3, 1.6], [4.0, 2.0], [1.5, 0.5]]], dtype=dtype)
    for unbiased, weights in ((False, [1.0, 1.0, 1.0]), (True, [0.0, 1.0, 0.0])):
        hm, w = render_heatmaps(kp, torch.ones(1, 3), (4, 6), sigma=1e-200, unbiased=unbiased)
        assert torch.isfinite(hm).all() and w.tolist() == [weights]
        centre = torch.floor(kp + 0.5).long() if not unbiased else kp.long()
        for k in range(3):
            expected = torch.zeros(4, 6, dtype=dtype)
            if weights[k]:
                expected[centre[0, k, 1], centre[0, k, 0]] = 1.0
            assert torch.equal(hm[0, k], expected), (unbiased, k)


def test_render_weight_is_zero_when_the_gaussian_underflows() -> None:
    # the window covers pixels, but exp(-50) is 0 in float16: no target, no weight
    kp = torch.tensor([[[10.5, 3.0]]], dtype=torch.float16)
    hm, w = render_heatmaps(kp, torch.ones(1, 1), (8, 16), sigma=0.05, unbiased=True, truncate=100)
    assert w.item() == 0.0 and not hm.any()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((torch.zeros(2, 3), torch.ones(2), (8, 8)), "keypoints must have shape"),
        ((torch.zeros(2, 3, 2), torch.ones(2, 2), (8, 8)), "visibility must have shape"),
        ((torch.zeros(2, 3, 2), torch.ones(2, 3), (8, 0)), "size"),
        ((torch.zeros(2, 3, 2, dtype=torch.long), torch.ones(2, 3), (8, 8)), "floating"),
    ],
)
def test_render_errors(
    args: tuple[torch.Tensor, torch.Tensor, tuple[int, int]], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        render_heatmaps(*args)
    with pytest.raises(ValueError, match="sigma"):
        render_heatmaps(torch.zeros(1, 1, 2), torch.ones(1, 1), (8, 8), sigma=0.0)


# --- decode -------------------------------------------------------------------------------


@given(seed=seeds, batch=st.integers(1, 4))
def test_decode_dark_recovers_subpixel_points(seed: int, batch: int) -> None:
    # 6 px margin: the whole 3-sigma window, and the DARK smoothing, stay on the map
    p = random_points(batch, 17, generator(seed), margin=6.0)
    hm, _ = render_heatmaps(p, torch.ones(batch, 17), SIZE, sigma=2.0, unbiased=True)
    coords, scores = decode_heatmaps(hm)
    torch.testing.assert_close(coords, p, rtol=0, atol=0.05)
    assert (scores > 0.85).all() and (scores <= 1).all()


@given(seed=seeds)
def test_decode_error_bounds_per_refinement(seed: int) -> None:
    p = random_points(2, 17, generator(seed), margin=3.0)
    hm, _ = render_heatmaps(p, torch.ones(2, 17), SIZE, sigma=2.0, unbiased=True)
    nearest = torch.floor(p + 0.5)
    torch.testing.assert_close(decode_heatmaps(hm, refine="none")[0], nearest)
    quarter = decode_heatmaps(hm, refine="quarter")[0]
    # a quarter towards the point; none for a point on a pixel centre (equal neighbours)
    step = torch.where(p == nearest, 0.0, 0.25)
    assert torch.equal((quarter - nearest).abs(), step)
    assert ((quarter - p).abs() <= 0.25 + 1e-5).all()
    exact = decode_heatmaps(hm, blur_kernel=1)[0]  # log of a Gaussian is quadratic
    torch.testing.assert_close(exact, p, rtol=0, atol=1e-3)


def test_decode_integer_points_exactly_in_every_mode() -> None:
    p = torch.tensor([[[0.0, 0.0], [47.0, 63.0], [10.0, 30.0], [0.0, 30.0]]])
    hm, _ = render_heatmaps(p, torch.ones(1, 4), SIZE)
    for refine in REFINES:
        coords, scores = decode_heatmaps(hm, refine=refine)
        torch.testing.assert_close(coords, p, rtol=0, atol=1e-5)
        torch.testing.assert_close(scores, torch.ones(1, 4))


def test_decode_refines_only_axes_with_both_neighbours() -> None:
    p = torch.tensor([[[0.3, 30.2], [47.2, 10.4], [20.3, 0.2]]])
    hm, _ = render_heatmaps(p, torch.ones(1, 3), SIZE, unbiased=True)
    coords, _ = decode_heatmaps(hm)
    torch.testing.assert_close(
        coords, torch.tensor([[[0.0, 30.2], [47.0, 10.4], [20.3, 0.0]]]), rtol=0, atol=0.01
    )


@given(seed=seeds)
def test_decode_dark_handles_correlated_gaussians(seed: int) -> None:
    # a rotated anisotropic Gaussian: the mixed derivative matters
    g = generator(seed)
    p = random_points(2, 5, g, margin=10.0).double()
    angle = torch.rand(2, 5, 1, 1, generator=g, dtype=torch.float64) * math.pi
    ys, xs = torch.meshgrid(
        torch.arange(64.0, dtype=torch.float64),
        torch.arange(48.0, dtype=torch.float64),
        indexing="ij",
    )
    dx, dy = xs - p[..., 0, None, None], ys - p[..., 1, None, None]
    u = dx * angle.cos() + dy * angle.sin()  # along the long axis (sigma 3)
    v = -dx * angle.sin() + dy * angle.cos()  # across it (sigma 1.5)
    hm = torch.exp(-0.5 * (u.square() / 9 + v.square() / 2.25))
    torch.testing.assert_close(decode_heatmaps(hm, blur_kernel=1)[0], p, rtol=0, atol=1e-3)
    torch.testing.assert_close(decode_heatmaps(hm)[0], p, rtol=0, atol=0.05)


def test_decode_quarter_reads_outside_the_map_as_zero() -> None:
    # near the edge, decoding equals decoding the map padded with zeros
    g = generator(11)
    edge = torch.rand(1, 8, 2, generator=g) * 3.5 + 1.5  # 1.5 to 5 px from the top-left
    p = torch.cat((edge, torch.tensor([[[47.0, 63.0]]]) - edge), dim=1)
    hm, _ = render_heatmaps(p, torch.ones(1, 16), SIZE, unbiased=True)
    coords, _ = decode_heatmaps(hm, refine="quarter")
    padded, _ = decode_heatmaps(torch.nn.functional.pad(hm, (8, 8, 8, 8)), refine="quarter")
    torch.testing.assert_close(coords, padded - 8)


@pytest.mark.parametrize("offset", [0.8, 1.3, 1.7, 2.4, 3.3, 4.6])
def test_decode_dark_at_the_edge_is_never_worse_than_the_argmax(offset: float) -> None:
    # sub-pixel truths close to each of the four edges, on both axes
    far_x, far_y = SIZE[1] - 1 - offset, SIZE[0] - 1 - offset
    p = torch.tensor(
        [[[offset, 30.4], [far_x, 30.4], [20.6, offset], [20.6, far_y], [offset, far_y]]],
        dtype=torch.float64,
    )
    hm, _ = render_heatmaps(p, torch.ones(1, 5), SIZE, unbiased=True)
    argmax_error = (decode_heatmaps(hm, refine="none")[0] - p).abs()
    error = (decode_heatmaps(hm)[0] - p).abs()
    assert (error <= argmax_error).all(), error
    assert error.max() < 0.01, error  # the smoothing never reads outside the map


def test_decode_dark_follows_the_gaussian_past_a_spike() -> None:
    # a sigma-2 Gaussian at x = 20 and a spike of 1.5 two pixels away: the argmax is the
    # spike; mmpose's DARK (one Newton step, no clamp) gives 20.24, a 1 px clamp 21.0
    hm, _ = render_heatmaps(torch.tensor([[[20.0, 30.0]]]), torch.ones(1, 1), SIZE, unbiased=True)
    hm[0, 0, 30, 22] = 1.5
    coords, scores = decode_heatmaps(hm)
    assert scores.item() == 1.5
    assert abs(coords[0, 0, 1].item() - 30.0) < 1e-4
    assert abs(coords[0, 0, 0].item() - 20.0) < 0.24, coords


def noisy_gaussians(seed: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigma-2 maps with additive noise and one random spike within 3 px of the peak."""
    g = generator(seed)
    p = random_points(1, batch, g, margin=8.0)
    hm, _ = render_heatmaps(p, torch.ones(1, batch), SIZE, unbiased=True)
    spike = torch.floor(p + 0.5).long() + torch.randint(-3, 4, (1, batch, 2), generator=g)
    hm[0, torch.arange(batch), spike[0, :, 1], spike[0, :, 0]] += 0.5 + torch.rand(
        batch, generator=g
    )
    return hm + 0.05 * torch.randn(hm.shape, generator=g), p


@given(seed=seeds)
def test_decode_dark_beats_the_argmax_on_noisy_maps(seed: int) -> None:
    hm, p = noisy_gaussians(seed, 16)
    argmax_error = (decode_heatmaps(hm, refine="none")[0] - p).norm(dim=-1)
    error = (decode_heatmaps(hm)[0] - p).norm(dim=-1)
    # far better on average (measured: 5-12 % of the argmax's error; 35-62 % with the
    # step clamped to 1 px) and no worse in the worst case
    assert error.mean() < 0.2 * argmax_error.mean(), (error.mean(), argmax_error.mean())
    assert error.max() <= argmax_error.max(), (error.max(), argmax_error.max())


@pytest.mark.parametrize("refine", REFINES)
def test_decode_non_finite_gives_zero_score_and_finite_coords(
    refine: Literal["dark", "quarter", "none"],
) -> None:
    p = random_points(2, 4, generator(3), margin=3.0)
    hm, _ = render_heatmaps(p, torch.ones(2, 4), SIZE, unbiased=True)
    clean_coords, clean_scores = decode_heatmaps(hm, refine=refine)
    hm[0, 0, 10, 10] = math.nan
    hm[0, 1, int(p[0, 1, 1]), int(p[0, 1, 0])] = math.inf
    hm[1, 2] = -math.inf
    coords, scores = decode_heatmaps(hm, refine=refine)
    assert torch.isfinite(coords).all() and torch.isfinite(scores).all()
    bad = torch.tensor([[True, True, False, False], [False, False, True, False]])
    assert (scores[bad] == 0).all()
    torch.testing.assert_close(scores[~bad], clean_scores[~bad])
    torch.testing.assert_close(coords[~bad], clean_coords[~bad])


@given(seed=seeds, h=st.integers(1, 12), w=st.integers(1, 12), blur=st.sampled_from([1, 3, 11]))
def test_decode_of_noise_stays_finite_and_on_the_map(seed: int, h: int, w: int, blur: int) -> None:
    g = generator(seed)
    hm = torch.randn(3, 5, h, w, generator=g) * torch.rand(3, 5, 1, 1, generator=g) * 10
    raw, scores = decode_heatmaps(hm, refine="none")
    torch.testing.assert_close(scores, hm.flatten(2).amax(-1))
    quarter, _ = decode_heatmaps(hm, refine="quarter")
    assert ((quarter - raw).abs() <= 0.25).all()
    for coords in (quarter, decode_heatmaps(hm, blur_kernel=blur)[0]):
        assert torch.isfinite(coords).all()
        assert (coords >= 0).all() and (coords[..., 0] <= w - 1).all()
        assert (coords[..., 1] <= h - 1).all()


def test_decode_is_vectorised_consistently() -> None:
    g = generator(5)
    hm = torch.rand(3, 4, 16, 12, generator=g) ** 4
    coords, scores = decode_heatmaps(hm)
    for b in range(3):
        for k in range(4):
            c, s = decode_heatmaps(hm[b : b + 1, k : k + 1])
            torch.testing.assert_close(c[0, 0], coords[b, k])
            torch.testing.assert_close(s[0, 0], scores[b, k])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"refine": "udp"}, "refine"),
        ({"blur_kernel": 4}, "blur_kernel"),
        ({"blur_kernel": -1}, "blur_kernel"),
    ],
)
def test_decode_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        decode_heatmaps(torch.zeros(1, 1, 4, 4), **kwargs)  # type: ignore[arg-type]
    for shape in ((1, 1, 0, 4), (1, 1, 4, 0), (0, 1, 0, 0)):
        with pytest.raises(ValueError, match=re.escape(f"h, w >= 1, got {shape}")):
            decode_heatmaps(torch.zeros(shape))
    with pytest.raises(ValueError, match="heatmaps must have shape"):
        decode_heatmaps(torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="floating"):
        decode_heatmaps(torch.zeros(1, 1, 4, 4, dtype=torch.long))


# --- flip ---------------------------------------------------------------------------------


@given(seed=seeds, skeleton=st.sampled_from([COCO_17, CROWDPOSE_14]), unbiased=st.booleans())
def test_flip_heatmaps_matches_flipped_keypoints(
    seed: int, skeleton: object, unbiased: bool
) -> None:
    assert skeleton is COCO_17 or skeleton is CROWDPOSE_14
    k = skeleton.num_joints
    g = generator(seed)
    p = random_points(2, k, g, margin=-5.0)  # some points off the map
    vis = torch.randint(0, 3, (2, k), generator=g)
    hm, w = render_heatmaps(p, vis, SIZE, unbiased=unbiased)
    flipped = flip_heatmaps(hm, skeleton.flip_index)
    p_f, vis_f = flip_keypoints(p, vis, SIZE[1], skeleton.flip_index)
    hm_f, w_f = render_heatmaps(p_f, vis_f, SIZE, unbiased=unbiased)
    if unbiased:  # rounding ties break the other way after a flip; unbiased has none
        torch.testing.assert_close(flipped, hm_f)
        torch.testing.assert_close(w[:, list(skeleton.flip_index)], w_f)
    assert torch.equal(flip_heatmaps(flipped, skeleton.flip_index), hm)


def test_flip_heatmaps_batch_dims_and_errors() -> None:
    hm = torch.rand(2, 3, 14, 4, 5, generator=generator(0))
    out = flip_heatmaps(hm, CROWDPOSE_14.flip_index)
    assert torch.equal(out[:, :, 0], hm[:, :, 1].flip(-1))
    assert torch.equal(out[:, :, 12], hm[:, :, 12].flip(-1))
    with pytest.raises(ValueError, match="flip_index must have shape"):
        flip_heatmaps(hm, torch.arange(17))
    with pytest.raises(ValueError, match="at least 3 dims"):
        flip_heatmaps(hm[0, 0, 0], [0])


def test_flip_heatmaps_needs_a_self_inverse_flip_index() -> None:
    # a permutation, but joint 1 maps to 2, which maps to 3, not back to 1
    with pytest.raises(ValueError, match=r"its own inverse.*joint 1 .*2.*3"):
        flip_heatmaps(torch.zeros(1, 4, 2, 2), [0, 2, 3, 1])


# --- warp ---------------------------------------------------------------------------------


@given(seed=seeds, batch=st.integers(1, 3))
def test_warp_keeps_peaks_on_transformed_keypoints(seed: int, batch: int) -> None:
    g = generator(seed)
    m = random_affine(batch, g)
    m[:, :2, 2] *= 0.1  # a few heatmap pixels of shift
    # rotate and scale about the map centre so the points stay on the map
    centre = torch.tensor([(SIZE[1] - 1) / 2, (SIZE[0] - 1) / 2], dtype=torch.float64)
    m[:, :2, 2] += centre - (m[:, :2, :2] @ centre)
    p = random_points(batch, 17, g, margin=18.0)
    hm, _ = render_heatmaps(p, torch.ones(batch, 17), SIZE, unbiased=True)
    target = affine_keypoints(p, m)
    assert ((target >= 4) & (target <= torch.tensor([SIZE[1] - 5, SIZE[0] - 5]))).all()
    coords, scores = decode_heatmaps(warp_heatmaps(hm, m.float(), SIZE))
    torch.testing.assert_close(coords, target, rtol=0, atol=0.5)
    assert (scores > 0.5).all()


def test_warp_pixel_convention_is_exact() -> None:
    g = generator(0)
    hm = torch.rand(2, 3, 10, 8, generator=g)
    eye = torch.eye(3).expand(2, 3, 3)
    torch.testing.assert_close(warp_heatmaps(hm, eye, (10, 8)), hm)
    shift = eye.clone()
    shift[:, 0, 2], shift[:, 1, 2] = 2.0, -1.0  # integer shift: a pure pixel move
    out = warp_heatmaps(hm, shift, (10, 8))
    torch.testing.assert_close(out[..., :-1, 2:], hm[..., 1:, :-2])
    assert (out[..., :, :2] == 0).all() and (out[..., -1, :] == 0).all()
    flip = eye.clone()
    flip[:, 0, 0], flip[:, 0, 2] = -1.0, 7.0  # x -> w - 1 - x
    torch.testing.assert_close(warp_heatmaps(hm, flip, (10, 8)), hm.flip(-1))
    half = eye.clone()
    half[:, 0, 2] = 0.5
    torch.testing.assert_close(
        warp_heatmaps(hm, half, (10, 8))[..., 1:], (hm[..., 1:] + hm[..., :-1]) / 2
    )


def test_warp_scaling_is_align_corners_interpolation() -> None:
    # x -> 2 x between a 5 x 4 and a 9 x 7 map: source pixel centres land on even pixels
    hm = torch.rand(2, 3, 5, 4, generator=generator(2))
    scale = torch.diag(torch.tensor([2.0, 2.0, 1.0])).expand(2, 3, 3)
    expected = torch.nn.functional.interpolate(hm, (9, 7), mode="bilinear", align_corners=True)
    torch.testing.assert_close(warp_heatmaps(hm, scale, (9, 7)), expected)
    torch.testing.assert_close(warp_heatmaps(hm, scale, (9, 7))[..., ::2, ::2], hm)


def test_warp_with_image_matrix_matches_heatmap_matrix() -> None:
    g = generator(7)
    stride = 4.0
    m_img = random_affine(2, g)
    centre = torch.tensor([95.5, 127.5], dtype=torch.float64)  # of a 256 x 192 crop
    m_img[:, :2, 2] = centre - m_img[:, :2, :2] @ centre + m_img[:, :2, 2] * 0.2
    p_img = random_points(2, 17, g, margin=18.0).double() * stride
    hm, _ = render_heatmaps(p_img / stride, torch.ones(2, 17), SIZE, unbiased=True)
    warped = warp_heatmaps(hm, heatmap_matrix(m_img, stride), SIZE)
    coords, _ = decode_heatmaps(warped)
    torch.testing.assert_close(coords, affine_keypoints(p_img, m_img) / stride, rtol=0, atol=0.5)


def test_warp_errors() -> None:
    with pytest.raises(ValueError, match="batch size 2"):
        warp_heatmaps(torch.zeros(2, 1, 4, 4), torch.eye(3)[None], (4, 4))
    with pytest.raises(ValueError, match="size"):
        warp_heatmaps(torch.zeros(1, 1, 4, 4), torch.eye(3)[None], (4, 0))


# --- empty batches ------------------------------------------------------------------------

EMPTY_CALLS: dict[str, tuple[Callable[[], object], list[tuple[int, ...]]]] = {
    "render_heatmaps": (
        lambda: render_heatmaps(torch.zeros(0, 3, 2), torch.ones(0, 3), (8, 6)),
        [(0, 3, 8, 6), (0, 3)],
    ),
    **{
        f"decode_heatmaps_{refine}": (
            lambda refine=refine: decode_heatmaps(torch.zeros(0, 3, 8, 6), refine=refine),
            [(0, 3, 2), (0, 3)],
        )
        for refine in REFINES
    },
    "flip_heatmaps": (lambda: flip_heatmaps(torch.zeros(0, 3, 8, 6), [1, 0, 2]), [(0, 3, 8, 6)]),
    "warp_heatmaps": (
        lambda: warp_heatmaps(torch.zeros(0, 3, 8, 6), torch.zeros(0, 2, 3), (4, 5)),
        [(0, 3, 4, 5)],
    ),
}


@pytest.mark.parametrize("name", sorted(EMPTY_CALLS))
def test_empty_batch_gives_empty_outputs(name: str) -> None:
    call, shapes = EMPTY_CALLS[name]
    assert output_shapes(call()) == shapes


# --- dtype / device -----------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_dtype_and_device_kept(device: str, dtype: torch.dtype) -> None:
    p = random_points(2, 17, generator(0), margin=3.0).to(device, dtype)
    hm, w = render_heatmaps(p, torch.ones(2, 17, device=device), SIZE, unbiased=True)
    assert (hm.dtype, hm.device, w.dtype, w.device) == (dtype, p.device, dtype, p.device)
    for refine in REFINES:
        coords, scores = decode_heatmaps(hm, refine=refine)
        work = torch.promote_types(dtype, torch.float32)  # sub-pixel positions need it
        assert (coords.dtype, coords.device, scores.dtype) == (work, p.device, dtype)
    tol = {torch.float16: 0.1, torch.bfloat16: 0.25}.get(dtype, 0.05)
    torch.testing.assert_close(decode_heatmaps(hm)[0].float(), p.float(), rtol=0, atol=tol)
    for out in (
        flip_heatmaps(hm, COCO_17.flip_index),
        warp_heatmaps(hm, torch.eye(3)[None].expand(2, 3, 3), (32, 24)),
    ):
        assert (out.dtype, out.device) == (dtype, p.device)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_maps_keep_sub_pixel_geometry(dtype: torch.dtype) -> None:
    """A half-precision map decodes and warps with float32 geometry: bfloat16 holds only
    steps of 0.5 px above 64 px (and W - 1 = 287 as 288), which would move peaks by up to
    a heatmap pixel."""
    truth = torch.tensor([[[80.3, 50.3], [21.75, 30.0]]])
    hm, _ = render_heatmaps(truth, torch.ones(1, 2), (96, 72), unbiased=True)
    reference, _ = decode_heatmaps(hm)
    decoded, _ = decode_heatmaps(hm.to(dtype))
    torch.testing.assert_close(decoded, reference, rtol=0, atol=0.05)
    # the mirror of x -> 287 - x at stride 4 (HRNet's 384 x 288 input): x_h -> 71.75 - x_h
    mirror = torch.tensor([[[-1.0, 0.0, 71.75], [0.0, 1.0, 0.0]]])
    warped, _ = decode_heatmaps(warp_heatmaps(hm.to(dtype), mirror, (96, 72)).float())
    expected, _ = decode_heatmaps(warp_heatmaps(hm, mirror, (96, 72)))
    torch.testing.assert_close(warped, expected, rtol=0, atol=0.05)
