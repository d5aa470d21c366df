"""Reference numbers of the official CrowdPose protocol, computed by xtcocotools.

``sshpe.evaluate.evaluate_keypoints(..., protocol="crowdpose")`` re-implements
xtcocotools' ``COCOeval(iouType="keypoints_crowd", use_area=False)`` (the protocol of the
CrowdPose API and of mmpose) on top of pycocotools. This script scores deterministic
result sets on the CrowdPose file of ``../shared/data`` with xtcocotools itself and writes
the stats to ``tests/data/crowdpose_xtcocotools.json``; tests/test_sshpe_evaluate.py
regenerates the same result sets with :func:`result_sets`, scores them with our code and
asserts equality.

xtcocotools is not a dependency of the project. Run this in a throw-away environment
(xtcocotools 1.14.3's wheel needs numpy < 2)::

    python3 -m venv /tmp/xtvenv && /tmp/xtvenv/bin/pip install "numpy<2" xtcocotools
    /tmp/xtvenv/bin/python benchmarks/crowdpose_reference.py

Only numpy and the standard library are imported at module level, so the test can import
the generators below from the project's environment.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SOURCE = "crowdpose-mini/test_crowdpose.json"
OUT = ROOT / "tests" / "data" / "crowdpose_xtcocotools.json"

#: Order of xtcocotools' ``COCOeval.stats`` for ``keypoints_crowd``.
XTCOCOTOOLS_STATS = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP_easy", "AP_medium", "AP_hard")
#: The OKS sigmas the CrowdPose API and mmpose pass to xtcocotools (CrowdPose joint order).
CROWDPOSE_SIGMAS = (
    np.array([0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89, 0.79, 0.79])
    / 10.0
)
#: ``crowdIndex`` values given to the file's images (cyclically, in file order) by each
#: variant; ``None`` keeps the file's own (0.33 and 0.39: both images "medium"). The
#: others put images on either side of xtcocotools' bounds (easy < 0.2 <= medium < 0.8 <=
#: hard) so that the easy / medium / hard split is exercised.
CROWD_INDEX_VARIANTS: dict[str, tuple[float, ...] | None] = {
    "file": None,
    "easy_hard": (0.19, 0.8),
    "medium_edges": (0.2, 0.7999),
}
SEED = 20240601
#: Jitter of the labelled joints, in units of ``sqrt(w * h)`` of the person's box.
NOISES = (0.03, 0.05, 0.07, 0.1)


def crowd_index_variant(data: dict[str, Any], name: str) -> dict[str, Any]:
    """A deep copy of the annotation file with the ``crowdIndex`` values of ``name``."""
    values = CROWD_INDEX_VARIANTS[name]
    out = copy.deepcopy(data)
    if values is not None:
        for i, image in enumerate(out["images"]):
            image["crowdIndex"] = values[i % len(values)]
    return out


def _prediction(
    ann: dict[str, Any], rng: np.random.Generator, noise: float, score: float
) -> dict[str, Any]:
    """One result near ``ann``: labelled joints jittered by ``noise * sqrt(w h)``,
    unlabelled ones anywhere in the box, joint scores uniform in [0.05, 1)."""
    x, y, w, h = (float(v) for v in ann["bbox"])
    kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
    labelled = kp[:, 2] > 0
    xy = kp[:, :2].copy()
    xy += rng.normal(0.0, noise * np.sqrt(w * h), xy.shape)
    anywhere = rng.uniform((x, y), (x + w, y + h), xy.shape)
    xy[~labelled] = anywhere[~labelled]
    joint_scores = rng.uniform(0.05, 1.0, len(kp))
    flat = np.concatenate((xy, joint_scores[:, None]), axis=1).ravel()
    return {
        "image_id": ann["image_id"],
        "category_id": ann["category_id"],
        "keypoints": [float(v) for v in flat],
        "score": float(score),
    }


def _at_labels(ann: dict[str, Any], score: float, joint_score: float) -> dict[str, Any]:
    """A result exactly at ``ann``'s labels, every joint scored ``joint_score``."""
    kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
    kp[:, 2] = joint_score
    return {
        "image_id": ann["image_id"],
        "category_id": ann["category_id"],
        "keypoints": [float(v) for v in kp.ravel()],
        "score": float(score),
    }


def _shifted(
    ann: dict[str, Any], rng: np.random.Generator, score: float, joint_score: float = 0.5
) -> dict[str, Any]:
    """``ann``'s pose moved by half to one and a half box sizes: a false positive."""
    w, h = float(ann["bbox"][2]), float(ann["bbox"][3])
    kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
    step = rng.uniform(0.5, 1.5, 2) * rng.choice((-1.0, 1.0), 2) * (w, h)
    kp[:, :2] += step
    kp[:, 2] = joint_score
    return {
        "image_id": ann["image_id"],
        "category_id": ann["category_id"],
        "keypoints": [float(v) for v in kp.ravel()],
        "score": float(score),
    }


