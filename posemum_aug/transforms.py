"""Batched, keypoint-aware pose augmentation: random affine, horizontal flip and Joint Cutout.

Every transform follows one pattern (as torchvision's transforms v2): a ``sample_*`` function
draws the random parameters once, as explicit tensors, and an ``apply_*`` function applies them
to the images, keypoints, visibility and heatmaps of a batch consistently. The modules
:class:`RandomPoseAffine`, :class:`RandomPoseFlip` and :class:`JointCutout` wrap the two and
return a :class:`PoseTransformResult` that carries the parameters, so any call can be replayed
exactly by passing them back as ``params=``.

Geometry follows the library conventions: sizes are ``(H, W)``; points are ``(x, y)`` in
pixels with pixel centres on integers; an affine matrix ``(B, 2, 3)`` maps source pixels to
output pixels. Heatmaps of stride ``s = H / h`` are warped with the same matrix expressed in
heatmap pixels (:func:`~posemum_aug.keypoints.heatmap_matrix`).

The two views of the SSHPE benchmark (Xie et al., ICCV 2021):

- easy view: ``RandomPoseAffine.easy_view()`` then ``RandomPoseFlip(skeleton.flip_index)``;
- hard view: ``JointCutout()`` on the normalised easy view (boxes around the teacher's peaks),
  then ``RandomPoseAffine.hard_view()``, whose matrix also warps the teacher's heatmaps into
  the hard view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch
from kornia.geometry.transform import get_rotation_matrix2d, warp_affine
from torch import Tensor, nn

from posemum_aug._checks import (
    check_flip_index,
    check_min_dims,
    check_non_negative_int,
    check_pair,
    check_positive_int,
    check_probability,
    check_shape,
    floating_dtype,
    working_dtype,
)
from posemum_aug.heatmap import warp_heatmaps
from posemum_aug.keypoints import (
    affine_keypoints,
    flip_keypoints,
    heatmap_matrix,
    visible_in_frame,
)

__all__ = [
    "JointCutout",
    "JointCutoutParams",
    "PoseTransformResult",
    "RandomPoseAffine",
    "RandomPoseFlip",
    "apply_joint_cutout",
    "apply_pose_affine",
    "apply_pose_flip",
    "compose_affine",
    "flip_matrix",
    "heatmap_stride",
    "joint_cutout_mask",
    "pose_affine_matrix",
    "sample_joint_cutout",
    "sample_pose_affine",
    "sample_pose_flip",
    "warp_images",
]

ParamsT = TypeVar("ParamsT")


@dataclass(frozen=True)
class PoseTransformResult(Generic[ParamsT]):
    """The output of a pose transform and the parameters that produced it.

    Attributes:
        image: Transformed images ``(B, C, H, W)``.
        keypoints: Transformed keypoints ``(B, K, 2)``, or ``None`` if none were given.
        visibility: Updated visibility ``(B, K)``, or ``None`` if none was given.
        heatmaps: Transformed heatmaps ``(B, K, h, w)``, or ``None`` if none were given.
        params: The parameters applied; pass them back as ``params=`` to replay the call.
    """

    image: Tensor
    keypoints: Tensor | None
    visibility: Tensor | None
    heatmaps: Tensor | None
    params: ParamsT


@dataclass(frozen=True)
class JointCutoutParams:
    """The boxes of one :func:`sample_joint_cutout` draw.

    A pixel ``(x, y)`` lies in box ``n`` of sample ``b`` when ``active[b, n]`` and both
    ``|x - centres[b, n, 0]|`` and ``|y - centres[b, n, 1]|`` are at most ``half_sizes[b, n]``.

    Attributes:
        centres: Box centres ``(B, N, 2)`` as ``(x, y)`` image pixels.
        half_sizes: Integer half side lengths ``(B, N)`` in pixels.
        active: ``(B, N)`` bool; ``False`` for the boxes of a sample without visible joints.
    """

    centres: Tensor
    half_sizes: Tensor
    active: Tensor


# ---------------------------------------------------------------------------------------------
# Affine matrices


def _affine_rows(name: str, matrix: Tensor) -> Tensor:
    """The top two rows ``(..., 2, 3)`` of a ``(..., 2, 3)`` or ``(..., 3, 3)`` affine matrix."""
    check_min_dims(name, matrix, 2)
    if matrix.shape[-1] != 3 or matrix.shape[-2] not in (2, 3):
        raise ValueError(
            f"{name} must have shape (..., 2, 3) or (..., 3, 3), got {tuple(matrix.shape)}"
        )
    return matrix[..., :2, :]


def compose_affine(first: Tensor, second: Tensor) -> Tensor:
    """The affine matrix that applies ``first``, then ``second``.

    Args:
        first: Affine matrices ``(..., 2, 3)`` or ``(..., 3, 3)``, applied first.
        second: Affine matrices ``(..., 2, 3)`` or ``(..., 3, 3)``, applied second; the
            leading dimensions broadcast against ``first``'s.

    Returns:
        The composed matrices ``(..., 2, 3)``, in the dtype both promote to
        (``torch.promote_types``), on ``first``'s device.

    Raises:
        ValueError: If a matrix does not have shape ``(..., 2, 3)`` or ``(..., 3, 3)``.

    Example:
        >>> import torch
        >>> shift = torch.tensor([[[1.0, 0.0, 5.0], [0.0, 1.0, 0.0]]])
        >>> double = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])
        >>> compose_affine(shift, double)
        tensor([[[ 2.,  0., 10.],
                 [ 0.,  2.,  0.]]])
    """
    a = _affine_rows("first", first)
    b = _affine_rows("second", second)
    dtype = torch.promote_types(a.dtype, b.dtype)
    a, b = a.to(dtype), b.to(device=a.device, dtype=dtype)
    linear = b[..., :2] @ a[..., :2]
    translation = b[..., :2] @ a[..., 2:] + b[..., 2:]
    return torch.cat([linear, translation], dim=-1)


def flip_matrix(width: int, flags: Tensor, *, dtype: torch.dtype | None = None) -> Tensor:
    """Horizontal flips ``x -> width - 1 - x`` as affine matrices, identity where not flagged.

    The matrix moves points only. Joint identities swap separately: a heatmap or keypoint
    mapped with a matrix that contains an odd number of flips must also be permuted by the
    skeleton's ``flip_index``.

    Args:
        width: Image width ``W`` in pixels.
        flags: ``(B,)`` bool, ``True`` for the samples to flip.
        dtype: Floating dtype of the result (default: the default dtype).

    Returns:
        Affine matrices ``(B, 2, 3)`` on ``flags``' device.

    Raises:
        ValueError: If ``width`` is not a positive integer or ``flags`` is not ``(B,)`` bool.

    Example:
        >>> import torch
        >>> flip_matrix(5, torch.tensor([True, False]))
        tensor([[[-1.,  0.,  4.],
                 [ 0.,  1.,  0.]],
        <BLANKLINE>
                [[ 1.,  0.,  0.],
                 [ 0.,  1.,  0.]]])
    """
    check_positive_int("width", width)
    _check_flags(flags, None)
    flipped = flags.to(dtype or torch.get_default_dtype())
    zero, one = torch.zeros_like(flipped), torch.ones_like(flipped)
    rows = [1 - 2 * flipped, zero, flipped * (width - 1), zero, one, zero]
    return torch.stack(rows, dim=-1).view(-1, 2, 3)


def pose_affine_matrix(magnification: Tensor, rotation: Tensor, size: Sequence[int]) -> Tensor:
    """Scale-and-rotate matrices about the image centre ``((W - 1) / 2, (H - 1) / 2)``.

    Args:
        magnification: ``(B,)`` factors by which the content grows (``> 1`` zooms in).
        rotation: ``(B,)`` angles in degrees; positive turns the content counter-clockwise
            as displayed (y axis pointing down).
        size: Image size ``(H, W)``; output and source share it.

    Returns:
        Affine matrices ``(B, 2, 3)`` mapping source pixels to output pixels, on
        ``magnification``'s device, in its dtype if it is floating, else in ``rotation``'s
        if that is floating, else in the default dtype (integer inputs are promoted, never
        truncated).

    Raises:
        ValueError: If ``magnification`` and ``rotation`` are not matching ``(B,)`` tensors or
            ``size`` is not a pair of positive integers.

    Example:
        >>> import torch
        >>> m = pose_affine_matrix(torch.tensor([2.0]), torch.tensor([0.0]), (5, 7))
        >>> m
        tensor([[[ 2.,  0., -3.],
                 [ 0.,  2., -2.]]])
    """
    height, width = check_pair("size", size)
    check_shape("magnification", magnification, (None,))
    check_shape("rotation", rotation, magnification.shape)
    dtype = floating_dtype(magnification, rotation)
    magnification = magnification.to(dtype)
    centre = magnification.new_tensor([(width - 1) / 2, (height - 1) / 2])
    batch = magnification.shape[0]
    scale = magnification[:, None].expand(batch, 2)
    return get_rotation_matrix2d(centre.expand(batch, 2), rotation.to(magnification), scale)


# ---------------------------------------------------------------------------------------------
# Sampling


def _check_affine_distribution(
    scale_sigma: float,
    scale_range: tuple[float, float],
    rotation_sigma: float,
    rotation_limit: float,
    rotation_p: float,
) -> None:
    """Raise ``ValueError`` unless the affine distribution's parameters are valid."""
    if not scale_sigma >= 0:
        raise ValueError(f"scale_sigma must be >= 0, got {scale_sigma!r}")
    if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
        raise ValueError(
            f"scale_range must be (low, high) with 0 < low <= high, got {scale_range!r}"
        )
    if not rotation_sigma >= 0:
        raise ValueError(f"rotation_sigma must be >= 0, got {rotation_sigma!r}")
    if not rotation_limit >= 0:
        raise ValueError(f"rotation_limit must be >= 0, got {rotation_limit!r}")
    check_probability("rotation_p", rotation_p)


