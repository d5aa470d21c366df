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

from posemum_aug._checks import check_affine_matrix, check_min_dims, check_pair, check_shape
from posemum_aug.keypoints import as_flip_index

__all__ = ["decode_heatmaps", "flip_heatmaps", "render_heatmaps", "warp_heatmaps"]

#: Floor applied before the logarithm in the DARK refinement (as in DARK).
_LOG_EPS = 1e-10


def _gaussian(d: Tensor, sigma: float) -> Tensor:
    """Unnormalised 1-D Gaussian ``exp(-d^2 / (2 sigma^2))``, peak 1 at ``d = 0``."""
    return torch.exp(d.square() / (-2.0 * sigma * sigma))


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
    finite and its window covers at least one pixel of the map; otherwise weight 0 and an
    all-zero heatmap.

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

    def axis(c: Tensor, n: int) -> tuple[Tensor, Tensor]:
        d = torch.arange(n, dtype=keypoints.dtype, device=keypoints.device) - c[..., None]
        inside = d.abs() <= radius
        return torch.where(inside, _gaussian(d, sigma), torch.zeros_like(d)), inside.any(-1)

    gx, hit_x = axis(centre[..., 0], width)
    gy, hit_y = axis(centre[..., 1], height)
    weights = ((visibility > 0) & finite & hit_x & hit_y).to(keypoints.dtype)
    heatmaps = (gy * weights[..., None])[..., :, None] * gx[..., None, :]
    return heatmaps, weights


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


def _dark_offset(patch: Tensor, kernel: Tensor, interior_x: Tensor, interior_y: Tensor) -> Tensor:
    """Newton step ``-H^-1 g`` on the log of the blurred 3 x 3 centre of ``patch``.

    ``patch`` is ``(B, K, n, n)`` with ``n = len(kernel) + 2``. Derivatives use central
    differences on the 3 x 3 block; an axis without both neighbours in the map is held
    fixed. Steps where the Hessian is not negative definite are zero, others are clamped
    to one pixel. Returns ``(B, K, 2)`` offsets ``(dx, dy)``.
    """
    rows = patch.unfold(-1, kernel.numel(), 1) @ kernel  # (B, K, n, 3): blurred along x
    block = rows.transpose(-1, -2).unfold(-1, kernel.numel(), 1) @ kernel  # (B, K, 3, 3) [x, y]
    log = block.clamp_min(_LOG_EPS).log()
    centre = log[..., 1, 1]
    gx = 0.5 * (log[..., 2, 1] - log[..., 0, 1]) * interior_x
    gy = 0.5 * (log[..., 1, 2] - log[..., 1, 0]) * interior_y
    hxx = torch.where(interior_x, log[..., 2, 1] - 2 * centre + log[..., 0, 1], -1.0)
    hyy = torch.where(interior_y, log[..., 1, 2] - 2 * centre + log[..., 1, 0], -1.0)
    hxy = 0.25 * (log[..., 2, 2] - log[..., 2, 0] - log[..., 0, 2] + log[..., 0, 0])
    hxy = hxy * (interior_x & interior_y)
    det = hxx * hyy - hxy * hxy
    step = torch.stack((hyy * gx - hxy * gy, hxx * gy - hxy * gx), dim=-1) / -det[..., None]
    ok = (hxx < 0) & (det > 0) & torch.isfinite(step).all(-1)
    return torch.where(ok[..., None], step.clamp(-1.0, 1.0), torch.zeros_like(step))


