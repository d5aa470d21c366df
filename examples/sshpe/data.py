"""COCO person-keypoint data for top-down pose estimation, split the SSHPE way.

* :func:`load_coco_persons` reads an annotation file in the official COCO format: the
  skeleton from the file's ``categories`` (any layout: COCO-17, CrowdPose-14, ...) and the
  person instances in file order, with boxes clipped to their image.
* Splits (Xie et al., ICCV 2021): :func:`labelled_instances` keeps the first ``N`` person
  *instances* (not images) in file order, skipping crowd boxes and instances without
  keypoints; :func:`unlabelled_instances` keeps the same people of a file with their
  labels ignored (every box of a box-only file), either a second file or the same one
  (the SSHPE COCO protocol uses all of train2017 as unlabelled data, the labelled
  instances included; pass ``exclude=`` to leave them out); :func:`evaluation_instances`
  is every instance with keypoints (ground-truth boxes for evaluation).
* A person detector's boxes instead: :func:`detection_instances` reads a COCO
  detection-results file (the SimpleBaseline / SSHPE test on detector boxes, and SSHPE's
  "wild" unlabelled pool of ``unlabeled2017``), image ids named as files by an image-info
  file or by COCO's 12-digit names (:func:`coco_file_name`).
* :class:`TopDownDataset` cuts un-augmented crops around the boxes: the box becomes a
  centre and a scale with the input's aspect ratio and 1.25 padding
  (:func:`box_to_center_scale`), :func:`crop_matrix` maps image pixels to crop pixels,
  and the image (decoded by Pillow, kept in a small LRU cache) is warped by that map.
  Augmentation is left to the trainer, batched on its device. :func:`crop_to_image`
  maps predictions back.

Coordinates follow the library's conventions: ``(x, y)`` pixels with pixel centres on
integers, sizes ``(H, W)``, rotations in degrees with positive turning the content
counter-clockwise. A COCO box ``(x, y, w, h)`` is centred on ``(x + w / 2, y + h / 2)``,
the convention of the SimpleBaseline / HRNet data code.

Example:
    >>> import torch
    >>> center, scale = box_to_center_scale(torch.tensor([10.0, 20.0, 30.0, 60.0]), 0.75)
    >>> center, scale
    (tensor([25., 50.]), tensor([56.2500, 75.0000]))
    >>> m = crop_matrix(center, scale, (64, 48))
    >>> m @ torch.tensor([25.0, 50.0, 1.0])  # the box centre goes to the crop centre
    tensor([23.5000, 31.5000])
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from posemum_aug.keypoints import Skeleton, affine_keypoints, invert_affine

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_COORDINATE",
    "CocoPersons",
    "PersonInstance",
    "TopDownDataset",
    "TopDownSample",
    "box_to_center_scale",
    "coco_file_name",
    "crop_image",
    "crop_matrix",
    "crop_to_image",
    "denormalize",
    "detection_instances",
    "evaluation_instances",
    "file_skeleton",
    "image_table",
    "keypoint_category",
    "labelled_instances",
    "load_coco_persons",
    "person_annotations",
    "read_coco_file",
    "unlabelled_instances",
]

#: Largest coordinate accepted in a box or keypoint, in pixels: far beyond any real image,
#: small enough that areas and crop maps stay finite in float32.
MAX_COORDINATE = 1e7
#: ImageNet channel statistics used to normalise crops (RGB, in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ------------------------------------------------------------------------- geometry


def box_to_center_scale(
    bbox: Tensor, aspect: float, padding: float = 1.25
) -> tuple[Tensor, Tensor]:
    """Turn COCO boxes into crop centres and scales with a fixed aspect ratio.

    The box is grown along its short side until ``w / h == aspect``, then both sides are
    multiplied by ``padding``.

    Args:
        bbox: ``(..., 4)`` boxes ``(x, y, w, h)`` in pixels.
        aspect: width / height of the network input (``W / H``, 0.75 for 256 x 192).
        padding: context factor (1.25 in SimpleBaseline and SSHPE).

    Returns:
        ``center`` ``(..., 2)`` and ``scale`` ``(..., 2)`` (``(width, height)`` of the
        crop in image pixels), floating like ``bbox``.

    Raises:
        ValueError: if ``bbox`` does not end in 4 or ``aspect`` / ``padding`` are not
            positive.

    Example:
        >>> import torch
        >>> box_to_center_scale(torch.tensor([0.0, 0.0, 40.0, 40.0]), 0.5, padding=1.0)
        (tensor([20., 20.]), tensor([40., 80.]))
    """
    if bbox.shape[-1:] != (4,):
        raise ValueError(f"bbox must have shape (..., 4), got {tuple(bbox.shape)}")
    if not (aspect > 0 and padding > 0):
        raise ValueError(f"aspect and padding must be > 0, got {aspect!r}, {padding!r}")
    bbox = bbox if bbox.is_floating_point() else bbox.float()
    x, y, w, h = bbox.unbind(-1)
    center = torch.stack((x + w / 2, y + h / 2), dim=-1)
    w, h = torch.maximum(w, h * aspect), torch.maximum(h, w / aspect)
    return center, torch.stack((w, h), dim=-1) * padding


def crop_matrix(
    center: Tensor,
    scale: Tensor,
    output_size: tuple[int, int],
    rotation: float | Tensor = 0.0,
) -> Tensor:
    """The affine map from image pixels to crop pixels.

    The region of size ``scale`` centred on ``center`` fills the ``(H, W)`` crop:
    ``p_crop = S R (p - center) + ((W - 1) / 2, (H - 1) / 2)`` with
    ``S = diag(W / scale_w, H / scale_h)`` and ``R`` a rotation by ``rotation`` degrees
    (positive turns the content counter-clockwise on screen).

    Args:
        center: ``(..., 2)`` region centres ``(x, y)`` in image pixels.
        scale: ``(..., 2)`` region sizes ``(width, height)`` in image pixels.
        output_size: crop size ``(H, W)``.
        rotation: degrees, a float or a tensor broadcastable to ``center.shape[:-1]``.

    Returns:
        ``(..., 2, 3)`` matrices, dtype of ``center`` (use float64 for exact round trips).

    Raises:
        ValueError: if ``center`` / ``scale`` do not end in 2 or differ in shape, or the
            output size is not positive.

    Example:
        >>> import torch
        >>> crop_matrix(torch.tensor([10.0, 10.0]), torch.tensor([8.0, 8.0]), (4, 4))
        tensor([[ 0.5000,  0.0000, -3.5000],
                [ 0.0000,  0.5000, -3.5000]])
    """
    if center.shape[-1:] != (2,) or scale.shape != center.shape:
        raise ValueError(
            "center and scale must both have shape (..., 2), "
            f"got {tuple(center.shape)} and {tuple(scale.shape)}"
        )
    height, width = output_size
    if height < 1 or width < 1:
        raise ValueError(f"output_size must be positive (H, W), got {output_size!r}")
    center = center if center.is_floating_point() else center.float()
    scale = scale.to(center)
    theta = torch.deg2rad(torch.as_tensor(rotation, dtype=center.dtype, device=center.device))
    theta = theta.expand(center.shape[:-1])
    cos, sin = torch.cos(theta), torch.sin(theta)
    sx, sy = width / scale[..., 0], height / scale[..., 1]
    # y points down, so a counter-clockwise turn on screen is [[c, s], [-s, c]]
    # (0 - sin rather than -sin: no -0.0 entries in unrotated matrices)
    a = torch.stack((sx * cos, sx * sin, sy * (0 - sin), sy * cos), dim=-1)
    a = a.reshape(*a.shape[:-1], 2, 2)
    offset = center.new_tensor([(width - 1) / 2, (height - 1) / 2])
    t = offset - (a @ center.unsqueeze(-1)).squeeze(-1)
    return torch.cat((a, t.unsqueeze(-1)), dim=-1)


def crop_to_image(
    coords: Tensor,
    center: Tensor,
    scale: Tensor,
    output_size: tuple[int, int],
    rotation: float | Tensor = 0.0,
) -> Tensor:
    """Map crop-pixel coordinates back to the image (inverse of :func:`crop_matrix`).

    Heatmap peaks must first be converted to input-crop pixels (multiply by the stride).

    Args:
        coords: ``(N, K, 2)`` points in crop pixels.
        center: ``(N, 2)`` crop centres used for the crops.
        scale: ``(N, 2)`` crop sizes used for the crops.
        output_size: crop size ``(H, W)``.
        rotation: the crops' rotation in degrees, a float or ``(N,)``.

    Returns:
        ``(N, K, 2)`` image pixels, dtype and device of ``coords``.

    Raises:
        ValueError: on mismatched shapes.

    Example:
        >>> import torch
        >>> c, s = torch.tensor([[10.0, 10.0]]), torch.tensor([[8.0, 8.0]])
        >>> crop_to_image(torch.tensor([[[1.5, 1.5]]]), c, s, (4, 4))
        tensor([[[10., 10.]]])
    """
    if coords.dim() != 3 or coords.shape[-1] != 2 or center.shape != (coords.shape[0], 2):
        raise ValueError(
            "coords must be (N, K, 2) with center and scale (N, 2), got "
            f"{tuple(coords.shape)}, {tuple(center.shape)}, {tuple(scale.shape)}"
        )
    matrix = crop_matrix(center.double(), scale.double(), output_size, rotation)
    return affine_keypoints(coords, invert_affine(matrix).to(coords.dtype))


def crop_image(image: Image.Image, matrix: Tensor, output_size: tuple[int, int]) -> Image.Image:
    """Warp an image by an image-to-crop affine map (bilinear, black outside).

    When the crop shrinks the image by 2x or more, the image is first reduced by the
    integer factor with box averaging, so small crops of large images do not alias.

    Args:
        image: a Pillow image.
        matrix: ``(2, 3)`` map from image pixels to crop pixels (:func:`crop_matrix`).
        output_size: crop size ``(H, W)``.

    Returns:
        The ``(H, W)`` crop, same mode as ``image``.

    Raises:
        ValueError: if ``matrix`` is not ``(2, 3)``.

    Example:
        >>> import torch
        >>> from PIL import Image
        >>> im = Image.new("L", (8, 8))
        >>> im.putpixel((5, 2), 255)
        >>> shift = torch.tensor([[1.0, 0.0, -4.0], [0.0, 1.0, -1.0]])
        >>> crop_image(im, shift, (3, 3)).getpixel((1, 1))  # (5, 2) -> (1, 1)
        255
    """
    if matrix.shape != (2, 3):
        raise ValueError(f"matrix must have shape (2, 3), got {tuple(matrix.shape)}")
    m = matrix.detach().double().cpu()
    (a, b), (c, d) = m[:, :2].tolist()
    frobenius, det = a * a + b * b + c * c + d * d, a * d - b * c
    largest_singular = math.sqrt((frobenius + math.sqrt(max(frobenius**2 - 4 * det * det, 0))) / 2)
    factor = int(1.0 / largest_singular)
    if factor >= 2:
        # reduced pixel i averages original pixels k*i .. k*i+k-1, centred on k*i + (k-1)/2
        image = image.reduce(factor)
        m = torch.cat(
            (m[:, :2] * factor, (m[:, 2] + m[:, :2].sum(1) * (factor - 1) / 2)[:, None]), 1
        )
    inverse = invert_affine(m[None])[0]
    a, t = inverse[:, :2], inverse[:, 2]
    # Pillow samples input pixel centres at +0.5 and maps output pixel centres at +0.5
    t = t + 0.5 - a.sum(1) * 0.5
    height, width = output_size
    coefficients = (a[0, 0], a[0, 1], t[0], a[1, 0], a[1, 1], t[1])
    return image.transform(
        (width, height),
        Image.Transform.AFFINE,
        tuple(float(c) for c in coefficients),
        resample=Image.Resampling.BILINEAR,
    )


def denormalize(image: Tensor) -> Tensor:
    """Undo the ImageNet normalisation of crops, for display.

    Args:
        image: ``(..., 3, H, W)`` normalised crops.

    Returns:
        ``(..., 3, H, W)`` uint8 RGB.

    Example:
        >>> import torch
        >>> denormalize(torch.zeros(3, 1, 1)).flatten().tolist()
        [124, 116, 104]
    """
    mean = image.new_tensor(IMAGENET_MEAN)[:, None, None]
    std = image.new_tensor(IMAGENET_STD)[:, None, None]
    return ((image * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)


# ---------------------------------------------------------------------- annotations


@dataclass(frozen=True)
class PersonInstance:
    """One person box of an annotation file.

    Attributes:
        image_id: COCO image id.
        ann_id: COCO annotation id.
        file_name: the image's file name, relative to the image folder.
        bbox: ``(x, y, w, h)``, clipped to the image.
        keypoints: ``(K, 3)`` ``(x, y, v)`` float32; zeros where the file has none.
        score: box confidence (1.0 for ground-truth boxes).
    """

    image_id: int
    ann_id: int
    file_name: str
    bbox: tuple[float, float, float, float]
    keypoints: NDArray[np.float32]
    score: float = 1.0

    @property
    def num_keypoints(self) -> int:
        """Labelled joints (``v > 0``)."""
        return int((self.keypoints[:, 2] > 0).sum())


@dataclass(frozen=True)
class CocoPersons:
    """The person instances of a COCO annotation file, in file order.

    Attributes:
        ann_file: the file.
        skeleton: its keypoint layout.
        category_id: the person category's id.
        instances: non-crowd person annotations with a non-empty clipped box.
        inferred_flips: whether the skeleton's flip pairs were inferred from the joint
            names (no pairs given, none in the category): a skeleton whose names then pair
            no joint may not be flipped (see ``sshpe.loaders.build_datasets``).
    """

    ann_file: Path
    skeleton: Skeleton
    category_id: int
    instances: tuple[PersonInstance, ...]
    inferred_flips: bool = False


def read_coco_file(ann_file: str | Path) -> dict[str, Any]:
    """The JSON object of a COCO annotation file, its ``categories`` checked to be objects.

    Args:
        ann_file: path to the JSON file.

    Returns:
        The parsed file.

    Raises:
        ValueError: if the file is missing, is not JSON, or is not a JSON object whose
            ``categories`` (if present) is a list of objects.
    """
    path = Path(ann_file)
    data: dict[str, Any] = _read_json(path, "annotation file")
    categories = data.get("categories", []) if isinstance(data, dict) else None
    if not isinstance(categories, list) or not all(isinstance(c, dict) for c in categories):
        raise ValueError(f"{path} is not a COCO annotation file: no list of 'categories'")
    return data


def _read_json(path: Path, kind: str) -> Any:
    """The JSON content of the ``kind`` file at ``path`` (e.g. ``"annotation file"``).

    Raises:
        ValueError: if the file is missing or is not JSON, naming it.
    """
    if not path.is_file():
        raise ValueError(f"{kind} not found: {path}")
    try:
        return json.loads(path.read_text())
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{path} is not a COCO {kind}: {e!r}") from None


def keypoint_category(categories: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The first category with ``keypoints`` names (the person category), or ``None``."""
    return next((c for c in categories if c.get("keypoints")), None)


