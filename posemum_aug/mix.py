"""Exact tile mixing and unmixing (Pose-MUM / MUM), functional core and module.

A batch is split into groups of ``G`` consecutive samples and every sample into a
``Th x Tw`` grid of tiles. A :class:`TilePlan` says, for every output sample and tile
position, which input sample's tile it holds. Tiles never move spatially; only their
owner changes, so mixing is a permutation of the batch at every tile position and
:func:`unmix_tiles` undoes :func:`mix_tiles` bit for bit.

Tile row ``i`` of a map of height ``H`` covers rows ``[floor(i*H/Th), floor((i+1)*H/Th))``
and columns alike (see :func:`tile_bounds`), so the same plan applies exactly to maps of
any resolution: the input image, every feature map of a backbone, every HRNet branch.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, TypeVar, cast, overload

import torch
from torch import Tensor, nn

from posemum_aug._checks import (
    check_min_dims,
    check_non_negative_int,
    check_pair,
    check_positive_int,
    check_probability,
    check_shape,
)

__all__ = [
    "MixHandle",
    "PoseMUM",
    "TilePlan",
    "attach",
    "mix_keypoints",
    "mix_tiles",
    "sample_tile_plan",
    "tile_bounds",
    "unmix_tiles",
]

Maps = TypeVar("Maps", Tensor, list[Tensor], tuple[Tensor, ...])


def tile_bounds(size: int, tiles: int) -> list[int]:
    """Boundaries of ``tiles`` tiles along an axis of ``size`` pixels.

    Tile ``i`` covers ``[bounds[i], bounds[i + 1])`` with ``bounds[i] = floor(i * size / tiles)``.
    Tiles differ in size by at most one pixel and may be empty when ``size < tiles``.

    Args:
        size: length of the axis in pixels (>= 1).
        tiles: number of tiles along the axis (>= 1).

    Returns:
        ``tiles + 1`` increasing integers from ``0`` to ``size``.

    Raises:
        ValueError: if ``size`` or ``tiles`` is not an integer >= 1.

    Example:
        >>> tile_bounds(10, 4)
        [0, 2, 5, 7, 10]
        >>> tile_bounds(2, 4)
        [0, 0, 1, 1, 2]
    """
    check_positive_int("size", size)
    check_positive_int("tiles", tiles)
    return [i * size // tiles for i in range(tiles + 1)]


class TilePlan:
    """Which input sample each output tile comes from.

    ``source`` is a ``torch.long`` tensor of shape ``(B, Th, Tw)``: output sample ``b`` at
    tile ``(i, j)`` holds tile ``(i, j)`` of input sample ``source[b, i, j]``. For every
    tile position, ``source[:, i, j]`` must be a permutation of ``0..B-1``.

    Args:
        source: ``(B, Th, Tw)`` integer tensor, a permutation of the batch per tile.

    Raises:
        ValueError: if ``source`` is not a 3-d integer tensor or some ``source[:, i, j]``
            is not a permutation of ``0..B-1``.

    Example:
        >>> import torch
        >>> plan = TilePlan(torch.tensor([[[1]], [[0]]]))  # swap two samples
        >>> plan.batch_size, plan.grid
        (2, (1, 1))
        >>> plan.inverse().source.flatten().tolist()
        [1, 0]
    """

    __slots__ = ("_inverse", "_inverse_of", "source")

    source: Tensor
    _inverse: TilePlan | None
    _inverse_of: tuple[int, int]

    def __init__(self, source: Tensor) -> None:
        check_min_dims("source", source, 3)
        if source.dim() != 3:
            raise ValueError(f"source must have shape (B, Th, Tw), got {tuple(source.shape)}")
        if source.dtype.is_floating_point or source.dtype.is_complex or source.dtype == torch.bool:
            raise ValueError(f"source must be an integer tensor, got dtype {source.dtype}")
        if 0 in source.shape[1:]:
            raise ValueError(f"source must have a grid of >= 1 tiles, got {tuple(source.shape)}")
        source = source.long()
        expected = torch.arange(source.shape[0], device=source.device).view(-1, 1, 1)
        if not bool((source.sort(dim=0).values == expected).all()):
            raise ValueError(
                "every source[:, i, j] must be a permutation of 0..B-1; "
                f"got source of shape {tuple(source.shape)} that is not"
            )
        self.source = source
        self._inverse = None

    @classmethod
    def _trusted(cls, source: Tensor) -> TilePlan:
        """Wrap a ``source`` known to be valid (built by this module) without a device sync."""
        plan = cls.__new__(cls)
        plan.source = source
        plan._inverse = None
        return plan

    @classmethod
    def identity(
        cls, batch_size: int, grid: int | Sequence[int], device: torch.device | str | None = None
    ) -> TilePlan:
        """The plan that leaves every tile with its own sample.

        Args:
            batch_size: ``B`` (>= 0).
            grid: ``Th`` and ``Tw``, an int for a square grid or a pair.
            device: where ``source`` lives.

        Example:
            >>> TilePlan.identity(3, (1, 2)).source[:, 0, 1].tolist()
            [0, 1, 2]
        """
        check_non_negative_int("batch_size", batch_size)
        th, tw = check_pair("grid", grid)
        source = torch.arange(batch_size, device=device).view(-1, 1, 1).expand(-1, th, tw)
        return cls._trusted(source.contiguous())

    @property
    def batch_size(self) -> int:
        """``B``, the number of samples the plan mixes."""
        return int(self.source.shape[0])

    @property
    def grid(self) -> tuple[int, int]:
        """``(Th, Tw)``, the tile grid."""
        return (int(self.source.shape[1]), int(self.source.shape[2]))

    @property
    def device(self) -> torch.device:
        """The device of ``source``."""
        return self.source.device

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TilePlan:
        """The same plan with ``source`` on ``device``."""
        return TilePlan._trusted(self.source.to(device, non_blocking=non_blocking))

    def inverse(self) -> TilePlan:
        """The plan that undoes this one: ``mix_tiles(mix_tiles(x, p), p.inverse()) == x``.

        Example:
            >>> import torch
            >>> g = torch.Generator().manual_seed(1)
            >>> p = sample_tile_plan(6, group_size=3, grid=2, generator=g)
            >>> torch.equal(p.inverse().inverse().source, p.source)
            True
        """
        # Where value b sits in source[:, i, j]: the argsort of a permutation. It is kept
        # for the same source tensor at the same version, and never for inference tensors
        # (they have no version and cannot be saved for a backward pass).
        cacheable = not (
            torch.compiler.is_compiling()
            or torch.is_inference_mode_enabled()
            or self.source.is_inference()
        )
        key = (id(self.source), self.source._version) if cacheable else (0, -1)
        cached: TilePlan | None = getattr(self, "_inverse", None)
        if cached is not None and cacheable and self._inverse_of == key:
            return cached
        inverse = TilePlan._trusted(self.source.argsort(dim=0))
        if cacheable:
            self._inverse, self._inverse_of = inverse, key
        return inverse

    def then(self, other: TilePlan) -> TilePlan:
        """Mixing with this plan and then with ``other``, as a single plan.

        ``mix_tiles(mix_tiles(x, a), b) == mix_tiles(x, a.then(b))``.

        Raises:
            ValueError: if the batch sizes or grids differ.

        Example:
            >>> import torch
            >>> g = torch.Generator().manual_seed(0)
            >>> a = sample_tile_plan(4, grid=2, generator=g)
            >>> b = sample_tile_plan(4, grid=2, generator=g)
            >>> x = torch.arange(64.0).view(4, 1, 4, 4)
            >>> torch.equal(mix_tiles(mix_tiles(x, a), b), mix_tiles(x, a.then(b)))
            True
        """
        if other.source.shape != self.source.shape:
            raise ValueError(
                "plans must have the same (B, Th, Tw) to compose, got "
                f"{tuple(self.source.shape)} and {tuple(other.source.shape)}"
            )
        return TilePlan._trusted(self.source.gather(0, other.source.to(self.device)))

    def __repr__(self) -> str:
        return f"TilePlan(batch_size={self.batch_size}, grid={self.grid}, device={self.device})"


def sample_tile_plan(
    batch_size: int,
    *,
    group_size: int = 4,
    grid: int | Sequence[int] = (4, 4),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> TilePlan:
    """Sample a plan: an independent uniform permutation per group and tile position.

    Groups are consecutive samples ``[0, G), [G, 2G), ...``; when ``batch_size`` is not a
    multiple of ``group_size`` the last group is smaller and mixes among itself (nothing is
    dropped). Sampling runs on the CPU with ``generator`` and the plan is then moved to
    ``device``, so a seed gives the same plan on every device.

    Args:
        batch_size: ``B`` (>= 0; ``0`` gives the empty plan of an empty batch).
        group_size: ``G`` (>= 1); ``G = 1`` gives the identity plan.
        grid: ``(Th, Tw)``, or an int for a square grid.
        generator: a CPU ``torch.Generator`` for reproducible plans.
        device: where the returned plan lives.

    Returns:
        A :class:`TilePlan` with ``source`` of shape ``(B, Th, Tw)``.

    Raises:
        ValueError: if ``batch_size`` is not an integer >= 0, or ``group_size`` or a grid
            side is not an integer >= 1.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> plan = sample_tile_plan(6, group_size=4, grid=(2, 3), generator=g)
        >>> plan.source.shape
        torch.Size([6, 2, 3])
        >>> bool((plan.source[:4] < 4).all() and (plan.source[4:] >= 4).all())
        True
    """
    check_non_negative_int("batch_size", batch_size)
    check_positive_int("group_size", group_size)
    th, tw = check_pair("grid", grid)
    # argsort of i.i.d. uniforms is a uniform permutation; the integer group offset keeps
    # every sample's key inside its group's interval, so the sort never crosses groups.
    keys = torch.rand(batch_size, th, tw, generator=generator, dtype=torch.float64)
    keys += (torch.arange(batch_size, dtype=torch.float64) // group_size).view(-1, 1, 1)
    source = keys.argsort(dim=0, stable=True)
    return TilePlan._trusted(source if device is None else source.to(device))


def _tile_of(pixel: Tensor, size: int, tiles: int) -> Tensor:
    """Tile index of integer pixel coordinates in ``[0, size)``, by :func:`tile_bounds`.

    ``floor(i * size / tiles) <= p`` holds exactly for ``i <= ((p + 1) * tiles - 1) // size``.
    """
    return torch.div((pixel + 1) * tiles - 1, size, rounding_mode="floor")


@functools.lru_cache(maxsize=128)
def _run_layout(
    height: int, width: int, grid: tuple[int, int], device: torch.device
) -> tuple[int, Tensor]:
    """``(u, tile)``: the run width ``u`` and the ``(H * W/u,)`` tile ids ``i * Tw + j`` of runs.

    ``u`` is the largest width dividing every column-tile boundary, so no run of ``u``
    pixels crosses a tile border. Cached: a network mixes the same few map sizes every step.
    """
    th, tw = grid
    unit = math.gcd(*tile_bounds(width, tw))
    row_tile = _tile_of(torch.arange(height), height, th)
    col_tile = _tile_of(torch.arange(width // unit) * unit, width, tw)
    return unit, (row_tile.view(-1, 1) * tw + col_tile).flatten().to(device)


@functools.lru_cache(maxsize=128)
def _run_offsets(channels: int, runs: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(1, M, R)`` run numbers ``m * R + r`` inside one sample."""
    return torch.arange(channels * runs, dtype=dtype, device=device).view(1, channels, runs)


