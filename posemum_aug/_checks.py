"""Input validation shared by every module: each check raises ``ValueError`` naming the value."""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch


def check_probability(name: str, value: float) -> float:
    """Return ``value`` as a float if it lies in ``[0, 1]``, else raise ``ValueError``."""
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def _as_int(value: object) -> int | None:
    """``value`` as a Python int if it is an integer (``int``, NumPy or 0-d integer tensor,
    anything with ``__index__``) other than a bool, else ``None``."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def check_positive_int(name: str, value: int) -> int:
    """Return ``value`` as an int if it is an integer >= 1, else raise ``ValueError``."""
    number = _as_int(value)
    if number is None or number < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return number


def check_pair(name: str, value: int | Sequence[int]) -> tuple[int, int]:
    """Normalise an int or a pair of ints (each >= 1) to a ``(rows, cols)`` tuple."""
    single = _as_int(value)
    pair = (single, single) if single is not None else tuple(value)  # type: ignore[arg-type]
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return (check_positive_int(name, pair[0]), check_positive_int(name, pair[1]))


def check_min_dims(name: str, x: torch.Tensor, ndim: int) -> None:
    """Raise ``ValueError`` unless ``x`` is a tensor with at least ``ndim`` dimensions."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < ndim:
        raise ValueError(f"{name} must have at least {ndim} dims, got shape {tuple(x.shape)}")


def check_shape(name: str, x: torch.Tensor, shape: Sequence[int | None]) -> None:
    """Raise ``ValueError`` unless ``x.shape`` matches ``shape`` (``None`` matches any size)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    want = tuple("*" if s is None else s for s in shape)
    ok = x.dim() == len(shape) and all(
        s is None or s == d for s, d in zip(shape, x.shape, strict=True)
    )
    if not ok:
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")


def check_affine_matrix(matrix: torch.Tensor, batch: int | None = None) -> None:
    """Raise ``ValueError`` unless ``matrix`` is ``(B, 2, 3)`` or ``(B, 3, 3)``, ``B == batch``."""
    check_min_dims("matrix", matrix, 3)
    if matrix.dim() != 3 or matrix.shape[-2:] not in ((2, 3), (3, 3)):
        raise ValueError(
            f"matrix must have shape (B, 2, 3) or (B, 3, 3), got {tuple(matrix.shape)}"
        )
    if batch is not None and matrix.shape[0] != batch:
        raise ValueError(f"matrix must have batch size {batch}, got {tuple(matrix.shape)}")


def check_flip_index(flip_index: Sequence[int], joints: int | None = None) -> tuple[int, ...]:
    """Return ``flip_index`` as a tuple if it is an involutive permutation of ``0..K-1``."""
    index = tuple(int(i) for i in flip_index)
    if sorted(index) != list(range(len(index))):
        raise ValueError(f"flip_index must be a permutation of 0..{len(index) - 1}, got {index}")
    for joint, partner in enumerate(index):
        if index[partner] != joint:
            raise ValueError(
                f"flip_index must be its own inverse, got {index}: joint {joint} maps to "
                f"{partner}, which maps to {index[partner]}"
            )
    if joints is not None and len(index) != joints:
        raise ValueError(f"flip_index has {len(index)} entries for {joints} joints")
    return index


def check_non_negative_int(name: str, value: int) -> int:
    """Return ``value`` as an int if it is an integer >= 0, else raise ``ValueError``."""
    number = _as_int(value)
    if number is None or number < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return number


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """``dtype`` promoted to float32 at least: the dtype of geometry, sums and solves on
    half-precision data (bfloat16 holds integers exactly only up to 256, and pixel
    positions in steps of 0.5 above 64).

        >>> working_dtype(torch.bfloat16), working_dtype(torch.float64)
        (torch.float32, torch.float64)
    """
    return torch.promote_types(dtype, torch.float32)


def floating_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype of the first floating tensor of ``tensors``, else the default dtype.

    Integer inputs of geometric functions are promoted with it instead of truncating the
    result to integers.
    """
    for tensor in tensors:
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.get_default_dtype()
