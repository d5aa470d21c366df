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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from _common import median_time, parse_args, print_table, write_json

from posemum_aug import PoseMUM, TilePlan, attach, mix_tiles, sample_tile_plan

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
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
    shares = [
        step_share(device, args.min_run_time, 1 if args.quick else 5) for device in args.devices
    ]
    print_table(shares, ["device", "step", "plain_ms", "posemum_ms", "share"])
    print(f"wrote {write_json('bench_mix', rows + shares, args.out)}")


def step_share(device: str, min_run_time: float, rounds: int) -> dict[str, Any]:
    """Forward + backward of the CPU-profile student with Pose-MUM vs with mixing paused."""
    torch.manual_seed(0)
    model = SimpleBaseline("resnet18", num_joints=17, width=0.25).to(device).train()
    images = torch.randn(16, 3, 128, 96, device=device)
    mum = PoseMUM(group_size=4, grid=(4, 4), generator=torch.Generator().manual_seed(0))
    attach(model, mum, mix_at=["", "layer1", "layer2", "layer3"], unmix_at="layer4")

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(images).square().mean().backward()

    def paused_step() -> None:
        with mum.paused():
            step()

    plain, mixed = [], []
    for _ in range(rounds):  # interleaved, so that drifts in machine load hit both alike
        plain.append(median_time(paused_step, min_run_time))
        mixed.append(median_time(step, min_run_time))
    t_plain, t_mixed = sorted(plain)[rounds // 2], sorted(mixed)[rounds // 2]
    return {
        "device": device,
        "step": "cpu-profile student fwd+bwd",
        "plain_ms": t_plain * 1e3,
        "posemum_ms": t_mixed * 1e3,
        "share": (t_mixed - t_plain) / t_plain,
    }


if __name__ == "__main__":
    main()
