"""The trainer's data: the data sets of a configuration, the crop cache, step-indexed
batches and the loaders over them.

:class:`StepBatchSampler` makes the batch of a step a pure function of the step, which
is all ``--resume`` needs to restore the data order; :class:`CropCache` keeps the
un-augmented crops in memory so that, after the first epoch, a step loads nothing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence, Sized
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from sshpe.config import DataConfig, TrainConfig, flag_of
from sshpe.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CocoPersons,
    PersonInstance,
    TopDownDataset,
    denormalize,
    detection_instances,
    evaluation_instances,
    labelled_instances,
    load_coco_persons,
    unlabelled_instances,
)
from sshpe.evaluate import check_ground_truth
from sshpe.runtime import seeded_generator
from sshpe.synthetic import generate_synthetic_coco

__all__ = [
    "CROP_CACHE_BYTES",
    "SYNTHETIC_SIZE",
    "CropCache",
    "DataSets",
    "StepBatchSampler",
    "build_datasets",
    "loader",
    "synthetic_data",
    "to_device",
    "use_crop_cache",
]

#: The bundled default set's size: training and validation images.
SYNTHETIC_SIZE = (2000, 300)
#: ``--cache-crops`` is on by default with in-process loading when the crops fit in this.
CROP_CACHE_BYTES = 2 * 1024**3


def synthetic_data(data: DataConfig, cache: Path, *, progress: bool) -> DataConfig:
    """``data`` pointed at the bundled synthetic set, generated into ``cache`` once."""
    num_train, num_val = SYNTHETIC_SIZE
    paths = generate_synthetic_coco(
        cache / "synthetic", num_train=num_train, num_val=num_val, progress=progress
    )
    return dataclasses.replace(
        data, images=paths.images, train_ann=paths.train_ann, val_ann=paths.val_ann
    )


class DataSets(NamedTuple):
    """The crops of a run.

    Attributes:
        labeled: the labelled training crops.
        unlabeled: the unlabelled pool (``None`` for a supervised run).
        val: the evaluation crops.
        val_file: the evaluation annotation file, read.
    """

    labeled: TopDownDataset
    unlabeled: TopDownDataset | None
    val: TopDownDataset
    val_file: CocoPersons


def build_datasets(data: DataConfig, config: TrainConfig) -> DataSets:
    """Labelled, unlabelled and validation crops of the (non-synthetic) ``data`` files,
    checked for everything the run will read of them before it trains.

    The unlabelled pool is the person boxes of ``--unlabeled-boxes`` when given, else of
    ``--unlabeled-ann``; the validation crops are cut at the boxes of ``--val-boxes`` when
    given, else at the ground-truth boxes of ``--val-ann`` (which the evaluation scores
    against either way).

    Raises:
        ValueError: if a file is unreadable or malformed (every field the evaluation
            reads included, every detection of a detection-results file), the files'
            joints or flip pairs differ, a split has nobody in it (also: no detection
            above its score threshold), the run would flip a skeleton whose names pair no
            joints and for which no pairs were given, or the validation file cannot be
            evaluated under ``--protocol``; the message names the file.
    """
    if data.images is None or data.train_ann is None or data.val_ann is None:
        raise ValueError("build_datasets needs files: call synthetic_data first")
    size = config.model.input_size
    train = load_coco_persons(data.train_ann, flip_pairs=data.pairs)
    skeleton = train.skeleton
    _check_flip_pairs(train, config)
    with_keypoints = evaluation_instances(train)
    if not with_keypoints:
        raise ValueError(f"{data.train_ann} has no non-crowd person with labelled keypoints")
    labeled = TopDownDataset(
        labelled_instances(train, data.labeled or len(with_keypoints)),
        data.images,
        size,
        skeleton.num_joints,
    )
    unlabeled = None
    if config.method.semi_supervised:
        if data.unlabeled_boxes is not None:  # image ids: data.unlabeled_ann's, else COCO's names
            people = _detected_people(
                data, "unlabeled_boxes", "unlabeled_box_score", data.unlabeled_ann, train
            )
        else:
            pool = (
                train
                if data.unlabeled_ann is None
                else load_coco_persons(data.unlabeled_ann, skeleton)
            )
            if not pool.instances:
                raise ValueError(f"{pool.ann_file} has no non-crowd person box for unlabelled data")
            people = unlabelled_instances(pool)
        images = data.unlabeled_images or data.images
        unlabeled = TopDownDataset(people, images, size, skeleton.num_joints)
    val = load_coco_persons(data.val_ann, flip_pairs=data.pairs)
    if val.skeleton.names != skeleton.names:
        raise ValueError(f"{data.val_ann} has other joints than {data.train_ann}")
    if val.skeleton.flip_index != skeleton.flip_index:
        raise ValueError(
            f"{data.val_ann} pairs its joints for flips otherwise than {data.train_ann} (their "
            "categories' 'flip_pairs'): make them agree, or give --flip-pairs"
        )
    to_evaluate = evaluation_instances(val)
    if not to_evaluate:
        raise ValueError(f"{data.val_ann} has no person with labelled keypoints to evaluate")
    check_ground_truth(data.val_ann, config.evaluation.protocol)
    evaluation = config.evaluation
    if evaluation.val_boxes is not None:  # a detector's boxes, on the images of data.val_ann
        to_evaluate = _detected_people(evaluation, "val_boxes", "val_box_score", data.val_ann, val)
    val_set = TopDownDataset(to_evaluate, data.val_images or data.images, size, skeleton.num_joints)
    return DataSets(labeled, unlabeled, val_set, val)


def _detected_people(
    section: Any, boxes: str, score: str, image_info: Path | None, persons: CocoPersons
) -> tuple[PersonInstance, ...]:
    """The person boxes of a detection-results file that score at least a threshold.

    Args:
        section: the configuration section holding both options.
        boxes: the option of the file (``val_boxes``, ``unlabeled_boxes``).
        score: the option of the threshold (``val_box_score``, ``unlabeled_box_score``).
        image_info: the file whose ``images`` the detections' image ids name, or ``None``
            for COCO's file names (:func:`~sshpe.data.detection_instances`).
        persons: the annotation file whose person category and skeleton apply.

    Raises:
        ValueError: naming the flag and the file, if the file is bad
            (:func:`~sshpe.data.detection_instances`) or no box is left.
    """
    path, min_score = getattr(section, boxes), getattr(section, score)
    k = persons.skeleton.num_joints
    try:
        found = detection_instances(path, persons.category_id, k, image_info)
    except ValueError as e:
        raise ValueError(f"{flag_of(boxes)} {e}") from None
    if not found:
        raise ValueError(f"{flag_of(boxes)} {path}: no person box lies inside its image")
    kept = tuple(p for p in found if p.score >= min_score)
    if not kept:
        raise ValueError(
            f"{flag_of(boxes)} {path}: none of its {len(found)} person boxes scores "
            f">= {flag_of(score)} {min_score:g} (the best scores {max(p.score for p in found):g})"
        )
    return kept


def _check_flip_pairs(persons: CocoPersons, config: TrainConfig) -> None:
    """Refuse to flip a skeleton whose flip pairs were inferred and pair no joints: its
    names follow no convention we know, so flipped crops would keep their sides."""
    skeleton, method = persons.skeleton, config.method
    flips = []
    if method.flip_p > 0:
        flips.append(f"--flip-p {method.flip_p:g}")
    if config.evaluation.flip_test:
        flips.append("--flip-test")
    if method.flip_consistency is not None:
        flips.append(f"--filter-flip {method.flip_consistency:g}")
    unpaired = skeleton.flip_index == tuple(range(skeleton.num_joints))
    if persons.inferred_flips and unpaired and skeleton.num_joints > 1 and flips:
        names = ", ".join(skeleton.names[:4]) + (", ..." if skeleton.num_joints > 4 else "")
        raise ValueError(
            f"{persons.ann_file}: no two of its joints ({names}) pair up as left and right by "
            f"name, yet the run flips ({', '.join(flips)}): flipped crops "
            "would keep their sides. Give the pairs with --flip-pairs LEFT:RIGHT ... or a "
            "'flip_pairs' list of [left, right] names in the category ([] if no joint has a "
            "side), or turn the flips off (--flip-p 0, no --flip-test or --filter-flip)"
        )


class StepBatchSampler:
    """The batches of steps ``start .. total - 1`` of an endless shuffled index stream.

    Each epoch is a fresh permutation seeded by ``(seed, stream, epoch)``, padded by
    wrapping to a multiple of the world size and dealt out round-robin to the ranks (as
    ``DistributedSampler``); a rank's stream is its epochs one after another, cut into
    batches across epoch borders. The batch of a step is thus a pure function of the
    step.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        seed: int,
        stream: int,
        rank: int,
        world_size: int,
        start: int,
        total: int,
    ) -> None:
        self.size, self.batch_size = size, batch_size
        self.seed, self.stream = seed, stream
        self.rank, self.world_size = rank, world_size
        self.start, self.total = start, total
        self.per_rank = math.ceil(size / world_size)

    def _epoch(self, epoch: int) -> Tensor:
        generator = seeded_generator(self.seed, self.stream, epoch)
        order = torch.randperm(self.size, generator=generator)
        order = order.repeat(math.ceil(self.per_rank * self.world_size / self.size))
        return order[: self.per_rank * self.world_size][self.rank :: self.world_size]

    def __len__(self) -> int:
        return self.total - self.start

    def __iter__(self) -> Iterator[list[int]]:
        epoch, offset = divmod(self.start * self.batch_size, self.per_rank)
        order = self._epoch(epoch)
        for _ in range(len(self)):
            batch: list[int] = []
            while len(batch) < self.batch_size:
                if offset == self.per_rank:
                    epoch, offset = epoch + 1, 0
                    order = self._epoch(epoch)
                take = min(self.batch_size - len(batch), self.per_rank - offset)
                batch += order[offset : offset + take].tolist()
                offset += take
            yield batch


