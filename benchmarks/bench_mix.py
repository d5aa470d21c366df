"""Benchmark ``mix_tiles`` against its physical limit and the full-index formulation.

* limit: ``x.clone()``, one read and one write of the tensor (mixing moves every element
  exactly once, so it cannot beat a copy);
* baseline: the original MUM formulation, a ``repeat_interleave``d index of shape
  ``(B, C, H, W)`` and one ``gather`` along the batch (it needs sizes divisible by the grid).

Prints ``mix / clone`` (1.0 is the limit) and ``baseline / mix`` (how much faster than the
full-index formulation), and writes ``results/bench_mix.json``. The sweep includes the small
maps of the trainer's CPU profile (16 crops of 128 x 96, ResNet-18 at width 0.25), and the
*step share*: a forward and backward pass of that student with Pose-MUM attached at the
trainer's points against the same pass with mixing paused (median of interleaved timings).

    python benchmarks/bench_mix.py            # full sweep, CPU (+ CUDA when available)
    python benchmarks/bench_mix.py --quick    # CI smoke run
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from _common import median_time, parse_args, print_table, write_json

from posemum_aug import COCO_17, TilePlan, mix_tiles, sample_tile_plan

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from sshpe.methods import MethodConfig, SSHPEMethod, step_generators
from sshpe.models import SimpleBaseline

# The maps one step of the trainer's CPU profile mixes: input, layer1-3, and layer4 (unmixed).
CPU_PROFILE_MAPS = [
    (16, 3, 128, 96),
    (16, 16, 32, 24),
    (16, 32, 16, 12),
    (16, 64, 8, 6),
    (16, 128, 4, 3),
]


def full_index_mix(x: torch.Tensor, plan: TilePlan) -> torch.Tensor:
    """MUM's formulation: expand the plan to a per-element index and gather once."""
    _, channels, height, width = x.shape
    th, tw = plan.grid
    index = plan.source.repeat_interleave(height // th, 1).repeat_interleave(width // tw, 2)
    index = index.unsqueeze(1).repeat(1, channels, 1, 1)
    return torch.gather(x, 0, index)


def run_case(
    device: str, shape: Sequence[int], grid: tuple[int, int], min_run_time: float
) -> dict[str, Any]:
    batch = shape[0]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=gen).to(device)
    plan = sample_tile_plan(batch, group_size=4, grid=grid, generator=gen, device=device)
    divisible = shape[-2] % grid[0] == 0 and shape[-1] % grid[1] == 0
    if divisible and not torch.equal(full_index_mix(x, plan), mix_tiles(x, plan)):
        raise RuntimeError(f"mix_tiles disagrees with the full-index formulation at {shape}")
    t_clone = median_time(x.clone, min_run_time)
    t_mix = median_time(lambda: mix_tiles(x, plan), min_run_time)
    row: dict[str, Any] = {
        "device": device,
        "shape": "x".join(map(str, shape)),
        "grid": f"{grid[0]}x{grid[1]}",
        "clone_ms": t_clone * 1e3,
        "mix_ms": t_mix * 1e3,
        "mix/clone": t_mix / t_clone,
    }
    if divisible:
        t_full = median_time(lambda: full_index_mix(x, plan), min_run_time)
        row["full_index_ms"] = t_full * 1e3
        row["full_index/mix"] = t_full / t_mix
    return row


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    if args.quick:
        shapes = [(16, 32, 64, 48), (16, 64, 8, 6)]
        grids = [(4, 4)]
    else:
        shapes = [
            (64, 64, 64, 48),  # the target case: stride-4 features of a 256x192 crop
            (32, 64, 64, 48),
            (64, 256, 16, 12),
            (64, 512, 8, 6),  # ResNet layer4: 6 is not divisible by 4
            (64, 3, 256, 192),  # input images
            (32, 32, 96, 72),
        ]
        grids = [(4, 4), (2, 2), (8, 6)]
    cases = list(itertools.product(shapes, grids))
    cases += [
        (shape, (4, 4)) for shape in (CPU_PROFILE_MAPS[1:3] if args.quick else CPU_PROFILE_MAPS)
    ]
    rows = []
    for device, (shape, grid) in itertools.product(args.devices, cases):
        rows.append(run_case(device, shape, grid, args.min_run_time))
    columns = ["device", "shape", "grid", "clone_ms", "mix_ms", "mix/clone"]
    print_table(rows, [*columns, "full_index_ms", "full_index/mix"])
    shares = [step_share(device, 2 if args.quick else 30) for device in args.devices]
    print_table(shares, ["device", "step", "steps", "step_ms", "posemum_ms", "share"])
    print(f"wrote {write_json('bench_mix', rows + shares, args.out)}")


def step_share(device: str, steps: int) -> dict[str, Any]:
    """Pose-MUM's share of the trainer's semi-supervised step at the CPU profile.

    ``steps`` steps of ``SSHPEMethod`` with ``method="posemum"`` (16 labelled + 16
    unlabelled crops of 128 x 96, ResNet-18 at width 0.25, mixing at the input and
    layer1-3, unmix at layer4; losses, backward, Adam step, EMAN update) run under
    ``torch.profiler``. Pose-MUM's time is that of its ranges (``PoseMUM.forward``,
    ``PoseMUM.unmix``: sampling, composition and the permutations) and of the
    permutations' backward nodes; the share is their sum over the wall time of the steps.
    A timing difference against a paused run would be smaller than a shared machine's
    drift between two timing blocks.
    """
    torch.manual_seed(0)
    student = SimpleBaseline("resnet18", num_joints=17, width=0.25).to(device)
    config = MethodConfig(method="posemum")
    method = SSHPEMethod(student, config, COCO_17, step_generators(0))
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    labeled = {
        "image": torch.randn(16, 3, 128, 96, generator=gen).to(device),
        "keypoints": (16 + torch.rand(16, 17, 2, generator=gen) * 64).to(device),
        "visibility": torch.ones(16, 17, device=device),
    }
    unlabeled = {"image": torch.randn(16, 3, 128, 96, generator=gen).to(device)}

    def step() -> None:
        losses = method.losses(labeled, unlabeled)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        method.update_teacher()

    for _ in range(3):  # warm-up
        step()
    with torch.profiler.profile() as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
    names = {"PoseMUM.forward", "PoseMUM.unmix", "_TilePermutationBackward"}
    inside = sum(e.cpu_time_total for e in prof.events() if e.name in names) * 1e-6
    method.close()
    return {
        "device": device,
        "step": "cpu-profile posemum SSL step",
        "steps": steps,
        "step_ms": wall / steps * 1e3,
        "posemum_ms": inside / steps * 1e3,
        "share": inside / wall,
    }


if __name__ == "__main__":
    main()