def file_skeleton(
    path: Path, category: dict[str, Any], flip_pairs: Sequence[Sequence[str]] | None = None
) -> Skeleton:
    """:meth:`~posemum_aug.keypoints.Skeleton.from_coco_category` of a file's person
    category, its errors naming the file and, where the flip pairs are at fault, the
    trainer's ``--flip-pairs`` (``flip_pairs``) rather than the library's argument.

    Raises:
        ValueError: if the category is malformed or its flip pairs cannot be found.
    """
    try:
        return Skeleton.from_coco_category(category, flip_pairs=flip_pairs)
    except ValueError as e:
        error = str(e)
    try:
        Skeleton.from_coco_category(category, flip_pairs=())
    except ValueError:
        pass  # the category itself is malformed: the library's words hold
    else:  # only the flip pairs failed
        if flip_pairs is not None:
            error = error.replace("flip_pairs ", "--flip-pairs ", 1)
        elif "flip_pairs" not in category:  # inferred from the names: cut the library's hint
            error = (
                f"{error.partition('; ')[0]}; give the pairs with --flip-pairs LEFT:RIGHT ... or "
                "a 'flip_pairs' list of [left, right] joint names in the category"
            )
    raise ValueError(f"{path}: {error}") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_coordinate(value: Any) -> bool:
    """A JSON number (not a bool or a string), finite and within :data:`MAX_COORDINATE`."""
    # no math.isfinite: it overflows on a huge integer; NaN fails the comparison
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and abs(value) <= MAX_COORDINATE
    )


