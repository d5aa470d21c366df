"""Sphinx extension: draw the documentation's figures at build time from the library itself."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle
from torch import Tensor

from posemum_aug import (
    COCO_17,
    apply_joint_cutout,
    apply_pose_affine,
    apply_pose_flip,
    confidence_weights,
    decode_heatmaps,
    flip_consistency_weights,
    flip_heatmaps,
    flip_keypoints,
    hard_targets,
    infer_flip_index,
    mix_tiles,
    pose_affine_matrix,
    render_heatmaps,
    sample_joint_cutout,
    sample_tile_plan,
    unmix_tiles,
)

OUT = Path(__file__).resolve().parent / "_generated"
#: The claims benchmark's committed record, drawn as the landing page's verdict table.
CLAIMS_RECORD = OUT.parents[1] / "benchmarks" / "records" / "ssl_claims.json"

#: The crop of the keypoint figures, (H, W), and its heatmaps' stride (64 x 48 heatmaps).
CROP, STRIDE = (256, 192), 4
HEATMAP = (CROP[0] // STRIDE, CROP[1] // STRIDE)

#: A hand-made COCO-17 pose in the crop, (K, 2) as (x, y) image pixels: right arm raised.
PERSON = torch.tensor(
    [
        [96.0, 46.0],  # nose
        [103.0, 40.0],  # left eye
        [89.0, 40.0],  # right eye
        [110.0, 45.0],  # left ear
        [82.0, 45.0],  # right ear
        [118.0, 71.0],  # left shoulder
        [75.0, 71.0],  # right shoulder
        [131.0, 103.0],  # left elbow
        [57.0, 89.0],  # right elbow
        [140.0, 134.0],  # left wrist
        [46.0, 58.0],  # right wrist
        [113.0, 139.0],  # left hip
        [82.0, 139.0],  # right hip
        [120.0, 181.0],  # left knee
        [73.0, 179.0],  # right knee
        [125.0, 220.0],  # left ankle
        [64.0, 218.0],  # right ankle
    ]
)


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


def person_image() -> Tensor:
    """:data:`PERSON` drawn as a stick figure over a gradient with a disc in one corner,
    so that flips and rotations are easy to see, (1, 3, H, W) in [0, 1]."""
    height, width = CROP
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32),
        torch.arange(width, dtype=torch.float32),
        indexing="ij",
    )
    pixels = torch.stack((xs, ys), dim=-1)
    limbs = torch.zeros(height, width, dtype=torch.bool)
    for a, b in COCO_17.links:
        start, direction = PERSON[a], PERSON[b] - PERSON[a]
        along = ((pixels - start) @ direction / direction.dot(direction)).clamp(0, 1)
        limbs |= (pixels - start - along[..., None] * direction).norm(dim=-1) < 5
    disc = (xs - 0.2 * width) ** 2 + (ys - 0.12 * height) ** 2 < (0.12 * width) ** 2
    image = (0.3 + 0.35 * ys / height).expand(3, height, width).clone()
    image[:, disc] = torch.tensor([0.95, 0.75, 0.25])[:, None]
    image[:, limbs] = 0.95
    return image[None]


def side_colours(names: tuple[str, ...]) -> list[str]:
    """Red for left joints, blue for right joints, white for the others."""
    return [
        "tab:red" if n.startswith("left") else "tab:blue" if n.startswith("right") else "white"
        for n in names
    ]


def plain_axes(ax: Axes, title: str) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)


def show_image(ax: Axes, image: Tensor, title: str) -> None:
    """One (3, H, W) image on ``ax``, image pixels as the axis units."""
    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
    plain_axes(ax, title)


def show_heatmap(ax: Axes, heatmap: Tensor, title: str, stride: int = 1) -> None:
    """An (h, w) heatmap on ``ax``; with ``stride``, drawn in image pixels (``x = x_h * s``)."""
    h, w = heatmap.shape
    extent = (-0.5 * stride, (w - 0.5) * stride, (h - 0.5) * stride, -0.5 * stride)
    ax.imshow(heatmap.numpy(), cmap="magma", vmin=0.0, vmax=1.0, extent=extent)
    plain_axes(ax, title)


def draw_transforms(path: Path) -> None:
    """A person, flipped and warped with its keypoints and heatmaps; the peaks follow."""
    image, keypoints = person_image(), PERSON[None]
    visibility = torch.ones(1, COCO_17.num_joints)
    heatmaps, _ = render_heatmaps(keypoints / STRIDE, visibility, HEATMAP, unbiased=True)
    flipped = apply_pose_flip(
        image, torch.tensor([True]), COCO_17.flip_index, keypoints, visibility, heatmaps
    )
    matrix = pose_affine_matrix(torch.tensor([0.85]), torch.tensor([30.0]), CROP)
    warped = apply_pose_affine(image, matrix, keypoints, visibility, heatmaps)
    # Joint k of the flipped person is the mirror image of joint flip_index[k].
    mirrored = CROP[1] - 1 - keypoints[0, list(COCO_17.flip_index), 0]
    assert torch.equal(flipped.keypoints[0, :, 0], mirrored)
    assert bool(warped.visibility.all())  # every joint stays in the frame
    views = [
        ("input", image, keypoints, heatmaps),
        ("apply_pose_flip", flipped.image, flipped.keypoints, flipped.heatmaps),
        ("apply_pose_affine (x0.85, 30°)", warped.image, warped.keypoints, warped.heatmaps),
    ]
    colours = side_colours(COCO_17.names)
    fig, axes = plt.subplots(2, len(views), figsize=(6.4, 5.2))
    for c, (title, view_image, view_keypoints, view_heatmaps) in enumerate(views):
        peaks, _ = decode_heatmaps(view_heatmaps)
        error = float((peaks - view_keypoints / STRIDE).norm(dim=-1).max())
        assert error < 1.0, f"{title}: a heatmap peak is {error:.2f} heatmap px off its keypoint"
        points = view_keypoints[0].numpy()
        show_image(axes[0, c], view_image[0], title)
        axes[0, c].scatter(*points.T, c=colours, s=14, edgecolors="black", linewidths=0.5)
        show_heatmap(
            axes[1, c], view_heatmaps[0].amax(0), f"heatmaps: peaks within {error:.2f} px", STRIDE
        )
        axes[1, c].scatter(*points.T, s=30, facecolors="none", edgecolors=colours, linewidths=0.8)
        axes[1, c].scatter(
            *(peaks[0] * STRIDE).numpy().T, c="lime", marker="x", s=8, linewidths=0.7
        )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_dark(path: Path) -> None:
    """DARK against the integer argmax on noisy heatmaps with known sub-pixel peaks."""
    gen = torch.Generator().manual_seed(0)
    samples, size, sigma, noise, margin = 512, (64, 48), 2.0, 0.05, 8
    span = torch.tensor([size[1], size[0]]) - 1 - 2 * margin  # peaks >= margin px inside
    truth = margin + span * torch.rand(samples, 1, 2, generator=gen)
    clean, _ = render_heatmaps(truth, torch.ones(samples, 1), size, sigma, unbiased=True)
    noisy = clean + noise * torch.randn(clean.shape, generator=gen)
    estimates = {
        "argmax": decode_heatmaps(noisy, refine="none")[0],
        "DARK": decode_heatmaps(noisy, refine="dark")[0],
    }
    errors = {name: (coords - truth).norm(dim=-1)[:, 0] for name, coords in estimates.items()}
    assert errors["DARK"].mean() < errors["argmax"].mean()

    # Zoom into a typical map: the one whose argmax error is closest to the mean.
    i = int((errors["argmax"] - errors["argmax"].mean()).abs().argmin())
    x, y = truth[i, 0].round().long().tolist()
    r = 5
    window = noisy[i, 0, y - r : y + r + 1, x - r : x + r + 1]
    extent = (x - r - 0.5, x + r + 0.5, y + r + 0.5, y - r - 0.5)
    fig, (left, right) = plt.subplots(1, 2, figsize=(6.4, 3.0))
    left.imshow(window.numpy(), cmap="magma", extent=extent)
    plain_axes(left, f"a noisy heatmap (sigma {sigma:g}, noise {noise:g}), zoomed")
    left.scatter(
        *truth[i, 0].tolist(),
        s=120,
        facecolors="none",
        edgecolors="tab:blue",
        lw=1.5,
        label="truth",
    )
    styles = {"argmax": ("s", "tab:cyan"), "DARK": ("x", "tab:green")}
    for name, coords in estimates.items():
        marker, colour = styles[name]
        left.scatter(*coords[i, 0].tolist(), marker=marker, s=40, color=colour, label=name)
    left.legend(fontsize=7, loc="lower right")
    bins = torch.linspace(0, float(errors["argmax"].max()), 30).numpy()
    for name, error in errors.items():
        label = f"{name}, mean {float(error.mean()):.2f} px"
        right.hist(error.numpy(), bins=bins, alpha=0.6, color=styles[name][1], label=label)
    right.set_xlabel("distance to the true peak (heatmap px)", fontsize=8)
    right.set_title(f"{samples} noisy maps", fontsize=8)
    right.tick_params(labelsize=7)
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def box_pixels(centre: Tensor, half: int) -> tuple[int, int, int, int]:
    """The pixel range ``[x0, x1] x [y0, y1]`` of one box: ``|x - cx| <= half`` and alike."""
    x0, y0 = (centre - half).ceil().long().tolist()
    x1, y1 = (centre + half).floor().long().tolist()
    return x0, x1, y0, y1


def draw_cutout(path: Path) -> None:
    """Joint Cutout boxes around visible joints only, without jitter and with SSHPE's."""
    image, keypoints = person_image(), PERSON[None]
    names = COCO_17.names
    hidden = [names.index("left_elbow"), names.index("left_wrist")]  # say, occluded
    visibility = torch.ones(1, COCO_17.num_joints)
    visibility[0, hidden] = 0.0
    visible = keypoints[0, visibility[0] > 0]
    gen = torch.Generator().manual_seed(1)
    boxes = {"num_joints": 5, "half_size": (10, 19), "generator": gen}  # SSHPE's, at 256 x 192
    draws = [
        ("jitter 0", sample_joint_cutout(keypoints, visibility, jitter=0.0, **boxes)),
        ("SSHPE's jitter", sample_joint_cutout(keypoints, visibility, jitter=10.0, **boxes)),
    ]
    # Without jitter every box is centred on a visible joint.
    centres = draws[0][1].centres[0]
    assert bool((centres[:, None] == visible[None]).all(-1).any(-1).all())

    colours = side_colours(names)
    shown = visibility[0] > 0
    points = keypoints[0].numpy()
    fig, axes = plt.subplots(1, 1 + len(draws), figsize=(6.4, 3.4))
    show_image(axes[0], image[0], "input, left arm not visible")
    axes[0].scatter(
        *points[shown].T,
        c=[c for c, v in zip(colours, shown, strict=True) if v],
        s=14,
        edgecolors="black",
        linewidths=0.5,
    )
    axes[0].scatter(*points[~shown].T, facecolors="none", edgecolors="tab:red", s=14)
    for ax, (title, params) in zip(axes[1:], draws, strict=True):
        cut = apply_joint_cutout(image, params)
        show_image(ax, cut[0], f"apply_joint_cutout, {title}")
        inside = torch.zeros(CROP, dtype=torch.bool)
        for centre, half in zip(params.centres[0], params.half_sizes[0].tolist(), strict=True):
            x0, x1, y0, y1 = box_pixels(centre, half)
            inside[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = True
            corner = (x0 - 0.5, y0 - 0.5)
            ax.add_patch(
                Rectangle(corner, x1 - x0 + 1, y1 - y0 + 1, fill=False, color="lime", lw=0.7)
            )
        # Exactly the pixels inside the boxes are zeroed (the input has no zero pixel).
        assert torch.equal((cut[0] == 0).all(0), inside)
        ax.set_xlim(-0.5, CROP[1] - 0.5)
        ax.set_ylim(CROP[0] - 0.5, -0.5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_filters(path: Path) -> None:
    """Which joints each pseudo-label filter keeps, on a made-up teacher output."""
    names = ("head", "left_hand", "right_hand", "left_foot", "right_foot")
    flip_index = infer_flip_index(names)
    # Image pixels of the crop; peak value of the teacher's map per joint.
    points = torch.tensor(
        [[[96.0, 40.0], [146.0, 120.0], [44.0, 60.0], [120.0, 224.0], [70.0, 226.0]]]
    )
    peak = torch.tensor([0.9, 0.15, 0.6, 0.05, 0.7])
    visibility = torch.ones(1, len(names))
    maps, _ = render_heatmaps(points / STRIDE, visibility, HEATMAP)
    teacher = maps * peak[:, None, None]
    # The teacher on the mirrored crop: the same joints mirrored, but the right hand lower.
    mirrored_points, _ = flip_keypoints(points, visibility, CROP[1], flip_index)
    moved = flip_index[names.index("right_hand")]  # where the right hand sits after the flip
    mirrored_points[0, moved, 1] += 8 * STRIDE
    maps, _ = render_heatmaps(mirrored_points / STRIDE, visibility, HEATMAP)
    on_mirror = maps * peak[list(flip_index), None, None]

    threshold = 0.1
    confident = confidence_weights(teacher, threshold)
    consistent = flip_consistency_weights(teacher, on_mirror, flip_index)
    targets, hard = hard_targets(teacher, threshold=threshold)
    assert torch.equal(confident[0], (peak >= threshold).float())
    assert torch.equal(consistent[0], torch.tensor([n != "right_hand" for n in names]).float())
    assert torch.equal(hard, confident)

    rows = [
        ("teacher", teacher[0]),
        ("teacher on the mirror,\nflipped back", flip_heatmaps(on_mirror, flip_index)[0]),
        ("hard_targets", targets[0]),
    ]
    fig, axes = plt.subplots(len(rows), len(names), figsize=(6.4, 5.6))
    for r, (label, row) in enumerate(rows):
        for k, name in enumerate(names):
            ax = axes[r, k]
            show_heatmap(ax, row[k], name.replace("_", " ") if r == 0 else "")
            peak_text = f"peak {float(row[k].max()):.2f}"
            ax.text(1, 1, peak_text, color="white", fontsize=7, va="top")
            if k == 0:
                ax.set_ylabel(label, fontsize=8)
    for k in range(len(names)):
        verdict = [
            ("confidence", confident[0, k]),
            ("flip", consistent[0, k]),
            ("both", confident[0, k] * consistent[0, k]),
        ]
        text = "\n".join(f"{f}: {'keep' if w > 0 else 'drop'}" for f, w in verdict)
        axes[-1, k].set_xlabel(text, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_claims_table(path: Path) -> None:
    """The verdict table of the claims benchmark's record, as reStructuredText."""
    sys.path.insert(0, str(CLAIMS_RECORD.parents[1]))
    from claims import claims_rst

    record = json.loads(CLAIMS_RECORD.read_text())
    path.write_text(claims_rst(record))


def generate(app: Any) -> None:
    OUT.mkdir(exist_ok=True)
    write_claims_table(OUT / "claims.rst")
    draw_mixing(OUT / "mixing.png")
    draw_transforms(OUT / "transforms.png")
    draw_dark(OUT / "dark.png")
    draw_cutout(OUT / "cutout.png")
    draw_filters(OUT / "filters.png")


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", generate)
    return {"parallel_read_safe": True, "version": "1"}
