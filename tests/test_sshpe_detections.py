"""A person detector's boxes in the example trainer (issue 21, items 1 and 2):
``--val-boxes`` (SimpleBaseline's and SSHPE's test on detector boxes) and
``--unlabeled-boxes`` (SSHPE's wild unlabelled pool), on the real files of
``../shared/data`` and on the tiny synthetic set.

Detector boxes are made from the ground-truth boxes (jittered, scored), with a looser
second box of each person (what OKS-NMS removes), false positives and a detection of
another category (skipped).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sshpe.cli import parse_config
from sshpe.data import (
    coco_file_name,
    crop_matrix,
    detection_instances,
    load_coco_persons,
    read_coco_file,
)
from sshpe.evaluate import STAT_NAMES
from sshpe.loaders import build_datasets, loader
from sshpe.validation import evaluate_models
from torch import Tensor, nn

from posemum_aug.heatmap import render_heatmaps
from posemum_aug.keypoints import affine_keypoints
from tests.paths import CROWDPOSE, EXAMPLES, OCHUMAN, REAL, needs_shared_data
from tests.test_train import TINY, _run, data
from tests.test_train_faults import _one_error_line

__all__ = ["data"]  # the tiny synthetic set, shared with test_train

#: A category id that is not the person's: such detections are skipped.
CAR = 3


def make_detections(
    ann_file: Path, seed: int = 0, *, duplicates: bool = True, false_positives: int = 2
) -> tuple[list[dict[str, Any]], list[int | None]]:
    """Detector-like boxes on the images of ``ann_file`` and, for each, the position of the
    person annotation it was made from (``None`` for a false positive or another category).

    Every non-crowd person box, each side jittered by N(0, 5 %) of the box size, scores
    U(0.6, 1); with ``duplicates``, a second box 10 % larger scores 0.5 x that; per image,
    ``false_positives`` boxes elsewhere score U(0.05, 0.4); one detection is of a car.
    """
    coco = json.loads(ann_file.read_text())
    rng = np.random.default_rng(seed)
    detections: list[dict[str, Any]] = []
    sources: list[int | None] = []

    def add(image_id: int, box: Any, score: float, source: int | None, category: int = 1) -> None:
        bbox = [round(float(v), 2) for v in box]
        detections.append(
            {"image_id": image_id, "category_id": category, "bbox": bbox, "score": score}
        )
        sources.append(source)

    for index, ann in enumerate(coco["annotations"]):
        if ann.get("iscrowd", 0):
            continue
        x, y, w, h = ann["bbox"]
        jitter = rng.normal(0, 0.05, 4) * [w, h, w, h]
        box = np.array([x, y, w, h]) + jitter
        score = float(rng.uniform(0.6, 1.0))
        add(ann["image_id"], box, round(score, 4), index)
        if duplicates:
            looser = [box[0] - 0.05 * box[2], box[1] - 0.05 * box[3], 1.1 * box[2], 1.1 * box[3]]
            add(ann["image_id"], looser, round(0.5 * score, 4), index)
    for image in coco["images"]:
        width, height = image["width"], image["height"]
        for _ in range(false_positives):
            w, h = rng.uniform(0.1, 0.3) * width, rng.uniform(0.2, 0.5) * height
            box = [rng.uniform(0, width - w), rng.uniform(0, height - h), w, h]
            add(image["id"], box, round(float(rng.uniform(0.05, 0.4)), 4), None)
    add(coco["images"][0]["id"], [1, 2, 30, 40], 0.99, None, category=CAR)
    return detections, sources


def _write(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path


def _images_of(ann_file: Path) -> Path:
    return ann_file.parent


# ------------------------------------------------------------------------ the loader


@pytest.mark.parametrize("ann_file", REAL)
@needs_shared_data
def test_detections_load_as_person_boxes_of_the_files_images(
    ann_file: Path, tmp_path: Path
) -> None:
    detections, sources = make_detections(ann_file)
    dets = _write(tmp_path / "dets.json", detections)
    persons = load_coco_persons(ann_file)
    k = persons.skeleton.num_joints
    found = detection_instances(dets, persons.category_id, k, ann_file)
    people = [i for i, d in enumerate(detections) if d["category_id"] == persons.category_id]
    assert [p.ann_id for p in found] == people  # file order, the car skipped
    images = {im["id"]: im for im in read_coco_file(ann_file)["images"]}
    for p in found:
        det, image = detections[p.ann_id], images[p.image_id]
        assert p.score == det["score"] and p.file_name == image["file_name"]
        assert p.keypoints.shape == (k, 3) and not p.keypoints.any()
        x, y, w, h = det["bbox"]  # clipped to the image, as ground-truth boxes are
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, image["width"]), min(y + h, image["height"])
        assert p.bbox == pytest.approx((x0, y0, x1 - x0, y1 - y0))
    assert sum(s is not None for s in sources) == 2 * len(persons.instances)


def test_without_image_info_ids_name_cocos_files(tmp_path: Path) -> None:
    detections = [
        {"image_id": 139, "category_id": 1, "bbox": [-5, 10, 50, 80.5], "score": 0.9},
        {"image_id": 7, "category_id": 1, "bbox": [1e6, 1e6, 20, 20], "score": 1},
    ]
    found = detection_instances(_write(tmp_path / "dets.json", detections), 1, 17)
    assert [p.file_name for p in found] == ["000000000139.jpg", "000000000007.jpg"]
    assert found[0].bbox == (0.0, 10.0, 45.0, 80.5)  # the image's size is unknown: x >= 0 only
    assert coco_file_name(581781) == "000000581781.jpg"


def _good() -> list[dict[str, Any]]:
    return [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 80], "score": 0.9},
        {"image_id": 2, "category_id": 1, "bbox": [20, 30, 40, 60], "score": 0.5},
    ]


#: Bad detection-results files: the content, and what the one error line must say.
BAD_FILES: dict[str, tuple[Any, str]] = {
    "not a list": ({"annotations": _good()}, "is not a COCO detection-results file"),
    "empty list": ([], "has no detection of the person category (category_id 1): it holds"),
    "other category only": (
        [dict(d, category_id=CAR) for d in _good()],
        "has no detection of the person category (category_id 1): only of categories [3]",
    ),
    "unknown image": (
        [_good()[0], dict(_good()[1], image_id=999)],
        "detection #1 is of image 999, which is not in",
    ),
    "nan box": (
        [_good()[0], dict(_good()[1], bbox=[1, float("nan"), 3, 4])],
        "detection #1 has a bbox that is not 4 finite numbers",
    ),
    "infinite box": (
        [dict(_good()[0], bbox=[1, 2, float("inf"), 4])],
        "detection #0 has a bbox that is not 4 finite numbers",
    ),
    "huge integer box": (  # math.isfinite overflowed on it
        [dict(_good()[0], bbox=[10**400, 2, 3, 4])],
        "detection #0 has a bbox that is not 4 finite numbers within 1e+07 px",
    ),
    "huge score": ([dict(_good()[0], score=10**400)], "detection #0 has the score 1000"),
    "short box": ([dict(_good()[0], bbox=[1, 2, 3])], "has a bbox that is not 4 finite"),
    "negative box": ([dict(_good()[0], bbox=[1, 2, -3, 4])], "has a bbox of negative size"),
    "nan score": ([dict(_good()[0], score=float("nan"))], "detection #0 has the score nan"),
    "text score": ([dict(_good()[0], score="0.9")], "detection #0 has the score 0.9"),
    "no score": ([{k: v for k, v in _good()[0].items() if k != "score"}], "the score None"),
    "text image id": (
        [dict(_good()[0], image_id="1")],
        "detection #0 must have integer 'image_id' and 'category_id'",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_detection_files_raise_value_error_naming_the_file(
    case: str, data: list[str], tmp_path: Path
) -> None:
    content, message = BAD_FILES[case]
    bad = tmp_path / "dets.json"
    bad.write_text(json.dumps(content))  # NaN and Infinity as Python's json writes them
    with pytest.raises(ValueError, match="^" + re.escape(str(bad))) as error:
        detection_instances(bad, 1, 17, Path(data[5]))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_and_unreadable_files_are_named(data: list[str], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=re.escape(f"results file not found: {tmp_path}/x")):
        detection_instances(tmp_path / "x.json", 1, 17)
    junk = tmp_path / "junk.json"
    junk.write_text("[{")
    with pytest.raises(ValueError, match=re.escape(f"{junk} is not a COCO detection-results")):
        detection_instances(junk, 1, 17)
    negative = _write(tmp_path / "negative.json", [dict(_good()[0], image_id=-4)])
    with pytest.raises(ValueError, match="zero-padded to 12 digits"):
        detection_instances(negative, 1, 17)  # no image-info file: ids are file names
    info = _write(tmp_path / "info.json", {"categories": []})
    with pytest.raises(ValueError, match=re.escape(f"{info} is not a COCO annotation or image")):
        detection_instances(_write(tmp_path / "d.json", _good()), 1, 17, info)


# ------------------------------------------------------------- evaluation: --val-boxes


class Oracle(nn.Module):
    """A 'network' whose heatmaps are known per crop: looked up by the crop's pixels."""

    def __init__(self, table: dict[bytes, Tensor]) -> None:
        super().__init__()
        self.table = table

    def forward(self, image: Tensor) -> Tensor:
        return torch.stack([self.table[crop.numpy().tobytes()] for crop in image])