def _all_coordinates(values: list[Any]) -> bool:
    """Whether every value :func:`_is_coordinate`, vectorised (COCO train2017 holds 262k
    people): a flat list of JSON numbers, so no bool (numpy reads ``true`` as 1.0) and no
    nested list (``[[x], [y], [v], ...]``)."""
    if not set(map(type, values)) <= {int, float}:
        return all(map(_is_coordinate, values))  # the rare slow path: subclasses, bad values
    array = np.asarray(values)  # an int over int64 makes an object array: not "iuf"
    return (
        array.ndim == 1
        and array.dtype.kind in "iuf"
        and bool((np.abs(array) <= MAX_COORDINATE).all())
    )


def image_table(path: Path, images: Any) -> dict[int, dict[str, Any]]:
    """The ``images`` of a COCO file by id, each checked: an object with an integer ``id``
    of its own, a ``file_name`` and, if given, a positive ``width`` and ``height``.

    Raises:
        ValueError: naming the file and the image's position.
    """
    if not isinstance(images, list):
        raise ValueError(f"{path}: 'images' must be a list of objects, got {type(images).__name__}")
    table: dict[int, dict[str, Any]] = {}
    position: dict[int, int] = {}
    for index, image in enumerate(images):
        if not (isinstance(image, dict) and "id" in image and "file_name" in image):
            raise ValueError(
                f"{path}: 'images' must be objects with 'id' and 'file_name'; #{index} is "
                f"{str(image)[:80]}"
            )
        image_id = image["id"]
        if not _is_int(image_id):
            raise ValueError(
                f"{path}: image #{index} has the id {image_id!r}; COCO image ids are integers"
            )
        if image_id in table:
            raise ValueError(
                f"{path}: images #{position[image_id]} and #{index} share the id {image_id}; "
                "give each image an id of its own"
            )
        if not (isinstance(image["file_name"], str) and image["file_name"]):
            raise ValueError(f"{path}: image #{index} has no usable 'file_name'")
        for side in ("width", "height"):
            if side in image and not (_is_coordinate(image[side]) and image[side] > 0):
                raise ValueError(f"{path}: image #{index} has the {side} {image[side]!r}")
        table[image_id] = image
        position[image_id] = index
    return table


