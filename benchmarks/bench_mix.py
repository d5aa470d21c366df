"""Benchmark ``mix_tiles`` against its physical limit and the full-index formulation.

* limit: ``x.clone()``, one read and one write of the tensor (mixing moves every element
  exactly once, so it cannot beat a copy);
* baseline: the original MUM formulation, a ``repeat_interleave``d index of shape
  ``(B, C, H, W)`` and one ``gather`` along the batch (it needs sizes divisible by the grid).

Prints ``mix / clone`` (1.0 is the limit) and ``baseline / mix`` (how much faster than the
full-index formulation), and writes ``results/bench_mix.json``.

    python benchmarks/bench_mix.py            # full sweep, CPU (+ CUDA when available)
    python benchmarks/bench_mix.py --quick    # CI smoke run
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
from _common import median_time, parse_args, print_table, write_json

from posemum_aug import TilePlan, mix_tiles, sample_tile_plan


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
    rows = []
    for device, shape, grid in itertools.product(args.devices, shapes, grids):
        rows.append(run_case(device, shape, grid, args.min_run_time))
    columns = ["device", "shape", "grid", "clone_ms", "mix_ms", "mix/clone"]
    print_table(rows, [*columns, "full_index_ms", "full_index/mix"])
    print(f"wrote {write_json('bench_mix', rows, args.out)}")


if __name__ == "__main__":
    main()