def _permute_tiles(x: Tensor, source: Tensor) -> Tensor:
    """Mix ``x`` with ``source`` as one gather over contiguous runs of pixels.

    Each row of the ``(H, W)`` plane is cut into runs of ``u`` pixels that never cross a
    tile border (:func:`_run_layout`): run ``(b, m, r)`` of the output is run
    ``(source[b, tile(r)], m, r)`` of the input, an ``index_select`` of whole runs. A
    ``channels_last`` map is mixed in its own layout, where a run holds ``u`` pixels of
    every channel, and keeps that layout. When the grid does not divide the width
    (``u == 1`` in the default layout) the runs are single elements, and the mix is the
    full-index ``gather`` along the batch, which is faster on such maps.
    """
    batch, height, width = x.shape[0], x.shape[-2], x.shape[-1]
    channels_last = (
        x.dim() == 4
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    )
    # Under torch.compile the cache is bypassed: dynamo traces the function itself.
    layout = _run_layout.__wrapped__ if torch.compiler.is_compiling() else _run_layout
    unit, tile = layout(height, width, (int(source.shape[1]), int(source.shape[2])), x.device)
    runs = tile.numel()
    owner = source.flatten(1).index_select(1, tile)  # (B, R)
    if channels_last:
        planes = x.permute(0, 2, 3, 1).reshape(batch, 1, runs, unit * x.shape[1])
    else:
        planes = x.contiguous().view(batch, -1, runs, unit)
    if planes.shape[-1] == 1:
        index = owner.view(batch, 1, runs, 1).expand_as(planes).contiguous()
        return planes.gather(0, index).view(x.shape)
    per_sample = planes.shape[1] * runs
    dtype = torch.int32 if batch * per_sample < 2**31 else torch.int64
    run_offsets = _run_offsets.__wrapped__ if torch.compiler.is_compiling() else _run_offsets
    offsets = run_offsets(planes.shape[1], runs, dtype, x.device)
    index = torch.add(offsets, owner.to(dtype).view(batch, 1, runs), alpha=per_sample)
    rows = planes.reshape(-1, planes.shape[-1]).index_select(0, index.view(-1))
    if channels_last:
        return rows.view(batch, height, width, -1).permute(0, 3, 1, 2)
    return rows.view(x.shape)


