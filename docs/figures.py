"""Sphinx extension: draw the documentation's figures at build time from the library itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import torch

from posemum_aug import mix_tiles, sample_tile_plan, unmix_tiles

OUT = Path(__file__).resolve().parent / "_generated"


def synthetic_images(batch: int, size: tuple[int, int]) -> torch.Tensor:
    """A few easily told apart images: a coloured disc and stripes per sample, (B, 3, H, W)."""
    height, width = size
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    colours = torch.tensor([[0.9, 0.3, 0.2], [0.2, 0.6, 0.9], [0.3, 0.8, 0.3], [0.9, 0.8, 0.2]])
    images = []
    for b in range(batch):
        stripes = ((xs + ys * (b + 1)) // 6 % 2).float() * 0.25 + 0.6
        cy, cx = height * (0.35 + 0.1 * b), width * (0.65 - 0.1 * b)
        disc = ((ys - cy) ** 2 + (xs - cx) ** 2 < (0.3 * width) ** 2).float()
        colour = colours[b % len(colours)].view(3, 1, 1)
        images.append(stripes * (1 - disc) + disc * colour)
    return torch.stack(images)


def draw_mixing(path: Path) -> None:
    """Input images, input-level mix, a feature-level re-mix, and the exact unmix."""
    images = synthetic_images(4, (96, 72))
    gen = torch.Generator().manual_seed(3)
    first = sample_tile_plan(4, group_size=4, grid=(4, 4), generator=gen)
    second = sample_tile_plan(4, group_size=4, grid=(4, 4), generator=gen)
    mixed = mix_tiles(images, first)
    remixed = mix_tiles(mixed, second)
    unmixed = unmix_tiles(remixed, first.then(second))
    assert torch.equal(unmixed, images)
    rows = [
        ("input", images),
        ("input-level mix", mixed),
        ("feature-level re-mix", remixed),
        ("unmix (composed plan)", unmixed),
    ]
    fig, axes = plt.subplots(len(rows), 4, figsize=(6.4, 8.4))
    for r, (title, batch) in enumerate(rows):
        for b in range(4):
            ax = axes[r, b]
            ax.imshow(batch[b].permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if b == 0:
                ax.set_ylabel(title, fontsize=8)
            if r == 0:
                ax.set_title(f"sample {b}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def generate(app: Any) -> None:
    OUT.mkdir(exist_ok=True)
    draw_mixing(OUT / "mixing.png")


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", generate)
    return {"parallel_read_safe": True, "version": "1"}
