"""Pseudo-label diagnostics: how good the teacher's targets are, measured on ignored labels.

Under the SSHPE protocol the unlabelled pool is often a labelled file whose labels are
ignored (COCO train2017, the synthetic set). Those labels can then *measure* what the
unlabelled loss is fitted to, without ever entering it. :func:`pseudo_label_quality`
compares the teacher's decoded peaks on the easy view with the hidden keypoints mapped
into that view; :func:`batchnorm_gap` measures how different a network's heatmaps are
with BatchNorm on running statistics (eval mode, what EMAN's teacher and every evaluation
use) and on the batch's statistics (train mode, what the student is optimised with).

Accuracy is PCK: a joint is correct when its decoded peak lies within ``alpha x H`` of
the label, ``H`` the crop height (the crop spans 1.25 x the person's box, so ``alpha =
0.05`` is about 6 % of the person's height). Only joints labelled in the file (``v > 0``)
and inside the view count.

Every key returned contains ``pseudo`` so the trainer's ``metrics.jsonl`` can be filtered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from posemum_aug.batchnorm import frozen_running_stats
from posemum_aug.heatmap import decode_heatmaps
from posemum_aug.keypoints import affine_keypoints, as_flip_index, visible_in_frame
from sshpe.methods import SSHPEMethod, unwrap

#: Joint groups by name fragment, first match wins; joints matching none are ``"other"``.
_GROUP_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("head", ("nose", "eye", "ear", "head", "neck", "mouth", "face")),
    ("arms", ("shoulder", "elbow", "wrist", "hand")),
    ("legs", ("hip", "knee", "ankle", "foot", "heel", "toe")),
)


def joint_groups(names: Sequence[str]) -> dict[str, list[int]]:
    """Joint indices per body group (``head``, ``arms``, ``legs``, ``other``), by name.

    Args:
        names: the skeleton's ``K`` joint names.

    Returns:
        Non-empty groups only, in the order head, arms, legs, other.

    Example:
        >>> joint_groups(["nose", "left_shoulder", "right_knee", "tail"])
        {'head': [0], 'arms': [1], 'legs': [2], 'other': [3]}
    """
    groups: dict[str, list[int]] = {name: [] for name, _ in _GROUP_WORDS}
    groups["other"] = []
    for index, joint in enumerate(names):
        lower = joint.lower()
        group = next((g for g, words in _GROUP_WORDS if any(w in lower for w in words)), "other")
        groups[group].append(index)
    return {g: idx for g, idx in groups.items() if idx}


def keypoints_in_view(
    keypoints: Tensor,
    visibility: Tensor,
    matrix: Tensor,
    flipped: Tensor,
    flip_index: Sequence[int],
    size: tuple[int, int],
) -> tuple[Tensor, Tensor]:
    """Base-crop labels mapped into an augmented view, joints swapped where it was flipped.

    Args:
        keypoints: ``(B, K, 2)`` base-crop keypoints.
        visibility: ``(B, K)``, ``> 0`` where labelled.
        matrix: ``(B, 2, 3)`` base crop -> view (flip included).
        flipped: ``(B,)`` bool, samples whose sides were swapped.
        flip_index: the skeleton's flip indices.
        size: ``(H, W)`` of the view.

    Returns:
        ``(keypoints, labelled)``: ``(B, K, 2)`` view pixels and ``(B, K)`` bool, labelled
        and inside the view.
    """
    points = affine_keypoints(keypoints.double(), matrix.double()).to(keypoints.dtype)
    inside = visible_in_frame(points, visibility, size) > 0
    # The matrix already mirrors the flipped samples' points; their joints remain to swap.
    index = as_flip_index(flip_index, keypoints.shape[1], keypoints.device)
    flipped = flipped.to(keypoints.device)
    points = torch.where(flipped[:, None, None], points.index_select(1, index), points)
    inside = torch.where(flipped[:, None], inside.index_select(1, index), inside)
    return points, inside


def _mean(values: Tensor, mask: Tensor) -> float:
    """Mean of ``values`` over ``mask``; NaN when the mask is empty (no data, not zero)."""
    count = int(mask.sum())
    return float((values * mask).sum() / count) if count else float("nan")


@torch.no_grad()
def pseudo_label_quality(
    targets: Tensor,
    weights: Tensor,
    keypoints: Tensor,
    labelled: Tensor,
    groups: dict[str, list[int]],
    input_height: int,
    *,
    alpha: float = 0.05,
    refine: Literal["dark", "quarter", "none"] = "dark",
) -> dict[str, float]:
    """PCK of the teacher's pseudo-labels against hidden labels, overall, per group, kept.

    Args:
        targets: ``(B, K, h, w)`` teacher heatmaps on the view (before the hard view).
        weights: ``(B, K)`` the filters' per-joint weights (``> 0``: kept).
        keypoints: ``(B, K, 2)`` hidden labels in view pixels (:func:`keypoints_in_view`).
        labelled: ``(B, K)`` bool, labelled and inside the view.
        groups: :func:`joint_groups` of the skeleton.
        input_height: ``H`` of the view; the heatmaps' stride is ``H / h``.
        alpha: PCK threshold as a fraction of ``H``.
        refine: sub-pixel decoding of the peaks.

    Returns:
        ``pseudo_pck`` (all labelled joints), ``pseudo_pck_<group>``, ``pseudo_kept``
        (share of labelled joints the filters keep), ``pseudo_pck_kept`` (PCK of those),
        ``pseudo_err`` (mean distance in view pixels) and ``pseudo_peak`` (mean teacher
        peak over all joints). A statistic with no joint to measure is NaN.

    Example:
        >>> from posemum_aug.heatmap import render_heatmaps
        >>> points = torch.tensor([[[10.0, 12.0], [4.0, 20.0]]])
        >>> maps, _ = render_heatmaps(points / 4, torch.ones(1, 2), (8, 6), 1.0, unbiased=True)
        >>> stats = pseudo_label_quality(
        ...     maps, torch.tensor([[1.0, 0.0]]), points, torch.ones(1, 2, dtype=torch.bool),
        ...     {"head": [0], "legs": [1]}, input_height=32)
        >>> stats["pseudo_pck"], stats["pseudo_kept"], stats["pseudo_pck_kept"]
        (1.0, 0.5, 1.0)
    """
    peaks, scores = decode_heatmaps(targets.float(), refine=refine)
    stride = input_height / targets.shape[-2]
    error = (peaks * stride - keypoints.float()).norm(dim=-1)
    correct = (error <= alpha * input_height).float()
    labelled = labelled.bool()
    kept = labelled & (weights > 0)
    stats = {
        "pseudo_pck": _mean(correct, labelled),
        "pseudo_err": _mean(error, labelled),
        "pseudo_kept": _mean(kept.float(), labelled),
        "pseudo_pck_kept": _mean(correct, kept),
        "pseudo_peak": float(scores.mean()) if scores.numel() else float("nan"),
    }
    for group, index in groups.items():
        stats[f"pseudo_pck_{group}"] = _mean(correct[:, index], labelled[:, index])
    return stats


@torch.no_grad()
def batchnorm_gap(
    model: nn.Module,
    image: Tensor,
    keypoints: Tensor,
    labelled: Tensor,
    name: str,
    *,
    alpha: float = 0.05,
    refine: Literal["dark", "quarter", "none"] = "dark",
) -> dict[str, float]:
    """Mean peak and PCK of ``model`` with BatchNorm on running and on batch statistics.

    Neither pass changes the model (see :func:`batch_statistics`).

    Args:
        model: a heatmap network (unmixed: pause any mixing hooks around the call).
        image: ``(B, 3, H, W)`` views.
        keypoints: ``(B, K, 2)`` hidden labels in view pixels.
        labelled: ``(B, K)`` bool, labelled and inside the view.
        name: key prefix, e.g. ``"student"``.
        alpha: PCK threshold as a fraction of ``H``.
        refine: sub-pixel decoding of the peaks.

    Returns:
        ``pseudo_<name>_peak_eval``, ``pseudo_<name>_peak_batch``,
        ``pseudo_<name>_pck_eval``, ``pseudo_<name>_pck_batch``.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2)).eval()
        >>> stats = batchnorm_gap(net, torch.randn(2, 3, 8, 8), torch.zeros(2, 2, 2),
        ...                       torch.ones(2, 2, dtype=torch.bool), "net")
        >>> sorted(stats)  # doctest: +NORMALIZE_WHITESPACE
        ['pseudo_net_pck_batch', 'pseudo_net_pck_eval',
         'pseudo_net_peak_batch', 'pseudo_net_peak_eval']
    """
    was_training = model.training
    stats: dict[str, float] = {}
    try:
        model.eval()
        runs = {"eval": model(image).float()}
        with batch_statistics(model):
            runs["batch"] = model(image).float()
    finally:
        model.train(was_training)
    groups: dict[str, list[int]] = {}
    for mode, heatmaps in runs.items():
        weights = heatmaps.new_ones(heatmaps.shape[:2])
        quality = pseudo_label_quality(
            heatmaps,
            weights,
            keypoints,
            labelled,
            groups,
            image.shape[-2],
            alpha=alpha,
            refine=refine,
        )
        stats[f"pseudo_{name}_peak_{mode}"] = quality["pseudo_peak"]
        stats[f"pseudo_{name}_pck_{mode}"] = quality["pseudo_pck"]
    return stats


@contextmanager
def batch_statistics(model: nn.Module) -> Iterator[None]:
    """Run ``model``'s BatchNorm on batch statistics, leaving every buffer as it was.

    Inside, every BatchNorm layer is in train mode (normalising with the statistics of
    the batch it sees) and writes nothing (:func:`~posemum_aug.frozen_running_stats`);
    on exit the layers' modes are restored, so a diagnostic forward pass changes nothing.

    Args:
        model: any module.

    Example:
        >>> bn = nn.BatchNorm1d(2).eval()
        >>> with batch_statistics(bn):
        ...     _ = bn(torch.randn(4, 2))
        >>> bn.training, float(bn.running_mean.abs().sum()), int(bn.num_batches_tracked)
        (False, 0.0, 0)
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modes = [m.training for m in norms]
    try:
        with frozen_running_stats(model):
            for m in norms:
                m.train()
            yield
    finally:
        for m, mode in zip(norms, modes, strict=True):
            m.train(mode)