class _TilePermutation(torch.autograd.Function):
    """``_permute_tiles`` whose gradient is the inverse permutation (a copy, not a scatter-add)."""

    @staticmethod
    def forward(x: Tensor, source: Tensor) -> Tensor:
        return _permute_tiles(x, source)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
        ctx.save_for_backward(inputs[1])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (source,) = ctx.saved_tensors
        return _apply_permutation(grad, source.argsort(dim=0)), None


def _apply_permutation(x: Tensor, source: Tensor) -> Tensor:
    return cast(Tensor, _TilePermutation.apply(x, source))  # type: ignore[no-untyped-call]


def _mix_one(x: Tensor, plan: TilePlan, name: str) -> Tensor:
    check_min_dims(name, x, 3)
    if x.shape[0] != plan.batch_size:
        raise ValueError(
            f"{name} has batch size {x.shape[0]} but the plan mixes {plan.batch_size} samples "
            f"(shape {tuple(x.shape)})"
        )
    if x.numel() == 0:
        return x.clone()
    source = plan.source
    if source.device != x.device:
        # asynchronous only towards an accelerator: a CPU index must have arrived when read
        source = source.to(x.device, non_blocking=x.device.type != "cpu")
    if x.requires_grad and torch.is_grad_enabled():
        return _apply_permutation(x, source)
    return _permute_tiles(x, source)


