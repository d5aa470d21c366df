"""Worker for the 2-process DDP test of ``EMANTeacher`` (run by ``torch.multiprocessing.spawn``).

Each rank trains the same student under ``DistributedDataParallel`` (gloo, CPU) on its own
data, so BatchNorm statistics differ across ranks while parameters stay equal, and updates
two teachers: one with ``sync_buffers="auto"`` (on, since the world size is 2) and one with
``sync_buffers=False``. Saved to ``out_dir/rank{rank}.pt``: both teachers' final states, and
for the last update the synced teacher's state and the student's BatchNorm statistics
before it (to check the cross-rank mean).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from posemum_aug.teacher import EMANTeacher

STEPS = 3


def run(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """Train ``STEPS`` steps on rank-specific data and save both teachers' states."""
    torch.set_num_threads(1)  # two ranks share the CPU cores
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        torch.manual_seed(0)
        student = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1)
        )
        synced = EMANTeacher(student, momentum=0.5)
        drifting = EMANTeacher(student, momentum=0.5, sync_buffers=False)
        ddp = DistributedDataParallel(student)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
        generator = torch.Generator().manual_seed(1000 + rank)
        bn = student[1]
        for _ in range(STEPS):
            x = (rank + 1) * torch.randn(4, 3, 8, 8, generator=generator) + rank
            optimizer.zero_grad()
            ddp(x).square().mean().backward()
            optimizer.step()
            drifting.update(ddp)  # first: ``synced`` averages the student's buffers in place
            synced_before = copy.deepcopy(synced.module.state_dict())
            student_before = [bn.running_mean.clone(), bn.running_var.clone()]
            synced.update(ddp)
        state = {
            "synced": synced.state_dict(),
            "drifting": drifting.state_dict(),
            "synced_before": synced_before,
            "student_before": student_before,
            "student_after": [bn.running_mean, bn.running_var],
        }
        torch.save(state, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