def decode_heatmaps(
    heatmaps: Tensor,
    *,
    refine: Literal["dark", "quarter", "none"] = "dark",
    blur_kernel: int = 11,
) -> tuple[Tensor, Tensor]:
    """Locate the peak of each heatmap, with sub-pixel refinement.

    The integer argmax is refined by one of:

    - ``"dark"`` (DARK, Zhang et al., CVPR 2020): smooth the map with a Gaussian of
      ``blur_kernel`` taps (sigma by OpenCV's rule, 2.0 for 11 taps; zero padding), take
      its log and move to the maximum of the second-order Taylor expansion at the argmax.
      Exact for a Gaussian heatmap. Only the pixels around the argmax are smoothed, so
      the cost does not grow with the map size.
    - ``"quarter"`` (SimpleBaseline): shift 0.25 px towards the higher neighbour on each
      axis.
    - ``"none"``: the integer argmax.

    An axis is refined only where the argmax has a neighbour on both sides; the DARK step
    is skipped where the log-map is not locally concave and is clamped to 1 px. Within
    ``blur_kernel // 2 + 1`` px of the edge the smoothing's zero padding pulls the DARK
    estimate inwards (for sigma 2 and 11 taps: about 0.05 px at 3 px from the edge, 0.2 px
    at 2 px); clean Gaussian maps decode exactly with ``blur_kernel=1``.

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
        ``(coords, scores)``: ``(B, K, 2)`` peak positions ``(x, y)`` in heatmap pixels and
        ``(B, K)`` peak values of the input map, dtype and device of ``heatmaps``.

    Raises:
        ValueError: on a bad shape or dtype, an unknown ``refine`` or an even or
            non-positive ``blur_kernel``.

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
    work = torch.promote_types(heatmaps.dtype, torch.float32)  # sums, logs and solves
    flat = heatmaps.flatten(2)
    finite = flat.sum(-1, dtype=work).isfinite()  # one pass; NaN, +-inf or overflow
    scores, index = flat.max(-1)
    scores = torch.where(finite, scores, torch.zeros_like(scores))
    x, y = index % w, index // w
    coords = torch.stack((x, y), dim=-1).to(heatmaps.dtype)
    if refine == "none":
        return coords, scores

    interior_x = (x > 0) & (x < w - 1)
    interior_y = (y > 0) & (y < h - 1)
    if refine == "quarter":
        patch = _neighbourhood(heatmaps, x, y, 1)
        diff = torch.stack(
            (patch[..., 1, 2] - patch[..., 1, 0], patch[..., 2, 1] - patch[..., 0, 1]), -1
        )
        interior = torch.stack((interior_x, interior_y), dim=-1)
        offset = 0.25 * torch.sign(diff) * interior
    else:
        patch = _neighbourhood(heatmaps, x, y, 1 + blur_kernel // 2).to(work)
        kernel = _blur_kernel(blur_kernel, work, heatmaps.device)
        offset = _dark_offset(patch, kernel, interior_x, interior_y)
    return (coords + offset).to(heatmaps.dtype), scores


def flip_heatmaps(heatmaps: Tensor, flip_index: Sequence[int] | Tensor) -> Tensor:
    """Flip heatmaps horizontally (``x -> w - 1 - x``) and swap left and right joints.

    This flips about the heatmap's own centre. Under the ``x_h = x / stride`` convention
    the image flip ``x -> W - 1 - x`` lands at ``x_h -> (W - 1) / stride - x_h``, which is
    ``1 - 1 / stride`` px away from ``w - 1 - x_h`` when ``W = stride * w`` (SimpleBaseline
    shifts flipped maps by one pixel to compensate). For the exact image flip, warp with
    :func:`warp_heatmaps` and :func:`~posemum_aug.keypoints.heatmap_matrix` of the
    image's flip matrix.

    Args:
        heatmaps: ``(..., K, h, w)``.
        flip_index: ``K`` indices, e.g. ``Skeleton.flip_index``.

    Returns:
        ``(..., K, h, w)`` flipped maps, same dtype and device.

    Raises:
        ValueError: on a bad shape or ``flip_index``.

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
    m = matrix[:, :2].to(device=heatmaps.device, dtype=heatmaps.dtype)
    return warp_affine(heatmaps, m, size, mode="bilinear", padding_mode="zeros", align_corners=True)