@overload
def mix_tiles(x: Tensor, plan: TilePlan) -> Tensor: ...
@overload
def mix_tiles(x: list[Tensor], plan: TilePlan) -> list[Tensor]: ...
@overload
def mix_tiles(x: tuple[Tensor, ...], plan: TilePlan) -> tuple[Tensor, ...]: ...
def mix_tiles(x: Maps, plan: TilePlan) -> Maps:
    """Mix the tiles of ``x`` across the batch with ``plan``.

    ``out[b, ..., rows_i, cols_j] = x[plan.source[b, i, j], ..., rows_i, cols_j]`` with the
    tile rows and columns of :func:`tile_bounds` at the resolution of ``x``. Works for any
    dtype, any ``H, W >= 1`` (divisible by the grid or not, smaller than the grid too) and
    any number of middle dims; it is differentiable, the gradient being the inverse
    permutation. Each call is one gather of contiguous pixel runs, with no host sync.

    Args:
        x: ``(B, *, H, W)`` tensor, or a list/tuple of such tensors (e.g. HRNet branches at
            different resolutions), all mixed with the same plan.
        plan: a :class:`TilePlan` with ``batch_size == B``; moved to ``x``'s device.

    Returns:
        Same type, shapes, dtype and device as ``x``.

    Raises:
        ValueError: if a tensor has fewer than 3 dims or its batch size differs from the plan's.

    Example:
        >>> import torch
        >>> x = torch.arange(32.0).view(2, 1, 4, 4)
        >>> plan = TilePlan(torch.tensor([[[0, 1], [1, 0]], [[1, 0], [0, 1]]]))
        >>> mix_tiles(x, plan)[0, 0]
        tensor([[ 0.,  1., 18., 19.],
                [ 4.,  5., 22., 23.],
                [24., 25., 10., 11.],
                [28., 29., 14., 15.]])
        >>> torch.equal(unmix_tiles(mix_tiles(x, plan), plan), x)
        True
    """
    if isinstance(x, Tensor):
        return _mix_one(x, plan, "x")
    if isinstance(x, list | tuple):
        mixed = [_mix_one(t, plan, f"x[{k}]") for k, t in enumerate(x)]
        return type(x)(mixed)
    raise ValueError(f"x must be a tensor or a list/tuple of tensors, got {type(x).__name__}")


@overload
def unmix_tiles(x: Tensor, plan: TilePlan) -> Tensor: ...
@overload
def unmix_tiles(x: list[Tensor], plan: TilePlan) -> list[Tensor]: ...
@overload
def unmix_tiles(x: tuple[Tensor, ...], plan: TilePlan) -> tuple[Tensor, ...]: ...
def unmix_tiles(x: Maps, plan: TilePlan) -> Maps:
    """Undo :func:`mix_tiles` with the same ``plan``, at any resolution.

    ``unmix_tiles(mix_tiles(x, plan), plan)`` equals ``x`` bit for bit. The map being
    unmixed need not have the resolution that was mixed: features computed from a mixed
    image are unmixed at their own resolution with the same plan.

    Args:
        x: ``(B, *, h, w)`` tensor or a list/tuple of such tensors.
        plan: the plan that mixed them.

    Returns:
        Same type, shapes, dtype and device as ``x``.

    Raises:
        ValueError: as :func:`mix_tiles`.

    Example:
        >>> import torch
        >>> x = torch.randn(8, 3, 7, 5, generator=torch.Generator().manual_seed(0))
        >>> plan = sample_tile_plan(8, grid=(4, 4), generator=torch.Generator().manual_seed(0))
        >>> torch.equal(unmix_tiles(mix_tiles(x, plan), plan), x)
        True
    """
    return mix_tiles(x, plan.inverse())


