"""Tests of examples/sshpe/data.py: crop geometry, splits, datasets on real COCO files."""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from sshpe import data as data_module
from sshpe.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PersonInstance,
    TopDownDataset,
    _ImageCache,
    box_to_center_scale,
    crop_image,
    crop_matrix,
    crop_to_image,
    denormalize,
    evaluation_instances,
    labelled_instances,
    load_coco_persons,
    unlabelled_instances,
)
from torch.utils.data import default_collate

from posemum_aug.heatmap import render_heatmaps
from posemum_aug.keypoints import COCO_17, CROWDPOSE_14, affine_keypoints
from tests.paths import CROWDPOSE, OCHUMAN, REAL, needs_shared_data
from tests.strategies import generator, seeds

# ------------------------------------------------------------------------- geometry


@given(seed=seeds, aspect=st.floats(0.3, 3.0), padding=st.floats(1.0, 2.0))
def test_box_to_center_scale_fixes_aspect_and_covers_the_box(
    seed: int, aspect: float, padding: float
) -> None:
    g = generator(seed)
    xy = torch.rand(5, 2, generator=g, dtype=torch.float64) * 100
    wh = torch.rand(5, 2, generator=g, dtype=torch.float64) * 100 + 1
    center, scale = box_to_center_scale(torch.cat((xy, wh), -1), aspect, padding)
    torch.testing.assert_close(center, xy + wh / 2)
    torch.testing.assert_close(scale[:, 0] / scale[:, 1], torch.full((5,), aspect).double())
    assert (scale >= wh * padding - 1e-9).all()
    # the fix grows only the short side: one side is exactly the padded box side
    tight = torch.isclose(scale, wh * padding).any(-1)
    assert tight.all()


def test_box_to_center_scale_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="bbox"):
        box_to_center_scale(torch.zeros(3), 0.75)
    with pytest.raises(ValueError, match="aspect"):
        box_to_center_scale(torch.zeros(4), 0.0)


@given(seed=seeds, rotation=st.floats(-180, 180))
def test_crop_matrix_maps_region_onto_crop(seed: int, rotation: float) -> None:
    g = generator(seed)
    center = torch.rand(2, generator=g, dtype=torch.float64) * 200
    scale = torch.rand(2, generator=g, dtype=torch.float64) * 100 + 10
    height, width = 48, 36
    m = crop_matrix(center, scale, (height, width), rotation)
    to_crop = affine_keypoints(center.view(1, 1, 2), m[None])[0, 0]
    torch.testing.assert_close(to_crop, torch.tensor([(width - 1) / 2, (height - 1) / 2]).double())
    # distances scale by W / scale_w along the (rotated) x axis and H / scale_h along y
    theta = math.radians(rotation)
    axis_x = torch.tensor([math.cos(theta), math.sin(theta)], dtype=torch.float64)
    axis_y = torch.tensor([-math.sin(theta), math.cos(theta)], dtype=torch.float64)
    step_x = m[:, :2] @ (axis_x * scale[0] / 2)
    step_y = m[:, :2] @ (axis_y * scale[1] / 2)
    torch.testing.assert_close(step_x, torch.tensor([width / 2, 0.0]).double())
    torch.testing.assert_close(step_y, torch.tensor([0.0, height / 2]).double())


def test_crop_matrix_positive_rotation_turns_content_counter_clockwise() -> None:
    m = crop_matrix(torch.tensor([0.0, 0.0]), torch.tensor([2.0, 2.0]), (2, 2), 90.0)
    # a point right of the centre ends up above it (y points down)
    right = m @ torch.tensor([1.0, 0.0, 1.0])
    torch.testing.assert_close(right, torch.tensor([0.5, -0.5]))


@given(seed=seeds, rotation=st.floats(-90, 90))
def test_crop_to_image_inverts_crop_matrix(seed: int, rotation: float) -> None:
    g = generator(seed)
    center = torch.rand(3, 2, generator=g, dtype=torch.float64) * 300
    scale = torch.rand(3, 2, generator=g, dtype=torch.float64) * 200 + 5
    points = torch.rand(3, 4, 2, generator=g, dtype=torch.float64) * 300
    m = crop_matrix(center, scale, (64, 48), rotation)
    back = crop_to_image(affine_keypoints(points, m), center, scale, (64, 48), rotation)
    torch.testing.assert_close(back, points)