def _check_person(ann: Any, images: dict[int, Any], num_joints: int | None) -> None:
    """Check every field of a person annotation that a loader or an evaluation reads.

    ``id`` and ``image_id`` integers, the image in the file; ``iscrowd`` 0 or 1 and
    ``num_keypoints`` an integer >= 0 where given; ``bbox`` four finite numbers with
    ``w, h >= 0``; ``area`` finite and >= 0 where given; ``score`` finite where given;
    ``keypoints`` (unless ``num_joints`` is ``None``: labels ignored) absent, empty or
    ``3 K`` finite numbers. Coordinates are bounded by :data:`MAX_COORDINATE`.

    Raises:
        ValueError: naming the field.
    """
    if not isinstance(ann, dict):
        raise ValueError(f"not an object: {str(ann)[:80]}")
    ann_id = ann.get("id")
    if not _is_int(ann_id):
        raise ValueError(f"its 'id' must be an integer, got {ann_id!r}")
    if not _is_int(ann.get("image_id")) or ann["image_id"] not in images:
        raise ValueError(f"id {ann_id} names an unknown image {ann.get('image_id')!r}")
    if ann.get("iscrowd", 0) not in (0, 1):
        raise ValueError(f"id {ann_id} has 'iscrowd' {ann['iscrowd']!r}; COCO uses 0 or 1")
    if "num_keypoints" in ann and not (_is_int(ann["num_keypoints"]) and ann["num_keypoints"] >= 0):
        raise ValueError(f"id {ann_id} has 'num_keypoints' {ann['num_keypoints']!r}")
    bbox = ann.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_coordinate, bbox))):
        raise ValueError(
            f"id {ann_id} has a bbox that is not 4 finite numbers within {MAX_COORDINATE:g} "
            f"px: {str(bbox)[:80]}"
        )
    if bbox[2] < 0 or bbox[3] < 0:
        raise ValueError(f"id {ann_id} has a bbox of negative size: {bbox}")
    for key in ("area", "score"):
        value = ann.get(key, 0.0)
        if not (_is_int(value) or isinstance(value, float)) or not 0 <= value < math.inf:
            raise ValueError(f"id {ann_id} has the {key} {value!r}; it must be finite and >= 0")
    flat = ann.get("keypoints") or []
    if num_joints is None or not flat:
        return
    if not isinstance(flat, list) or len(flat) != 3 * num_joints:
        count = f"{len(flat) / 3:g}" if isinstance(flat, list) else repr(flat)[:40]
        raise ValueError(f"id {ann_id} has {count} keypoints, the skeleton has {num_joints}")
    if not _all_coordinates(flat):
        bad = next(i for i, v in enumerate(flat) if not _is_coordinate(v))
        joint = bad // 3
        raise ValueError(
            f"id {ann_id} has a keypoint that is not a finite number within {MAX_COORDINATE:g} "
            f"px (joint {joint}: {flat[3 * joint : 3 * joint + 3]})"
        )