def mix_keypoints(keypoints: Tensor, plan: TilePlan, size: Sequence[int]) -> Tensor:
    """The output sample that holds each keypoint after :func:`mix_tiles`.

    A keypoint of sample ``s`` at ``(x, y)`` lies in the pixel ``(round(y), round(x))``
    (pixel centres on integers) and so in one tile ``(i, j)``; after mixing that tile
    belongs to the output sample ``b`` with ``plan.source[b, i, j] == s``. Keypoints
    outside the map (or non-finite) keep their own sample.

    Args:
        keypoints: ``(B, K, 2)`` points ``(x, y)`` in pixels of a map of size ``size``.
        plan: the plan used to mix the map.
        size: ``(H, W)`` of the map the keypoints refer to.

    Returns:
        ``owner``, a ``(B, K)`` ``torch.long`` tensor on the keypoints' device.

    Raises:
        ValueError: if ``keypoints`` is not ``(B, K, 2)`` with ``B == plan.batch_size``.

    Example:
        >>> import torch
        >>> plan = TilePlan(torch.tensor([[[0, 1]], [[1, 0]]]))  # right halves swapped
        >>> kps = torch.tensor([[[0.0, 0.0], [3.0, 1.0]], [[3.0, 0.0], [9.0, 0.0]]])
        >>> mix_keypoints(kps, plan, (2, 4))
        tensor([[0, 1],
                [0, 1]])
    """
    check_shape("keypoints", keypoints, (plan.batch_size, None, 2))
    height, width = check_pair("size", size)
    th, tw = plan.grid
    device = keypoints.device
    pixel = torch.nan_to_num(keypoints.detach(), nan=-1.0).round()
    col, row = pixel[..., 0], pixel[..., 1]
    inside = (col >= 0) & (col <= width - 1) & (row >= 0) & (row <= height - 1)
    tile_row = _tile_of(row.clamp(0, height - 1).long(), height, th)
    tile_col = _tile_of(col.clamp(0, width - 1).long(), width, tw)
    inverse = plan.inverse().source.to(device)
    own = torch.arange(plan.batch_size, device=device).view(-1, 1).expand_as(tile_row)
    owner = inverse[own, tile_row, tile_col]
    return torch.where(inside, owner, own)


# Every mix of every PoseMUM draws a tick, so that the chains of several PoseMUMs attached to
# one model can be unmixed in the reverse order of their mixing.
_mix_ticks = itertools.count()