def step_diagnostics(
    method: SSHPEMethod,
    keypoints: Tensor,
    visibility: Tensor,
    groups: dict[str, list[int]],
    *,
    alpha: float = 0.05,
) -> dict[str, float]:
    """Every pseudo-label statistic of the last unlabelled step of ``method``.

    Call it after :meth:`SSHPEMethod.losses` with the labels the unlabelled batch carried
    in its file (which the step never saw): :func:`pseudo_label_quality` of the teacher's
    targets and :func:`batchnorm_gap` of the student (mixing paused) and the teacher on
    the same easy view. For the dual methods the "teacher" is network B, which makes
    network A's targets (:meth:`~sshpe.methods.SSHPEMethod.pseudo_label_network`; A's
    EMAN copy only serves evaluation), run with its mixing paused.

    Args:
        method: the training step, after a semi-supervised :meth:`~SSHPEMethod.losses`.
        keypoints: ``(B, K, 2)`` the unlabelled batch's hidden base-crop keypoints.
        visibility: ``(B, K)`` their visibility (``> 0`` labelled).
        groups: :func:`joint_groups` of the skeleton.
        alpha: PCK threshold as a fraction of the crop height.

    Returns:
        The statistics, every key containing ``pseudo``.

    Raises:
        ValueError: if ``method`` has run no unlabelled step yet.
    """
    pseudo = method.last_pseudo
    if pseudo is None:
        raise ValueError("step_diagnostics needs a semi-supervised step first")
    view = pseudo.view
    size = (view.image.shape[-2], view.image.shape[-1])
    points, labelled = keypoints_in_view(
        keypoints.to(view.image.device),
        visibility.to(view.image.device),
        pseudo.matrix.to(view.image.device),
        pseudo.flipped,
        method.skeleton.flip_index,
        size,
    )
    refine = method.config.decode
    stats = pseudo_label_quality(
        pseudo.targets,
        pseudo.weights,
        points,
        labelled,
        groups,
        size[0],
        alpha=alpha,
        refine=refine,
    )
    with method.unmixed():
        for name, network in (
            ("student", unwrap(method.student)),
            ("teacher", method.pseudo_label_network()),
        ):
            stats |= batchnorm_gap(
                network, view.image, points, labelled, name, alpha=alpha, refine=refine
            )
    return stats


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (a line a kill cut short is skipped)."""
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def plot_training_curves(metrics: Path, png: Path) -> None:
    """A PNG of a run's curves from its ``metrics.jsonl``.

    Panels: validation AP (student, teacher) against steps; the losses; the pseudo-label
    PCK (all joints, per group, the kept joints) and the share kept; the mean heatmap peak
    of the teacher's targets and of the student and teacher with BatchNorm on running
    (eval) and batch statistics. Panels without data are left out.

    Args:
        metrics: the run's ``metrics.jsonl``.
        png: where to write the figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics)

    def series(key: str) -> tuple[list[float], list[float]]:
        points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        return [p[0] for p in points], [p[1] for p in points]

    evals = [r for r in records if "eval" in r]
    panels: list[tuple[str, dict[str, tuple[list[float], list[float]]]]] = []
    if evals:
        panels.append(
            (
                "validation AP",
                {
                    model: ([r["step"] for r in evals], [r["eval"][model]["AP"] for r in evals])
                    for model in evals[0]["eval"]
                },
            )
        )
    panels.append(("loss", {k: series(k) for k in ("sup", "unsup")}))
    keys = sorted({k for r in records for k in r if k.startswith("pseudo_")})
    pck = [k for k in keys if k.startswith("pseudo_pck") or k == "pseudo_kept"]
    panels.append(("pseudo-labels: PCK, share kept", {k[7:]: series(k) for k in pck}))
    peaks = [k for k in keys if "peak" in k]
    panels.append(("mean heatmap peak (BN eval / batch stats)", {k[7:]: series(k) for k in peaks}))
    panels = [(t, {k: v for k, v in lines.items() if v[0]}) for t, lines in panels]
    panels = [(t, lines) for t, lines in panels if lines]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (title, lines) in zip(axes[0], panels, strict=True):
        for label, (xs, ys) in lines.items():
            ax.plot(xs, ys, label=label, marker="o" if len(xs) < 12 else None, markersize=3)
        if title == "loss":
            ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