def result_sets(data: dict[str, Any], seed: int = SEED) -> dict[str, list[dict[str, Any]]]:
    """Deterministic COCO keypoint result sets for the annotations of ``data``.

    * ``exact``: every person with a labelled joint, at its labels, scores 1.
    * ``noise_<s>``: every person (also the one without labelled joints, whose ground
      truth is ignored) jittered by ``s`` box scales, random joint and person scores.
    * ``clutter``: ``noise_0.05`` plus, per person, two shifted false positives, a copy
      at the labels with all joint scores 0 (xtcocotools drops such results before
      matching) and one with negative joint scores (dropped too).
    * ``overflow``: ``noise_0.05`` plus 30 random poses in the first image, so that the
      20 detections per image of CrowdPose's ``maxDets`` cut some persons off.
    """
    persons = [a for a in data["annotations"] if not a.get("iscrowd")]
    sets: dict[str, list[dict[str, Any]]] = {}
    sets["exact"] = [_at_labels(a, 1.0, 1.0) for a in persons if max(a["keypoints"][2::3]) > 0]
    for index, noise in enumerate(NOISES):
        rng = np.random.default_rng([seed, index])
        sets[f"noise_{noise}"] = [
            _prediction(a, rng, noise, rng.uniform(0.3, 1.0)) for a in persons
        ]
    rng = np.random.default_rng([seed, 100])
    clutter = [_prediction(a, rng, 0.05, rng.uniform(0.3, 1.0)) for a in persons]
    for ann in persons:
        clutter += [_shifted(ann, rng, rng.uniform(0.0, 0.8)) for _ in range(2)]
        clutter.append(_at_labels(ann, 1.0, joint_score=0.0))
        clutter.append(_shifted(ann, rng, 0.99, joint_score=-0.5))
    sets["clutter"] = clutter
    rng = np.random.default_rng([seed, 200])
    overflow = [_prediction(a, rng, 0.05, rng.uniform(0.3, 1.0)) for a in persons]
    image = data["images"][0]
    k = len(persons[0]["keypoints"]) // 3
    for _ in range(30):
        xy = rng.uniform((0, 0), (image["width"], image["height"]), (k, 2))
        flat = np.concatenate((xy, rng.uniform(0.05, 1.0, (k, 1))), axis=1).ravel()
        overflow.append(
            {
                "image_id": image["id"],
                "category_id": persons[0]["category_id"],
                "keypoints": [float(v) for v in flat],
                "score": float(rng.uniform(0.3, 1.0)),
            }
        )
    sets["overflow"] = overflow
    return sets


def digest(obj: Any) -> str:
    """SHA-256 of ``obj`` as canonical JSON: the same result sets give the same digest."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _xtcocotools_stats(ann_file: Path, results: list[dict[str, Any]]) -> list[float]:
    import contextlib
    import io

    from xtcocotools.coco import COCO  # type: ignore[import-not-found, import-untyped, unused-ignore]
    from xtcocotools.cocoeval import COCOeval  # type: ignore[import-not-found, import-untyped, unused-ignore]

    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(ann_file))
        detections = ground_truth.loadRes(copy.deepcopy(results))
        evaluator = COCOeval(
            ground_truth, detections, "keypoints_crowd", CROWDPOSE_SIGMAS, use_area=False
        )
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(v) for v in evaluator.stats]


def main() -> None:
    import platform

    from xtcocotools.version import __version__ as xtcocotools_version  # type: ignore[import-not-found, import-untyped, unused-ignore]

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    parser.add_argument("--out", type=Path, default=OUT, help="JSON output path")
    args = parser.parse_args()
    source = args.data / SOURCE
    raw = source.read_bytes()
    data = json.loads(raw)
    sets = result_sets(data)
    stats: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in CROWD_INDEX_VARIANTS:
            ann_file = Path(tmp) / f"{variant}.json"
            ann_file.write_text(json.dumps(crowd_index_variant(data, variant)))
            stats[variant] = {
                name: dict(
                    zip(XTCOCOTOOLS_STATS, _xtcocotools_stats(ann_file, results), strict=True)
                )
                for name, results in sets.items()
            }
    record = {
        "what": "xtcocotools COCOeval(iouType='keypoints_crowd', sigmas=CROWDPOSE_SIGMAS, "
        "use_area=False) stats of result_sets() on crowd_index_variant() of the source file",
        "generator": "benchmarks/crowdpose_reference.py",
        "source": SOURCE,
        "source_sha256": hashlib.sha256(raw).hexdigest(),
        "seed": SEED,
        "crowd_index_variants": CROWD_INDEX_VARIANTS,
        "result_sets": {name: len(results) for name, results in sets.items()},
        "result_sets_sha256": digest(sets),
        "sigmas": CROWDPOSE_SIGMAS.tolist(),
        "versions": {
            "xtcocotools": xtcocotools_version,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "stats": stats,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")
    for variant, by_set in stats.items():
        for name, row in by_set.items():
            print(f"{variant:<13}{name:<11}" + " ".join(f"{v:7.4f}" for v in row.values()))


if __name__ == "__main__":
    main()