class CropCache(Dataset[Any]):
    """Keeps every crop of ``dataset`` after its first load, the image as 8-bit RGB.

    Crops are cut from 8-bit images by Pillow, so the uint8 copy is exact and the image
    normalised again on each read equals the dataset's bit for bit. Meant for in-process
    loading (``--workers 0``, the CPU default), where after the first epoch a step loads
    nothing; the un-augmented crops never change, augmentation happens later.
    """

    def __init__(self, dataset: TopDownDataset) -> None:
        self.dataset = dataset
        self.items: list[dict[str, Any] | None] = [None] * len(dataset)
        self.mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
        self.std = torch.tensor(IMAGENET_STD)[:, None, None]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        if item is None:
            sample: dict[str, Any] = dict(self.dataset[index])
            sample["image"] = denormalize(sample["image"])
            item = self.items[index] = sample
        pixels = item["image"].float() / 255.0
        return {**item, "image": (pixels - self.mean) / self.std}


def use_crop_cache(
    cache_crops: bool | None,
    workers: int,
    input_size: tuple[int, int],
    datasets: Sequence[Sized | None],
) -> bool:
    """Whether to wrap the data sets in :class:`CropCache`: ``cache_crops`` when given,
    else with in-process loading when the crops fit in :data:`CROP_CACHE_BYTES`."""
    if cache_crops is not None:
        return cache_crops
    height, width = input_size
    crops = sum(len(d) for d in datasets if d is not None)
    return workers == 0 and crops * height * width * 3 <= CROP_CACHE_BYTES


def loader(
    dataset: Dataset[Any], sampler: Any, workers: int, device: torch.device
) -> DataLoader[Any]:
    """A data loader over ``sampler``'s batches (a batch sampler or a plain index order)."""
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Move the tensors of a collated batch to ``device``."""
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()
    }