def sample_pose_affine(
    batch_size: int,
    size: Sequence[int],
    *,
    scale_sigma: float = 0.25,
    scale_range: tuple[float, float] = (0.75, 1.25),
    rotation_sigma: float = 30.0,
    rotation_limit: float = 60.0,
    rotation_p: float = 0.6,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Sample the random scale-and-rotation of the SSHPE views, as affine matrices.

    Per sample, as SSHPE (the HRNet recipe): a crop scale ``s = clip(N(1, scale_sigma),
    *scale_range)``, which magnifies the content by ``1 / s``; with probability
    ``rotation_p`` a rotation ``clip(N(0, rotation_sigma), -rotation_limit, rotation_limit)``
    degrees, else none. Both act about the image centre. The defaults are the easy view;
    the hard view uses ``rotation_p=0.8``. Draws are made on the CPU (``generator`` must be a
    CPU generator), so the matrices are the same on every device.

    Args:
        batch_size: Number of matrices ``B`` (0 gives an empty batch).
        size: Image size ``(H, W)``.
        scale_sigma: Standard deviation of the crop scale.
        scale_range: ``(low, high)`` clip of the crop scale, ``0 < low <= high``.
        rotation_sigma: Standard deviation of the rotation, in degrees.
        rotation_limit: Clip of the rotation's magnitude, in degrees.
        rotation_p: Probability that a sample is rotated.
        generator: CPU random generator, or ``None`` for the global one.
        device: Device of the result.
        dtype: Floating dtype of the result (default: the default dtype).

    Returns:
        Affine matrices ``(B, 2, 3)`` mapping source pixels to output pixels.

    Raises:
        ValueError: If ``batch_size`` is negative, ``size`` is not positive or a
            distribution parameter is out of range.

    Example:
        >>> import torch
        >>> m = sample_pose_affine(4, (256, 192), generator=torch.Generator().manual_seed(0))
        >>> m.shape
        torch.Size([4, 2, 3])
        >>> centre = torch.tensor([[95.5, 127.5]]).expand(4, 2)
        >>> torch.allclose(m[..., :2] @ centre[..., None] + m[..., 2:], centre[..., None])
        True
    """
    check_non_negative_int("batch_size", batch_size)
    check_pair("size", size)
    _check_affine_distribution(scale_sigma, scale_range, rotation_sigma, rotation_limit, rotation_p)
    f64 = torch.float64
    scale = 1 + scale_sigma * torch.randn(batch_size, generator=generator, dtype=f64)
    angle = rotation_sigma * torch.randn(batch_size, generator=generator, dtype=f64)
    rotated = torch.rand(batch_size, generator=generator, dtype=f64) < rotation_p
    scale = scale.clamp(*scale_range)
    angle = angle.clamp(-rotation_limit, rotation_limit)
    angle = torch.where(rotated, angle, torch.zeros_like(angle))
    matrix = pose_affine_matrix(1 / scale, angle, size)
    return matrix.to(device=device, dtype=dtype or torch.get_default_dtype())


def sample_pose_flip(
    batch_size: int,
    p: float = 0.5,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Sample which samples of a batch to flip horizontally.

    Args:
        batch_size: Number of flags ``B`` (0 gives an empty batch).
        p: Probability that a sample is flipped.
        generator: CPU random generator, or ``None`` for the global one.
        device: Device of the result.

    Returns:
        ``(B,)`` bool flags.

    Raises:
        ValueError: If ``batch_size`` is negative or ``p`` is not a probability.

    Example:
        >>> import torch
        >>> sample_pose_flip(3, p=1.0)
        tensor([True, True, True])
    """
    check_non_negative_int("batch_size", batch_size)
    check_probability("p", p)
    return (torch.rand(batch_size, generator=generator) < p).to(device)


def _check_cutout_distribution(
    num_joints: int, jitter: float, half_size: int | tuple[int, int]
) -> tuple[int, int]:
    """Validate Joint Cutout's parameters; return ``half_size`` as ``(low, high)``."""
    check_positive_int("num_joints", num_joints)
    if not jitter >= 0:
        raise ValueError(f"jitter must be >= 0, got {jitter!r}")
    low, high = check_pair("half_size", half_size)
    if low > high:
        raise ValueError(f"half_size must be (low, high) with low <= high, got {half_size!r}")
    return low, high


def sample_joint_cutout(
    keypoints: Tensor,
    visibility: Tensor | None = None,
    *,
    num_joints: int = 5,
    jitter: float = 10.0,
    half_size: int | tuple[int, int] = (10, 19),
    generator: torch.Generator | None = None,
) -> JointCutoutParams:
    """Sample SSHPE's Joint Cutout boxes around joints of each sample.

    Per sample, ``num_joints`` joints are picked uniformly with replacement among its
    visible ones (all of them when ``visibility`` is ``None``); each box is centred on the
    joint plus ``N(0, jitter)`` pixels per axis and has an integer half size drawn uniformly
    from ``half_size`` (both ends included). A sample without visible joints gets inactive
    boxes. SSHPE places the boxes on the teacher's peaks: decode its heatmaps and scale the
    coordinates to image pixels. Draws are made on the CPU; the selection runs on
    ``keypoints``' device without a host-device sync.

    Args:
        keypoints: Joint positions ``(B, K, 2)`` as ``(x, y)`` image pixels.
        visibility: ``(B, K)``; joints with ``visibility > 0`` may be picked.
        num_joints: Boxes per sample ``N``.
        jitter: Standard deviation of the centre's offset, in pixels.
        half_size: ``(low, high)`` range of the half side length, or one fixed value.
        generator: CPU random generator, or ``None`` for the global one.

    Returns:
        The boxes, on ``keypoints``' device; centres in ``keypoints``' dtype if it is
        floating, else in the default dtype (a jitter rounded to whole pixels would not be
        ``N(0, jitter)``).

    Raises:
        ValueError: If a shape or parameter is invalid.

    Example:
        >>> import torch
        >>> keypoints = torch.tensor([[[10.0, 20.0], [30.0, 40.0]]])
        >>> visibility = torch.tensor([[0.0, 1.0]])
        >>> params = sample_joint_cutout(keypoints, visibility, num_joints=3, jitter=0.0)
        >>> params.centres
        tensor([[[30., 40.],
                 [30., 40.],
                 [30., 40.]]])
    """
    low, high = _check_cutout_distribution(num_joints, jitter, half_size)
    check_shape("keypoints", keypoints, (None, None, 2))
    batch, joints = keypoints.shape[:2]
    if joints == 0:
        raise ValueError("keypoints must hold at least one joint, got K = 0")
    device = keypoints.device
    uniform = torch.rand(batch, num_joints, generator=generator, dtype=torch.float64)
    offset = torch.randn(batch, num_joints, 2, generator=generator, dtype=torch.float64)
    half_sizes = torch.randint(low, high + 1, (batch, num_joints), generator=generator)
    if visibility is None:
        candidates = torch.ones(batch, joints, dtype=torch.bool, device=device)
    else:
        check_shape("visibility", visibility, (batch, joints))
        candidates = visibility > 0
    cumulative = candidates.long().cumsum(dim=-1)
    counts = cumulative[:, -1:]
    # The rank-th candidate (0-based) is the first joint whose cumulative count exceeds rank.
    rank = (uniform.to(device) * counts).floor().long()
    index = torch.searchsorted(cumulative, rank + 1).clamp(max=joints - 1)
    picked = keypoints.gather(1, index[..., None].expand(batch, num_joints, 2))
    dtype = floating_dtype(keypoints)
    centres = picked.to(dtype) + jitter * offset.to(device=device, dtype=dtype)
    active = (counts > 0).expand(batch, num_joints)
    return JointCutoutParams(centres, half_sizes.to(device), active)


# ---------------------------------------------------------------------------------------------
# Applying parameters


def _check_pose_inputs(
    image: Tensor, keypoints: Tensor | None, visibility: Tensor | None, heatmaps: Tensor | None
) -> None:
    """Raise ``ValueError`` unless the inputs have matching batch and joint sizes."""
    check_shape("image", image, (None, None, None, None))
    batch = image.shape[0]
    joints: int | None = None
    if keypoints is not None:
        check_shape("keypoints", keypoints, (batch, None, 2))
        joints = keypoints.shape[1]
    if visibility is not None:
        if keypoints is None:
            raise ValueError("visibility was given without keypoints")
        check_shape("visibility", visibility, (batch, joints))
    if heatmaps is not None:
        check_shape("heatmaps", heatmaps, (batch, joints, None, None))


def _check_flags(flags: Tensor, batch: int | None) -> None:
    """Raise ``ValueError`` unless ``flags`` is a ``(B,)`` bool tensor."""
    check_shape("flags", flags, (batch,))
    if flags.dtype != torch.bool:
        raise ValueError(f"flags must be a bool tensor, got dtype {flags.dtype}")


def heatmap_stride(image: Tensor, heatmaps: Tensor) -> float:
    """Input pixels per heatmap pixel, ``H / h``; the same along both axes.

    Args:
        image: ``(..., H, W)`` images (e.g. a network's input ``(B, C, H, W)``).
        heatmaps: ``(..., h, w)`` heatmaps of them (e.g. its output ``(B, K, h, w)``).

    Returns:
        The stride (4 for SimpleBaseline and HRNet).

    Raises:
        ValueError: if the heatmaps are empty or their aspect ratio differs from the
            images' (``H / h != W / w``).

    Example:
        >>> import torch
        >>> heatmap_stride(torch.zeros(1, 3, 128, 96), torch.zeros(1, 17, 32, 24))
        4.0
    """
    height, width = image.shape[-2:]
    h, w = heatmaps.shape[-2:]
    if h == 0 or w == 0 or height * w != width * h:
        raise ValueError(
            f"heatmaps {h}x{w} must have the image's {height}x{width} aspect ratio (one stride)"
        )
    return height / h


def warp_images(images: Tensor, matrix: Tensor, size: Sequence[int] | None = None) -> Tensor:
    """Warp images with affine matrices that map source pixels to output pixels.

    Bilinear, zeros outside the source, pixel centres on integers (kornia's ``warp_affine``
    with ``align_corners=True``).

    Args:
        images: Floating images ``(B, C, H, W)``.
        matrix: Affine matrices ``(B, 2, 3)`` or ``(B, 3, 3)``.
        size: Output size ``(H', W')`` (default: ``(H, W)``).

    Returns:
        Warped images ``(B, C, H', W')``, with ``images``' dtype and device.

    Raises:
        ValueError: If a shape is wrong or ``images`` is not floating point.

    Example:
        >>> import torch
        >>> images = torch.zeros(1, 1, 3, 4)
        >>> images[0, 0, 1, 0] = 1.0
        >>> shift = torch.tensor([[[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]]])
        >>> warp_images(images, shift)[0, 0].round(decimals=4)
        tensor([[0., 0., 0., 0.],
                [0., 0., 1., 0.],
                [0., 0., 0., 0.]])
    """
    check_shape("images", images, (None, None, None, None))
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point, got dtype {images.dtype}")
    rows = _affine_rows("matrix", matrix)
    check_shape("matrix", rows, (images.shape[0], 2, 3))
    out_size = tuple(images.shape[-2:]) if size is None else check_pair("size", size)
    work = working_dtype(images.dtype)  # half-precision grids land up to a pixel off
    rows = rows.to(device=images.device, dtype=work)
    out = warp_affine(images.to(work), rows, (out_size[0], out_size[1]), align_corners=True)
    return out.to(images.dtype)


def apply_pose_affine(
    image: Tensor,
    matrix: Tensor,
    keypoints: Tensor | None = None,
    visibility: Tensor | None = None,
    heatmaps: Tensor | None = None,
) -> PoseTransformResult[Tensor]:
    """Apply one affine matrix per sample to images, keypoints, visibility and heatmaps.

    Images are warped with :func:`warp_images` (output size = input size); keypoints with
    :func:`~posemum_aug.keypoints.affine_keypoints`, and the visibility of those that leave
    the frame drops to 0 (:func:`~posemum_aug.keypoints.visible_in_frame`); heatmaps with
    :func:`~posemum_aug.heatmap.warp_heatmaps` and the matrix expressed in heatmap pixels,
    their stride being ``H / h``.

    Args:
        image: Floating images ``(B, C, H, W)``.
        matrix: Affine matrices ``(B, 2, 3)`` or ``(B, 3, 3)``, source to output pixels.
        keypoints: ``(B, K, 2)`` as ``(x, y)`` image pixels.
        visibility: ``(B, K)``; needs ``keypoints``.
        heatmaps: ``(B, K, h, w)`` with ``H / h == W / w``.

    Returns:
        The transformed inputs (``None`` for those not given), ``params=matrix``.

    Raises:
        ValueError: If a shape is wrong, batch or joint sizes disagree, or the heatmaps'
            aspect ratio differs from the image's.

    Example:
        >>> import torch
        >>> image = torch.zeros(1, 1, 8, 8)
        >>> keypoints = torch.tensor([[[1.0, 2.0], [6.0, 2.0]]])
        >>> shift = torch.tensor([[[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]]])
        >>> out = apply_pose_affine(image, shift, keypoints, torch.ones(1, 2))
        >>> out.keypoints, out.visibility
        (tensor([[[3., 2.],
                 [8., 2.]]]), tensor([[1., 0.]]))
    """
    _check_pose_inputs(image, keypoints, visibility, heatmaps)
    out_image = warp_images(image, matrix)
    out_keypoints, out_visibility, out_heatmaps = keypoints, visibility, heatmaps
    if keypoints is not None:
        out_keypoints = affine_keypoints(keypoints, matrix)
        if visibility is not None:
            size = (image.shape[-2], image.shape[-1])
            out_visibility = visible_in_frame(out_keypoints, visibility, size)
    if heatmaps is not None:
        stride = heatmap_stride(image, heatmaps)
        size = (heatmaps.shape[-2], heatmaps.shape[-1])
        out_heatmaps = warp_heatmaps(heatmaps, heatmap_matrix(matrix, stride), size)
    return PoseTransformResult(out_image, out_keypoints, out_visibility, out_heatmaps, matrix)


def _where_flagged(flags: Tensor, flipped: Tensor, original: Tensor) -> Tensor:
    """``flipped`` for the flagged samples (first dimension), ``original`` for the others."""
    mask = flags.to(original.device).view(-1, *([1] * (original.dim() - 1)))
    return torch.where(mask, flipped, original)


def apply_pose_flip(
    image: Tensor,
    flags: Tensor,
    flip_index: Sequence[int],
    keypoints: Tensor | None = None,
    visibility: Tensor | None = None,
    heatmaps: Tensor | None = None,
) -> PoseTransformResult[Tensor]:
    """Flip the flagged samples horizontally, swapping left and right joints.

    Images flip along their width; keypoints map ``x -> W - 1 - x`` and, with visibility
    and heatmap channels, are permuted by ``flip_index``
    (:func:`~posemum_aug.keypoints.flip_keypoints`). Heatmaps of stride ``s = H / h`` move
    with the same image flip expressed in heatmap pixels,
    ``x_h -> (W - 1) / s - x_h`` (:func:`~posemum_aug.keypoints.heatmap_matrix` of
    :func:`flip_matrix`, warped bilinearly as in :func:`apply_pose_affine`), so a flipped
    target peaks where the flipped keypoint lands. At stride 1 this is the mirror
    ``x -> w - 1 - x``; at stride 4 it is the mirror shifted right by 0.75 px, which
    :func:`~posemum_aug.heatmap.flip_heatmaps` (the mirror alone) would miss. The shift
    resamples the maps: flipping twice returns images, keypoints and visibility exactly,
    and heatmaps smoothed along ``x`` by ``(f (1 - f), f^2 + (1 - f)^2, f (1 - f))`` with
    ``f = 1 - 1 / s`` (column 0 comes back dimmer: the first flip fills it from beyond the
    map's last column, which reads as 0).

    Args:
        image: Images ``(B, C, H, W)``, any dtype.
        flags: ``(B,)`` bool, ``True`` for the samples to flip.
        flip_index: The skeleton's joint permutation, of length ``K``.
        keypoints: ``(B, K, 2)`` as ``(x, y)`` image pixels.
        visibility: ``(B, K)``; needs ``keypoints``.
        heatmaps: Floating ``(B, K, h, w)`` with ``H / h == W / w``.

    Returns:
        The transformed inputs (``None`` for those not given), ``params=flags``.

    Raises:
        ValueError: If a shape is wrong, ``flags`` is not bool, the heatmaps are not
            floating or their aspect ratio differs from the image's, or ``flip_index`` is
            not a self-inverse permutation of the ``K`` joints.

    Example:
        >>> import torch
        >>> image = torch.arange(3.0).view(1, 1, 1, 3)
        >>> keypoints = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])
        >>> out = apply_pose_flip(image, torch.tensor([True]), [1, 0], keypoints)
        >>> out.image, out.keypoints
        (tensor([[[[2., 1., 0.]]]]), tensor([[[1., 0.],
                 [2., 0.]]]))
        >>> heatmaps = torch.zeros(1, 1, 1, 4)
        >>> heatmaps[..., 1] = 1.0  # image x = 4 at stride 4, flipped to x = 11: 2.75
        >>> apply_pose_flip(torch.zeros(1, 1, 4, 16), torch.tensor([True]), [0],
        ...                 heatmaps=heatmaps).heatmaps
        tensor([[[[0.0000, 0.0000, 0.2500, 0.7500]]]])
    """
    _check_pose_inputs(image, keypoints, visibility, heatmaps)
    _check_flags(flags, image.shape[0])
    source = keypoints if keypoints is not None else heatmaps
    index = check_flip_index(flip_index, None if source is None else source.shape[1])
    out_image = _where_flagged(flags, image.flip(-1), image)
    out_keypoints, out_visibility, out_heatmaps = keypoints, visibility, heatmaps
    if keypoints is not None:
        present = visibility if visibility is not None else keypoints.new_ones(keypoints.shape[:-1])
        flipped, flipped_visibility = flip_keypoints(keypoints, present, image.shape[-1], index)
        out_keypoints = _where_flagged(flags, flipped, keypoints)
        if visibility is not None:
            out_visibility = _where_flagged(flags, flipped_visibility, visibility)
    if heatmaps is not None:
        stride = heatmap_stride(image, heatmaps)
        work = working_dtype(heatmaps.dtype)  # W - 1 exact
        flips = flip_matrix(image.shape[-1], flags.to(heatmaps.device), dtype=work)
        size = (heatmaps.shape[-2], heatmaps.shape[-1])
        moved = warp_heatmaps(heatmaps, heatmap_matrix(flips, stride), size)
        order = torch.tensor(index, dtype=torch.long, device=heatmaps.device)
        swapped = moved.index_select(1, order)
        out_heatmaps = _where_flagged(flags, swapped, heatmaps)
    return PoseTransformResult(out_image, out_keypoints, out_visibility, out_heatmaps, flags)


def joint_cutout_mask(params: JointCutoutParams, size: Sequence[int]) -> Tensor:
    """Rasterise Joint Cutout boxes: the pixels that lie in any active box.

    Args:
        params: Boxes from :func:`sample_joint_cutout` (or built by hand), ``N`` per sample.
        size: Image size ``(H, W)``.

    Returns:
        ``(B, H, W)`` bool mask on the centres' device.

    Raises:
        ValueError: If the parameters' shapes disagree or ``size`` is not positive.

    Example:
        >>> import torch
        >>> params = JointCutoutParams(
        ...     torch.tensor([[[1.0, 1.0]]]), torch.tensor([[1]]), torch.tensor([[True]])
        ... )
        >>> joint_cutout_mask(params, (3, 4)).long()
        tensor([[[1, 1, 1, 0],
                 [1, 1, 1, 0],
                 [1, 1, 1, 0]]])
    """
    height, width = check_pair("size", size)
    check_shape("params.centres", params.centres, (None, None, 2))
    batch, boxes = params.centres.shape[:2]
    check_shape("params.half_sizes", params.half_sizes, (batch, boxes))
    check_shape("params.active", params.active, (batch, boxes))
    centres = params.centres
    coordinate_dtype = working_dtype(centres.dtype)
    centres = centres.to(coordinate_dtype)
    half = params.half_sizes.to(device=centres.device, dtype=coordinate_dtype)[..., None]
    xs = torch.arange(width, device=centres.device, dtype=coordinate_dtype)
    ys = torch.arange(height, device=centres.device, dtype=coordinate_dtype)
    inside_x = ((xs - centres[..., :1]).abs() <= half) & params.active.to(centres.device)[..., None]
    inside_y = (ys - centres[..., 1:]).abs() <= half
    return (inside_y[..., :, None] & inside_x[..., None, :]).any(dim=1)


def apply_joint_cutout(image: Tensor, params: JointCutoutParams) -> Tensor:
    """Set the pixels inside the Joint Cutout boxes to zero, in every channel.

    SSHPE zeroes the boxes after normalisation, so apply it to normalised images.

    Args:
        image: Images ``(B, C, H, W)``, any dtype.
        params: ``N`` boxes per sample, from :func:`sample_joint_cutout`.

    Returns:
        Images ``(B, C, H, W)`` with the boxes zeroed.

    Raises:
        ValueError: If a shape is wrong or batch sizes disagree.

    Example:
        >>> import torch
        >>> params = JointCutoutParams(
        ...     torch.tensor([[[0.0, 0.0]]]), torch.tensor([[1]]), torch.tensor([[True]])
        ... )
        >>> apply_joint_cutout(torch.ones(1, 1, 3, 3), params)[0, 0]
        tensor([[0., 0., 1.],
                [0., 0., 1.],
                [1., 1., 1.]])
    """
    check_shape("image", image, (None, None, None, None))
    check_shape("params.centres", params.centres, (image.shape[0], None, 2))
    mask = joint_cutout_mask(params, image.shape[-2:]).to(image.device)
    return image.masked_fill(mask[:, None], 0)


# ---------------------------------------------------------------------------------------------
# Modules


class RandomPoseAffine(nn.Module):
    """Random scale and rotation about the image centre, applied to a whole pose sample.

    Samples matrices with :func:`sample_pose_affine` and applies them with
    :func:`apply_pose_affine`. The defaults are SSHPE's easy view; :meth:`hard_view` gives
    its hard view (rotation probability 0.8).

    Args:
        scale_sigma: Standard deviation of the crop scale (content magnified by ``1 / s``).
        scale_range: ``(low, high)`` clip of the crop scale, ``0 < low <= high``.
        rotation_sigma: Standard deviation of the rotation, in degrees.
        rotation_limit: Clip of the rotation's magnitude, in degrees.
        rotation_p: Probability that a sample is rotated.
        generator: CPU random generator every call samples from (the library's rule:
            modules take it at construction, functions per call).

    Raises:
        ValueError: If a parameter is out of range.

    Example:
        >>> import torch
        >>> affine = RandomPoseAffine.hard_view(generator=torch.Generator().manual_seed(0))
        >>> image, keypoints = torch.rand(2, 3, 64, 48), 48 * torch.rand(2, 17, 2)
        >>> out = affine(image, keypoints)
        >>> replay = affine(image, keypoints, params=out.params)
        >>> torch.equal(replay.image, out.image), out.params.shape
        (True, torch.Size([2, 2, 3]))
    """

    def __init__(
        self,
        scale_sigma: float = 0.25,
        scale_range: tuple[float, float] = (0.75, 1.25),
        rotation_sigma: float = 30.0,
        rotation_limit: float = 60.0,
        rotation_p: float = 0.6,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        scale_range = (float(scale_range[0]), float(scale_range[1]))
        _check_affine_distribution(
            scale_sigma, scale_range, rotation_sigma, rotation_limit, rotation_p
        )
        self.scale_sigma = float(scale_sigma)
        self.scale_range = scale_range
        self.rotation_sigma = float(rotation_sigma)
        self.rotation_limit = float(rotation_limit)
        self.rotation_p = float(rotation_p)
        self.generator = generator

    @classmethod
    def easy_view(cls, *, generator: torch.Generator | None = None) -> RandomPoseAffine:
        """SSHPE's easy view: crop scale clip(N(1, 0.25), 0.75, 1.25); rotation clip(N(0, 30),
        -60, 60) degrees with probability 0.6."""
        return cls(generator=generator)

    @classmethod
    def hard_view(cls, *, generator: torch.Generator | None = None) -> RandomPoseAffine:
        """SSHPE's hard-view affine: as :meth:`easy_view` with rotation probability 0.8."""
        return cls(rotation_p=0.8, generator=generator)

    def extra_repr(self) -> str:
        return (
            f"scale_sigma={self.scale_sigma}, scale_range={self.scale_range}, "
            f"rotation_sigma={self.rotation_sigma}, rotation_limit={self.rotation_limit}, "
            f"rotation_p={self.rotation_p}"
        )

    def forward(
        self,
        image: Tensor,
        keypoints: Tensor | None = None,
        visibility: Tensor | None = None,
        heatmaps: Tensor | None = None,
        *,
        params: Tensor | None = None,
    ) -> PoseTransformResult[Tensor]:
        """Sample matrices (unless ``params`` is given) and apply them.

        Args:
            image: Floating images ``(B, C, H, W)``.
            keypoints: ``(B, K, 2)`` as ``(x, y)`` image pixels.
            visibility: ``(B, K)``; set to 0 for keypoints that leave the frame.
            heatmaps: ``(B, K, h, w)`` with ``H / h == W / w``.
            params: Matrices ``(B, 2, 3)`` of an earlier call, to replay it.

        Returns:
            The transformed inputs and the matrices, with ``params`` of float32 or wider.

        Raises:
            ValueError: If a shape is wrong.
        """
        if params is None:
            check_shape("image", image, (None, None, None, None))
            params = sample_pose_affine(
                image.shape[0],
                image.shape[-2:],
                scale_sigma=self.scale_sigma,
                scale_range=self.scale_range,
                rotation_sigma=self.rotation_sigma,
                rotation_limit=self.rotation_limit,
                rotation_p=self.rotation_p,
                generator=self.generator,
                device=image.device,
                dtype=working_dtype(image.dtype),
            )
        return apply_pose_affine(image, params, keypoints, visibility, heatmaps)


class RandomPoseFlip(nn.Module):
    """Random horizontal flip with left/right joint swap, applied to a whole pose sample.

    Samples flags with :func:`sample_pose_flip` and applies them with
    :func:`apply_pose_flip`.

    Args:
        flip_index: The skeleton's joint permutation (e.g. ``COCO_17.flip_index``); must be
            its own inverse.
        p: Probability that a sample is flipped (SSHPE: 0.5).
        generator: CPU random generator every call samples from.

    Raises:
        ValueError: If ``flip_index`` is not a self-inverse permutation or ``p`` is not a
            probability.

    Example:
        >>> import torch
        >>> flip = RandomPoseFlip([1, 0], p=1.0)
        >>> keypoints = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])
        >>> flip(torch.zeros(1, 1, 2, 4), keypoints).keypoints
        tensor([[[2., 0.],
                 [3., 0.]]])
    """

    def __init__(
        self,
        flip_index: Sequence[int],
        p: float = 0.5,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.flip_index = check_flip_index(flip_index)
        self.p = check_probability("p", p)
        self.generator = generator

    def extra_repr(self) -> str:
        return f"joints={len(self.flip_index)}, p={self.p}"

    def forward(
        self,
        image: Tensor,
        keypoints: Tensor | None = None,
        visibility: Tensor | None = None,
        heatmaps: Tensor | None = None,
        *,
        params: Tensor | None = None,
    ) -> PoseTransformResult[Tensor]:
        """Sample flags (unless ``params`` is given) and apply them.

        Args:
            image: Images ``(B, C, H, W)``.
            keypoints: ``(B, K, 2)`` as ``(x, y)`` image pixels.
            visibility: ``(B, K)``, permuted with the joints.
            heatmaps: Floating ``(B, K, h, w)`` with ``H / h == W / w``, moved with the
                image flip (see :func:`apply_pose_flip`).
            params: ``(B,)`` bool flags of an earlier call, to replay it.

        Returns:
            The transformed inputs and the flags.

        Raises:
            ValueError: If a shape is wrong or the heatmaps' aspect ratio differs from the
                image's.
        """
        if params is None:
            check_shape("image", image, (None, None, None, None))
            params = sample_pose_flip(
                image.shape[0], self.p, generator=self.generator, device=image.device
            )
        return apply_pose_flip(image, params, self.flip_index, keypoints, visibility, heatmaps)


class JointCutout(nn.Module):
    """SSHPE's Joint Cutout: zero square boxes around randomly picked joints.

    Samples boxes around ``keypoints`` (SSHPE: the teacher's peaks, in image pixels) with
    :func:`sample_joint_cutout` and zeroes them with :func:`apply_joint_cutout`. Apply it to
    normalised images, as SSHPE, so that zero is the mean colour. Keypoints, visibility and
    heatmaps pass through unchanged.

    Args:
        num_joints: Boxes per sample, joints picked with replacement (SSHPE: 5).
        jitter: Standard deviation of the box centre's offset, in pixels (SSHPE: 10).
        half_size: ``(low, high)`` range of the integer half side length, both included, or
            one fixed value (SSHPE: 10 to 19).
        generator: CPU random generator every call samples from.

    Raises:
        ValueError: If a parameter is out of range.

    Example:
        >>> import torch
        >>> cutout = JointCutout(num_joints=2, jitter=0.0, half_size=1)
        >>> keypoints = torch.tensor([[[2.0, 2.0], [2.0, 2.0]]])
        >>> out = cutout(torch.ones(1, 1, 5, 5), keypoints)
        >>> int(out.image.sum())
        16
    """

    def __init__(
        self,
        num_joints: int = 5,
        jitter: float = 10.0,
        half_size: int | tuple[int, int] = (10, 19),
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.half_size = _check_cutout_distribution(num_joints, jitter, half_size)
        self.num_joints = num_joints
        self.jitter = float(jitter)
        self.generator = generator

    def extra_repr(self) -> str:
        return f"num_joints={self.num_joints}, jitter={self.jitter}, half_size={self.half_size}"

    def forward(
        self,
        image: Tensor,
        keypoints: Tensor | None = None,
        visibility: Tensor | None = None,
        heatmaps: Tensor | None = None,
        *,
        params: JointCutoutParams | None = None,
    ) -> PoseTransformResult[JointCutoutParams]:
        """Sample boxes around ``keypoints`` (unless ``params`` is given) and zero them.

        Args:
            image: Normalised images ``(B, C, H, W)``.
            keypoints: ``(B, K, 2)`` joint positions in image pixels; needed to sample.
            visibility: ``(B, K)``; only joints with ``visibility > 0`` are picked.
            heatmaps: ``(B, K, h, w)``, passed through.
            params: Boxes of an earlier call, to replay it.

        Returns:
            The images with the boxes zeroed, the other inputs as given, and the boxes.

        Raises:
            ValueError: If a shape is wrong, or neither ``keypoints`` nor ``params`` is given.
        """
        _check_pose_inputs(image, keypoints, visibility, heatmaps)
        if params is None:
            if keypoints is None:
                raise ValueError("JointCutout needs keypoints to sample boxes, or params to replay")
            params = sample_joint_cutout(
                keypoints,
                visibility,
                num_joints=self.num_joints,
                jitter=self.jitter,
                half_size=self.half_size,
                generator=self.generator,
            )
        out_image = apply_joint_cutout(image, params)
        return PoseTransformResult(out_image, keypoints, visibility, heatmaps, params)
