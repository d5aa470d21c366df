"""The data set on disk: :func:`generate_synthetic_coco` and the files it writes.

Every image has its own random generator, seeded by ``(seed, split, image index)``; its
first draw is the number of people in it, so the plan of a split (people per image) is
known before any image is made, and images can be rendered in any order, by any number
of worker processes (:mod:`~sshpe.synthetic.processes`). Each image is sampled
(:func:`~sshpe.synthetic.sampling.sample_scene`), rendered, saved as a JPEG and
annotated; the annotations become one COCO file per split.

A set is built in a temporary folder beside ``root`` and moved into place when complete,
so ``root`` only ever holds a whole set. A temporary folder is named after the machine
and the process that makes it: the next generation removes those of processes that no
longer exist (killed half way), and leaves those of running ones alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from posemum_aug.keypoints import COCO_17

from .processes import _process_exists, _usable_cpus, _worker_pool
from .sampling import sample_scene
from .scene import PersonAnnotation, annotate_scene, render_scene
from .style import STYLES, SceneStyle

#: Bumped whenever the generator's output changes, so cached sets are rebuilt.
GENERATOR_VERSION = 3

#: Default image size ``(H, W)``.
DEFAULT_IMAGE_SIZE = (192, 256)

#: Probabilities of one, two and three people in an image.
_PERSONS_PER_IMAGE = (0.45, 0.35, 0.20)

_JPEG_QUALITY = 92
_MANIFEST = "manifest.json"


@dataclass(frozen=True)
class SyntheticPaths:
    """Where a generated set lives.

    Attributes:
        root: the cache folder.
        images: the image folder (both splits).
        train_ann: ``person_keypoints_train.json``.
        val_ann: ``person_keypoints_val.json``.
    """

    root: Path
    images: Path
    train_ann: Path
    val_ann: Path


def coco_category() -> dict[str, Any]:
    """The COCO ``person`` category with the 17 COCO joint names and 1-based links."""
    return {
        "id": 1,
        "name": "person",
        "supercategory": "person",
        "keypoints": list(COCO_17.names),
        "skeleton": [[a + 1, b + 1] for a, b in COCO_17.links],
    }


_SPLITS = ("train", "val")


def _image_rng(seed: int, split: str, index: int) -> tuple[np.random.Generator, int]:
    """An image's own generator and the number of people it asks for (its first draw)."""
    rng = np.random.default_rng([seed, _SPLITS.index(split), index])
    return rng, 1 + int(rng.choice(len(_PERSONS_PER_IMAGE), p=_PERSONS_PER_IMAGE))


def _plan_split(seed: int, split: str, num_persons: int) -> list[int]:
    """People per image: each image's own draw, the last one cut to hit ``num_persons``."""
    counts: list[int] = []
    while (left := num_persons - sum(counts)) > 0:
        counts.append(min(_image_rng(seed, split, len(counts))[1], left))
    return counts


@dataclass(frozen=True)
class _ImageTask:
    images_dir: Path
    split: str
    index: int
    num_persons: int
    image_size: tuple[int, int]
    seed: int
    style: SceneStyle

    @property
    def file_name(self) -> str:
        return f"{self.split}_{self.index:06d}.jpg"


def _make_image(task: _ImageTask) -> list[PersonAnnotation]:
    """Render, save and annotate one image (runs in a worker process)."""
    rng, _ = _image_rng(task.seed, task.split, task.index)
    scene = sample_scene(rng, task.image_size, task.num_persons, task.style)
    rendered = render_scene(scene)
    Image.fromarray(rendered.image).save(task.images_dir / task.file_name, quality=_JPEG_QUALITY)
    return annotate_scene(scene, rendered)