def _oracle(
    dataset: Any, ann_file: Path, sources: list[int | None] | None, seed: int
) -> tuple[Oracle, int]:
    """Heatmaps of a known pose per person, whatever box it is cropped at: its labelled
    joints moved by N(0, 3 %) of its box height with peaks in U(0.6, 1), the joints it
    lacks at random places in its box with peaks 0.15 (below the rescoring's 0.2); a
    false positive's joints at random places with peaks 0.3. Returns the oracle and the
    number of crops of a person.

    Args:
        sources: the annotation (position in the file) each detection (position) was
            made from, ``None`` for a false positive; ``None``: ground-truth boxes.
    """
    annotations = json.loads(ann_file.read_text())["annotations"]
    position = {ann["id"]: i for i, ann in enumerate(annotations)}
    height, width = dataset.input_size
    size, k = (height // 4, width // 4), dataset.num_joints
    table, labelled = {}, 0
    for index in range(len(dataset)):
        sample = dataset[index]
        person = dataset.instances[index]
        source = position[person.ann_id] if sources is None else sources[person.ann_id]
        if source is None:
            generator = torch.Generator().manual_seed(seed + 10**6 + index)
            xy = torch.rand(1, k, 2, generator=generator) * torch.tensor([size[1], size[0]])
            peaks = torch.full((k,), 0.3)
        else:  # the same pose in the image for every box of this person
            generator = torch.Generator().manual_seed(seed + source)
            ann = annotations[source]
            joints = torch.tensor(ann["keypoints"], dtype=torch.float64).view(k, 3)
            x, y, w, h = ann["bbox"]
            anywhere = torch.rand(k, 2, generator=generator, dtype=torch.float64)
            anywhere = anywhere * torch.tensor([w, h]) + torch.tensor([x, y])
            moved = joints[:, :2] + 0.03 * h * torch.randn(k, 2, generator=generator).double()
            seen = joints[:, 2] > 0
            pose = torch.where(seen[:, None], moved, anywhere)
            matrix = crop_matrix(
                sample["center"].double(), sample["scale"].double(), (height, width)
            )
            xy = affine_keypoints(pose[None], matrix[None]).float() / 4
            peaks = torch.where(seen, 0.6 + 0.4 * torch.rand(k, generator=generator), 0.15)
            labelled += 1
        heatmaps, _ = render_heatmaps(xy, torch.ones(1, k), size, sigma=2.0)
        table[sample["image"].numpy().tobytes()] = heatmaps[0] * peaks[:, None, None]
    return Oracle(table), labelled


def pycocotools_stats(
    results_file: Path, ann_file: Path, sigmas: Any, tmp_path: Path
) -> dict[str, float]:
    """pycocotools' COCOeval of a written results file, directly (a file without ``area``
    gets the box area ``w h``, the scale our evaluation gives it)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    coco = json.loads(ann_file.read_text())
    for ann in coco["annotations"]:
        ann.setdefault("area", ann["bbox"][2] * ann["bbox"][3])
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(_write(tmp_path / "gt.json", coco)))
        evaluator = COCOeval(ground_truth, ground_truth.loadRes(str(results_file)), "keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(sigmas)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return dict(zip(STAT_NAMES, map(float, evaluator.stats), strict=True))


def _evaluate_oracle(
    ann_file: Path, tmp_path: Path, boxes: Path | None, sources: list[int | None] | None
) -> tuple[dict[str, float], Path, Any]:
    """The trainer's evaluation of the oracle on ``boxes`` (``None``: the ground-truth
    boxes) of ``ann_file``: its metrics, its results file and the validation file."""
    files = ["--images", str(_images_of(ann_file)), "--train-ann", str(ann_file)]
    files += ["--val-ann", str(ann_file), "--labeled", "0", "--steps", "1"]
    files += ["--input-size", "128", "96"]
    if boxes is not None:
        files += ["--val-boxes", str(boxes)]
    config = parse_config([*files, "--protocol", "coco"])
    sets = build_datasets(config.data, config)
    oracle, labelled = _oracle(sets.val, ann_file, sources, seed=0)
    batches = [list(range(i, min(i + 4, len(sets.val)))) for i in range(0, len(sets.val), 4)]
    val_loader = loader(sets.val, batches, 0, torch.device("cpu"))
    out = tmp_path / ("boxes" if boxes else "gt")
    out.mkdir()
    metrics, _ = evaluate_models(
        {"oracle": oracle}, val_loader, sets.val_file, config, torch.device("cpu"), out
    )
    assert labelled == (len(sets.val) if sources is None else sum(s is not None for s in sources))
    return metrics["oracle"], out / "results_oracle.json", sets.val_file


@pytest.mark.parametrize("ann_file", REAL)
@needs_shared_data
def test_detector_box_ap_equals_pycocotools_on_the_written_results(
    ann_file: Path, tmp_path: Path
) -> None:
    """Predictions with a known error on a detector's boxes (jittered, duplicated, false
    positives): the AP of the trainer's evaluation (rescoring, OKS-NMS, our COCOeval call)
    is what pycocotools gives on the results file it writes, every statistic, and OKS-NMS
    removed duplicates; the same holds on the ground-truth boxes."""
    detections, sources = make_detections(ann_file, seed=1)
    boxes = _write(tmp_path / "dets.json", detections)
    metrics, results_file, val = _evaluate_oracle(ann_file, tmp_path, boxes, sources)
    direct = pycocotools_stats(results_file, ann_file, val.skeleton.sigmas, tmp_path)
    assert metrics == {k: direct[k] for k in metrics}
    assert 0.3 < metrics["AP"] < 1.0
    results = json.loads(results_file.read_text())
    assert len(results) < sum(d["category_id"] == 1 for d in detections)  # NMS dropped some
    on_gt, results_file, _ = _evaluate_oracle(ann_file, tmp_path, None, None)
    direct = pycocotools_stats(results_file, ann_file, val.skeleton.sigmas, tmp_path)
    assert on_gt == {k: direct[k] for k in on_gt} and 0.3 < on_gt["AP"] < 1.0


@needs_shared_data
def test_rescoring_multiplies_the_box_score(tmp_path: Path) -> None:
    """A person's score is its box score x the mean of its joint scores above 0.2: halving
    every box score halves every result's score and changes no pose."""
    detections, sources = make_detections(OCHUMAN, seed=2, duplicates=False, false_positives=0)
    runs = []
    for name, factor in (("full", 1.0), ("half", 0.5)):
        scaled = [dict(d, score=d["score"] * factor) for d in detections]
        folder = tmp_path / name
        folder.mkdir()
        boxes = _write(folder / "dets.json", scaled)
        _, results_file, _ = _evaluate_oracle(OCHUMAN, folder, boxes, sources)
        runs.append(json.loads(results_file.read_text()))
    full, half = runs
    people = [d for d in detections if d["category_id"] == 1]
    assert len(full) == len(people)  # no duplicate: OKS-NMS keeps every pose, in order
    assert [r["keypoints"] for r in full] == [r["keypoints"] for r in half]
    for a, b, box in zip(full, half, people, strict=True):
        assert b["score"] == pytest.approx(0.5 * a["score"], rel=1e-6)
        joints = np.array(a["keypoints"][2::3])  # rounded to 3 decimals in the file
        mean = joints[joints > 0.2].mean()
        assert a["score"] == pytest.approx(box["score"] * mean, abs=1e-3)


