"""Pseudo-label filters: per-joint weights for a teacher's heatmaps.

Every filter returns fixed-shape per-joint weights ``(B, K)`` in ``[0, 1]``, with the
heatmaps' dtype and device, to multiply into a joint-weighted heatmap loss; filters compose
by multiplying their weights. Nothing is dropped and no shape changes, so a filtered batch
still compiles to the same graph. A joint whose heatmap holds any NaN or inf gets weight 0,
never an error and never a NaN.

SSHPE trains on the soft teacher heatmaps with no filter, which is the default of the
library; SSPCM keeps the joints whose peak reaches 0.1 (:func:`confidence_weights`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from posemum_aug._checks import check_probability, check_shape, working_dtype
from posemum_aug.heatmap import decode_heatmaps, flip_heatmaps, render_heatmaps

__all__ = ["confidence_weights", "flip_consistency_weights", "hard_targets"]

Refine = Literal["dark", "quarter", "none"]


def _check_heatmaps(name: str, heatmaps: Tensor) -> None:
    """Raise ``ValueError`` unless ``heatmaps`` is a non-empty floating ``(B, K, h, w)``."""
    check_shape(name, heatmaps, (None, None, None, None))
    if not heatmaps.is_floating_point():
        raise ValueError(f"{name} must be floating point, got dtype {heatmaps.dtype}")
    if heatmaps.shape[-2] == 0 or heatmaps.shape[-1] == 0:
        raise ValueError(f"{name} must have h, w >= 1, got shape {tuple(heatmaps.shape)}")


def _finite_joints(heatmaps: Tensor) -> Tensor:
    """``(B, K)`` bool: ``True`` where the joint's whole heatmap is finite."""
    return torch.isfinite(heatmaps).flatten(2).all(dim=-1)


def confidence_weights(
    heatmaps: Tensor,
    threshold: float = 0.1,
    *,
    mode: Literal["absolute", "percentile"] = "absolute",
) -> Tensor:
    """Keep the joints whose heatmap peak is high enough.

    - ``mode="absolute"``: keep a joint when its peak value is at least ``threshold``
      (SSPCM: 0.1).
    - ``mode="percentile"``: ``threshold`` is a quantile ``q`` in ``[0, 1]`` (not a
      percentage); keep a joint when its peak is at least the ``q``-quantile (linear
      interpolation) of the same joint's peaks across the batch. ``q = 0`` keeps every
      finite joint, ``q = 1`` only the highest of each joint, ``q = 0.25`` about the top
      three quarters. Joints with non-finite heatmaps take no part in the quantile. An
      empty batch (``B = 0``) has no quantile and gives empty weights ``(0, K)``.

    Raising ``threshold`` never adds a joint.

    Args:
        heatmaps: Teacher heatmaps ``(B, K, h, w)``, floating point.
        threshold: The peak value (``"absolute"``) or quantile (``"percentile"``) to reach.
        mode: ``"absolute"`` or ``"percentile"``.

    Returns:
        ``(B, K)`` weights in ``{0, 1}``, dtype and device of ``heatmaps``.

    Raises:
        ValueError: If ``heatmaps`` is not a floating ``(B, K, h, w)`` tensor, ``mode`` is
            unknown, an absolute ``threshold`` is NaN or a percentile one is outside
            ``[0, 1]``.

    Example:
        >>> import torch
        >>> heatmaps = torch.zeros(2, 2, 4, 4)
        >>> heatmaps[0, 0, 1, 1], heatmaps[1, 0, 2, 2], heatmaps[1, 1, 0, 0] = 0.9, 0.3, 0.05
        >>> heatmaps[0, 1, 3, 3] = float("nan")
        >>> confidence_weights(heatmaps, 0.1)
        tensor([[1., 0.],
                [1., 0.]])
        >>> confidence_weights(heatmaps, 0.5, mode="percentile")
        tensor([[1., 0.],
                [0., 1.]])
    """
    _check_heatmaps("heatmaps", heatmaps)
    finite = _finite_joints(heatmaps)
    peaks = heatmaps.amax(dim=(-2, -1))
    if mode == "absolute":
        if math.isnan(threshold):
            raise ValueError(f"threshold must be a number, got {threshold!r}")
        keep = peaks >= threshold
    elif mode == "percentile":
        check_probability("threshold", threshold)
        work = working_dtype(heatmaps.dtype)  # quantile needs >= fp32
        peaks = peaks.to(work).masked_fill(~finite, float("nan"))
        if peaks.numel() == 0:  # no sample or no joint: nothing to rank
            return heatmaps.new_zeros(peaks.shape)
        cut = torch.nanquantile(peaks, threshold, dim=0, keepdim=True)
        keep = peaks >= cut
    else:
        raise ValueError(f"mode must be 'absolute' or 'percentile', got {mode!r}")
    return (keep & finite).to(heatmaps.dtype)


