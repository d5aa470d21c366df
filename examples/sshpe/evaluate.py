"""COCO keypoint evaluation and the SSHPE test protocol.

* :func:`evaluate_keypoints` scores COCO keypoint results with pycocotools' ``COCOeval``
  (``iouType="keypoints"``), using the OKS sigmas of the file's own skeleton, so
  CrowdPose-14 and other layouts are scored with their constants. ``protocol="crowdpose"``
  gives the official CrowdPose protocol instead (xtcocotools' ``keypoints_crowd`` with
  ``use_area=False``, as the CrowdPose API and mmpose run it): OKS scale ``0.53 w h``,
  AP easy / medium / hard by the images' ``crowdIndex``. :func:`default_protocol` picks
  it for the CrowdPose-14 skeleton; ``protocol="auto"`` does so from the file.
* The SSHPE protocol (Xie et al., ICCV 2021, following SimpleBaseline): ground-truth
  boxes (box score 1) or a person detector's (the trainer's ``--val-boxes``; box score
  the detector's), no flip test by default, each person re-scored by its box score times
  the mean confidence of its joints above 0.2 (:func:`rescore`), then OKS-NMS at 0.9 per
  image (:func:`oks_nms`). :func:`make_results` builds the result list and
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
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray
from torch import Tensor

from posemum_aug.keypoints import CROWDPOSE_14, Skeleton
from sshpe.data import file_skeleton, keypoint_category, person_annotations, read_coco_file

__all__ = [
    "CROWDPOSE_AREA_FACTOR",
    "CROWDPOSE_STAT_NAMES",
    "CROWD_INDEX_BOUNDS",
    "PROTOCOLS",
    "STAT_NAMES",
    "ProtocolName",
    "default_protocol",
    "evaluate_keypoints",
    "make_results",
    "oks",
    "oks_nms",
    "protocol_results",
    "rescore",
    "resolve_protocol",
    "stat_names",
]

#: Keys of :func:`evaluate_keypoints` under the ``coco`` protocol, in the order of
#: ``COCOeval.stats`` for keypoints.
STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
#: Keys under the ``crowdpose`` protocol, in the order of xtcocotools' ``stats`` for
#: ``keypoints_crowd``: OKS AP and AR over all images (at most 20 detections per image),
#: then AP over the easy, medium and hard images (:data:`CROWD_INDEX_BOUNDS`).
CROWDPOSE_STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "AR",
    "AR50",
    "AR75",
    "AP_easy",
    "AP_medium",
    "AP_hard",
)
#: Values of ``protocol``: ``auto`` is :func:`default_protocol` of the file's skeleton.
PROTOCOLS = ("auto", "coco", "crowdpose")
ProtocolName = Literal["coco", "crowdpose"]
#: The official CrowdPose OKS scale (and area) of a person: this factor x box ``w * h``.
CROWDPOSE_AREA_FACTOR = 0.53
#: ``crowdIndex`` bounds of the official split: easy below the first, hard from the
#: second on, medium between (the CrowdPose API's and xtcocotools' code; the CrowdPose
#: paper states 0.1 for the first).
CROWD_INDEX_BOUNDS = (0.2, 0.8)


def default_protocol(skeleton: Skeleton) -> ProtocolName:
    """The evaluation protocol a skeleton calls for.

    Args:
        skeleton: the annotation file's skeleton (``Skeleton.from_coco_category``).

    Returns:
        ``"crowdpose"`` for CrowdPose's 14 joints (the names and order of
        :data:`~posemum_aug.keypoints.CROWDPOSE_14`), else ``"coco"``.

    Example:
        >>> from posemum_aug.keypoints import COCO_17, CROWDPOSE_14
        >>> default_protocol(CROWDPOSE_14), default_protocol(COCO_17)
        ('crowdpose', 'coco')
    """
    return "crowdpose" if skeleton.names == CROWDPOSE_14.names else "coco"


def resolve_protocol(protocol: str, skeleton: Skeleton) -> ProtocolName:
    """``protocol`` checked, with ``"auto"`` replaced by :func:`default_protocol`.

    For a trainer flag ``--protocol auto|coco|crowdpose``: resolve it once against the
    validation file's skeleton and take the metric names from :func:`stat_names`.

    Raises:
        ValueError: if ``protocol`` is not one of :data:`PROTOCOLS`.

    Example:
        >>> from posemum_aug.keypoints import COCO_17
        >>> resolve_protocol("auto", COCO_17), resolve_protocol("crowdpose", COCO_17)
        ('coco', 'crowdpose')
    """
    if protocol == "auto":
        return default_protocol(skeleton)
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {protocol!r}; expected one of {PROTOCOLS}")
    return cast(ProtocolName, protocol)


def stat_names(protocol: str) -> tuple[str, ...]:
    """The keys :func:`evaluate_keypoints` returns under ``protocol``.

    Raises:
        ValueError: for ``"auto"`` (resolve it first with :func:`resolve_protocol`) or an
            unknown name.

    Example:
        >>> stat_names("crowdpose")[-3:]
        ('AP_easy', 'AP_medium', 'AP_hard')
    """
    if protocol == "coco":
        return STAT_NAMES
    if protocol == "crowdpose":
        return CROWDPOSE_STAT_NAMES
    if protocol == "auto":
        raise ValueError(
            "stat_names('auto') depends on the file: resolve it first with "
            "resolve_protocol('auto', skeleton)"
        )
    raise ValueError(f"unknown evaluation protocol {protocol!r}; expected one of {PROTOCOLS}")


def _load_ground_truth(
    ann_file: str | Path, protocol: str = "coco"
) -> tuple[dict[str, Any], Skeleton, ProtocolName, int]:
    """The annotation file prepared for ``protocol``: its content, skeleton, the protocol
    and the person category's id.

    Every person annotation is checked for the fields the evaluation reads
    (:func:`~sshpe.data.person_annotations`: finite numbers, known images, ...); those of
    other categories are dropped. Annotation ids are renumbered ``1..N`` (pycocotools marks
    "unmatched" with id 0, so a person with id 0 could never be matched); ``iscrowd``
    (0), ``num_keypoints`` (the joints with ``v > 0``) and ``keypoints`` (zeros) are filled
    in where missing. ``coco``: ``area`` filled in where missing (the box area ``w h``).
    ``crowdpose``: every ``area`` set to ``0.53 w h`` (xtcocotools' ``use_area=False``, so
    also where the file has one) and ``crowdIndex`` checked on every image.
    """
    path = Path(ann_file)
    data = read_coco_file(path)
    category = keypoint_category(data.get("categories", []))
    if category is None:
        raise ValueError(f"{path} has no category with 'keypoints' names")
    skeleton = file_skeleton(path, category, flip_pairs=())  # OKS needs no flip pairs
    resolved = resolve_protocol(protocol, skeleton)
    k = skeleton.num_joints
    annotations = person_annotations(path, data, category, k)
    for index, ann in enumerate(annotations):
        ann["id"] = index + 1
        ann["keypoints"] = ann.get("keypoints") or [0] * (3 * k)
        ann.setdefault("iscrowd", 0)
        ann.setdefault("num_keypoints", sum(v > 0 for v in ann["keypoints"][2::3]))
        w, h = ann["bbox"][2:]
        if resolved == "crowdpose":  # xtcocotools' order, so that the OKS agree to the bit
            ann["area"] = h * w * CROWDPOSE_AREA_FACTOR
        else:  # e.g. CrowdPose's files have none: OKS needs a scale, use the box
            ann.setdefault("area", w * h)
    data["annotations"] = annotations
    if resolved == "crowdpose":
        for image in data["images"]:
            crowd_index = image.get("crowdIndex")
            if not (
                isinstance(crowd_index, int | float)
                and not isinstance(crowd_index, bool)
                and math.isfinite(crowd_index)
            ):
                raise ValueError(
                    f"{path}: the 'crowdpose' protocol splits the images into easy / medium / "
                    f"hard by their 'crowdIndex', but image {image.get('id')!r} has "
                    f"{'none' if crowd_index is None else repr(crowd_index)}; evaluate this "
                    "file with protocol='coco' (--protocol coco), or use the official "
                    "CrowdPose annotations (which carry it)"
                )
    return data, skeleton, resolved, category["id"]


def check_ground_truth(ann_file: str | Path, protocol: str = "coco") -> ProtocolName:
    """Check that :func:`evaluate_keypoints` can score results against ``ann_file`` under
    ``protocol`` (every field it reads, ``crowdIndex`` for ``crowdpose``), e.g. before
    training.

    Returns:
        The resolved protocol.

    Raises:
        ValueError: as :func:`evaluate_keypoints` for the file and the protocol.
    """
    return _load_ground_truth(ann_file, protocol)[2]


def _check_results(
    results: Sequence[dict[str, Any]], images: set[int], category_id: int, k: int, path: Path
) -> None:
    """Check the fields of every result that the evaluation reads: a known image, the
    person category, ``3 K`` finite keypoint numbers and a finite score."""
    for index, r in enumerate(results):
        if not isinstance(r, dict) or not {"image_id", "keypoints", "score"} <= r.keys():
            raise ValueError(
                f"result #{index} must be an object with 'image_id', 'category_id', "
                f"'keypoints' and 'score', got {str(r)[:80]}"
            )
        if not _is_number(r["image_id"]) or r["image_id"] not in images:
            raise ValueError(f"result for image {r['image_id']!r}, which is not in {path}")
        if r.get("category_id") != category_id:
            raise ValueError(
                f"result #{index} has the category_id {r.get('category_id')!r}, but the "
                f"person category of {path} is {category_id}"
            )
        keypoints = r["keypoints"]
        if not isinstance(keypoints, list) or len(keypoints) != 3 * k:
            count = len(keypoints) if isinstance(keypoints, list) else repr(keypoints)[:40]
            raise ValueError(f"results must have {3 * k} keypoint values ({k} joints), got {count}")
        if not all(_is_number(v) and math.isfinite(v) for v in keypoints):
            raise ValueError(
                f"result #{index} (image {r['image_id']}) has keypoint values that are not "
                "finite numbers; a NaN would score as a perfect match"
            )
        if not (_is_number(r["score"]) and math.isfinite(r["score"])):
            raise ValueError(
                f"result #{index} (image {r['image_id']}) has the score {r['score']!r}; "
                "scores must be finite numbers"
            )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_)


def _split_by_crowd_index(images: Sequence[dict[str, Any]]) -> tuple[list[Any], ...]:
    """Image ids of the easy, medium and hard images (:data:`CROWD_INDEX_BOUNDS`)."""
    first, second = CROWD_INDEX_BOUNDS
    split: tuple[list[Any], ...] = ([], [], [])
    for image in images:
        crowd_index = image["crowdIndex"]
        split[0 if crowd_index < first else 1 if crowd_index < second else 2].append(image["id"])
    return split


def evaluate_keypoints(
    results: Sequence[dict[str, Any]],
    ann_file: str | Path,
    *,
    sigmas: Sequence[float] | None = None,
    protocol: str = "coco",
    verbose: bool = False,
) -> dict[str, float]:
    """OKS average precision and recall of keypoint results with pycocotools.

    ``protocol="coco"`` (the default) is pycocotools' ``COCOeval(iouType="keypoints")``;
    an annotation without ``area`` (CrowdPose's) is scaled by its box area ``w h``.

    ``protocol="crowdpose"`` is the official CrowdPose protocol, equal to xtcocotools'
    ``COCOeval(iouType="keypoints_crowd", use_area=False)``, the evaluation of the
    CrowdPose API and of mmpose (checked against xtcocotools 1.14.3 in
    tests/test_sshpe_evaluate.py):

    * OKS scale (and area) of every person ``0.53 w h`` of its box, also where the file has
      an ``area``; a smaller scale than COCO's rule, hence a lower AP on the same results;
    * a person is ignored if ``iscrowd`` or its ``num_keypoints`` is 0 (CrowdPose counts
      only joints with visibility 2 there), while OKS runs over all labelled joints;
    * results none of whose joint scores is positive are dropped before matching;
    * at most 20 detections per image, area range "all" only;
    * ``AP_easy``, ``AP_medium``, ``AP_hard``: AP re-run on the images with
      ``crowdIndex`` < 0.2, in [0.2, 0.8), >= 0.8 (:data:`CROWD_INDEX_BOUNDS`), rounded to
      4 decimals as xtcocotools does, -1 when no image (or no person) falls in the class.

    ``protocol="auto"`` is :func:`default_protocol` of the file's skeleton.

    Args:
        results: COCO keypoint results, dicts with ``image_id``, ``category_id``,
            ``keypoints`` (flat ``x, y, score`` per joint) and ``score``. Not modified.
        ann_file: the ground-truth annotation file (COCO format, any skeleton; with
            ``crowdIndex`` on every image for the ``crowdpose`` protocol).
        sigmas: OKS sigmas overriding those of the file's skeleton
            (:meth:`~posemum_aug.keypoints.Skeleton.from_coco_category`).
        protocol: ``"coco"``, ``"crowdpose"`` or ``"auto"`` (:data:`PROTOCOLS`).
        verbose: let pycocotools print its progress and the summary table.

    Returns:
        :func:`stat_names` of the protocol as floats in ``[0, 1]``. ``coco``: ``AP``,
        ``AP50``, ``AP75``, ``APm``, ``APl``, ``AR``, ``AR50``, ``AR75``, ``ARm``, ``ARl``
        (:data:`STAT_NAMES`). ``crowdpose``: ``AP``, ``AP50``, ``AP75``, ``AR``, ``AR50``,
        ``AR75``, ``AP_easy``, ``AP_medium``, ``AP_hard`` (:data:`CROWDPOSE_STAT_NAMES`).
        pycocotools reports -1 for a range without ground truth, also for empty
        ``results`` (under ``crowdpose``: none with a positive joint score), which score 0
        elsewhere.

    Raises:
        ValueError: if the file is missing or has no keypoint category; a person annotation
            has a field the evaluation reads that is missing where required or not a
            finite number (``bbox``, ``keypoints``, ``area``, ...; see
            :func:`~sshpe.data.person_annotations`), or two images share an id; a result
            names an image not in the file or another category, has the wrong number of
            keypoint values, or a keypoint value or score that is not a finite number;
            ``sigmas`` are not ``K`` positive finite numbers; ``protocol`` is unknown; or
            under ``crowdpose`` an image has no finite ``crowdIndex``. pycocotools scores
            a NaN similarity as a match (AP 1.0 for NaN predictions), so nothing NaN
            reaches it.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    data, skeleton, resolved, category_id = _load_ground_truth(ann_file, protocol)
    names = stat_names(resolved)
    k = skeleton.num_joints
    oks_sigmas = np.asarray(skeleton.sigmas if sigmas is None else sigmas, dtype=np.float64)
    if oks_sigmas.shape != (k,) or not (np.isfinite(oks_sigmas) & (oks_sigmas > 0)).all():
        raise ValueError(f"sigmas must be {k} positive finite numbers, got {oks_sigmas.tolist()}")
    _check_results(results, {im["id"] for im in data["images"]}, category_id, k, Path(ann_file))
    if resolved == "crowdpose":  # xtcocotools skips results without a positive joint score
        results = [r for r in results if any(v > 0 for v in r["keypoints"][2::3])]
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        ground_truth = COCO()
        ground_truth.dataset = data
        ground_truth.createIndex()
        if results:
            detections = ground_truth.loadRes(copy.deepcopy(list(results)))
        else:  # loadRes refuses an empty list: the same evaluation with no detection
            detections = COCO()
            detections.dataset = {**data, "annotations": []}
            detections.createIndex()
        evaluator = COCOeval(ground_truth, detections, iouType="keypoints")
        evaluator.params.kpt_oks_sigmas = oks_sigmas
        evaluator.params.catIds = [category_id]
        evaluator.evaluate()
        evaluator.accumulate()
        if resolved == "coco":
            evaluator.summarize()
            return {name: float(v) for name, v in zip(names, evaluator.stats, strict=True)}
    return _crowdpose_stats(evaluator, data["images"], verbose)


def _crowdpose_stats(
    evaluator: Any, images: Sequence[dict[str, Any]], verbose: bool
) -> dict[str, float]:
    """xtcocotools' ``keypoints_crowd`` summary from an evaluated, accumulated ``COCOeval``."""
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.summarize()  # pycocotools' keypoint stats: 0-2 AP, 5-7 AR, maxDets 20, "all"
        stats = {
            name: float(evaluator.stats[i])
            for name, i in zip(CROWDPOSE_STAT_NAMES[:6], (0, 1, 2, 5, 6, 7), strict=True)
        }
        for name, ids in zip(CROWDPOSE_STAT_NAMES[6:], _split_by_crowd_index(images), strict=True):
            evaluator.params.imgIds = ids
            evaluator.evaluate()
            evaluator.accumulate()
            # xtcocotools: the mean of the whole "all"-area precision array, -1 entries
            # included (all -1 for a class without images), rounded to 4 decimals
            stats[name] = float(np.round(np.mean(evaluator.eval["precision"][:, :, :, 0, :]), 4))
    if verbose:
        for name, value in stats.items():
            print(f" {name:<10} @[ maxDets= 20 ] = {value:0.3f}")
    return stats


def rescore(box_scores: Tensor, joint_scores: Tensor, threshold: float = 0.2) -> Tensor:
    """SSHPE / SimpleBaseline person score: box score x mean confident joint score.

    The mean runs over joints whose score exceeds ``threshold`` (a NaN score does not); a
    person with none scores 0.

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
    total = joint_scores.where(confident, 0).sum(-1)
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
        image_ids: ``N`` integer image ids (a sequence or an integer tensor).
        scores: ``(N,)`` person scores.
        category_id: the person category of the annotation file.
        areas: optional ``(N,)`` person areas, kept under ``"area"`` for :func:`oks_nms`
            (SimpleBaseline uses the crop's ``scale_w * scale_h``); pycocotools ignores
            them.

    Returns:
        ``N`` dicts with ``image_id``, ``category_id``, ``keypoints``, ``score`` (and
        ``area``).

    Raises:
        ValueError: on mismatched shapes or an image id that is not an integer.

    Example:
        >>> import torch
        >>> out = make_results(torch.ones(1, 2, 2), torch.full((1, 2), 0.5), [7], torch.ones(1))
        >>> out[0]["image_id"], out[0]["keypoints"], out[0]["score"]
        (7, [1.0, 1.0, 0.5, 1.0, 1.0, 0.5], 1.0)
    """
    xy, js, sc = _numpy(coords), _numpy(joint_scores), _numpy(scores)
    ids = image_ids.tolist() if isinstance(image_ids, Tensor) else list(image_ids)
    bad = next((i for i in ids if not isinstance(i, int | np.integer) or isinstance(i, bool)), None)
    if bad is not None:
        raise ValueError(f"image_ids must be integers (COCO image ids), got {bad!r}")
    ids = [int(i) for i in ids]
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

    Raises:
        ValueError: if a result's score or keypoint coordinates are not finite numbers
            (NaN would keep or drop poses depending on their order).

    Example:
        >>> r = {"image_id": 1, "category_id": 1, "keypoints": [0, 0, 1, 9, 9, 1], "score": 0.9}
        >>> twin = dict(r, score=0.8)
        >>> [x["score"] for x in oks_nms([twin, r], [0.1, 0.1])]
        [0.9]
    """
    by_image: dict[Any, list[int]] = {}
    for i, r in enumerate(results):
        xy = np.asarray(r["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
        if not (math.isfinite(float(r["score"])) and np.isfinite(xy).all()):
            raise ValueError(
                f"result #{i} (image {r['image_id']}) has a score or keypoint that is not finite"
            )
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
