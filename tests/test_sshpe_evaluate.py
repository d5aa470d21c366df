"""Tests of examples/sshpe/evaluate.py: COCO OKS evaluation and the SSHPE protocol."""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sshpe.evaluate import (
    CROWDPOSE_STAT_NAMES,
    STAT_NAMES,
    default_protocol,
    evaluate_keypoints,
    make_results,
    oks,
    oks_nms,
    protocol_results,
    rescore,
    resolve_protocol,
    stat_names,
)

from benchmarks.crowdpose_reference import crowd_index_variant, digest, result_sets
from posemum_aug.keypoints import COCO_17, CROWDPOSE_14, Skeleton
from tests.paths import CROWDPOSE, DATA, OCHUMAN, REAL, needs_shared_data
from tests.strategies import generator, seeds

#: xtcocotools' ``keypoints_crowd`` stats of benchmarks/crowdpose_reference.py's result
#: sets on the shared CrowdPose file (and two variants of its ``crowdIndex``).
REFERENCE = json.loads((Path(__file__).parent / "data" / "crowdpose_xtcocotools.json").read_text())


def _ground_truth_results(
    ann_file: Path, noise: float = 0.0, seed: int = 0
) -> list[dict[str, Any]]:
    """Every annotated person submitted as a prediction, jittered by ``noise`` times the
    square root of the box area (the scale of OKS)."""
    rng = np.random.default_rng(seed)
    out = []
    for ann in json.loads(ann_file.read_text())["annotations"]:
        if ann["iscrowd"] or max(ann["keypoints"]) == 0:
            continue
        kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        scale = np.sqrt(ann["bbox"][2] * ann["bbox"][3])
        kp[:, :2] += rng.normal(0, noise * scale, kp[:, :2].shape)
        kp[:, 2] = 1.0
        out.append(
            {
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "keypoints": kp.ravel().tolist(),
                "score": 1.0,
            }
        )
    return out


@pytest.mark.parametrize("ann_file", REAL)
@needs_shared_data
def test_ground_truth_scores_ap_one(ann_file: Path) -> None:
    stats = evaluate_keypoints(_ground_truth_results(ann_file), ann_file)
    assert set(stats) == set(STAT_NAMES)
    for name in ("AP", "AP50", "AP75", "AR", "AR50", "AR75"):
        assert stats[name] == pytest.approx(1.0), name


@pytest.mark.parametrize("ann_file", REAL)
@needs_shared_data
def test_perturbed_predictions_score_lower(ann_file: Path) -> None:
    aps = [
        evaluate_keypoints(_ground_truth_results(ann_file, noise), ann_file)["AP"]
        for noise in (0.0, 0.05, 0.2)
    ]
    assert aps[0] == pytest.approx(1.0)
    assert aps[0] > aps[1] > aps[2]


@needs_shared_data
def test_skeleton_sigmas_are_used() -> None:
    """CrowdPose-14 is scored with its own 14 sigmas; larger sigmas forgive more."""
    results = _ground_truth_results(CROWDPOSE, noise=0.1)
    default = evaluate_keypoints(results, CROWDPOSE)["AP"]
    lenient = evaluate_keypoints(results, CROWDPOSE, sigmas=[1.0] * 14)["AP"]
    assert lenient == pytest.approx(1.0) and default < lenient


@needs_shared_data
def test_missing_area_is_the_box_area(tmp_path: Path) -> None:
    # CrowdPose annotations carry no "area"; OKS then uses the box area. Writing that
    # area explicitly must not change the result.
    data = json.loads(CROWDPOSE.read_text())
    assert all("area" not in a for a in data["annotations"])
    for a in data["annotations"]:
        a["area"] = a["bbox"][2] * a["bbox"][3]
    explicit = tmp_path / "with_area.json"
    explicit.write_text(json.dumps(data))
    results = _ground_truth_results(CROWDPOSE, noise=0.03)
    assert evaluate_keypoints(results, CROWDPOSE) == evaluate_keypoints(results, explicit)