class PoseMUM(nn.Module):
    """Input- and feature-level tile mixing with one unmix before the head.

    In training mode the first call after an unmix starts a *chain*: with probability
    ``p`` it samples a plan and mixes (the input point). Each of the next
    ``feature_points`` calls is a feature-level point that may re-mix with a fresh plan;
    the chain keeps the composed plan (:attr:`plan`) and :meth:`unmix` applies its
    inverse, at any resolution, and ends the chain. A call beyond the chain's last point
    raises: it is the next batch arriving before the previous chain was unmixed. In eval
    mode every call is the identity.

    Which feature points re-mix ("stochastic" feature mixing) is set by
    ``feature_mode``: ``"one"`` (default) picks at most one point per chain, uniformly
    among the ``feature_points`` points, with probability ``p_feature``; ``"all"`` flips
    an independent coin with probability ``p_feature`` at every point. Called by hand
    or through :func:`attach` (which sets ``feature_points`` from ``mix_at``), the same
    arguments give the same method.

    Several PoseMUMs may be attached to one network (:func:`attach`): at a shared unmix
    point they unmix in the reverse order of their mixing, and chains that do not nest
    raise. PoseMUMs called by hand are independent of each other.

    Like every module of the library, a PoseMUM takes its ``generator`` at construction
    and draws every coin flip and plan from it; functions take theirs per call. Its work
    shows in ``torch.profiler`` as the ranges ``PoseMUM.forward`` and ``PoseMUM.unmix``
    and the backward nodes ``_TilePermutationBackward``.

    Args:
        group_size: ``G``, samples mixed together (>= 1).
        grid: ``(Th, Tw)`` tile grid, or an int for a square grid.
        p: probability that a chain starts with a mix (input level).
        p_feature: probability of a feature-level re-mix (per chain for ``"one"``, per
            point for ``"all"``).
        feature_mode: ``"one"`` or ``"all"``.
        feature_points: number of feature-level points in every chain (>= 0); ``None``
            lets :func:`attach` set it and means 0 for calls by hand.
        generator: CPU generator for the coin flips and plans.

    Raises:
        ValueError: for ``group_size < 1``, a grid side < 1, probabilities outside ``[0, 1]``,
            an unknown ``feature_mode`` or a negative ``feature_points``.

    Example:
        >>> import torch
        >>> mum = PoseMUM(group_size=2, grid=2, feature_points=1,
        ...               generator=torch.Generator().manual_seed(0))
        >>> x = torch.randn(4, 3, 8, 8)
        >>> feats = mum(x)                  # input-level mix (p = 1)
        >>> feats = mum(feats * 2)          # the feature-level point
        >>> torch.equal(mum.unmix(feats), x * 2)
        True
        >>> mum.plan is None                # the chain has ended
        True
    """

    def __init__(
        self,
        group_size: int = 4,
        grid: int | Sequence[int] = (4, 4),
        p: float = 1.0,
        p_feature: float = 0.5,
        feature_mode: Literal["one", "all"] = "one",
        feature_points: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.group_size = check_positive_int("group_size", group_size)
        self.grid = check_pair("grid", grid)
        self.p = check_probability("p", p)
        self.p_feature = check_probability("p_feature", p_feature)
        if feature_mode not in ("one", "all"):
            raise ValueError(f"feature_mode must be 'one' or 'all', got {feature_mode!r}")
        self.feature_mode = feature_mode
        if feature_points is not None:
            check_non_negative_int("feature_points", feature_points)
        self.feature_points = feature_points
        self.generator = generator
        self._plan: TilePlan | None = None
        self._in_chain = False
        self._point = 0
        self._chosen_point = -1
        self._first_tick = -1
        self._last_tick = -1
        self._paused = False
        self._attach_count = 0
        self._feature_points_given = feature_points

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A PoseMUM pickled before these attributes existed has no open chain.
        state.setdefault("_first_tick", -1)
        state.setdefault("_last_tick", -1)
        state.setdefault("_attach_count", 0)
        state.setdefault("_feature_points_given", state.get("feature_points"))
        super().__setstate__(state)  # type: ignore[no-untyped-call]

    @property
    def plan(self) -> TilePlan | None:
        """The composed plan of the current chain, or ``None`` if nothing was mixed."""
        return self._plan

    @property
    def in_chain(self) -> bool:
        """Whether a chain is open (mixed or not) and waits for :meth:`unmix`."""
        return self._in_chain

    @property
    def active(self) -> bool:
        """Whether calls mix now (training mode and not :meth:`paused`)."""
        return self.training and not self._paused

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Within this context every call is the identity (e.g. for an unmixed labelled batch)."""
        before, self._paused = self._paused, True
        try:
            yield
        finally:
            self._paused = before

    def _coin(self, probability: float) -> bool:
        if probability >= 1.0:
            return True
        if probability <= 0.0:
            return False
        return bool(torch.rand((), generator=self.generator) < probability)

    def _sample(self, batch_size: int) -> TilePlan:
        return sample_tile_plan(
            batch_size, group_size=self.group_size, grid=self.grid, generator=self.generator
        )

    def forward(self, x: Maps, plan: TilePlan | None = None) -> Maps:
        """A mixing point: start a chain or re-mix features (see the class docstring).

        Args:
            x: ``(B, *, H, W)`` tensor or list/tuple of tensors.
            plan: mix with this plan instead of sampling one (replay); always mixes.

        Returns:
            ``x`` mixed (or unchanged), same type and shapes.

        Raises:
            ValueError: if ``x`` is not ``(B, *, H, W)``, or the chain already had its
                input point and ``feature_points`` feature points (an unmix is missing).
        """
        if not self.active:
            return x
        with torch.profiler.record_function("PoseMUM.forward"):
            return self._mix_point(x, plan)

    def _mix_point(self, x: Maps, plan: TilePlan | None) -> Maps:
        batch = _batch_size(x)
        points = self.feature_points or 0
        if not self._in_chain:
            self._in_chain, self._point, self._chosen_point = True, 0, -1
            mix = plan is not None or self._coin(self.p)
            if self.feature_mode == "one" and points > 0 and self._coin(self.p_feature):
                self._chosen_point = int(torch.randint(points, (), generator=self.generator))
        else:
            self._point += 1
            if self._point > points:
                self.reset()
                raise ValueError(
                    f"PoseMUM was called {points + 2} times in one chain, which has an input "
                    f"point and feature_points={self.feature_points} feature points: call "
                    "unmix() before the next batch, or set feature_points to the number of "
                    "feature-level points"
                )
            if self.feature_mode == "one":
                mix = plan is not None or self._point == self._chosen_point + 1
            else:
                mix = plan is not None or self._coin(self.p_feature)
        if not mix:
            return x
        step = plan if plan is not None else self._sample(batch)
        self._plan = step if self._plan is None else self._plan.then(step)
        self._last_tick = next(_mix_ticks)
        if self._first_tick < 0:
            self._first_tick = self._last_tick
        return mix_tiles(x, step)

    def unmix(self, y: Maps) -> Maps:
        """Apply the inverse of the chain's composed plan to ``y`` and end the chain.

        Args:
            y: ``(B, *, h, w)`` tensor or list/tuple, at any resolution.

        Returns:
            ``y`` unmixed; unchanged if nothing was mixed, or when no chain is open in eval
            mode or while paused. A chain opened in training mode is always unmixed, even
            after a switch to eval mode or inside :meth:`paused`: its features are mixed.

        Raises:
            ValueError: in training mode when no chain is open, or if ``B`` differs from the
                plan's batch size.
        """
        if not self._in_chain:
            if not self.active:
                return y
            raise ValueError("unmix called without a chain: call the PoseMUM module (mix) first")
        plan = self._plan
        self.reset()
        if plan is None:
            return y
        with torch.profiler.record_function("PoseMUM.unmix"):
            return unmix_tiles(y, plan)

    def reset(self) -> None:
        """Drop an open chain (e.g. after an exception in the forward pass)."""
        self._plan, self._in_chain = None, False
        self._first_tick = self._last_tick = -1

    def attach(self, model: nn.Module, mix_at: str | Sequence[str], unmix_at: str) -> MixHandle:
        """Register hooks on ``model`` so that it mixes at ``mix_at`` and unmixes at ``unmix_at``.

        See :func:`attach`.
        """
        return attach(model, self, mix_at=mix_at, unmix_at=unmix_at)

    def extra_repr(self) -> str:
        return (
            f"group_size={self.group_size}, grid={self.grid}, p={self.p}, "
            f"p_feature={self.p_feature}, feature_mode={self.feature_mode!r}, "
            f"feature_points={self.feature_points}"
        )


def _batch_size(x: Tensor | Sequence[Tensor]) -> int:
    first = x if isinstance(x, Tensor) else (x[0] if len(x) else None)
    if not isinstance(first, Tensor) or first.dim() < 3:
        shape = tuple(first.shape) if isinstance(first, Tensor) else type(first).__name__
        raise ValueError(f"mixing needs tensors of shape (B, *, H, W), got {shape}")
    return int(first.shape[0])


class _Hook:
    """A hook of an attachment. Copies and pickles of the hooked module get a
    :class:`_Detached` in its place, so a module copied after :func:`attach` (an EMA
    teacher, a saved model) is the same as one copied before."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __deepcopy__(self, memo: dict[int, Any]) -> _Detached:
        return _Detached()

    def __reduce__(self) -> tuple[type[_Detached], tuple[()]]:
        return (_Detached, ())


class _Detached:
    """An attachment's hook in a copy of the hooked module: inert, it removes itself when run."""

    def __call__(self, module: nn.Module, *args: Any) -> None:
        for hooks in (module._forward_pre_hooks, module._forward_hooks):
            for key in [k for k, hook in hooks.items() if hook is self]:
                del hooks[key]
                module._forward_pre_hooks_with_kwargs.pop(key, None)
                module._forward_hooks_with_kwargs.pop(key, None)
                module._forward_hooks_always_called.pop(key, None)


# The attachments of each model, (PoseMUM, unmix module), so that one hook at an unmix point
# unmixes every chain that ends there in the reverse order of their mixing, whatever order
# they were attached in, and checks that they nest with the model's other chains.
_attachments: weakref.WeakKeyDictionary[nn.Module, list[tuple[PoseMUM, nn.Module]]] = (
    weakref.WeakKeyDictionary()
)


def _unmix_open_chains(
    attached: list[tuple[PoseMUM, nn.Module]], module: nn.Module, output: Any
) -> Any:
    chains = [m for m, at in attached if at is module and m.active and m.in_chain]
    if not module.training or not chains:
        return None
    for mum in sorted(chains, key=lambda m: m._first_tick, reverse=True):
        later = [
            m
            for m, _ in attached
            if m is not mum and m.in_chain and m._last_tick > mum._first_tick >= 0
        ]
        if later:
            raise ValueError(
                "the PoseMUM chains of this model do not nest: another PoseMUM mixed after "
                "this one and unmixes later; give the one that mixes last the earliest unmix "
                "point, or use one PoseMUM with every mixing point"
            )
        output = mum.unmix(output)
    return output


def _input_name(model: nn.Module) -> str | None:
    """The name of the first positional parameter of ``model.forward``, if it has one.

    Wrappers that pass ``*args, **kwargs`` through (``torch.compile``, DDP) are looked into.
    """
    wrappers = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    while True:
        inner = getattr(model, "_orig_mod", model.module if isinstance(model, wrappers) else None)
        if not isinstance(inner, nn.Module):
            break
        model = inner
    try:
        parameters = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return next((p.name for p in parameters if p.kind in positional), None)


class MixHandle:
    """The hooks :func:`attach` registered; :meth:`remove` detaches them.

    Usable as a context manager: the hooks are removed on exit.
    """

    def __init__(
        self,
        handles: list[torch.utils.hooks.RemovableHandle],
        mum: PoseMUM,
        attached: list[tuple[PoseMUM, nn.Module]],
        attachment: tuple[PoseMUM, nn.Module],
    ) -> None:
        self._handles = handles
        self._attached = attached
        self._attachment = attachment
        self.mum = mum

    def remove(self) -> None:
        """Remove every hook and drop any open chain; the last handle of ``mum`` gives it
        back the ``feature_points`` it was built with."""
        if not self._handles:
            return
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self._attachment in self._attached:
            self._attached.remove(self._attachment)
        self.mum._attach_count -= 1
        if self.mum._attach_count == 0:
            self.mum.feature_points = self.mum._feature_points_given
        self.mum.reset()

    def __enter__(self) -> MixHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def attach(model: nn.Module, mum: PoseMUM, mix_at: str | Sequence[str], unmix_at: str) -> MixHandle:
    """Make ``model`` mix and unmix with ``mum`` through forward hooks, without editing it.

    ``""`` in ``mix_at`` mixes the model's input: the first positional argument, or the
    keyword argument named as the first parameter of ``model.forward`` (``model(x=...)``,
    mmengine's ``model(inputs=..., mode=...)``). Any other name mixes the output of that
    submodule (names as in ``model.named_modules()``, tensor or list/tuple outputs as in
    HRNet). The first point reached in a forward pass starts the chain (probability
    ``mum.p``); the others are feature-level points, and ``mum.feature_points`` is set to
    their number until the handle is removed. The output of ``unmix_at`` is unmixed.
    Hooks act only while both ``mum`` and the hooked module are in training mode, so an
    eval-mode copy of the model is never mixed, and copies of the model (``deepcopy``,
    ``torch.save``) carry no hooks: an EMA teacher built after ``attach`` is the same as
    one built before.

    Every forward pass of ``model`` is one chain: a chain left open by a pass that raised
    is dropped when the next pass starts, and a pass that ends with its chain still open
    (a mixing point that runs after ``unmix_at``, or an ``unmix_at`` the pass never
    reaches) raises: that configuration leaves outputs mixed. So does a mixing point that
    runs twice in one pass (a shared or reused module). Several PoseMUMs may be attached
    to one model; at a shared unmix point they unmix in the reverse order of their
    mixing, and chains that do not nest (one that mixes later but unmixes later too)
    raise. ``nn.DataParallel`` is not supported (its replicas are copies of the modules
    the hooks were registered on); use ``DistributedDataParallel``.

    Args:
        model: the network.
        mum: the :class:`PoseMUM` that holds the chain and the random state.
        mix_at: names of the mixing points in forward order (a single name may be given
            as a string); ``""`` for the input.
        unmix_at: name of the submodule whose output is unmixed (before the head).

    Returns:
        A :class:`MixHandle`; ``handle.remove()`` detaches everything.

    Raises:
        ValueError: if ``mix_at`` is empty or a name is not a submodule of ``model``,
            ``unmix_at`` is ``""`` or also a mixing point, or ``mum.feature_points`` is set
            and differs from the number of feature-level points in ``mix_at``; from a
            forward pass of ``model`` that ends with a mixed chain still open (see above)
            or that passes no input to mix.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
        >>> mum = PoseMUM(group_size=2, grid=2, generator=torch.Generator().manual_seed(0))
        >>> handle = attach(net, mum, mix_at=["", "0"], unmix_at="1")
        >>> net(torch.randn(4, 3, 8, 8)).shape
        torch.Size([4, 2, 8, 8])
        >>> handle.remove()
    """
    points = [mix_at] if isinstance(mix_at, str) else list(mix_at)
    if len(points) == 0:
        raise ValueError("mix_at must name at least one mixing point")
    modules = dict(model.named_modules())
    for name in [*points, unmix_at]:
        if name not in modules:
            raise ValueError(f"{name!r} is not a submodule of the model (see named_modules())")
    if unmix_at == "" or unmix_at in points:
        raise ValueError(
            f"unmix_at must name a submodule that is not a mixing point, got {unmix_at!r}"
        )
    feature_points = len(points) - 1
    if mum.feature_points not in (None, feature_points):
        raise ValueError(
            f"mum.feature_points={mum.feature_points} but mix_at={points} has "
            f"{feature_points} feature-level points: leave feature_points=None for attach"
        )
    input_name = _input_name(model)
    ran: set[str] = set()  # the mixing points this pass has run
    # The hooks use this model's list itself (no lookup while a compiled model runs them).
    attached = _attachments.setdefault(model, [])
    attachment = (mum, modules[unmix_at])

    def start_pass(module: nn.Module, args: tuple[Any, ...]) -> None:
        mum.reset()  # an open chain here was left by a pass that raised: it is stale
        ran.clear()

    def once(name: str) -> None:
        if name in ran:
            mum.reset()
            raise ValueError(
                f"the mixing point {name!r} ran twice in one forward pass (a shared or reused "
                "module): mix at a module that runs once per pass, e.g. its parent"
            )
        ran.add(name)

    def end_pass(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if mum.in_chain:
            mum.reset()
            raise ValueError(
                f"the forward pass ended with the mixing chain open: every mixing point "
                f"{points} must run before unmix_at={unmix_at!r}, and unmix_at must run"
            )

    def mix_input(
        module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        if not (module.training and mum.active):
            return None
        once("")
        if args:
            return (mum(args[0]), *args[1:]), kwargs
        if input_name is not None and input_name in kwargs:
            return args, {**kwargs, input_name: mum(kwargs[input_name])}
        raise ValueError(
            f"attach mixes the model input, the first parameter of forward ({input_name!r}), "
            f"but the call passed no positional argument and keywords {sorted(kwargs)}"
        )

    def mix_output(name: str) -> Callable[[nn.Module, tuple[Any, ...], Any], Any]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
            if not (module.training and mum.active):
                return None
            once(name)
            return mum(output)

        return hook

    def unmix_output(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        return _unmix_open_chains(attached, module, output)

    handles = [model.register_forward_pre_hook(_Hook(start_pass))]
    for name in points:
        if name == "":
            handles.append(model.register_forward_pre_hook(_Hook(mix_input), with_kwargs=True))
        else:
            handles.append(modules[name].register_forward_hook(_Hook(mix_output(name))))
    handles.append(modules[unmix_at].register_forward_hook(_Hook(unmix_output)))
    handles.append(model.register_forward_hook(_Hook(end_pass)))
    attached.append(attachment)
    mum.feature_points = feature_points
    mum._attach_count += 1
    return MixHandle(handles, mum, attached, attachment)
