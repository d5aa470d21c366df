"""Batches with a fixed number of labelled crops, the rest unlabelled."""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch
from mmengine.dataset import ConcatDataset
from mmengine.dist import get_rank, sync_random_seed
from mmpose.registry import DATA_SAMPLERS


def _endless(size: int, generator: torch.Generator) -> Iterator[int]:
    """Indices ``0 .. size - 1`` in a fresh random order each pass, forever."""
    while True:
        yield from torch.randperm(size, generator=generator).tolist()


@DATA_SAMPLERS.register_module()
class LabelledUnlabelledSampler:
    """An endless index stream over ``ConcatDataset([labelled, unlabelled])``, cut by the
    data loader into batches of ``labelled_per_batch`` labelled then unlabelled crops.

    Each part is drawn in a fresh random order each pass over it (the smaller part is
    repeated more often). Each rank draws its own streams (seed plus rank), so ranks see
    different crops. ``batch_size`` must equal the data loader's.

    Args:
        dataset: a ``ConcatDataset`` of exactly two datasets, labelled first.
        batch_size: crops per batch (per rank), as in the data loader.
        labelled_per_batch: labelled crops per batch, ``1 .. batch_size - 1``.
        seed: base seed; ``None`` draws one shared by all ranks.

    Raises:
        ValueError: for another dataset, an empty part or counts out of range.
    """

    def __init__(
        self,
        dataset: Sized,
        batch_size: int,
        labelled_per_batch: int,
        seed: int | None = None,
    ) -> None:
        if not isinstance(dataset, ConcatDataset) or len(dataset.datasets) != 2:
            raise ValueError(
                "LabelledUnlabelledSampler needs a ConcatDataset of a labelled and an "
                f"unlabelled dataset, got {type(dataset).__name__}"
            )
        sizes = [len(part) for part in dataset.datasets]
        if min(sizes) == 0:
            raise ValueError(
                f"both parts need crops, got {sizes[0]} labelled, {sizes[1]} unlabelled"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
            raise ValueError(f"batch_size must be an integer >= 2, got {batch_size!r}")
        if (
            isinstance(labelled_per_batch, bool)
            or not isinstance(labelled_per_batch, int)
            or not 1 <= labelled_per_batch < batch_size
        ):
            raise ValueError(
                f"labelled_per_batch must be an integer in [1, {batch_size - 1}], "
                f"got {labelled_per_batch!r}"
            )
        self.dataset = dataset
        self.sizes = sizes
        self.batch_size = batch_size
        self.labelled_per_batch = labelled_per_batch
        self.seed = sync_random_seed() if seed is None else seed

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + get_rank())
        labelled = _endless(self.sizes[0], generator)
        unlabelled = _endless(self.sizes[1], generator)
        offset = self.sizes[0]
        while True:
            for _ in range(self.labelled_per_batch):
                yield next(labelled)
            for _ in range(self.batch_size - self.labelled_per_batch):
                yield offset + next(unlabelled)

    def __len__(self) -> int:
        """Crops in one pass over the larger part, in whole batches (the stream never ends)."""
        unlabelled = self.batch_size - self.labelled_per_batch
        batches = max(-(-self.sizes[0] // self.labelled_per_batch), -(-self.sizes[1] // unlabelled))
        return batches * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Nothing to do: the stream is endless (here for mmengine's epoch-based loops)."""
