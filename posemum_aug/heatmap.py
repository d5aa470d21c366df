"""Gaussian keypoint heatmaps: render targets, decode peaks, flip and warp between views.

All coordinates here are in heatmap pixels ``(x, y)`` with pixel centres on integers. To go
from image pixels to heatmap pixels of a map ``stride`` times smaller use ``x / stride``
(keypoints) and :func:`~posemum_aug.keypoints.heatmap_matrix` (affine maps).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from kornia.geometry.transform import warp_affine
from torch import Tensor

from posemum_aug._checks import (
    check_affine_matrix,
    check_min_dims,
    check_pair,
    check_shape,
    working_dtype,
)
from posemum_aug.keypoints import as_flip_index

__all__ = ["decode_heatmaps", "flip_heatmaps", "render_heatmaps", "warp_heatmaps"]

#: Floor applied before the logarithm in the DARK refinement (as in DARK).
_LOG_EPS = 1e-10


def _gaussian(d: Tensor, sigma: float) -> Tensor:
    """Unnormalised 1-D Gaussian ``exp(-d^2 / (2 sigma^2))``, peak 1 at ``d = 0``.

    ``d / sigma`` is capped at 40 (beyond which the Gaussian is 0 in every float dtype) and
    ``sigma`` is floored at the dtype's smallest normal number, so a sigma far below a pixel
    gives exactly 1 at ``d = 0`` and 0 elsewhere, never ``0 / 0``.
    """
    scale = max(sigma, torch.finfo(d.dtype).tiny)
    return torch.exp(-0.5 * (d / scale).clamp(-40.0, 40.0).square())


def _check_sigma(name: str, sigma: float) -> float:
    if not 0.0 < float(sigma) < math.inf:
        raise ValueError(f"{name} must be positive and finite, got {sigma!r}")
    return float(sigma)


def render_heatmaps(
    keypoints: Tensor,
    visibility: Tensor,
    size: tuple[int, int],
    sigma: float = 2.0,
    *,
    unbiased: bool = False,
    truncate: float = 3.0,
) -> tuple[Tensor, Tensor]:
    """Render one Gaussian heatmap per joint, with per-joint loss weights.

    Each Gaussian has peak value 1 at its centre and is cut to zero beyond ``truncate *
    sigma`` pixels from it along either axis (the classic ``6 sigma + 1`` square window).

    - ``unbiased=False``: the SimpleBaseline target; the centre is the keypoint rounded to
      the nearest pixel, so the map peaks at exactly 1 on that pixel (up to 0.5 px of
      quantisation error).
    - ``unbiased=True``: the sub-pixel target of UDP / DARK; the centre (and the window)
      is the keypoint itself, so the map is a sampled Gaussian peaking between pixels.
      Differentiable in ``keypoints``.

    A joint gets weight 1 when it is visible (``visibility > 0``), its coordinates are
    finite and its heatmap is not all zero (its window covers a pixel of the map where the
    Gaussian does not underflow in the dtype); otherwise weight 0 and an all-zero heatmap.
    A ``sigma`` far below a pixel renders the Gaussian's limit: the classic target is one-hot
    at the nearest pixel; an unbiased target is one-hot where the keypoint lies exactly on a
    pixel centre and all zero (weight 0) elsewhere.

    Args:
        keypoints: ``(B, K, 2)`` floating ``(x, y)`` in heatmap pixels.
        visibility: ``(B, K)`` any dtype; ``> 0`` means visible.
        size: heatmap size ``(h, w)``.
        sigma: Gaussian standard deviation in heatmap pixels (2 at 64 x 48).
        unbiased: centre the Gaussian exactly on the keypoint instead of its nearest pixel.
        truncate: window half-size in units of ``sigma``.

    Returns:
        ``(heatmaps, weights)``: ``(B, K, h, w)`` and ``(B, K)``, dtype and device of
        ``keypoints``.

    Raises:
        ValueError: on bad shapes, a bad size or a non-positive ``sigma`` / ``truncate``.

    Example:
        >>> import torch
        >>> kp = torch.tensor([[[2.0, 1.0], [9.0, 1.0]]])
        >>> hm, w = render_heatmaps(kp, torch.tensor([[1, 1]]), (3, 5), sigma=1.0)
        >>> hm[0, 0, 1]
        tensor([0.1353, 0.6065, 1.0000, 0.6065, 0.1353])
        >>> w, hm[0, 1].abs().sum()
        (tensor([[1., 0.]]), tensor(0.))
    """
    check_shape("keypoints", keypoints, (None, None, 2))
    if not keypoints.is_floating_point():
        raise ValueError(f"keypoints must be floating, got {keypoints.dtype}")
    check_shape("visibility", visibility, keypoints.shape[:2])
    height, width = check_pair("size", size)
    sigma = _check_sigma("sigma", sigma)
    radius = _check_sigma("truncate", truncate) * sigma

    centre = keypoints if unbiased else torch.floor(keypoints + 0.5)
    finite = torch.isfinite(centre).all(-1)
    centre = torch.where(finite[..., None], centre, torch.zeros_like(centre))

    def axis(c: Tensor, n: int) -> Tensor:
        d = torch.arange(n, dtype=keypoints.dtype, device=keypoints.device) - c[..., None]
        return torch.where(d.abs() <= radius, _gaussian(d, sigma), torch.zeros_like(d))

    gx, gy = axis(centre[..., 0], width), axis(centre[..., 1], height)
    heatmaps = gy[..., :, None] * gx[..., None, :]
    hit = (heatmaps > 0).flatten(2).any(-1)
    weights = ((visibility > 0) & finite & hit).to(keypoints.dtype)
    return heatmaps * weights[..., None, None], weights


def _neighbourhood(maps: Tensor, x: Tensor, y: Tensor, radius: int) -> Tensor:
    """The ``(2r+1) x (2r+1)`` patches of ``maps`` centred on integer ``(x, y)``.

    Pixels outside the map and non-finite values read as 0.

    ``maps`` is ``(B, K, h, w)``, ``x`` and ``y`` are ``(B, K)`` long; returns
    ``(B, K, 2r+1, 2r+1)`` indexed ``[dy, dx]``.
    """
    h, w = maps.shape[-2:]
    offsets = torch.arange(-radius, radius + 1, device=maps.device)
    px = x[..., None, None] + offsets  # (B, K, 1, n)
    py = y[..., None, None] + offsets[:, None]  # (B, K, n, 1)
    inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
    index = py.clamp(0, h - 1) * w + px.clamp(0, w - 1)
    patch = maps.flatten(2).gather(2, index.flatten(2)).view(index.shape)
    return torch.where(inside & patch.isfinite(), patch, torch.zeros_like(patch))


def _blur_kernel(size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Normalised 1-D Gaussian of ``size`` taps with OpenCV's default sigma for that size."""
    sigma = 0.3 * ((size - 1) * 0.5 - 1.0) + 0.8
    taps = _gaussian(torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2, sigma)
    return taps / taps.sum()