def flip_consistency_weights(
    heatmaps: Tensor,
    flipped_heatmaps: Tensor,
    flip_index: Sequence[int] | Tensor,
    max_distance: float = 2.0,
    *,
    stride: float = 1.0,
    refine: Refine = "dark",
) -> Tensor:
    """Keep the joints the teacher places alike on an image and on its mirror image.

    ``flipped_heatmaps`` is the teacher's output on the horizontally flipped input. Its
    decoded peaks are taken back through the image flip: joints swap by ``flip_index``
    and ``x -> W - 1 - x`` in image pixels, which is ``x_h -> w - 1 / stride - x_h`` in
    heatmap pixels (:func:`~posemum_aug.keypoints.heatmap_matrix`'s convention), the same
    mapping :func:`~posemum_aug.transforms.apply_pose_flip` applies to keypoints and
    heatmaps. A joint is kept when the two peaks lie within ``max_distance`` heatmap
    pixels, so a perfectly consistent teacher is at distance 0 at every stride.

    Args:
        heatmaps: Teacher heatmaps ``(B, K, h, w)`` on the original images.
        flipped_heatmaps: Teacher heatmaps ``(B, K, h, w)`` on the flipped images.
        flip_index: The skeleton's joint permutation, of length ``K``.
        max_distance: Largest distance between the two peaks, in heatmap pixels, ``>= 0``.
        stride: Image pixels per heatmap pixel (4 for SimpleBaseline / HRNet), ``> 0``.
        refine: Sub-pixel refinement of the peaks (:func:`~posemum_aug.heatmap.decode_heatmaps`).

    Returns:
        ``(B, K)`` weights in ``{0, 1}``, dtype and device of ``heatmaps``.

    Raises:
        ValueError: If the heatmaps' shapes differ or are not floating ``(B, K, h, w)``,
            ``flip_index`` does not fit ``K``, ``max_distance`` is negative or ``stride``
            is not positive.

    Example:
        >>> import torch
        >>> from posemum_aug.heatmap import flip_heatmaps, render_heatmaps
        >>> keypoints = torch.tensor([[[10.0, 20.0], [30.0, 20.0]]])
        >>> heatmaps, _ = render_heatmaps(keypoints, torch.ones(1, 2), (64, 48))
        >>> mirrored = flip_heatmaps(heatmaps, [1, 0])
        >>> mirrored[0, 1] = mirrored[0, 1].roll(5, dims=-1)  # joint 0, mirrored, moves
        >>> flip_consistency_weights(heatmaps, mirrored, [1, 0])
        tensor([[0., 1.]])
    """
    _check_heatmaps("heatmaps", heatmaps)
    check_shape("flipped_heatmaps", flipped_heatmaps, heatmaps.shape)
    if not max_distance >= 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance!r}")
    if not 0.0 < float(stride) < float("inf"):
        raise ValueError(f"stride must be positive and finite, got {stride!r}")
    # The pixel mirror (x_h -> w - 1 - x_h) is exact on the grid; the image flip lies
    # 1 - 1 / stride further right.
    flipped_back = flip_heatmaps(flipped_heatmaps, flip_index)
    coords, _ = decode_heatmaps(heatmaps, refine=refine)
    back, _ = decode_heatmaps(flipped_back, refine=refine)
    back[..., 0] += 1.0 - 1.0 / stride
    distance: Tensor = torch.linalg.vector_norm(coords - back, dim=-1)
    keep = (distance <= max_distance) & _finite_joints(heatmaps) & _finite_joints(flipped_back)
    return keep.to(heatmaps.dtype)


def hard_targets(
    heatmaps: Tensor,
    sigma: float = 2.0,
    *,
    threshold: float = 0.1,
    refine: Refine = "dark",
    unbiased: bool = False,
) -> tuple[Tensor, Tensor]:
    """Replace soft teacher heatmaps by Gaussians re-rendered at their decoded peaks.

    Each heatmap is decoded (:func:`~posemum_aug.heatmap.decode_heatmaps`) and a Gaussian of
    ``sigma`` is rendered at the peak (:func:`~posemum_aug.heatmap.render_heatmaps`), as for
    a ground-truth label. Joints whose peak is below ``threshold`` or whose heatmap is not
    finite get weight 0 and an all-zero target; raising ``threshold`` never adds a joint.

    Args:
        heatmaps: Teacher heatmaps ``(B, K, h, w)``, floating point.
        sigma: Standard deviation of the rendered Gaussians, in heatmap pixels.
        threshold: Smallest peak value for a joint to be kept.
        refine: Sub-pixel refinement of the peaks.
        unbiased: Render at the sub-pixel peak instead of its nearest pixel.

    Returns:
        ``(targets, weights)``: ``(B, K, h, w)`` heatmaps and ``(B, K)`` weights in
        ``{0, 1}``, dtype and device of ``heatmaps``.

    Raises:
        ValueError: If ``heatmaps`` is not a floating ``(B, K, h, w)`` tensor or ``sigma`` is
            not positive.

    Example:
        >>> import torch
        >>> soft = torch.zeros(1, 2, 8, 8)
        >>> soft[0, 0, 5, 2], soft[0, 1, 1, 1] = 0.6, 0.05
        >>> targets, weights = hard_targets(soft, sigma=1.0, refine="none")
        >>> weights, targets[0, 0, 5, 2], targets[0, 1].sum()
        (tensor([[1., 0.]]), tensor(1.), tensor(0.))
    """
    _check_heatmaps("heatmaps", heatmaps)
    coords, scores = decode_heatmaps(heatmaps, refine=refine)
    keep = (scores >= threshold) & _finite_joints(heatmaps)
    size = (heatmaps.shape[-2], heatmaps.shape[-1])
    targets, weights = render_heatmaps(coords, keep, size, sigma, unbiased=unbiased)
    return targets.to(heatmaps.dtype), weights.to(heatmaps.dtype)