def _blob_image(size: tuple[int, int], at: tuple[float, float], sigma: float) -> Image.Image:
    height, width = size
    y, x = np.mgrid[0:height, 0:width]
    blob = np.exp(-((x - at[0]) ** 2 + (y - at[1]) ** 2) / (2 * sigma**2))
    return Image.fromarray(np.round(blob * 255).astype(np.uint8))


def _centroid(image: Image.Image) -> torch.Tensor:
    a = np.asarray(image, dtype=np.float64)
    a = np.where(a > 0.2 * a.max(), a, 0.0)
    y, x = np.mgrid[0 : a.shape[0], 0 : a.shape[1]]
    return torch.tensor([(a * x).sum() / a.sum(), (a * y).sum() / a.sum()])


@pytest.mark.parametrize("zoom", [2.0, 1.0, 0.5, 0.3, 0.2])
@pytest.mark.parametrize("rotation", [0.0, 37.0])
def test_crop_image_puts_a_marked_spot_where_the_matrix_says(zoom: float, rotation: float) -> None:
    # zoom < 0.5 exercises the reduce-then-warp path for strong shrinking
    spot = (136.3, 92.6)
    image = _blob_image((240, 320), spot, sigma=2.5 / zoom)
    size = (40, 30)
    center = torch.tensor([140.0, 90.0], dtype=torch.float64)
    scale = torch.tensor([size[1] / zoom, size[0] / zoom], dtype=torch.float64)
    m = crop_matrix(center, scale, size, rotation)
    crop = crop_image(image, m, size)
    assert crop.size == (size[1], size[0])
    expected = affine_keypoints(torch.tensor([[spot]], dtype=torch.float64), m[None])[0, 0]
    torch.testing.assert_close(_centroid(crop).double(), expected, atol=0.15, rtol=0)


def test_crop_image_rejects_bad_matrix() -> None:
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        crop_image(Image.new("RGB", (4, 4)), torch.eye(3), (2, 2))


# ------------------------------------------------------------------------ real files


@pytest.mark.parametrize(
    ("ann_file", "builtin"), [(OCHUMAN, COCO_17), (CROWDPOSE, CROWDPOSE_14)], ids=["coco", "crowd"]
)
@needs_shared_data
def test_skeleton_comes_from_the_file(ann_file: Path, builtin: object) -> None:
    persons = load_coco_persons(ann_file)
    assert persons.skeleton == builtin
    assert persons.category_id == 1
    assert all(p.keypoints.shape == (persons.skeleton.num_joints, 3) for p in persons.instances)


@needs_shared_data
def test_crowdpose_flip_pairs_follow_names() -> None:
    sk = load_coco_persons(CROWDPOSE).skeleton
    for k, name in enumerate(sk.names):
        partner = sk.names[sk.flip_index[k]]
        assert partner == name.replace("left", "#").replace("right", "left").replace("#", "right")


@needs_shared_data
def test_labelled_split_is_first_instances_with_keypoints_in_file_order() -> None:
    persons = load_coco_persons(CROWDPOSE)
    raw = json.loads(CROWDPOSE.read_text())["annotations"]
    with_keypoints = [a["id"] for a in raw if not a["iscrowd"] and max(a["keypoints"]) > 0]
    assert len(with_keypoints) < len(raw)  # the file has a keypoint-less box
    for n in range(1, len(with_keypoints) + 1):
        assert [p.ann_id for p in labelled_instances(persons, n)] == with_keypoints[:n]
    with pytest.raises(ValueError, match="only 4"):
        labelled_instances(persons, 5)
    with pytest.raises(ValueError, match=">= 1"):
        labelled_instances(persons, 0)


@needs_shared_data
def test_unlabelled_split_keeps_the_people_with_keypoints_and_can_exclude(
    tmp_path: Path,
) -> None:
    """As SSHPE's COCO loader: a box the annotator left without keypoints is not a person
    of the unlabelled pool (it used to be, in a file that labels keypoints)."""
    data = json.loads(CROWDPOSE.read_text())
    anns = data["annotations"]
    anns[1]["keypoints"] = [0] * len(anns[1]["keypoints"])
    anns[1]["num_keypoints"] = 0
    persons = load_coco_persons(_write(tmp_path, "a.json", data))
    everyone = unlabelled_instances(persons)
    assert [p.ann_id for p in everyone] == [a["id"] for i, a in enumerate(anns) if i != 1]
    assert everyone == evaluation_instances(persons)
    labelled = labelled_instances(persons, 2)
    rest = unlabelled_instances(persons, exclude=labelled)
    assert [p.ann_id for p in rest] == [p.ann_id for p in everyone if p not in labelled]


