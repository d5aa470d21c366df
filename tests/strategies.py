"""Hypothesis strategies and device parametrization shared by the test modules."""

from __future__ import annotations

import pytest
import torch
from hypothesis import strategies as st

#: Devices every device-parametrized test runs on; ``cuda`` is skipped without a GPU.
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ),
]

#: Seeds for building tensors with a ``torch.Generator`` inside a hypothesis test.
seeds = st.integers(min_value=0, max_value=2**31 - 1)


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    return torch.Generator().manual_seed(seed)


def output_shapes(out: torch.Tensor | tuple[torch.Tensor, ...]) -> list[tuple[int, ...]]:
    """The shapes of a function's output: one tensor or a tuple of tensors."""
    outputs = list(out) if isinstance(out, tuple) else [out]
    return [tuple(t.shape) for t in outputs]
