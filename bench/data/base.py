"""What every dataset is: decoded (image, mask) pairs kept in memory at the run's size,
plus the facts a run needs (classes, names, ignore label)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

__all__ = ["SegData", "SegDataset", "resize_pair"]


@dataclass(frozen=True)
class SegData:
    """Decoded split: images uint8 N x 3 x H x W, masks uint8/int64 N x H x W (ignore label included)."""

    images: torch.Tensor
    masks: torch.Tensor
    num_classes: int
    class_names: tuple[str, ...]
    ignore_index: int
    native_masks: tuple[torch.Tensor, ...] | None = None  # masks at the annotation's own size, if kept

    def __post_init__(self) -> None:
        if len(self.class_names) != self.num_classes:
            raise ValueError("one class name per class")


class SegDataset(Dataset):
    """In-memory split with an optional joint transform (image, mask) -> (image, mask)."""

    def __init__(self, data: SegData, transform: Callable | None = None) -> None:
        self.data = data
        self.transform = transform

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.data.class_names

    @property
    def ignore_index(self) -> int:
        return self.data.ignore_index

    def __len__(self) -> int:
        return len(self.data.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, mask = self.data.images[i], self.data.masks[i]
        if self.transform is not None:
            return self.transform(img, mask)
        return img, mask


def resize_pair(img: torch.Tensor, mask: torch.Tensor, size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Image bilinear with antialiasing, mask nearest (labels are never interpolated)."""
    from torchvision.transforms.v2 import functional as F

    size = list(size)
    if list(img.shape[-2:]) == size:
        return img, mask
    img = F.resize(img, size, interpolation=F.InterpolationMode.BILINEAR, antialias=True)
    mask = F.resize(mask[None], size, interpolation=F.InterpolationMode.NEAREST_EXACT)[0]
    return img, mask
