"""The validation pass of the trainer: predictions of each model on the validation crops,
their AP under the evaluation protocol, the printed table and the predictions figure.

A crop whose heatmaps hold a NaN or an infinity (a diverged network, a bf16 overflow) is a
miss: its prediction is left out of the results, so its person goes unmatched, and the
count is reported as the model's ``non_finite`` metric (present only when not 0). The
library's evaluator (:func:`~sshpe.evaluate.evaluate_keypoints`) refuses what is not
finite; here one model's NaN does not stop the evaluation of the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from posemum_aug.heatmap import decode_heatmaps
from posemum_aug.transforms import heatmap_stride
from sshpe.config import TrainConfig
from sshpe.data import CocoPersons, TopDownDataset, crop_to_image, denormalize
from sshpe.evaluate import evaluate_keypoints, protocol_results, resolve_protocol
from sshpe.methods import predict_heatmaps
from sshpe.outputs import claim
from sshpe.rundir import write_json

__all__ = ["TABLE_METRICS", "draw_predictions", "evaluate_models", "predict", "results_table"]

#: The metrics of the printed table and the logged evaluations, in order, by protocol.
TABLE_METRICS = {
    "coco": ("AP", "AP50", "AP75", "APm", "APl", "AR"),
    "crowdpose": ("AP", "AP50", "AP75", "AR", "AP_easy", "AP_medium", "AP_hard"),
}


class Predictions:
    """A model's predictions on the validation crops, in dataset order.

    Attributes:
        crop: ``(N, K, 2)`` keypoints in crop pixels.
        image: ``(N, K, 2)`` keypoints in image pixels.
        scores: ``(N, K)`` joint scores (heatmap peaks).
        box_scores: ``(N,)`` the boxes' scores.
        areas: ``(N,)`` crop areas in image pixels.
        finite: ``(N,)`` bool, whether the crop's heatmaps were all finite.
        image_ids: the ``N`` COCO image ids.
    """

    def __init__(self, parts: dict[str, list[Tensor]], image_ids: list[int]) -> None:
        cat = {k: torch.cat(v) for k, v in parts.items()}
        self.crop, self.image, self.scores = cat["crop"], cat["image"], cat["scores"]
        self.box_scores, self.areas, self.finite = cat["box"], cat["area"], cat["finite"]
        self.image_ids = image_ids


@torch.no_grad()
def predict(
    model: nn.Module,
    data: DataLoader[Any],
    flip_index: Sequence[int] | None,
    config: TrainConfig,
    device: torch.device,
) -> Predictions:
    """Predictions of ``model`` on every validation crop (flip test when ``flip_index``)."""
    was_training = model.training
    model.eval()
    names = ("crop", "image", "scores", "box", "area", "finite")
    parts: dict[str, list[Tensor]] = {name: [] for name in names}
    image_ids: list[int] = []
    for batch in data:
        image = batch["image"].to(device, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=config.schedule.amp):
            heatmaps = predict_heatmaps(model, image, flip_index)
        coords, scores = decode_heatmaps(heatmaps, refine=config.method.decode)
        crop = (coords * heatmap_stride(image, heatmaps)).cpu()
        size = (image.shape[-2], image.shape[-1])
        parts["crop"].append(crop)
        parts["image"].append(crop_to_image(crop, batch["center"], batch["scale"], size))
        parts["scores"].append(scores.cpu())
        parts["box"].append(batch["box_score"].float())
        parts["area"].append(batch["scale"].prod(-1))
        # decode_heatmaps gives a NaN joint score 0 at a meaningless place: tell it apart
        parts["finite"].append(heatmaps.isfinite().flatten(1).all(1).cpu())
        image_ids += batch["image_id"].tolist()
    model.train(was_training)
    return Predictions(parts, image_ids)


def evaluate_models(
    models: Mapping[str, nn.Module],
    data: DataLoader[Any],
    val: CocoPersons,
    config: TrainConfig,
    device: torch.device,
    out: Path,
) -> tuple[dict[str, dict[str, float]], dict[str, Tensor]]:
    """AP of each model under the run's protocol, its result file written to
    ``out/results_{name}.json``; a crop with non-finite heatmaps is a miss (see the
    module's docstring).

    Returns:
        ``(metrics, crops)``: the :data:`TABLE_METRICS` of each model, and ``non_finite``,
        the count of its missed crops, where that is not 0; and its crop-pixel keypoints
        for :func:`draw_predictions`.
    """
    skeleton = val.skeleton
    flip_index = skeleton.flip_index if config.evaluation.flip_test else None
    protocol = resolve_protocol(config.evaluation.protocol, skeleton)
    metrics, crops = {}, {}
    for name, model in models.items():
        p = predict(model, data, flip_index, config, device)
        keep = p.finite
        results = (
            protocol_results(
                p.image[keep],
                p.scores[keep],
                p.box_scores[keep],
                [i for i, kept in zip(p.image_ids, keep.tolist(), strict=True) if kept],
                skeleton.sigmas,
                category_id=val.category_id,
                areas=p.areas[keep],
            )
            if keep.any()
            else []
        )
        stats = evaluate_keypoints(results, val.ann_file, protocol=protocol)
        metrics[name] = {k: stats[k] for k in TABLE_METRICS[protocol]}
        if missed := int((~keep).sum()):
            metrics[name]["non_finite"] = missed
        crops[name] = p.crop
        write_json(out / f"results_{name}.json", results, indent=None)
    return metrics, crops


def results_table(metrics: dict[str, dict[str, float]]) -> str:
    """The printed table: one row per model, its metrics as columns; then a line for each
    model with ``non_finite`` predictions."""
    columns = [k for k in next(iter(metrics.values())) if k != "non_finite"]
    lines = ["model    " + "".join(f"{k:>10}" for k in columns)]
    for name, row in metrics.items():
        lines.append(f"{name:<9}" + "".join(f"{row[k]:10.3f}" for k in columns))
    lines += [
        f"{name}: {row['non_finite']:g} crops with predictions that are not finite, "
        "scored as misses"
        for name, row in metrics.items()
        if "non_finite" in row
    ]
    return "\n".join(lines)


def draw_predictions(
    path: Path,
    val_set: TopDownDataset,
    crops: dict[str, Tensor],
    count: int,
    links: Sequence[tuple[int, int]],
) -> None:
    """A PNG of ``count`` validation crops: the labels, then each model's predicted skeleton."""
    import matplotlib

    claim(path.parent, path)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = min(count, len(val_set))
    picks = torch.linspace(0, len(val_set) - 1, count).round().long().tolist()
    samples = [val_set[i] for i in picks]
    labels = torch.stack([s["keypoints"] for s in samples])
    labelled = torch.stack([s["visibility"] for s in samples]) > 0
    rows = {"ground truth": (labels, labelled)}
    rows |= {name: (coords[picks], torch.ones_like(labelled)) for name, coords in crops.items()}
    fig, axes = plt.subplots(
        len(rows), count, figsize=(1.6 * count, 2.2 * len(rows)), squeeze=False
    )
    for row, (name, (points, shown)) in enumerate(rows.items()):
        for col, sample in enumerate(samples):
            ax = axes[row][col]
            ax.imshow(denormalize(sample["image"]).permute(1, 2, 0).numpy())
            xy, ok = points[col].numpy(), shown[col].numpy()
            for a, b in links:
                if ok[a] and ok[b]:
                    ax.plot(xy[[a, b], 0], xy[[a, b], 1], color="lime", linewidth=1.2)
            ax.scatter(xy[ok, 0], xy[ok, 1], s=6, color="red", zorder=3)
            ax.set_axis_off()
        axes[row][0].set_title(name, loc="left", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
