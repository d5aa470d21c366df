"""COCO keypoint evaluation and the SSHPE test protocol.

* :func:`evaluate_keypoints` scores COCO keypoint results with pycocotools' ``COCOeval``
  (``iouType="keypoints"``), using the OKS sigmas of the file's own skeleton, so
  CrowdPose-14 and other layouts are scored with their constants.
* The SSHPE protocol (Xie et al., ICCV 2021, following SimpleBaseline): ground-truth
  boxes, no flip test by default, each person re-scored by its box score times the mean
  confidence of its joints above 0.2 (:func:`rescore`), then OKS-NMS at 0.9 per image
  (:func:`oks_nms`). :func:`make_results` builds the result list and
  :func:`protocol_results` chains the three steps.

Example:
    >>> import torch
    >>> rescore(torch.tensor([1.0, 0.5]), torch.tensor([[0.9, 0.1], [0.4, 0.6]]))
    tensor([0.9000, 0.2500])
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from torch import Tensor

from posemum_aug.keypoints import Skeleton
from sshpe.data import keypoint_category, read_coco_file

__all__ = [
    "STAT_NAMES",
    "evaluate_keypoints",
    "make_results",
    "oks",
    "oks_nms",
    "protocol_results",
    "rescore",
]

#: Keys of :func:`evaluate_keypoints`, in the order of ``COCOeval.stats`` for keypoints.
STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def _load_ground_truth(ann_file: str | Path) -> tuple[dict[str, Any], Skeleton]:
    """The annotation file, with ``area`` filled in where missing (box area)."""
    path = Path(ann_file)
    data = read_coco_file(path)
    category = keypoint_category(data.get("categories", []))
    if category is None:
        raise ValueError(f"{path} has no category with 'keypoints' names")
    for index, ann in enumerate(data.get("annotations", [])):
        if "area" not in ann:  # e.g. CrowdPose: OKS needs a scale, use the box
            try:
                ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
            except (KeyError, IndexError, TypeError, ValueError) as e:
                raise ValueError(
                    f"{path}: annotation #{index} has no 'area' and no usable 'bbox': {e!r}"
                ) from None
    return data, Skeleton.from_coco_category(category)


def evaluate_keypoints(
    results: Sequence[dict[str, Any]],
    ann_file: str | Path,
    *,
    sigmas: Sequence[float] | None = None,
    verbose: bool = False,
) -> dict[str, float]:
    """OKS average precision and recall of keypoint results with pycocotools.

    Args:
        results: COCO keypoint results, dicts with ``image_id``, ``category_id``,
            ``keypoints`` (flat ``x, y, score`` per joint) and ``score``. Not modified.
        ann_file: the ground-truth annotation file (COCO format, any skeleton).
        sigmas: OKS sigmas overriding those of the file's skeleton
            (:meth:`~posemum_aug.keypoints.Skeleton.from_coco_category`).
        verbose: let pycocotools print its progress and summary table.

    Returns:
        ``AP``, ``AP50``, ``AP75``, ``APm``, ``APl``, ``AR``, ``AR50``, ``AR75``, ``ARm``,
        ``ARl`` as floats in ``[0, 1]``; pycocotools reports -1 for an area range without
        ground truth. Empty ``results`` give all zeros.

    Raises:
        ValueError: if the file is missing or has no keypoint category, or a result
            names an image not in the file or has the wrong number of keypoints.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    data, skeleton = _load_ground_truth(ann_file)
    if not results:
        return dict.fromkeys(STAT_NAMES, 0.0)
    k = skeleton.num_joints
    image_ids = {im["id"] for im in data["images"]}
    for r in results:
        if r["image_id"] not in image_ids:
            raise ValueError(f"result for image {r['image_id']!r}, which is not in {ann_file}")
        if len(r["keypoints"]) != 3 * k:
            raise ValueError(
                f"results must have {3 * k} keypoint values ({k} joints), got {len(r['keypoints'])}"
            )
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        ground_truth = COCO()
        ground_truth.dataset = data
        ground_truth.createIndex()
        detections = ground_truth.loadRes(copy.deepcopy(list(results)))
        evaluator = COCOeval(ground_truth, detections, iouType="keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(
            skeleton.sigmas if sigmas is None else sigmas, dtype=np.float64
        )
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, evaluator.stats, strict=True)}


