"""Benchmark heatmap render, decode and warp at (B, K, h, w) = (64, 17, 64, 48).

Timings are medians per batch. Each row is set against a reference:

* limit: ``hm.clone()``, one read and one write of the heatmaps (rendering and warping write
  every element once, so they cannot beat a copy; decoding reads every element once);
* render baseline: the dense formulation, ``exp(-d^2 / 2 sigma^2)`` over the full
  ``(B, K, h, w)`` grid, windowed (ours is separable: two 1-D Gaussians and one product);
* decode baseline: DARK as usually written, Gaussian-smoothing the whole map
  (``kornia.filters.gaussian_blur2d``, zero padding) before the Taylor step (ours smooths
  only the pixels around the argmax); ``refine="none"`` (plain argmax) is the floor.

For decode, the accuracy columns give the mean and max localisation error in px on
sub-pixel keypoints rendered with ``unbiased=True`` (sigma 2, at least 6 px from the
border), clean and with additive Gaussian noise of std 0.02, against the plain argmax.

    python benchmarks/bench_heatmap.py            # full run, CPU (+ CUDA when available)
    python benchmarks/bench_heatmap.py --quick    # CI smoke run (batch 8)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from _common import median_time, parse_args, print_table, write_json
from kornia.filters import gaussian_blur2d

from posemum_aug.heatmap import decode_heatmaps, render_heatmaps, warp_heatmaps

SHAPE = (64, 17, 64, 48)
SIGMA = 2.0
NOISE = 0.02


def dense_render(keypoints: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
    """Baseline: the Gaussian evaluated on the full 2-D grid (unbiased, 3-sigma window)."""
    ys = torch.arange(size[0], dtype=keypoints.dtype, device=keypoints.device)[:, None]
    xs = torch.arange(size[1], dtype=keypoints.dtype, device=keypoints.device)
    dx = xs - keypoints[..., 0, None, None]
    dy = ys - keypoints[..., 1, None, None]
    window = (dx.abs() <= 3 * sigma) & (dy.abs() <= 3 * sigma)
    return torch.exp((dx.square() + dy.square()) / (-2 * sigma * sigma)) * window


def full_blur_dark(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Baseline: smooth every pixel (11 taps, sigma 2, zero padding), then the same step."""
    blurred = gaussian_blur2d(heatmaps, (11, 11), (2.0, 2.0), border_type="constant")
    return decode_heatmaps(blurred, blur_kernel=1)


def timed(name: str, fn: Callable[[], Any], t_clone: float, min_run_time: float) -> dict[str, Any]:
    t = median_time(fn, min_run_time)
    return {"op": name, "ms": t * 1e3, "x_clone": t / t_clone}


def errors(coords: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    err = (coords.double() - truth.double()).norm(dim=-1)
    return {"err_mean_px": err.mean().item(), "err_max_px": err.max().item()}


def run_device(device: str, shape: Sequence[int], min_run_time: float) -> list[dict[str, Any]]:
    batch, joints, h, w = shape
    size = (h, w)
    gen = torch.Generator().manual_seed(0)
    span = torch.tensor([w - 13.0, h - 13.0])
    keypoints = (torch.rand(batch, joints, 2, generator=gen) * span + 6.0).to(device)
    visibility = torch.ones(batch, joints, device=device)
    heatmaps, _ = render_heatmaps(keypoints, visibility, size, SIGMA, unbiased=True)
    noisy = heatmaps + NOISE * torch.randn(heatmaps.shape, generator=gen).to(device)
    angle = torch.rand(batch, generator=gen) - 0.5
    matrix = torch.zeros(batch, 2, 3)
    matrix[:, 0, 0], matrix[:, 0, 1], matrix[:, 0, 2] = angle.cos(), -angle.sin(), 2.0
    matrix[:, 1, 0], matrix[:, 1, 1], matrix[:, 1, 2] = angle.sin(), angle.cos(), -1.0
    matrix = matrix.to(device)

    torch.testing.assert_close(dense_render(keypoints, size, SIGMA), heatmaps)
    t_clone = median_time(heatmaps.clone, min_run_time)
    rows = [
        {"op": "clone (limit)", "ms": t_clone * 1e3, "x_clone": 1.0},
        timed(
            "render dense (baseline)",
            lambda: dense_render(keypoints, size, SIGMA),
            t_clone,
            min_run_time,
        ),
    ]
    for unbiased in (False, True):
        fn = lambda u=unbiased: render_heatmaps(keypoints, visibility, size, SIGMA, unbiased=u)  # noqa: E731
        rows.append(timed(f"render unbiased={unbiased}", fn, t_clone, min_run_time))

    decoders: list[tuple[str, Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]]] = [
        ("decode none (argmax)", lambda hm: decode_heatmaps(hm, refine="none")),
        ("decode quarter", lambda hm: decode_heatmaps(hm, refine="quarter")),
        ("decode dark blur=1", lambda hm: decode_heatmaps(hm, blur_kernel=1)),
        ("decode dark blur=11", lambda hm: decode_heatmaps(hm)),
        ("decode dark full blur (baseline)", full_blur_dark),
    ]
    for name, decode in decoders:
        row = timed(name, lambda d=decode: d(heatmaps), t_clone, min_run_time)
        row |= errors(decode(heatmaps)[0], keypoints)
        row |= {f"noisy_{k}": v for k, v in errors(decode(noisy)[0], keypoints).items()}
        rows.append(row)

    fn = lambda: warp_heatmaps(heatmaps, matrix, size)  # noqa: E731
    rows.append(timed("warp (rotation + shift)", fn, t_clone, min_run_time))
    for row in rows:
        row["device"] = device
        row["shape"] = "x".join(map(str, shape))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    shape = (8, *SHAPE[1:]) if args.quick else SHAPE
    rows = [r for device in args.devices for r in run_device(device, shape, args.min_run_time)]
    columns = ["device", "op", "ms", "x_clone", "err_mean_px", "err_max_px"]
    print_table(rows, [*columns, "noisy_err_mean_px", "noisy_err_max_px"])
    print(f"wrote {write_json('bench_heatmap', rows, args.out)}")


if __name__ == "__main__":
    main()