# ---------------------------------------------------------------- the trainer, end to end


def _synthetic_detections(ann_file: str, path: Path, **kwargs: Any) -> Path:
    return _write(path, make_detections(Path(ann_file), **kwargs)[0])


def test_ground_truth_boxes_as_detections_evaluate_the_same(
    data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The validation file's own boxes given as detections (score 1, file order) are the
    same crops: a finished run evaluated again on them (``--resume --val-boxes``) writes
    the same results and AP as on the ground-truth boxes; the flip test runs too."""
    out = tmp_path / "run"
    args = [*data, *TINY, "--method", "supervised", "--steps", "2", "--out", str(out)]
    assert _run(args) == 0
    on_gt = json.loads((out / "results_student.json").read_text())
    metrics = json.loads((out / "results.json").read_text())["metrics"]
    val = json.loads(Path(data[5]).read_text())
    boxes = [
        {"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 1.0}
        for a in val["annotations"]
        if a["num_keypoints"] > 0 and not a["iscrowd"]
    ]
    dets = _write(tmp_path / "gt_boxes.json", boxes)
    resume = ["--resume", "--out", str(out), "--no-progress"]
    assert _run([*resume, "--val-boxes", str(dets)]) == 0
    assert "(the boxes of gt_boxes.json, no flip test)" in capsys.readouterr().out
    assert json.loads((out / "results_student.json").read_text()) == on_gt
    assert json.loads((out / "results.json").read_text())["metrics"] == metrics
    assert _run([*resume, "--val-boxes", str(dets), "--flip-test"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["evaluation"]["val_boxes"] == str(dets)


@pytest.mark.parametrize("ann_file", REAL)
@needs_shared_data
def test_training_evaluates_on_detector_boxes_of_real_files(ann_file: Path, tmp_path: Path) -> None:
    """A run on a real file evaluated on detector boxes with the flip test: the results
    file scores as the run reports under pycocotools, and the score threshold drops the
    false positives (which score below 0.5) from the crops."""
    detections = make_detections(ann_file, seed=3)[0]
    boxes = _write(tmp_path / "dets.json", detections)
    out = tmp_path / "run"
    files = ["--images", str(_images_of(ann_file)), "--train-ann", str(ann_file)]
    files += ["--val-ann", str(ann_file), "--protocol", "coco"]
    args = [*files, *TINY, "--labeled", "0", "--method", "supervised", "--steps", "2"]
    args += ["--flip-test"]
    assert _run([*args, "--val-boxes", str(boxes), "--out", str(out)]) == 0
    metrics = json.loads((out / "results.json").read_text())["metrics"]["student"]
    sigmas = load_coco_persons(ann_file).skeleton.sigmas
    direct = pycocotools_stats(out / "results_student.json", ann_file, sigmas, tmp_path)
    assert metrics == {k: direct[k] for k in metrics}
    people = len(load_coco_persons(ann_file).instances)
    assert len(json.loads((out / "results_student.json").read_text())) > people
    config = parse_config([*args, "--val-boxes", str(boxes), "--val-box-score", "0.5"])
    kept = build_datasets(config.data, config).val.instances
    confident = [i for i, d in enumerate(detections) if d["category_id"] == 1 and d["score"] >= 0.5]
    assert [p.ann_id for p in kept] == confident and len(kept) == people


#: Unusable detections or thresholds, each checked before training (see :func:`_bad_runs`).
UNUSABLE = (
    "threshold above every box",
    "all outside their images",
    "threshold without boxes",
    "unlabelled images missing",
)


def _bad_runs(tmp_path: Path, data: list[str]) -> dict[str, tuple[list[str], str]]:
    """The flags of each :data:`UNUSABLE` case and what its error line must say."""
    good = _synthetic_detections(data[5], tmp_path / "good.json")
    return {
        "threshold above every box": (
            ["--val-boxes", str(good), "--val-box-score", "1.5"],
            "person boxes scores >= --val-box-score 1.5 (the best scores 0.9",
        ),
        "all outside their images": (
            [
                "--val-boxes",
                str(_write(tmp_path / "far.json", [dict(_good()[0], bbox=[300, 5, 9, 9])])),
            ],
            "no person box lies inside its image",
        ),
        "threshold without boxes": (
            ["--unlabeled-box-score", "0.3"],
            "--unlabeled-box-score 0.3 is a threshold on the detections of --unlabeled-boxes",
        ),
        "unlabelled images missing": (
            ["--method", "consistency", "--unlabeled-boxes", str(good)],
            "image(s) missing from",
        ),
    }


@pytest.mark.parametrize("case", ["unknown image", "other category only", "nan score", "nan box"])
@pytest.mark.parametrize("flag", ["--val-boxes", "--unlabeled-boxes"])
def test_bad_detection_files_stop_the_trainer_with_one_line(
    case: str, flag: str, data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each bad file stops the run before training, with one line naming the flag, the
    file and the detection, and writes nothing."""
    content, message = BAD_FILES[case]
    bad = _write(tmp_path / "bad.json", content)
    info = ["--unlabeled-ann", data[3]] if flag == "--unlabeled-boxes" else []
    out = tmp_path / "run"
    args = [*data, *TINY, "--method", "consistency", "--steps", "1", "--out", str(out)]
    assert _run([*args, *info, flag, str(bad)]) == 2
    _one_error_line(capsys, f"{flag} {bad}", message)
    assert not out.exists()


@pytest.mark.parametrize("case", UNUSABLE)
def test_unusable_detections_stop_the_trainer_with_one_line(
    case: str, data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra, message = _bad_runs(tmp_path, data)[case]
    out = tmp_path / "run"
    assert _run([*data, *TINY, "--steps", "1", "--out", str(out), *extra]) == 2
    _one_error_line(capsys, message)
    assert not out.exists()


# ------------------------------------------------------ the wild pool: --unlabeled-boxes


def test_unlabelled_pool_from_detections_with_an_image_info_file(
    data: list[str], tmp_path: Path
) -> None:
    """The pool is the person detections above ``--unlabeled-box-score``, in file order,
    with their scores; ``--unlabeled-ann`` only names the images (its boxes are not used)."""
    detections, _ = make_detections(Path(data[3]), seed=4)
    dets = _write(tmp_path / "dets.json", detections)
    common = [*data, *TINY, "--method", "posemum", "--steps", "2"]
    pool = ["--unlabeled-ann", data[3], "--unlabeled-boxes", str(dets)]
    for threshold in (0.0, detections[2]["score"]):  # a detection at the threshold is kept
        args = [*common, *pool, "--unlabeled-box-score", str(threshold)]
        config = parse_config(args)
        unlabeled = build_datasets(config.data, config).unlabeled
        assert unlabeled is not None
        expected = [
            (i, d["score"])
            for i, d in enumerate(detections)
            if d["category_id"] == 1 and d["score"] >= threshold
        ]
        assert [(p.ann_id, p.score) for p in unlabeled.instances] == expected
    assert _run([*args, "--pseudo-every", "1", "--out", str(tmp_path / "run")]) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    pseudo = [r for r in records if "pseudo_pck" in r]
    assert pseudo and all(r["pseudo_pck"] is None for r in pseudo)  # detections carry no labels


def _coco_named_copy(ann_file: Path, images: Path, folder: Path) -> Path:
    """The images of ``ann_file`` linked under COCO's names of their ids, as unlabeled2017."""
    folder.mkdir()
    for image in json.loads(ann_file.read_text())["images"]:
        (folder / coco_file_name(image["id"])).symlink_to(images / image["file_name"])
    return folder


def test_unlabelled_pool_from_detections_by_cocos_file_names(
    data: list[str], tmp_path: Path
) -> None:
    """Without ``--unlabeled-ann`` an image id is the file ``%012d.jpg`` of
    ``--unlabeled-images``, as COCO's unlabeled2017: the same crops as through the file."""
    dets = _synthetic_detections(data[3], tmp_path / "dets.json", seed=5)
    wild = _coco_named_copy(Path(data[3]), Path(data[1]), tmp_path / "unlabeled2017")
    common = [
        *data,
        *TINY,
        "--method",
        "consistency",
        "--steps",
        "1",
        "--unlabeled-boxes",
        str(dets),
    ]
    by_name = parse_config([*common, "--unlabeled-images", str(wild)])
    by_file = parse_config([*common, "--unlabeled-ann", data[3]])
    a = build_datasets(by_name.data, by_name).unlabeled
    b = build_datasets(by_file.data, by_file).unlabeled
    assert a is not None and b is not None and len(a) == len(b)
    assert a.instances[0].file_name == coco_file_name(a.instances[0].image_id)
    for i in (0, len(a) // 2, len(a) - 1):
        assert torch.equal(a[i]["image"], b[i]["image"])
    out = tmp_path / "run"
    assert _run([*common, "--unlabeled-images", str(wild), "--out", str(out)]) == 0


@needs_shared_data
def test_wild_protocol_on_real_files(tmp_path: Path) -> None:
    """SSHPE's COCO-all + wild on the real files: every labelled person of OCHuman, the
    unlabelled pool a detector's boxes on its images under COCO's 12-digit names, the
    evaluation on detector boxes; and CrowdPose's 14 joints the same way."""
    for ann_file in (OCHUMAN, CROWDPOSE):
        folder = tmp_path / ann_file.parent.name
        folder.mkdir()
        wild = _coco_named_copy(ann_file, _images_of(ann_file), folder / "unlabeled2017")
        pool = _write(folder / "wild.json", make_detections(ann_file, seed=6)[0])
        boxes = _write(folder / "val.json", make_detections(ann_file, seed=7)[0])
        files = ["--images", str(_images_of(ann_file)), "--train-ann", str(ann_file)]
        files += ["--val-ann", str(ann_file), "--val-boxes", str(boxes)]
        wild_flags = ["--unlabeled-boxes", str(pool), "--unlabeled-images", str(wild)]
        args = [*files, *TINY, "--labeled", "0", *wild_flags, "--method", "posemum"]
        config = parse_config([*args, "--steps", "1"])
        sets = build_datasets(config.data, config)
        assert sets.unlabeled is not None
        assert len(sets.unlabeled) == sum(
            d["category_id"] == 1 for d in json.loads(pool.read_text())
        )
        assert _run([*args, "--steps", "2", "--out", str(folder / "run")]) == 0
        ap = json.loads((folder / "run" / "results.json").read_text())["metrics"]["student"]["AP"]
        assert 0 <= ap <= 1 and math.isfinite(ap)


def test_the_readmes_coco_commands_parse() -> None:
    """Every complete ``python examples/train.py`` command of examples/README.md is a valid
    command line, and its COCO commands (1K, 5K, 10K, COCO-all + wild, HRNet) test on a
    detector's boxes."""
    blocks = re.findall(r"```bash\n(.*?)```", (EXAMPLES / "README.md").read_text(), re.DOTALL)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    commands = [
        shlex.split(line.split("#")[0])[2:]
        for line in lines
        if line.startswith("python examples/train.py")
    ]
    complete = [c for c in commands if {"...", "--config", "--resume"}.isdisjoint(c)]
    configs = [parse_config(c) for c in complete]  # raises on a bad flag or value
    coco = [config for config in configs if config.data.images == Path("coco/train2017")]
    assert len(coco) == 6 and all(config.evaluation.val_boxes is not None for config in coco)
    assert sum(config.data.unlabeled_boxes is not None for config in coco) == 2
    assert {config.model.arch for config in coco} == {"resnet18", "resnet50", "hrnet_w48"}