def _coco_json(
    split: str, seed: int, results: Sequence[tuple[_ImageTask, list[PersonAnnotation]]]
) -> dict[str, Any]:
    """The COCO annotation file of one split."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for task, people in results:
        image_id = task.index + 1
        height, width = task.image_size
        images.append(
            {"id": image_id, "file_name": task.file_name, "height": height, "width": width}
        )
        for person in people:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "keypoints": [
                        round(float(v), 2) if i % 3 < 2 else int(v)
                        for i, v in enumerate(person.keypoints.ravel())
                    ],
                    "num_keypoints": person.num_keypoints,
                    "bbox": [round(v, 2) for v in person.bbox],
                    "area": person.area,
                    "iscrowd": 0,
                }
            )
    return {
        "info": {"description": f"posemum-aug synthetic persons, {split} split", "seed": seed},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [coco_category()],
    }


def _temp_prefix(root: Path) -> str:
    """How this process's temporary folders for ``root`` are named: the set's name, this
    machine's name and this process's pid (as :func:`_remove_stale_temporaries` reads them)."""
    return f".{root.name}.{socket.gethostname()}.{os.getpid()}."


def _remove_stale_temporaries(root: Path) -> None:
    """Remove the temporary folders for ``root`` that generations killed half way left.

    Those are the ones named (:func:`_temp_prefix`) after a process of this machine that no
    longer exists. The folders of running generations stay, and so do those made on other
    machines (a shared file system), whose processes cannot be looked up from here.
    """
    owner = re.compile(re.escape(f".{root.name}.{socket.gethostname()}.") + r"(\d+)\.")
    try:
        entries = list(root.parent.iterdir())
    except OSError:  # no parent folder yet
        return
    for entry in entries:
        match = owner.match(entry.name)
        if match is not None and not _process_exists(int(match[1])):
            shutil.rmtree(entry, ignore_errors=True)


def _read_manifest(root: Path) -> dict[str, Any] | None:
    try:
        out: dict[str, Any] = json.loads((root / _MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return out


def generate_synthetic_coco(
    root: str | Path,
    *,
    num_train: int,
    num_val: int,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    seed: int = 0,
    style: SceneStyle | str = "clean",
    progress: bool = True,
    workers: int | None = None,
) -> SyntheticPaths:
    """Generate the synthetic person-keypoint set into ``root`` once, or reuse it.

    Every image has its own random generator, seeded by ``(seed, split, image index)``,
    so the output is a pure function of the arguments (same bytes on the same numpy and
    Pillow). The set is built in a temporary folder beside ``root`` and moved into place
    when complete, with ``manifest.json`` (the arguments and :data:`GENERATOR_VERSION`);
    a later call with the same arguments returns at once, one with other arguments
    rebuilds the folder. Every call first removes the temporary folders that killed
    generations of ``root`` left. Callers running in parallel (several ranks) should let
    one process generate first.

    Args:
        root: cache folder; created if needed. If it exists it must be empty or hold a
            set made by this function (it is replaced when the arguments differ).
        num_train: people (annotations) in the training split, >= 1.
        num_val: people in the validation split, >= 1.
        image_size: ``(H, W)`` of every image, each >= 32.
        seed: the random seed.
        style: how hard the scenes are: a :class:`SceneStyle` or the name of one in
            :data:`STYLES` (``"clean"``, the default, or ``"cluttered"``).
        progress: show a tqdm bar while generating.
        workers: processes rendering images in parallel; ``None`` uses the usable CPUs
            (at most 8), 0 or 1 renders in this process. The output does not depend on it.

    Returns:
        The folder, image folder and both annotation files.

    Raises:
        ValueError: on bad counts or size, an unknown style name, or if ``root`` is a
            non-empty folder that this function did not make.

    Example:
        >>> import tempfile
        >>> tmp = tempfile.mkdtemp()
        >>> paths = generate_synthetic_coco(
        ...     tmp + "/synth", num_train=3, num_val=2, progress=False, workers=0
        ... )
        >>> import json
        >>> len(json.loads(paths.val_ann.read_text())["annotations"])
        2
    """
    for name, value in (("num_train", num_train), ("num_val", num_val)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    size = tuple(int(v) for v in image_size)
    if len(size) != 2 or min(size) < 32:
        raise ValueError(f"image_size must be (H, W) with both >= 32, got {image_size!r}")
    height, width = size
    if isinstance(style, str):
        if style not in STYLES:
            raise ValueError(
                f"style must be one of {sorted(STYLES)} or a SceneStyle, got {style!r}"
            )
        style = STYLES[style]
    root = Path(root)
    paths = SyntheticPaths(
        root,
        root / "images",
        root / "person_keypoints_train.json",
        root / "person_keypoints_val.json",
    )
    params = {
        "version": GENERATOR_VERSION,
        "num_train": num_train,
        "num_val": num_val,
        "image_size": [height, width],
        "seed": int(seed),
        "style": json.loads(json.dumps(dataclasses.asdict(style))),
    }
    _remove_stale_temporaries(root)
    if _read_manifest(root) == params:
        return paths
    if root.is_dir() and any(root.iterdir()) and _read_manifest(root) is None:
        raise ValueError(
            f"{root} is not empty and holds no synthetic set ({_MANIFEST} missing); "
            "refusing to overwrite it"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(root), dir=root.parent))
    try:
        (tmp / "images").mkdir()
        tasks = [
            _ImageTask(tmp / "images", split, index, count, (height, width), int(seed), style)
            for split, total in zip(_SPLITS, (num_train, num_val), strict=True)
            for index, count in enumerate(_plan_split(int(seed), split, total))
        ]
        workers = min(_usable_cpus(), 8) if workers is None else workers
        with (
            tqdm(
                total=num_train + num_val, unit="person", desc="synthetic set", disable=not progress
            ) as bar,
            _worker_pool(workers) if workers > 1 else nullcontext() as pool,
        ):
            results = []
            for task, people in zip(
                tasks,
                pool.map(_make_image, tasks, chunksize=8) if pool else map(_make_image, tasks),
                strict=True,
            ):
                results.append((task, people))
                bar.update(task.num_persons)
        for split in _SPLITS:
            coco = _coco_json(split, int(seed), [r for r in results if r[0].split == split])
            (tmp / f"person_keypoints_{split}.json").write_text(
                json.dumps(coco, separators=(",", ":"))
            )
        (tmp / _MANIFEST).write_text(json.dumps(params, indent=2))
        old = None
        if root.exists():
            old = tmp.with_name(tmp.name + ".old")
            os.replace(root, old)
        os.replace(tmp, root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return paths