def _write(tmp_path: Path, name: str, data: dict[str, object]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


@needs_shared_data
def test_a_file_s_images_are_checked_once_per_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """The image table (every image checked) was built twice per load."""
    tables = []
    build = data_module.image_table

    def counted(*args: Any) -> Any:
        tables.append(args[0])
        return build(*args)

    monkeypatch.setattr(data_module, "image_table", counted)
    load_coco_persons(OCHUMAN)
    assert tables == [OCHUMAN]


@needs_shared_data
def test_crowd_and_degenerate_boxes_are_skipped(tmp_path: Path) -> None:
    data = json.loads(OCHUMAN.read_text())
    anns = data["annotations"]
    anns[0]["iscrowd"] = 1
    anns[1]["bbox"] = [5000.0, 10.0, 20.0, 20.0]  # entirely right of the image
    anns[2]["bbox"] = [-10.0, -20.0, 60.0, 80.0]  # clipped to the image
    persons = load_coco_persons(_write(tmp_path, "a.json", data))
    assert [p.ann_id for p in persons.instances] == [a["id"] for a in anns[2:]]
    assert persons.instances[0].bbox == (0.0, 0.0, 50.0, 60.0)


@needs_shared_data
def test_a_box_only_file_loads_as_unlabelled_data_with_a_given_skeleton(tmp_path: Path) -> None:
    data = json.loads(OCHUMAN.read_text())
    data["categories"] = [{"id": 1, "name": "person", "supercategory": "person"}]
    for a in data["annotations"]:
        del a["keypoints"], a["num_keypoints"]
    path = _write(tmp_path, "boxes.json", data)
    with pytest.raises(ValueError, match="no category with 'keypoints'"):
        load_coco_persons(path)
    persons = load_coco_persons(path, skeleton=COCO_17)
    assert len(unlabelled_instances(persons)) == 5
    assert all(not p.keypoints.any() for p in persons.instances)
    assert evaluation_instances(persons) == ()


@needs_shared_data
def test_bad_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        load_coco_persons(tmp_path / "missing.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a COCO annotation file"):
        load_coco_persons(tmp_path / "junk.json")
    persons = load_coco_persons(OCHUMAN)
    with pytest.raises(ValueError, match="image folder not found"):
        TopDownDataset(persons.instances, tmp_path / "nope", (64, 48), 17)
    with pytest.raises(ValueError, match="missing"):
        TopDownDataset(persons.instances, tmp_path, (64, 48), 17)
    with pytest.raises(ValueError, match=r"\(14, 3\)"):
        TopDownDataset(persons.instances, OCHUMAN.parent, (64, 48), 14)


#: Ways to break the first annotation (or image) of a real file, by name.
BREAKS: dict[str, Callable[[dict[str, Any]], object]] = {
    "no bbox": lambda d: d["annotations"][0].pop("bbox"),
    "short bbox": lambda d: d["annotations"][0].update(bbox=d["annotations"][0]["bbox"][:2]),
    "text bbox": lambda d: d["annotations"][0].update(bbox=["a", 0, 1, 1]),
    "no image_id": lambda d: d["annotations"][0].pop("image_id"),
    "unknown image": lambda d: d["annotations"][0].update(image_id=-12345),
    "keypoint count": lambda d: d["annotations"][0].update(
        keypoints=d["annotations"][0]["keypoints"][:-3]
    ),
    "not an object": lambda d: d["annotations"].__setitem__(0, [1, 2, 3]),
    "image without file_name": lambda d: d["images"][0].pop("file_name"),
    # fields only the evaluation read: they crashed it, or scored silently, after training
    "nan area": lambda d: d["annotations"][0].update(area=math.nan),
    "negative area": lambda d: d["annotations"][0].update(area=-1.0),
    "text keypoint": lambda d: d["annotations"][0]["keypoints"].__setitem__(4, "12"),
    "text iscrowd": lambda d: d["annotations"][0].update(iscrowd="0"),
    "text num_keypoints": lambda d: d["annotations"][0].update(num_keypoints="17"),
    "negative box": lambda d: d["annotations"][0].update(bbox=[500, 500, -10, -10]),
    "text image id": lambda d: d["images"][0].update(id="003799.jpg"),
    "shared image id": lambda d: d["images"][1].update(id=d["images"][0]["id"]),
}
#: Where the message of a break points, when not at the first annotation.
WHERE = {
    "image without file_name": "'images'",
    "text image id": "image #0 has the id '003799.jpg'; COCO image ids are integers",
    "shared image id": "images #0 and #1 share the id 1; give each image an id of its own",
}


@pytest.mark.parametrize("how", BREAKS)
@needs_shared_data
def test_malformed_annotations_raise_value_error_naming_the_entry(tmp_path: Path, how: str) -> None:
    data = json.loads(OCHUMAN.read_text())
    BREAKS[how](data)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    where = WHERE.get(how, "annotation #0")
    with pytest.raises(ValueError, match=f"broken.json.*{where}"):
        load_coco_persons(broken)


@needs_shared_data
def test_unlabelled_data_of_another_skeleton_loads_without_its_labels() -> None:
    """SSHPE's COCO + AI Challenger setting: the unlabelled file's labels are ignored, so
    its joints may differ from the training skeleton (this used to be refused); a file
    with the training joints keeps its labels (the diagnostics read them)."""
    crowd = load_coco_persons(CROWDPOSE, skeleton=COCO_17)
    assert crowd.skeleton == COCO_17
    assert len(crowd.instances) == len(load_coco_persons(CROWDPOSE).instances)
    assert all(p.keypoints.shape == (17, 3) and not p.keypoints.any() for p in crowd.instances)
    same = load_coco_persons(OCHUMAN, skeleton=COCO_17).instances
    labelled = load_coco_persons(OCHUMAN).instances
    assert [p.ann_id for p in same] == [p.ann_id for p in labelled]
    assert all(
        np.array_equal(a.keypoints, b.keypoints) for a, b in zip(same, labelled, strict=True)
    )


def test_flip_pairs_given_to_the_loader(tmp_path: Path) -> None:
    data: dict[str, Any] = {
        "images": [],
        "categories": [{"id": 1, "name": "person", "keypoints": ["head", "hand_a", "hand_b"]}],
    }
    path = _write(tmp_path, "pairs.json", data)
    inferred = load_coco_persons(path)
    assert inferred.skeleton.flip_index == (0, 1, 2) and inferred.inferred_flips
    given = load_coco_persons(path, flip_pairs=[("hand_a", "hand_b")])
    assert given.skeleton.flip_index == (0, 2, 1) and not given.inferred_flips
    data["categories"][0]["flip_pairs"] = [["hand_a", "hand_b"]]
    in_file = load_coco_persons(_write(tmp_path, "pairs.json", data))
    assert in_file.skeleton.flip_index == (0, 2, 1) and not in_file.inferred_flips
    data["categories"][0]["flip_pairs"] = [["hand_a", "hand_c"]]
    with pytest.raises(
        ValueError, match=r"pairs.json: the category's 'flip_pairs' names the joint 'hand_c'"
    ):
        load_coco_persons(_write(tmp_path, "pairs.json", data))
    data["categories"][0] = {"id": 1, "keypoints": ["head", "l_hand"]}
    with pytest.raises(ValueError, match=r"pairs\.json: cannot infer flip_index: joint 'l_hand'"):
        load_coco_persons(_write(tmp_path, "pairs.json", data))


def test_an_unreadable_image_names_the_file(tmp_path: Path) -> None:
    """A truncated JPEG raised Pillow's OSError without a file name."""
    path = tmp_path / "cut.jpg"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(path)
    path.write_bytes(path.read_bytes()[:300])
    person = PersonInstance(1, 1, "cut.jpg", (0.0, 0.0, 64.0, 64.0), np.zeros((2, 3), np.float32))
    dataset = TopDownDataset([person], tmp_path, (32, 32), 2)
    with pytest.raises(ValueError, match=f"cannot read the image {path}"):
        dataset[0]


@pytest.mark.parametrize("ann_file", REAL)
@needs_shared_data
def test_dataset_crops_and_targets_on_real_files(ann_file: Path) -> None:
    persons = load_coco_persons(ann_file)
    instances = evaluation_instances(persons)
    size = (64, 48)
    dataset = TopDownDataset(instances, ann_file.parent, size, persons.skeleton.num_joints)
    assert len(dataset) == len(instances)
    for person, sample in zip(instances, dataset, strict=True):
        k = persons.skeleton.num_joints
        assert sample["image"].shape == (3, *size) and sample["image"].dtype == torch.float32
        assert sample["keypoints"].shape == (k, 2) and sample["visibility"].shape == (k,)
        assert (sample["image_id"], sample["ann_id"], sample["box_score"]) == (
            person.image_id,
            person.ann_id,
            1.0,
        )
        torch.testing.assert_close(
            sample["visibility"], torch.from_numpy(person.keypoints[:, 2] > 0).float()
        )
        # mapping the crop keypoints back recovers the annotation
        back = crop_to_image(
            sample["keypoints"][None].double(),
            sample["center"][None].double(),
            sample["scale"][None].double(),
            size,
        )
        labelled = sample["visibility"] > 0
        torch.testing.assert_close(
            back[0][labelled],
            torch.from_numpy(person.keypoints[:, :2]).double()[labelled],
            atol=1e-3,
            rtol=0,
        )


@pytest.mark.parametrize("ann_file", REAL)
@needs_shared_data
def test_training_targets_of_real_crops_peak_at_the_keypoints(ann_file: Path) -> None:
    """The supervised targets of a batch of real crops (256 x 192, stride 4, sigma 2): one
    Gaussian per labelled joint in the frame, peaking on the keypoint's heatmap pixel."""
    persons = load_coco_persons(ann_file)
    instances = evaluation_instances(persons)
    size, stride = (256, 192), 4
    height, width = size[0] // stride, size[1] // stride
    dataset = TopDownDataset(instances, ann_file.parent, size, persons.skeleton.num_joints)
    batch = default_collate(list(dataset))
    targets, weights = render_heatmaps(
        batch["keypoints"] / stride,
        batch["visibility"],
        (height, width),
        2.0,
        unbiased=True,
    )
    # where the annotations land in the heatmaps, computed from the file directly
    annotated = torch.stack([torch.from_numpy(p.keypoints[:, :2]) for p in instances]).double()
    matrix = crop_matrix(batch["center"].double(), batch["scale"].double(), size)
    heat = affine_keypoints(annotated, matrix).float() / stride
    labelled = batch["visibility"] > 0
    in_map = (heat >= 0).all(-1) & (heat[..., 0] <= width - 1) & (heat[..., 1] <= height - 1)
    inside = in_map & labelled
    assert inside.sum() > 20
    assert torch.equal(weights[inside], torch.ones(int(inside.sum())))
    assert not weights[~labelled].any() and not targets[~labelled].any()
    flat = targets[inside].flatten(1).argmax(1)
    peak = torch.stack([flat % targets.shape[-1], flat // targets.shape[-1]], -1)
    assert torch.equal(peak.float(), heat[inside].round())


@needs_shared_data
def test_dataset_image_matches_a_direct_crop() -> None:
    persons = load_coco_persons(OCHUMAN)
    size = (64, 48)
    dataset = TopDownDataset(persons.instances, OCHUMAN.parent, size, 17)
    sample = dataset[1]
    person = persons.instances[1]
    m = crop_matrix(sample["center"].double(), sample["scale"].double(), size)
    direct = crop_image(Image.open(OCHUMAN.parent / person.file_name).convert("RGB"), m, size)
    restored = denormalize(sample["image"]).permute(1, 2, 0).numpy()
    assert np.abs(restored.astype(int) - np.asarray(direct, dtype=int)).max() <= 1
    # and the normalisation is ImageNet's
    mean = sample["image"].new_tensor(IMAGENET_MEAN)
    std = sample["image"].new_tensor(IMAGENET_STD)
    pixel = torch.tensor(direct.getpixel((10, 20)), dtype=torch.float32) / 255
    torch.testing.assert_close(sample["image"][:, 20, 10], (pixel - mean) / std)


@needs_shared_data
def test_samples_collate_into_batches() -> None:
    persons = load_coco_persons(CROWDPOSE)
    dataset = TopDownDataset(persons.instances, CROWDPOSE.parent, (32, 24), 14)
    batch = default_collate([dataset[0], dataset[1], dataset[2]])
    assert batch["image"].shape == (3, 3, 32, 24)
    assert batch["keypoints"].shape == (3, 14, 2)
    assert batch["image_id"].tolist() == [p.image_id for p in persons.instances[:3]]
    assert batch["box_score"].dtype == torch.float64


@needs_shared_data
def test_image_cache_is_lru_and_empties_when_pickled() -> None:
    cache = _ImageCache(capacity=1)
    files = sorted(OCHUMAN.parent.glob("*.jpg"))
    first = cache.get(files[0])
    assert cache.get(files[0]) is first
    cache.get(files[1])  # evicts the first
    assert cache.get(files[0]) is not first
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.capacity == 1 and not clone._images
    no_cache = _ImageCache(capacity=0)
    assert no_cache.get(files[0]) is not no_cache.get(files[0])
