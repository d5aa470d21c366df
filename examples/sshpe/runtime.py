"""Where a run executes: the device, the process group of a ``torchrun`` launch, the seeds.

:class:`Distributed` is the process group (or a single process); :func:`seeded_generator`
makes the per-process generator of every random draw of a step and the data order's.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

__all__ = ["NO_BUFFER_BROADCAST", "Distributed", "resolve_device", "seeded_generator"]

#: Each process keeps its own BatchNorm statistics (the EMAN teacher averages them across
#: processes), so DDP must not broadcast rank 0's buffers at every forward. The switch is
#: ``forward_sync_buffers`` since torch 2.13 (``broadcast_buffers`` is deprecated there)
#: and ``broadcast_buffers`` before.
NO_BUFFER_BROADCAST: dict[str, Any] = {
    (
        "forward_sync_buffers"
        if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
        else "broadcast_buffers"
    ): False
}


def resolve_device(device: str | None) -> str:
    """``device``, or ``cuda`` when CUDA is available and ``cpu`` otherwise.

    Raises:
        ValueError: if a CUDA device is asked for and CUDA is not available.
    """
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available")
    return device


def seeded_generator(*seeds: int) -> torch.Generator:
    """A CPU generator seeded from ``seeds`` through numpy's ``SeedSequence``: distinct,
    well-mixed streams for e.g. ``(seed, rank)`` or ``(seed, stream, epoch)``."""
    state = np.random.SeedSequence(list(seeds)).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class Distributed:
    """The process group of a ``torchrun`` launch, or a single process."""

    def __init__(self, device: str) -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.enabled:
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def enabled(self) -> bool:
        """Whether several processes train together."""
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Whether this process writes files and prints."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process."""
        if self.enabled:
            dist.barrier()

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (one small all-reduce)."""
        if not self.enabled:
            return flag
        value = torch.tensor(float(flag), device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def close(self) -> None:
        """Leave the process group."""
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()
