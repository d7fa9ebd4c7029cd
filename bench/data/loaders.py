"""Datasets and loaders for training and evaluation: the transforms of a split, a sampler that
resumes mid-epoch without loading what it skips, and loaders whose shuffling is re-seeded per
epoch (and sharded per rank in a cell of several ranks) so that a resumed run sees the batches
an unbroken one would.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from bench.data.base import SegData, SegDataset
from bench.data.transforms import eval_transform, train_transform
from bench.distributed import ShardedBatchSampler, shard_indices

__all__ = ["ResumableSampler", "build_dataset", "epoch_batches", "make_loader"]


def build_dataset(data: SegData, *, train: bool, data_cfg: Any = None) -> SegDataset:
    if not train:
        return SegDataset(data, eval_transform())
    aug = data_cfg.augment
    t = train_transform(
        ignore_index=data.ignore_index, crop=data_cfg.crop, flip=aug.flip, scale=aug.scale, rotate=aug.rotate
    )
    return SegDataset(data, t)


class ResumableSampler(Sampler[int]):
    """torch's RandomSampler (the same permutation from the same generator) that can leave out
    the first samples of one pass: a run resumed mid-epoch skips the batches it has trained on
    without loading or augmenting them, so the augmentation RNG restored from the checkpoint
    meets the same samples as in an unbroken run."""

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n = n
        self.generator = generator
        self._skip = 0

    def skip_next(self, count: int) -> None:
        """Leave out the first `count` indices of the next pass only."""
        self._skip = count

    def __iter__(self):  # type: ignore[no-untyped-def]
        skip, self._skip = self._skip, 0
        yield from torch.randperm(self.n, generator=self.generator).tolist()[skip:]

    def __len__(self) -> int:
        return self.n - self._skip


def make_loader(
    ds: SegDataset,
    *,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    pin_memory: bool = False,
    world: Any = None,
) -> DataLoader:
    """A loader whose shuffling comes from its own generator, re-seeded per epoch by the engine,
    so an interrupted run sees the same batches when it resumes. `pin_memory` for CUDA: the
    engine's non_blocking copies then overlap the next batch.

    `batch_size` is the global batch. In a cell of several ranks (`world`, see bench.distributed)
    each rank's loader yields its share of every global batch (training) or of the images
    (evaluation), so the ranks together see what one process would."""
    g = torch.Generator()
    g.manual_seed(seed)
    if world is not None and world.distributed:
        if shuffle:
            sampler: Sampler[int] | None = ShardedBatchSampler(len(ds), g, global_batch=batch_size, world=world)
        else:
            sampler = shard_indices(len(ds), world)  # type: ignore[assignment]
        return DataLoader(
            ds,
            batch_size=batch_size // world.size,
            sampler=sampler,
            drop_last=False,  # the sampler drops the incomplete global batch
            num_workers=num_workers,
            generator=g,
            persistent_workers=num_workers > 0,
            pin_memory=pin_memory,
        )
    return DataLoader(
        ds,
        batch_size=batch_size,
        sampler=ResumableSampler(len(ds), g) if shuffle else None,
        drop_last=shuffle and len(ds) >= batch_size,
        num_workers=num_workers,
        generator=g,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
    )


def epoch_batches(loader: DataLoader, seed: int, epoch: int, *, skip: int = 0) -> Iterator[Any]:
    """One epoch's batches: the shuffle re-seeded from (seed, epoch), the first `skip` batches
    (trained before a checkpoint taken mid-epoch) left out, without loading them where the
    sampler can skip (ResumableSampler), else loaded and dropped."""
    gen = getattr(loader, "generator", None)
    if gen is not None:
        gen.manual_seed(seed * 1_000_003 + epoch)
    sampler = getattr(loader, "sampler", None)
    if skip and hasattr(sampler, "skip_next"):
        sampler.skip_next(skip * (loader.batch_size or 1))
        skip = 0
    batches = iter(loader)
    return itertools.islice(batches, skip, None) if skip else batches