def _axis_kernel(kernel: Tensor, reach: Tensor) -> Tensor:
    """The smoothing taps cut to ``reach`` px from their centre and renormalised.

    ``kernel`` is the 1-D taps, ``reach`` ``(B, K)`` long; returns ``(B, K, len(kernel))``.
    """
    radius = kernel.numel() // 2
    distance = torch.arange(-radius, radius + 1, device=kernel.device).abs()
    taps = torch.where(distance <= reach[..., None], kernel, torch.zeros_like(kernel))
    return taps / taps.sum(-1, keepdim=True)


def _dark_step(maps: Tensor, centre: Tensor, kernel: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """DARK's Newton step ``-H^-1 g`` on the log of the smoothed map at integer ``centre``.

    ``maps`` is ``(B, K, h, w)``, ``centre`` ``(B, K, 2)`` long ``(x, y)``, ``kernel`` the
    1-D smoothing taps (their dtype is the working dtype). Gradient and Hessian are central
    differences on the smoothed 3 x 3 block around ``centre``; an axis without both
    neighbours in the map is held fixed. Along each axis the smoothing reaches at most as
    far beyond the 3-pixel stencil as the map goes on the nearer side, so it never reads
    outside the map. The step is taken only where the Hessian is negative definite and the
    step is finite and no longer, on each axis, than the data the expansion used (the
    stencil and the smoothing's reach): a longer one extrapolates a nearly flat fit.

    Returns:
        ``(step, ok, axes)``: ``(B, K, 2)`` offsets ``(dx, dy)``, zero where not ``ok``;
        ``(B, K)`` ``ok``; ``(B, K, 2)`` ``axes``, the axes that could be refined.
    """
    h, w = maps.shape[-2:]
    x, y = centre.unbind(-1)
    taps = kernel.numel()
    reach = torch.stack(
        (torch.minimum(x - 1, w - 2 - x), torch.minimum(y - 1, h - 2 - y)), dim=-1
    ).clamp(0, taps // 2)
    patch = _neighbourhood(maps, x, y, 1 + taps // 2).to(kernel.dtype)  # [dy, dx]
    kx = _axis_kernel(kernel, reach[..., 0])[..., None, :, None]  # (B, K, 1, taps, 1)
    ky = _axis_kernel(kernel, reach[..., 1])[..., None, :, None]
    rows = (patch.unfold(-1, taps, 1) @ kx).squeeze(-1)  # (B, K, n, 3): smoothed along x
    block = (rows.transpose(-1, -2).unfold(-1, taps, 1) @ ky).squeeze(-1)  # (B, K, 3, 3) [x, y]
    log = block.clamp_min(_LOG_EPS).log()
    interior_x = (x > 0) & (x < w - 1)
    interior_y = (y > 0) & (y < h - 1)
    mid = log[..., 1, 1]
    gx = 0.5 * (log[..., 2, 1] - log[..., 0, 1]) * interior_x
    gy = 0.5 * (log[..., 1, 2] - log[..., 1, 0]) * interior_y
    hxx = torch.where(interior_x, log[..., 2, 1] - 2 * mid + log[..., 0, 1], -1.0)
    hyy = torch.where(interior_y, log[..., 1, 2] - 2 * mid + log[..., 1, 0], -1.0)
    hxy = 0.25 * (log[..., 2, 2] - log[..., 2, 0] - log[..., 0, 2] + log[..., 0, 0])
    hxy = hxy * (interior_x & interior_y)
    det = hxx * hyy - hxy * hxy
    step = torch.stack((hyy * gx - hxy * gy, hxx * gy - hxy * gx), dim=-1) / -det[..., None]
    ok = (hxx < 0) & (det > 0) & (step.abs() <= 1 + reach).all(-1)  # NaN fails the bound
    axes = torch.stack((interior_x, interior_y), dim=-1)
    return torch.where(ok[..., None], step, torch.zeros_like(step)), ok, axes


def decode_heatmaps(
    heatmaps: Tensor,
    *,
    refine: Literal["dark", "quarter", "none"] = "dark",
    blur_kernel: int = 11,
) -> tuple[Tensor, Tensor]:
    """Locate the peak of each heatmap, with sub-pixel refinement.

    The integer argmax is refined by one of:

    - ``"dark"`` (DARK, Zhang et al., CVPR 2020): smooth the map with a Gaussian of
      ``blur_kernel`` taps (sigma by OpenCV's rule, 2.0 for 11 taps), take its log and move
      to the maximum of its second-order Taylor expansion at the argmax: the Newton step
      ``-H^-1 g`` with gradient and Hessian by central differences. Exact for a Gaussian
      heatmap. A second Newton step is taken from the pixel nearest the first estimate,
      where the expansion is more accurate: when a noise spike near the peak wins the
      argmax, the first step lands short of the peak (a sigma-2 Gaussian at ``x = 20``
      with a spike of 1.5 at ``x = 22``: argmax 22, one step 20.24, two steps 20.17). Only
      the pixels around those points are smoothed, so the cost does not grow with the map
      size.
    - ``"quarter"`` (SimpleBaseline): shift 0.25 px towards the higher neighbour on each
      axis.
    - ``"none"``: the integer argmax.

    An axis is refined only where the argmax has a neighbour on both sides. A DARK step is
    taken only where the smoothed log-map is locally concave (negative definite Hessian),
    the step is finite and, on each axis, no longer than the data the expansion used (the
    3-pixel stencil plus the smoothing's reach: 6 px for 11 taps, 1 px next to the edge),
    and the second step only where it refines the same axes as the first; otherwise the
    previous estimate stays. The result is kept on the map (``[0, w - 1] x [0, h - 1]``).
    Near the edge the smoothing shrinks so that it never reads outside the map: its taps
    reach at most as far beyond the derivative stencil as the map goes on the nearer side
    (no smoothing at 1 px from the edge). A clean Gaussian therefore decodes exactly up to
    1 px from the edge, where zero padding would pull the estimate inwards (at a truth of
    0.8 px: 1.46 with zero padding, against the argmax's 1).

    Vectorised over ``B`` and ``K`` with no host-device synchronisation. A joint whose map
    holds a NaN or an infinity (or whose sum overflows) gets score 0 and a finite but
    meaningless position (that of a NaN or of the maximum, refined with non-finite
    values read as 0), so it never poisons a loss and filters can drop it.

    Args:
        heatmaps: ``(B, K, h, w)`` floating.
        refine: ``"dark"``, ``"quarter"`` or ``"none"``.
        blur_kernel: odd number of taps of the DARK smoothing (1 disables it). Use 11 for
            sigma 2 and 17 for sigma 3 (DARK's settings).

    Returns:
        ``(coords, scores)``: ``(B, K, 2)`` peak positions ``(x, y)`` in heatmap pixels, in
        float32 at least (``promote_types(dtype, float32)``: half precision holds only
        half-pixel steps above 64 px), and ``(B, K)`` peak values of the input map in its
        dtype; both on the device of ``heatmaps``.

    Raises:
        ValueError: on a bad shape or dtype, an empty map (``h`` or ``w`` is 0), an unknown
            ``refine`` or an even or non-positive ``blur_kernel``.

    Example:
        >>> import torch
        >>> hm, _ = render_heatmaps(torch.tensor([[[20.3, 30.6]]]), torch.ones(1, 1), (64, 48),
        ...                         unbiased=True)
        >>> coords, scores = decode_heatmaps(hm)
        >>> coords.sub(torch.tensor([20.3, 30.6])).abs().max() < 0.01
        tensor(True)
        >>> decode_heatmaps(hm, refine="quarter")[0]
        tensor([[[20.2500, 30.7500]]])
    """
    check_shape("heatmaps", heatmaps, (None, None, None, None))
    if not heatmaps.is_floating_point():
        raise ValueError(f"heatmaps must be floating, got {heatmaps.dtype}")
    if refine not in ("dark", "quarter", "none"):
        raise ValueError(f"refine must be 'dark', 'quarter' or 'none', got {refine!r}")
    if not isinstance(blur_kernel, int) or blur_kernel < 1 or blur_kernel % 2 != 1:
        raise ValueError(f"blur_kernel must be a positive odd integer, got {blur_kernel!r}")
    h, w = heatmaps.shape[-2:]
    if h == 0 or w == 0:
        raise ValueError(f"heatmaps must have h, w >= 1, got {tuple(heatmaps.shape)}")
    work = working_dtype(heatmaps.dtype)  # sums, logs and solves
    flat = heatmaps.flatten(2)
    finite = flat.sum(-1, dtype=work).isfinite()  # one pass; NaN, +-inf or overflow
    scores, index = flat.max(-1)
    scores = torch.where(finite, scores, torch.zeros_like(scores))
    x, y = index % w, index // w
    coords = torch.stack((x, y), dim=-1).to(work)
    if refine == "none":
        return coords, scores

    if refine == "quarter":
        patch = _neighbourhood(heatmaps, x, y, 1)
        diff = torch.stack(
            (patch[..., 1, 2] - patch[..., 1, 0], patch[..., 2, 1] - patch[..., 0, 1]), -1
        )
        interior = torch.stack(((x > 0) & (x < w - 1), (y > 0) & (y < h - 1)), dim=-1)
        return coords + 0.25 * torch.sign(diff).to(work) * interior, scores

    kernel = _blur_kernel(blur_kernel, work, heatmaps.device)
    argmax = torch.stack((x, y), dim=-1)
    step, ok, axes = _dark_step(heatmaps, argmax, kernel)
    estimate = torch.where(ok[..., None], argmax + step, argmax.to(work))
    nearest = torch.floor(estimate + 0.5).long()
    step, ok, same_axes = _dark_step(heatmaps, nearest, kernel)
    ok = ok & (same_axes == axes).all(-1)
    estimate = torch.where(ok[..., None], nearest + step, estimate)
    limit = torch.tensor([w - 1, h - 1], dtype=work, device=heatmaps.device)
    return torch.minimum(estimate.clamp_min(0), limit), scores


def flip_heatmaps(heatmaps: Tensor, flip_index: Sequence[int] | Tensor) -> Tensor:
    """Mirror heatmaps about their centre column (``x -> w - 1 - x``) and swap left and right.

    This is the flip of the heatmap's own pixel grid: a pure permutation of pixels, lossless
    and its own inverse, and the exact image flip when heatmap and image pixels coincide
    (stride 1). It is *not* the image flip at a stride: under the library's
    ``x_h = x / stride`` convention the image flip ``x -> W - 1 - x`` maps heatmap points by
    ``x_h -> (W - 1) / stride - x_h``, which is ``1 - 1 / stride`` px (0.75 px at stride 4)
    to the right of ``w - 1 - x_h`` when ``W = stride * w``. Use it to compare a map with
    the mirror-view map on the same grid
    (:func:`~posemum_aug.filters.flip_consistency_weights`, which states that offset). For
    targets and for the flip test (averaging with the prediction on the mirrored image),
    use the exact image flip: :func:`~posemum_aug.transforms.apply_pose_flip`, or
    :func:`warp_heatmaps` with :func:`~posemum_aug.keypoints.heatmap_matrix` of
    :func:`~posemum_aug.transforms.flip_matrix`, then the joints permuted by ``flip_index``.

    Args:
        heatmaps: ``(..., K, h, w)``.
        flip_index: ``K`` indices, e.g. ``Skeleton.flip_index``.

    Returns:
        ``(..., K, h, w)`` flipped maps, same dtype and device.

    Raises:
        ValueError: on a bad shape, or a ``flip_index`` that is not a permutation of the
            ``K`` joints that is its own inverse.

    Example:
        >>> import torch
        >>> hm = torch.arange(6.0).view(1, 2, 1, 3)
        >>> flip_heatmaps(hm, [1, 0])
        tensor([[[[5., 4., 3.]],
        <BLANKLINE>
                 [[2., 1., 0.]]]])
    """
    check_min_dims("heatmaps", heatmaps, 3)
    index = as_flip_index(flip_index, heatmaps.shape[-3], heatmaps.device)
    return heatmaps.flip(-1).index_select(-3, index)


def warp_heatmaps(heatmaps: Tensor, matrix: Tensor, size: tuple[int, int]) -> Tensor:
    """Move heatmaps to another view with the affine map between the views.

    ``matrix`` maps source heatmap pixels to destination heatmap pixels (pixel centres on
    integers); each destination pixel samples the source bilinearly at the inverse-mapped
    position, zero outside the source. This is the teacher-to-student step of SSHPE: pass
    :func:`~posemum_aug.keypoints.heatmap_matrix` of the image matrix. Uses kornia's
    ``warp_affine`` with ``align_corners=True``, which is exactly this pixel convention
    (and inverts the matrix in closed form, without a device sync).

    Args:
        heatmaps: ``(B, K, h, w)`` floating.
        matrix: ``(B, 2, 3)`` or ``(B, 3, 3)`` (last row assumed ``(0, 0, 1)``).
        size: destination size ``(h', w')``.

    Returns:
        ``(B, K, h', w')``, dtype and device of ``heatmaps``.

    Raises:
        ValueError: on bad shapes or a bad size.

    Example:
        >>> import torch
        >>> hm = torch.zeros(1, 1, 3, 4)
        >>> hm[0, 0, 1, 1] = 1.0
        >>> shift = torch.tensor([[[1.0, 0.0, 1.5], [0.0, 1.0, 0.0]]])
        >>> warp_heatmaps(hm, shift, (3, 4))[0, 0, 1]
        tensor([0.0000, 0.0000, 0.5000, 0.5000])
    """
    check_shape("heatmaps", heatmaps, (None, None, None, None))
    if not heatmaps.is_floating_point():
        raise ValueError(f"heatmaps must be floating, got {heatmaps.dtype}")
    check_affine_matrix(matrix, heatmaps.shape[0])
    size = check_pair("size", size)
    work = working_dtype(heatmaps.dtype)  # half-precision grids land up to a pixel off
    m = matrix[:, :2].to(device=heatmaps.device, dtype=work)
    out = warp_affine(
        heatmaps.to(work), m, size, mode="bilinear", padding_mode="zeros", align_corners=True
    )
    return out.to(heatmaps.dtype)