@needs_shared_data
def test_annotation_ids_from_zero_score_like_any_others(tmp_path: Path) -> None:
    """pycocotools marks an unmatched detection with id 0: a file whose annotation ids
    start at 0 counted as unmatched (on exact results, AP 1.0 fell to 0.64)."""
    data = json.loads(OCHUMAN.read_text())
    for index, ann in enumerate(data["annotations"]):
        ann["id"] = index
    from_zero = tmp_path / "from_zero.json"
    from_zero.write_text(json.dumps(data))
    results = _ground_truth_results(OCHUMAN)
    assert evaluate_keypoints(results, from_zero) == evaluate_keypoints(results, OCHUMAN)
    assert evaluate_keypoints(results, from_zero)["AP"] == pytest.approx(1.0)


@needs_shared_data
def test_empty_results_score_like_results_that_match_nothing() -> None:
    """No results: 0 where the file has people, -1 where a range has none (pycocotools'
    rule; the OCHuman people are all "large"), as results far from everyone score. They
    used to give 0 everywhere, beside -1 for a model with results."""
    far = _ground_truth_results(OCHUMAN)
    for r in far:
        r["keypoints"] = [v + 5000 * (i % 3 != 2) for i, v in enumerate(r["keypoints"])]
    expected = {**dict.fromkeys(STAT_NAMES, 0.0), "APm": -1.0, "ARm": -1.0}
    assert evaluate_keypoints([], OCHUMAN) == evaluate_keypoints(far, OCHUMAN) == expected


@needs_shared_data
def test_results_are_not_modified_and_nothing_is_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    results = _ground_truth_results(OCHUMAN, noise=0.01)
    before = copy.deepcopy(results)
    evaluate_keypoints(results, OCHUMAN)
    assert results == before
    assert capsys.readouterr().out == ""
    evaluate_keypoints(results, OCHUMAN, verbose=True)
    assert "Average Precision" in capsys.readouterr().out


@needs_shared_data
def test_bad_inputs_raise_value_error(tmp_path: Path) -> None:
    results = _ground_truth_results(OCHUMAN)
    with pytest.raises(ValueError, match="not in"):
        evaluate_keypoints([dict(results[0], image_id=999)], OCHUMAN)
    with pytest.raises(ValueError, match="51 keypoint values"):
        evaluate_keypoints([dict(results[0], keypoints=[0.0] * 42)], OCHUMAN)
    with pytest.raises(ValueError, match="not found"):
        evaluate_keypoints(results, tmp_path / "missing.json")
    no_keypoints = tmp_path / "boxes.json"
    no_keypoints.write_text(
        json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]})
    )
    with pytest.raises(ValueError, match="no category with 'keypoints'"):
        evaluate_keypoints(results, no_keypoints)
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    with pytest.raises(ValueError, match="not a COCO annotation file"):
        evaluate_keypoints(results, junk)
    data = json.loads(CROWDPOSE.read_text())  # CrowdPose has no 'area': it comes from the box
    del data["annotations"][1]["bbox"]
    no_box = tmp_path / "no_box.json"
    no_box.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"no_box.json: annotation #1 is malformed: .* bbox"):
        evaluate_keypoints(_ground_truth_results(CROWDPOSE), no_box)


def _small_file(tmp_path: Path, edit: Callable[[dict[str, Any]], object] | None = None) -> Path:
    """A hand-made 3-joint file: two images, three people (all "medium")."""
    people = [(1, [10, 10, 60, 80]), (1, [100, 20, 50, 90]), (2, [20, 30, 70, 70])]
    annotations = []
    for i, (image, box) in enumerate(people):
        x, y, w, h = box
        annotations.append(
            {
                "id": i + 1,
                "image_id": image,
                "category_id": 1,
                "iscrowd": 0,
                "bbox": box,
                "area": w * h,
                "num_keypoints": 3,
                "keypoints": [x + 20, y + 10, 2, x + 10, y + 5, 2, x + 30, y + 5, 1],
            }
        )
    data: dict[str, Any] = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 200, "height": 200} for i in (1, 2)],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "keypoints": ["nose", "left_eye", "right_eye"]}],
    }
    if edit is not None:
        edit(data)
    path = tmp_path / ("small.json" if edit is None else "edited.json")
    path.write_text(json.dumps(data))
    return path