def rescore(box_scores: Tensor, joint_scores: Tensor, threshold: float = 0.2) -> Tensor:
    """SSHPE / SimpleBaseline person score: box score x mean confident joint score.

    The mean runs over joints whose score exceeds ``threshold``; a person with none
    scores 0.

    Args:
        box_scores: ``(N,)`` detection scores (1 for ground-truth boxes).
        joint_scores: ``(N, K)`` per-joint confidences (heatmap maxima).
        threshold: joints at or below it are left out of the mean.

    Returns:
        ``(N,)`` scores, dtype of ``joint_scores``.

    Raises:
        ValueError: on mismatched shapes.

    Example:
        >>> import torch
        >>> rescore(torch.ones(1), torch.tensor([[0.1, 0.2, 0.3]]))
        tensor([0.3000])
    """
    if joint_scores.dim() != 2 or box_scores.shape != joint_scores.shape[:1]:
        raise ValueError(
            "box_scores must be (N,) and joint_scores (N, K), "
            f"got {tuple(box_scores.shape)} and {tuple(joint_scores.shape)}"
        )
    confident = joint_scores > threshold
    total = (joint_scores * confident).sum(-1)
    mean = total / confident.sum(-1).clamp(min=1)
    return box_scores.to(joint_scores) * mean


def _numpy(x: Tensor | ArrayLike) -> NDArray[np.float64]:
    if isinstance(x, Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def make_results(
    coords: Tensor | ArrayLike,
    joint_scores: Tensor | ArrayLike,
    image_ids: Sequence[int] | Tensor,
    scores: Tensor | ArrayLike,
    *,
    category_id: int = 1,
    areas: Tensor | ArrayLike | None = None,
) -> list[dict[str, Any]]:
    """COCO keypoint results from predictions.

    Args:
        coords: ``(N, K, 2)`` keypoints in image pixels.
        joint_scores: ``(N, K)`` per-joint confidences (written as the third value).
        image_ids: ``N`` image ids.
        scores: ``(N,)`` person scores.
        category_id: the person category of the annotation file.
        areas: optional ``(N,)`` person areas, kept under ``"area"`` for :func:`oks_nms`
            (SimpleBaseline uses the crop's ``scale_w * scale_h``); pycocotools ignores
            them.

    Returns:
        ``N`` dicts with ``image_id``, ``category_id``, ``keypoints``, ``score`` (and
        ``area``).

    Raises:
        ValueError: on mismatched shapes.

    Example:
        >>> import torch
        >>> out = make_results(torch.ones(1, 2, 2), torch.full((1, 2), 0.5), [7], torch.ones(1))
        >>> out[0]["image_id"], out[0]["keypoints"], out[0]["score"]
        (7, [1.0, 1.0, 0.5, 1.0, 1.0, 0.5], 1.0)
    """
    xy, js, sc = _numpy(coords), _numpy(joint_scores), _numpy(scores)
    ids = [int(i) for i in image_ids]
    n = len(ids)
    if xy.shape[:1] != (n,) or xy.ndim != 3 or xy.shape[2] != 2 or js.shape != xy.shape[:2]:
        raise ValueError(
            f"coords must be (N, K, 2) and joint_scores (N, K) with N = {n} image ids, "
            f"got {xy.shape} and {js.shape}"
        )
    if sc.shape != (n,):
        raise ValueError(f"scores must have shape ({n},), got {sc.shape}")
    area = None if areas is None else _numpy(areas)
    if area is not None and area.shape != (n,):
        raise ValueError(f"areas must have shape ({n},), got {area.shape}")
    flat = np.concatenate((xy, js[..., None]), axis=-1).reshape(n, -1)
    out = []
    for i in range(n):
        result: dict[str, Any] = {
            "image_id": ids[i],
            "category_id": category_id,
            "keypoints": [round(float(v), 3) for v in flat[i]],
            "score": float(sc[i]),
        }
        if area is not None:
            result["area"] = float(area[i])
        out.append(result)
    return out


def oks(
    keypoints: NDArray[np.float64],
    others: NDArray[np.float64],
    area: float,
    other_areas: NDArray[np.float64],
    sigmas: Sequence[float],
) -> NDArray[np.float64]:
    """Object keypoint similarity of one pose with several, as in OKS-NMS.

    ``mean_k exp(-d_k^2 / (2 s^2 (2 sigma_k)^2))`` with ``s^2`` the mean of the two areas
    (all joints count, as SimpleBaseline's ``oks_iou``).

    Args:
        keypoints: ``(K, 2)`` one pose.
        others: ``(M, K, 2)`` poses to compare with.
        area: the pose's area.
        other_areas: ``(M,)`` their areas.
        sigmas: ``K`` OKS sigmas.

    Returns:
        ``(M,)`` similarities in ``(0, 1]``.

    Example:
        >>> import numpy as np
        >>> oks(np.zeros((2, 2)), np.zeros((1, 2, 2)), 100.0, np.array([100.0]), [0.1, 0.1])
        array([1.])
    """
    variances = (2 * np.asarray(sigmas, dtype=np.float64)) ** 2
    d2 = ((others - keypoints) ** 2).sum(-1)
    scale = (area + other_areas)[:, None] / 2 + np.finfo(np.float64).eps
    out: NDArray[np.float64] = np.exp(-d2 / variances / scale / 2).mean(-1)
    return out


def _area(result: dict[str, Any]) -> float:
    """A result's ``area``, else the area of its keypoints' bounding box."""
    if "area" in result:
        return float(result["area"])
    xy = np.asarray(result["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
    w, h = xy.max(0) - xy.min(0)
    return float(w * h)


def oks_nms(
    results: Sequence[dict[str, Any]], sigmas: Sequence[float], threshold: float = 0.9
) -> list[dict[str, Any]]:
    """Greedy non-maximum suppression by OKS, per image.

    In each image, poses are taken by decreasing score; a pose whose OKS
    (:func:`oks`) with an already kept one exceeds ``threshold`` is dropped.

    Args:
        results: COCO keypoint results (see :func:`make_results`); an ``area`` key is
            used as the pose's area, else its keypoints' bounding-box area.
        sigmas: ``K`` OKS sigmas (``Skeleton.sigmas``).
        threshold: suppression threshold (0.9 in SSHPE).

    Returns:
        The kept results, in their input order.

    Example:
        >>> r = {"image_id": 1, "category_id": 1, "keypoints": [0, 0, 1, 9, 9, 1], "score": 0.9}
        >>> twin = dict(r, score=0.8)
        >>> [x["score"] for x in oks_nms([twin, r], [0.1, 0.1])]
        [0.9]
    """
    by_image: dict[Any, list[int]] = {}
    for i, r in enumerate(results):
        by_image.setdefault(r["image_id"], []).append(i)
    keep: list[int] = []
    for indices in by_image.values():
        order = sorted(indices, key=lambda i: -float(results[i]["score"]))
        poses = np.stack(
            [
                np.asarray(results[i]["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
                for i in order
            ]
        )
        areas = np.array([_area(results[i]) for i in order])
        alive = np.ones(len(order), dtype=bool)
        for a in range(len(order)):
            if not alive[a]:
                continue
            keep.append(order[a])
            rest = np.flatnonzero(alive[a + 1 :]) + a + 1
            if len(rest):
                alive[
                    rest[oks(poses[a], poses[rest], areas[a], areas[rest], sigmas) > threshold]
                ] = False
    return [results[i] for i in sorted(keep)]


def protocol_results(
    coords: Tensor,
    joint_scores: Tensor,
    box_scores: Tensor,
    image_ids: Sequence[int] | Tensor,
    sigmas: Sequence[float],
    *,
    category_id: int = 1,
    areas: Tensor | None = None,
    rescore_threshold: float = 0.2,
    nms_threshold: float = 0.9,
) -> list[dict[str, Any]]:
    """The SSHPE test protocol: :func:`rescore`, :func:`make_results`, :func:`oks_nms`.

    Args:
        coords: ``(N, K, 2)`` predicted keypoints in image pixels.
        joint_scores: ``(N, K)`` per-joint confidences.
        box_scores: ``(N,)`` box scores (1 for ground-truth boxes).
        image_ids: ``N`` image ids.
        sigmas: ``K`` OKS sigmas.
        category_id: the person category id.
        areas: optional ``(N,)`` areas for OKS-NMS (see :func:`make_results`).
        rescore_threshold: joint confidence threshold of the rescoring (0.2).
        nms_threshold: OKS-NMS threshold (0.9).

    Returns:
        COCO keypoint results ready for :func:`evaluate_keypoints`.

    Example:
        >>> import torch
        >>> coords = torch.zeros(2, 2, 2)  # two identical poses in one image
        >>> box_scores = torch.tensor([0.5, 1.0])
        >>> out = protocol_results(coords, torch.ones(2, 2), box_scores, [3, 3], [0.1, 0.1])
        >>> [r["score"] for r in out]
        [1.0]
    """
    scores = rescore(box_scores, joint_scores, rescore_threshold)
    results = make_results(
        coords, joint_scores, image_ids, scores, category_id=category_id, areas=areas
    )
    return oks_nms(results, sigmas, nms_threshold)