def person_annotations(
    path: Path,
    data: dict[str, Any],
    category: dict[str, Any],
    num_joints: int | None,
    images: dict[int, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The annotations of the person category, in file order, each checked for every field a
    loader or an evaluation reads.

    Args:
        path: the file (for messages).
        data: its parsed content.
        category: its person category.
        num_joints: ``K`` to check the keypoints against; ``None`` when the labels are
            ignored (not checked, not read).
        images: :func:`image_table` of ``data``'s images, if the caller has built it
            (else built here).

    Raises:
        ValueError: on a category without an integer ``id``, a malformed image table or
            annotation, naming the file and the annotation's position.
    """
    category_id = category.get("id")
    if not _is_int(category_id):
        raise ValueError(
            f"{path}: the person category's 'id' must be an integer, got {category_id!r}"
        )
    if images is None:
        images = image_table(path, data.get("images"))
    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        raise ValueError(f"{path}: 'annotations' must be a list of objects")
    persons = []
    for index, ann in enumerate(annotations):
        if isinstance(ann, dict) and ann.get("category_id") != category_id:
            continue
        try:
            _check_person(ann, images, num_joints)
        except ValueError as e:
            raise ValueError(f"{path}: annotation #{index} is malformed: {e}") from None
        persons.append(ann)
    return persons


def load_coco_persons(
    ann_file: str | Path,
    skeleton: Skeleton | None = None,
    *,
    flip_pairs: Sequence[Sequence[str]] | None = None,
) -> CocoPersons:
    """Read a COCO person-keypoint annotation file.

    The person category is the one with ``keypoints`` names, else (for an unlabelled
    file read with a given ``skeleton``) the one named ``person``. Every person annotation
    is checked (:func:`person_annotations`); crowd annotations and boxes that are empty
    after clipping to the image are left out.

    Args:
        ann_file: path to the JSON file.
        skeleton: the layout to use; ``None`` builds it from the file's category with
            :meth:`~posemum_aug.keypoints.Skeleton.from_coco_category`. Give it to read a
            file whose labels are ignored: it then needs no keypoints, and keypoints of
            other joints than ``skeleton``'s (another layout) are not read (zeros).
        flip_pairs: ``[left, right]`` joint name pairs of the file's skeleton (the
            trainer's ``--flip-pairs``), overriding the category's ``flip_pairs`` and
            the pairs inferred from the names; not used with ``skeleton``.

    Returns:
        The skeleton, category id and person instances.

    Raises:
        ValueError: if the file is missing or not COCO JSON, has no category with
            keypoints (when ``skeleton`` is ``None``) or no person category, a category,
            image or annotation is malformed, or its flip pairs cannot be found.
    """
    path = Path(ann_file)
    data = read_coco_file(path)
    if "images" not in data:
        raise ValueError(f"{path} is not a COCO annotation file: no 'images'")
    category = keypoint_category(data.get("categories", []))
    inferred = False
    if skeleton is None:
        if category is None:
            raise ValueError(
                f"{path} has no category with 'keypoints' names; "
                "is it a person-keypoints file (person_keypoints_*.json)?"
            )
        skeleton = file_skeleton(path, category, flip_pairs)
        inferred = flip_pairs is None and "flip_pairs" not in category
        labels = True
    else:
        labels = category is not None and category["keypoints"] == list(skeleton.names)
    if category is None:
        category = next((c for c in data.get("categories", []) if c.get("name") == "person"), None)
        if category is None:
            raise ValueError(f"{path} has no 'person' category")
    num_joints = skeleton.num_joints
    images = image_table(path, data["images"])
    instances = []
    for ann in person_annotations(path, data, category, num_joints if labels else None, images):
        if ann.get("iscrowd", 0):
            continue
        instance = _person_instance(ann, images[ann["image_id"]], num_joints, labels)
        if instance is not None:
            instances.append(instance)
    return CocoPersons(path, skeleton, category["id"], tuple(instances), inferred)


def _person_instance(
    ann: dict[str, Any], image: dict[str, Any], num_joints: int, labels: bool
) -> PersonInstance | None:
    """One checked person annotation, its box clipped to the image (``None`` if that
    leaves it empty); keypoints zero where the file has none or ``labels`` is off."""
    x, y, w, h = (float(v) for v in ann["bbox"])
    x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), x + w, y + h
    if "width" in image and "height" in image:
        x1, y1 = min(x1, float(image["width"])), min(y1, float(image["height"]))
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        return None
    flat = (ann.get("keypoints") if labels else None) or [0.0] * (3 * num_joints)
    return PersonInstance(
        image_id=ann["image_id"],
        ann_id=ann["id"],
        file_name=image["file_name"],
        bbox=(x0, y0, x1 - x0, y1 - y0),
        keypoints=np.asarray(flat, dtype=np.float32).reshape(num_joints, 3),
        score=float(ann.get("score", 1.0)),
    )


def coco_file_name(image_id: int) -> str:
    """The file name of a COCO 2017 image (train2017, val2017, test2017, unlabeled2017):
    its id zero-padded to 12 digits, then ``.jpg``.

    Example:
        >>> coco_file_name(139)
        '000000000139.jpg'
    """
    return f"{image_id:012d}.jpg"


def detection_instances(
    det_file: str | Path,
    category_id: int,
    num_joints: int,
    image_info: str | Path | None = None,
) -> tuple[PersonInstance, ...]:
    """The person boxes of a COCO detection-results file, as instances to crop.

    A detection-results file is what a detector's COCO evaluation reads (e.g.
    SimpleBaseline's ``COCO_val2017_detections_AP_H_56_person.json``): a JSON list of
    ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``. The detections of
    ``category_id`` are kept in file order, each box clipped to its image where the
    image's size is known (as ground-truth boxes are; a detector's boxes lie inside as a
    rule) and left out if that empties it; detections of other categories are skipped.

    Image ids name files through ``image_info``, a COCO file with ``images`` (an
    annotation file, or an image-info file such as ``image_info_unlabeled2017.json``):
    every person detection must be of one of its images. Without it, an image's file is
    :func:`coco_file_name` of its id (COCO 2017's names).

    Args:
        det_file: the detection-results file.
        category_id: the person category's id (COCO's is 1).
        num_joints: ``K`` (the instances' keypoints are ``(K, 3)`` zeros).
        image_info: the file mapping image ids to file names and sizes, or ``None``.

    Returns:
        The instances, ``score`` the detection's score and ``ann_id`` its position in the
        file; empty if every box lies outside its image.

    Raises:
        ValueError: naming the file, if it is missing, not JSON or not a list of objects;
            a detection has no integer ``image_id`` or ``category_id``; a person detection
            has a ``bbox`` that is not 4 finite numbers with ``w, h >= 0`` or a ``score``
            that is not a finite number (each within :data:`MAX_COORDINATE`), or an image
            that ``image_info`` does not hold (without it, a negative id); or no detection
            is of ``category_id``.
    """
    path = Path(det_file)
    detections = _read_json(path, "detection-results file")
    if not isinstance(detections, list) or not all(isinstance(d, dict) for d in detections):
        raise ValueError(
            f"{path} is not a COCO detection-results file: a list of objects with 'image_id', "
            "'category_id', 'bbox' and 'score'"
        )
    images = None if image_info is None else image_table(Path(image_info), _images(image_info))
    instances, categories = [], set()
    for index, det in enumerate(detections):
        try:
            image = _detected_image(det, category_id, images, image_info)
        except ValueError as e:
            raise ValueError(f"{path}: detection #{index} {e}") from None
        categories.add(det["category_id"])
        if image is not None:
            ann = {"id": index, **{k: det[k] for k in ("image_id", "bbox", "score")}}
            instance = _person_instance(ann, image, num_joints, labels=False)
            if instance is not None:
                instances.append(instance)
    if category_id not in categories:
        others = f"only of categories {sorted(categories)}" if categories else "it holds none"
        raise ValueError(
            f"{path} has no detection of the person category (category_id {category_id}): {others}"
        )
    return tuple(instances)


def _images(image_info: str | Path) -> Any:
    """The ``images`` of a COCO file (an annotation or image-info file)."""
    data = read_coco_file(image_info)
    if "images" not in data:
        raise ValueError(f"{image_info} is not a COCO annotation or image-info file: no 'images'")
    return data["images"]


def _detected_image(
    det: dict[str, Any],
    category_id: int,
    images: dict[int, dict[str, Any]] | None,
    image_info: str | Path | None,
) -> dict[str, Any] | None:
    """The image entry of a checked person detection (``file_name``, maybe the size), or
    ``None`` for a detection of another category.

    Raises:
        ValueError: naming the field.
    """
    if not _is_int(det.get("category_id")) or not _is_int(det.get("image_id")):
        raise ValueError(f"must have integer 'image_id' and 'category_id', got {str(det)[:80]}")
    if det["category_id"] != category_id:
        return None
    bbox, score, image_id = det.get("bbox"), det.get("score"), det["image_id"]
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_coordinate, bbox))):
        raise ValueError(
            f"has a bbox that is not 4 finite numbers within {MAX_COORDINATE:g} px: "
            f"{str(bbox)[:80]}"
        )
    if bbox[2] < 0 or bbox[3] < 0:
        raise ValueError(f"has a bbox of negative size: {bbox}")
    if not _is_coordinate(score):
        raise ValueError(
            f"has the score {str(score)[:40]}; scores must be finite numbers within "
            f"{MAX_COORDINATE:g}"
        )
    if images is not None:
        if image_id not in images:
            raise ValueError(f"is of image {image_id}, which is not in {image_info}")
        return images[image_id]
    if image_id < 0:
        raise ValueError(
            f"is of image {image_id}: without a file of the images, an image's file is its id "
            "zero-padded to 12 digits (COCO's names), so ids must be >= 0"
        )
    return {"file_name": coco_file_name(image_id)}


def evaluation_instances(persons: CocoPersons) -> tuple[PersonInstance, ...]:
    """Every instance with at least one labelled keypoint, in file order."""
    return tuple(p for p in persons.instances if p.num_keypoints > 0)


def labelled_instances(persons: CocoPersons, num_labelled: int) -> tuple[PersonInstance, ...]:
    """The SSHPE labelled split: the first ``num_labelled`` instances with keypoints.

    Args:
        persons: a loaded annotation file.
        num_labelled: ``N`` >= 1.

    Returns:
        ``N`` instances in file order (crowd and keypoint-less instances skipped).

    Raises:
        ValueError: if ``N`` < 1 or the file has fewer than ``N`` such instances.
    """
    available = evaluation_instances(persons)
    if isinstance(num_labelled, bool) or not isinstance(num_labelled, int) or num_labelled < 1:
        raise ValueError(f"the labelled count must be an integer >= 1, got {num_labelled!r}")
    if num_labelled > len(available):
        raise ValueError(
            f"asked for {num_labelled} labelled people but {persons.ann_file} has only "
            f"{len(available)} non-crowd instances with keypoints"
        )
    return available[:num_labelled]


def unlabelled_instances(
    persons: CocoPersons, exclude: Iterable[PersonInstance] = ()
) -> tuple[PersonInstance, ...]:
    """The SSHPE unlabelled split: the people of a file, labels ignored.

    As SSHPE's COCO loader, a file that labels keypoints gives its non-crowd instances
    with at least one labelled keypoint (149,813 people in COCO train2017); the boxes an
    annotator left without keypoints (mostly tiny or hidden people) are not used. A
    box-only file (no person with a labelled keypoint, e.g. a file of boxes given a
    skeleton) gives every box.

    Args:
        persons: a loaded annotation file (the training file or a second one).
        exclude: instances to leave out (e.g. the labelled split of the same file); by
            default none, as in the SSHPE COCO protocol.

    Returns:
        The instances in file order.

    Example:
        >>> import numpy as np
        >>> from posemum_aug.keypoints import COCO_17
        >>> def person(ann_id, labelled):
        ...     keypoints = np.zeros((17, 3), np.float32)
        ...     keypoints[0] = (5, 5, 2) if labelled else 0
        ...     return PersonInstance(1, ann_id, "1.jpg", (0, 0, 10, 10), keypoints)
        >>> people = (person(1, True), person(2, False), person(3, True))
        >>> persons = CocoPersons(Path("a.json"), COCO_17, 1, people)
        >>> [p.ann_id for p in unlabelled_instances(persons)]
        [1, 3]
        >>> [p.ann_id for p in unlabelled_instances(persons, exclude=people[:1])]
        [3]
    """
    skip = {(p.image_id, p.ann_id) for p in exclude}
    labels_keypoints = any(p.num_keypoints > 0 for p in persons.instances)
    return tuple(
        p
        for p in persons.instances
        if (p.image_id, p.ann_id) not in skip and (p.num_keypoints > 0 or not labels_keypoints)
    )


# -------------------------------------------------------------------------- dataset


class TopDownSample(TypedDict):
    """One un-augmented crop.

    Keys: ``image`` ``(3, H, W)`` float32 ImageNet-normalised; ``keypoints`` ``(K, 2)``
    float32 crop pixels; ``visibility`` ``(K,)`` float32, 1 for labelled joints (COCO
    ``v > 0``) else 0; ``center`` and ``scale`` ``(2,)`` float32 of the crop in image
    pixels; ``image_id``, ``ann_id``; ``box_score`` (1.0 for ground-truth boxes).
    """

    image: Tensor
    keypoints: Tensor
    visibility: Tensor
    center: Tensor
    scale: Tensor
    image_id: int
    ann_id: int
    box_score: float


class _ImageCache:
    """Decoded RGB images, least recently used dropped first; empty when pickled, so each
    data-loader worker keeps its own."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._images: OrderedDict[Path, Image.Image] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "_images": OrderedDict()}

    def get(self, path: Path) -> Image.Image:
        image = self._images.get(path)
        if image is not None:
            self._images.move_to_end(path)
            return image
        try:
            with Image.open(path) as f:
                image = f.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise ValueError(f"cannot read the image {path}: {e}") from None
        if self.capacity > 0:
            self._images[path] = image
            if len(self._images) > self.capacity:
                self._images.popitem(last=False)
        return image


class TopDownDataset(Dataset[TopDownSample]):
    """Un-augmented top-down crops of person instances.

    Args:
        instances: the people to crop (a split from this module).
        images_dir: folder holding the images' ``file_name``.
        input_size: crop size ``(H, W)``.
        num_joints: ``K``, for instances without keypoints.
        padding: box padding (1.25).
        cache_size: decoded images kept per process (0 disables the cache).

    Raises:
        ValueError: if the folder or an image is missing, ``instances`` is empty, or a
            keypoint array is not ``(K, 3)``.
    """

    def __init__(
        self,
        instances: Sequence[PersonInstance],
        images_dir: str | Path,
        input_size: tuple[int, int],
        num_joints: int,
        *,
        padding: float = 1.25,
        cache_size: int = 256,
    ) -> None:
        self.images_dir = Path(images_dir)
        if not self.images_dir.is_dir():
            raise ValueError(f"image folder not found: {self.images_dir}")
        if not instances:
            raise ValueError("no person instances to crop")
        missing = sorted(
            {p.file_name for p in instances if not (self.images_dir / p.file_name).is_file()}
        )
        if missing:
            raise ValueError(
                f"{len(missing)} image(s) missing from {self.images_dir}, e.g. {missing[0]}"
            )
        bad = [p.ann_id for p in instances if p.keypoints.shape != (num_joints, 3)]
        if bad:
            raise ValueError(f"annotations {bad[:5]} do not have ({num_joints}, 3) keypoints")
        self.instances = tuple(instances)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.num_joints = num_joints
        self.padding = padding
        self._cache = _ImageCache(cache_size)
        self._mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
        self._std = torch.tensor(IMAGENET_STD)[:, None, None]

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, index: int) -> TopDownSample:
        person = self.instances[index]
        height, width = self.input_size
        center, scale = box_to_center_scale(
            torch.tensor(person.bbox, dtype=torch.float64), width / height, self.padding
        )
        matrix = crop_matrix(center, scale, self.input_size)
        crop = crop_image(
            self._cache.get(self.images_dir / person.file_name), matrix, self.input_size
        )
        pixels = torch.from_numpy(np.asarray(crop, dtype=np.float32) / 255.0).permute(2, 0, 1)
        keypoints = torch.from_numpy(person.keypoints)
        return TopDownSample(
            image=(pixels - self._mean) / self._std,
            keypoints=affine_keypoints(keypoints[None, :, :2].double(), matrix[None])[0].float(),
            visibility=(keypoints[:, 2] > 0).float(),
            center=center.float(),
            scale=scale.float(),
            image_id=person.image_id,
            ann_id=person.ann_id,
            box_score=person.score,
        )