def _exact_results(path: Path, shift: float = 0.0) -> list[dict[str, Any]]:
    return [
        {
            "image_id": a["image_id"],
            "category_id": 1,
            "keypoints": [v + shift * (i % 3 != 2) for i, v in enumerate(a["keypoints"])],
            "score": 1.0,
        }
        for a in json.loads(path.read_text())["annotations"]
        if a.get("category_id") == 1
    ]


def _set(where: str, index: int, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data[where][index][key] = value

    return edit


def _item(key: str, position: int, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["annotations"][0][key][position] = value

    return edit


def _no_area_nan_width(data: dict[str, Any]) -> None:
    del data["annotations"][0]["area"]
    data["annotations"][0]["bbox"][2] = math.nan


#: Inputs that cannot be scored, each with the message that says so: a file edit, a
#: change to the first result, ``sigmas``. The NaN cases used to score AP 1.0 (pycocotools
#: counts a NaN similarity as a match), the others to crash inside pycocotools or score
#: silently.
UNSCOREABLE: dict[str, tuple[Any, dict[str, Any], Any, str]] = {
    "nan result coordinate": (None, {"keypoints": [math.nan] + [1.0] * 8}, None, "not finite"),
    "nan result score": (None, {"score": math.nan}, None, "the score nan"),
    "text result score": (None, {"score": "1"}, None, "the score '1'"),
    "other category": (None, {"category_id": 2}, None, "category_id 2.*person category.* 1"),
    "unknown image": (None, {"image_id": 7}, None, "image 7, which is not in"),
    "nan sigma": (None, {}, [math.nan, 0.1, 0.1], "sigmas must be 3 positive finite"),
    "nan ground-truth keypoint": (_item("keypoints", 0, math.nan), {}, None, "#0 .* keypoint"),
    "text ground-truth keypoint": (_item("keypoints", 1, "12"), {}, None, "#0 .* keypoint"),
    "nan area": (_set("annotations", 0, "area", math.nan), {}, None, "#0 .* area nan"),
    "negative area": (_set("annotations", 0, "area", -5), {}, None, "#0 .* area -5"),
    "nan box width, no area": (_no_area_nan_width, {}, None, "#0 .* bbox"),
    "text box": (_item("bbox", 0, "10"), {}, None, "#0 .* bbox"),
    "text image id": (_set("images", 1, "id", "2"), {}, None, "image #1 has the id '2'"),
    "shared image id": (_set("images", 1, "id", 1), {}, None, "images #0 and #1 share the id 1"),
    "text iscrowd": (_set("annotations", 0, "iscrowd", "0"), {}, None, "#0 .* 'iscrowd' '0'"),
    "text num_keypoints": (_set("annotations", 0, "num_keypoints", "3"), {}, None, "#0 .* '3'"),
}


@pytest.mark.parametrize("case", UNSCOREABLE)
def test_unscoreable_inputs_raise_value_error(case: str, tmp_path: Path) -> None:
    edit, result_change, sigmas, message = UNSCOREABLE[case]
    clean = _small_file(tmp_path)
    results = _exact_results(clean)
    assert evaluate_keypoints(results, clean)["AP"] == pytest.approx(1.0)
    assert evaluate_keypoints(_exact_results(clean, shift=30.0), clean)["AP"] == 0.0
    path = _small_file(tmp_path, edit)
    results[0] = {**results[0], **result_change}
    with pytest.raises(ValueError, match=message):
        evaluate_keypoints(results, path, sigmas=sigmas)


def test_optional_fields_and_other_categories(tmp_path: Path) -> None:
    """A file without ``iscrowd``, ``num_keypoints`` or ``area``, with a second category
    whose annotations have no keypoints, scores as the complete file (these crashed inside
    pycocotools, after all the training)."""

    def strip(data: dict[str, Any]) -> None:
        for ann in data["annotations"]:
            del ann["iscrowd"], ann["num_keypoints"], ann["area"]
        data["categories"].append({"id": 2, "name": "car"})
        data["annotations"].append(
            {"id": 9, "image_id": 2, "category_id": 2, "bbox": "a car", "iscrowd": 0}
        )

    full = _small_file(tmp_path)
    results = _exact_results(full, shift=2.0)
    expected = evaluate_keypoints(results, full)
    assert 0.0 < expected["AP"] < 1.0
    assert evaluate_keypoints(results, _small_file(tmp_path, strip)) == expected


# ------------------------------------------------------------------ CrowdPose protocol


@pytest.fixture(scope="module")
def crowdpose_variants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The reference's annotation files: the shared CrowdPose file with the
    ``crowdIndex`` values of each variant, written once per module."""
    folder = tmp_path_factory.mktemp("crowdpose_variants")
    data = json.loads(CROWDPOSE.read_text())
    out = {}
    for variant in REFERENCE["crowd_index_variants"]:
        out[variant] = folder / f"{variant}.json"
        out[variant].write_text(json.dumps(crowd_index_variant(data, variant)))
    return out


@needs_shared_data
def test_reference_inputs_are_regenerated_exactly() -> None:
    """The test scores the very inputs xtcocotools scored: same file, same result sets."""
    assert DATA / REFERENCE["source"] == CROWDPOSE
    assert hashlib.sha256(CROWDPOSE.read_bytes()).hexdigest() == REFERENCE["source_sha256"], (
        "the shared CrowdPose file changed: rerun benchmarks/crowdpose_reference.py"
    )
    sets = result_sets(json.loads(CROWDPOSE.read_text()), REFERENCE["seed"])
    assert {k: len(v) for k, v in sets.items()} == REFERENCE["result_sets"]
    assert digest(sets) == REFERENCE["result_sets_sha256"]


@pytest.mark.parametrize(
    ("variant", "result_set"),
    [(v, name) for v, by_set in REFERENCE["stats"].items() for name in by_set],
)
@needs_shared_data
def test_crowdpose_protocol_matches_xtcocotools(
    variant: str, result_set: str, crowdpose_variants: dict[str, Path]
) -> None:
    results = result_sets(json.loads(CROWDPOSE.read_text()), REFERENCE["seed"])[result_set]
    ours = evaluate_keypoints(results, crowdpose_variants[variant], protocol="crowdpose")
    assert tuple(ours) == CROWDPOSE_STAT_NAMES
    assert ours == pytest.approx(REFERENCE["stats"][variant][result_set], rel=0, abs=1e-12)


@needs_shared_data
def test_coco_area_rule_overrates_crowdpose() -> None:
    """On the same results COCO's rule (OKS scale w h) scores higher than the official
    0.53 w h: by 0.06 to 0.30 AP on the jittered sets (official = xtcocotools')."""
    sets = result_sets(json.loads(CROWDPOSE.read_text()), REFERENCE["seed"])
    gaps = {}
    for name in ("noise_0.03", "noise_0.05", "noise_0.07", "noise_0.1"):
        official = REFERENCE["stats"]["file"][name]["AP"]
        assert evaluate_keypoints(sets[name], CROWDPOSE, protocol="crowdpose")["AP"] == official
        gaps[name] = evaluate_keypoints(sets[name], CROWDPOSE)["AP"] - official
    assert gaps == pytest.approx(
        {"noise_0.03": 0.0627, "noise_0.05": 0.1248, "noise_0.07": 0.2748, "noise_0.1": 0.3000},
        abs=1e-4,
    )


@needs_shared_data
def test_crowdpose_protocol_ignores_file_areas_and_ids(tmp_path: Path) -> None:
    """As xtcocotools with use_area=False, a file's own ``area`` is not used (the scale
    is always 0.53 w h); an annotation id 0 (pycocotools' "unmatched") changes nothing."""
    results = result_sets(json.loads(CROWDPOSE.read_text()))["noise_0.05"]
    expected = evaluate_keypoints(results, CROWDPOSE, protocol="crowdpose")
    with_area = json.loads(CROWDPOSE.read_text())
    for a in with_area["annotations"]:
        a["area"] = a["bbox"][2] * a["bbox"][3]
    (tmp_path / "with_area.json").write_text(json.dumps(with_area))
    assert (
        evaluate_keypoints(results, tmp_path / "with_area.json", protocol="crowdpose") == expected
    )
    assert evaluate_keypoints(results, tmp_path / "with_area.json")["AP"] > expected["AP"]
    from_zero = json.loads(CROWDPOSE.read_text())
    for i, a in enumerate(from_zero["annotations"]):
        a["id"] = i
    (tmp_path / "from_zero.json").write_text(json.dumps(from_zero))
    assert (
        evaluate_keypoints(results, tmp_path / "from_zero.json", protocol="crowdpose") == expected
    )


@needs_shared_data
def test_protocol_choice() -> None:
    assert default_protocol(CROWDPOSE_14) == "crowdpose"
    assert default_protocol(COCO_17) == "coco"
    shuffled = Skeleton.from_coco_category({"keypoints": list(reversed(CROWDPOSE_14.names))})
    assert default_protocol(shuffled) == "coco"  # not CrowdPose's joint order
    assert resolve_protocol("auto", CROWDPOSE_14) == "crowdpose"
    assert resolve_protocol("coco", CROWDPOSE_14) == "coco"
    assert stat_names("coco") == STAT_NAMES and stat_names("crowdpose") == CROWDPOSE_STAT_NAMES
    results = result_sets(json.loads(CROWDPOSE.read_text()))["noise_0.05"]
    assert evaluate_keypoints(results, CROWDPOSE, protocol="auto") == evaluate_keypoints(
        results, CROWDPOSE, protocol="crowdpose"
    )
    coco_results = _ground_truth_results(OCHUMAN, noise=0.02)
    assert evaluate_keypoints(coco_results, OCHUMAN, protocol="auto") == evaluate_keypoints(
        coco_results, OCHUMAN
    )


@needs_shared_data
def test_crowdpose_protocol_bad_values(tmp_path: Path) -> None:
    results = result_sets(json.loads(CROWDPOSE.read_text()))["exact"]
    with pytest.raises(ValueError, match="unknown evaluation protocol 'crowd'"):
        evaluate_keypoints(results, CROWDPOSE, protocol="crowd")
    with pytest.raises(ValueError, match="unknown evaluation protocol 'COCO'"):
        resolve_protocol("COCO", COCO_17)
    with pytest.raises(ValueError, match="resolve it first"):
        stat_names("auto")
    with pytest.raises(
        ValueError, match=r"image 1 has none; evaluate this file with protocol='coco'"
    ):
        evaluate_keypoints(_ground_truth_results(OCHUMAN), OCHUMAN, protocol="crowdpose")
    data = json.loads(CROWDPOSE.read_text())
    data["images"][1]["crowdIndex"] = "0.4"
    (tmp_path / "text_index.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"image 103319 has '0\.4'"):
        evaluate_keypoints(results, tmp_path / "text_index.json", protocol="crowdpose")
    data = json.loads(CROWDPOSE.read_text())
    data["annotations"][2]["bbox"] = [1.0, 2.0]
    (tmp_path / "short_box.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"annotation #2 is malformed: .* bbox"):
        evaluate_keypoints(results, tmp_path / "short_box.json", protocol="crowdpose")


@needs_shared_data
def test_crowdpose_protocol_empty_and_unscored_results(capsys: pytest.CaptureFixture[str]) -> None:
    # both images are "medium": no results score 0 there, -1 for the empty classes
    none = {**dict.fromkeys(CROWDPOSE_STAT_NAMES, 0.0), "AP_easy": -1.0, "AP_hard": -1.0}
    assert evaluate_keypoints([], CROWDPOSE, protocol="crowdpose") == none
    unscored = result_sets(json.loads(CROWDPOSE.read_text()))["exact"]
    for r in unscored:
        r["keypoints"][2::3] = [0.0] * 14  # xtcocotools drops these results
    assert evaluate_keypoints(unscored, CROWDPOSE, protocol="crowdpose") == none
    assert evaluate_keypoints(unscored, CROWDPOSE)["AP"] == pytest.approx(1.0)  # COCO keeps them
    assert capsys.readouterr().out == ""
    evaluate_keypoints(
        _ground_truth_results(CROWDPOSE), CROWDPOSE, protocol="crowdpose", verbose=True
    )
    assert "AP_medium  @[ maxDets= 20 ] = 1.000" in capsys.readouterr().out


# ---------------------------------------------------------------------------- rescore


def test_rescore_by_hand() -> None:
    joints = torch.tensor([[0.9, 0.5, 0.1, 0.2], [0.1, 0.15, 0.2, 0.0], [0.3, 0.3, 0.3, 0.3]])
    boxes = torch.tensor([0.5, 1.0, 2.0])
    # mean of the joints above 0.2 (0.2 itself excluded); none above -> 0
    torch.testing.assert_close(rescore(boxes, joints), torch.tensor([0.5 * 0.7, 0.0, 0.6]))
    torch.testing.assert_close(
        rescore(boxes, joints, threshold=0.0), torch.tensor([0.5 * 1.7 / 4, 0.45 / 3, 0.6])
    )


@given(seed=seeds)
def test_rescore_is_linear_in_box_score_and_bounded(seed: int) -> None:
    g = generator(seed)
    joints = torch.rand(6, 5, generator=g)
    boxes = torch.rand(6, generator=g)
    scores = rescore(boxes, joints)
    torch.testing.assert_close(rescore(2 * boxes, joints), 2 * scores)
    assert (scores <= boxes * joints.max(-1).values + 1e-6).all()


def test_rescore_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="box_scores"):
        rescore(torch.ones(2), torch.ones(3, 4))


# -------------------------------------------------------------------------- OKS / NMS


def test_oks_of_identical_and_distant_poses() -> None:
    sigmas = [0.05] * 3
    pose = np.array([[10.0, 10.0], [20.0, 30.0], [5.0, 8.0]])
    others = np.stack([pose, pose + 1000, pose + 2])
    sims = oks(pose, others, 400.0, np.full(3, 400.0), sigmas)
    assert sims[0] == pytest.approx(1.0) and sims[1] < 1e-6 and 0.0 < sims[2] < 1.0
    # d = 2 * sqrt(2) px per joint, s^2 = 400, (2 sigma)^2 = 0.01
    assert sims[2] == pytest.approx(np.exp(-8 / 0.01 / 400 / 2))


def _result(image_id: int, xy: np.ndarray, score: float) -> dict[str, Any]:
    kp = np.concatenate((xy, np.ones((len(xy), 1))), axis=1)
    return {
        "image_id": image_id,
        "category_id": 1,
        "keypoints": kp.ravel().tolist(),
        "score": score,
    }


def test_oks_nms_suppresses_duplicates_only() -> None:
    rng = np.random.default_rng(0)
    sigmas = [0.08] * 5
    a, b = rng.uniform(0, 100, (5, 2)), rng.uniform(200, 300, (5, 2))
    results = [
        _result(1, a + 0.5, 0.6),  # near-duplicate of the next: dropped
        _result(1, a, 0.9),
        _result(1, b, 0.3),  # a different person: kept
        _result(2, a + 0.5, 0.2),  # same pose in another image: kept
        _result(1, a + 60, 0.95),  # far from a: kept
    ]
    kept = oks_nms(results, sigmas)
    assert kept == [results[1], results[2], results[3], results[4]]
    assert oks_nms(results, sigmas, threshold=1.0) == results


@given(seed=seeds, threshold=st.floats(0.1, 0.99))
def test_oks_nms_keeps_the_best_and_leaves_no_close_pair(seed: int, threshold: float) -> None:
    rng = np.random.default_rng(seed)
    sigmas = [0.1] * 4
    centres = rng.uniform(0, 60, (8, 1, 2))
    poses = centres + rng.uniform(0, 40, (1, 4, 2))
    results = [_result(1, p, float(s)) for p, s in zip(poses, rng.random(8), strict=True)]
    kept = oks_nms(results, sigmas, threshold)
    assert max(results, key=lambda r: r["score"]) in kept
    xy = [np.asarray(r["keypoints"]).reshape(-1, 3)[:, :2] for r in kept]
    area = [float(np.prod(p.max(0) - p.min(0))) for p in xy]
    for i in range(len(kept)):
        for j in range(i + 1, len(kept)):
            assert oks(xy[i], xy[j][None], area[i], np.array([area[j]]), sigmas)[0] <= threshold


def test_oks_nms_refuses_what_is_not_finite() -> None:
    """A NaN-scored pose was kept over its finite twin or dropped, by input order."""
    pose = np.array([[10.0, 10.0], [30.0, 40.0]])
    twin = _result(1, pose, 0.9)
    with pytest.raises(ValueError, match=r"result #1 \(image 1\) has a score or keypoint"):
        oks_nms([twin, _result(1, pose, math.nan)], [0.1, 0.1])
    with pytest.raises(ValueError, match=r"result #0 \(image 1\)"):
        oks_nms([_result(1, pose * math.nan, 0.5), twin], [0.1, 0.1])


def test_rescore_leaves_a_nan_joint_out() -> None:
    """A NaN joint score is not confident: it used to make the person's score NaN."""
    joints = torch.tensor([[0.9, math.nan, 0.5], [math.nan, 0.1, 0.0]])
    torch.testing.assert_close(rescore(torch.ones(2), joints), torch.tensor([0.7, 0.0]))


@pytest.mark.parametrize("ids", [[4.7], torch.tensor([4.0]), ["4"], [True]])
def test_make_results_refuses_image_ids_that_are_not_integers(ids: Any) -> None:
    """4.7 used to become image 4."""
    with pytest.raises(ValueError, match="image_ids must be integers"):
        make_results(torch.zeros(1, 2, 2), torch.ones(1, 2), ids, torch.ones(1))
    assert make_results(torch.zeros(1, 2, 2), torch.ones(1, 2), [np.int64(4)], torch.ones(1))


def test_make_results_round_trip() -> None:
    coords = torch.rand(3, 17, 2, generator=generator(0)) * 100
    scores = torch.rand(3, 17, generator=generator(1))
    out = make_results(
        coords,
        scores,
        torch.tensor([4, 5, 6]),
        torch.tensor([0.1, 0.2, 0.3]),
        category_id=2,
        areas=torch.tensor([1.0, 2.0, 3.0]),
    )
    assert [r["image_id"] for r in out] == [4, 5, 6]
    assert [r["category_id"] for r in out] == [2, 2, 2]
    assert [r["area"] for r in out] == [1.0, 2.0, 3.0]
    kp = torch.tensor([r["keypoints"] for r in out]).view(3, 17, 3)
    torch.testing.assert_close(kp[..., :2], coords, atol=1e-3, rtol=0)
    torch.testing.assert_close(kp[..., 2], scores, atol=1e-3, rtol=0)
    assert all(isinstance(r["score"], float) for r in out)
    with pytest.raises(ValueError, match="coords"):
        make_results(coords, scores[:, :3], [4, 5, 6], torch.ones(3))
    with pytest.raises(ValueError, match="scores"):
        make_results(coords, scores, [4, 5, 6], torch.ones(2))


@pytest.mark.parametrize("ann_file", REAL)
@needs_shared_data
def test_protocol_on_ground_truth_with_duplicates(ann_file: Path) -> None:
    data = json.loads(ann_file.read_text())
    skeleton = Skeleton.from_coco_category(data["categories"][0])
    gt = _ground_truth_results(ann_file)
    k = skeleton.num_joints
    coords = torch.tensor([r["keypoints"] for r in gt]).view(-1, k, 3)[..., :2]
    n = len(gt)
    ids = [r["image_id"] for r in gt]
    # every person twice: the copy shifted by a pixel with a lower box score
    results = protocol_results(
        torch.cat((coords, coords + 1)),
        torch.ones(2 * n, k),
        torch.cat((torch.ones(n), torch.full((n,), 0.5))),
        ids + ids,
        skeleton.sigmas,
    )
    assert len(results) == n
    assert all(r["score"] == 1.0 for r in results)
    assert evaluate_keypoints(results, ann_file)["AP"] == pytest.approx(1.0)
