"""Joint image + mask transforms on torchvision.transforms.v2 (masks as tv_tensors.Mask, so
geometry uses nearest neighbour for labels and padding fills them with the ignore label)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "eval_transform", "train_transform"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _Pair:
    """Applies a v2 pipeline to (uint8 image, mask) and returns (float image, int64 mask)."""

    def __init__(self, pipeline: v2.Compose) -> None:
        self.pipeline = pipeline

    def __call__(self, img: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img, mask = self.pipeline(tv_tensors.Image(img), tv_tensors.Mask(mask))
        return img.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor).long()


def _finish() -> list[v2.Transform]:
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ]


def train_transform(
    *,
    ignore_index: int,
    crop: Sequence[int] | None = None,
    flip: bool = True,
    scale: Sequence[float] | None = None,
    rotate: float = 0.0,
) -> _Pair:
    """Random scale and small rotation in one affine warp (mask nearest, border = ignore),
    random crop padded with the ignore label, horizontal flip, normalise."""
    fill = {tv_tensors.Image: 0, tv_tensors.Mask: ignore_index}
    steps: list[v2.Transform] = []
    if scale is not None or rotate:
        steps.append(v2.RandomAffine(degrees=rotate, scale=tuple(scale) if scale else None, fill=fill))
    if crop is not None:
        steps.append(v2.RandomCrop(tuple(crop), pad_if_needed=True, fill=fill))
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    return _Pair(v2.Compose(steps + _finish()))


def eval_transform() -> _Pair:
    """Evaluation sees the whole image at the run's size, normalised."""
    return _Pair(v2.Compose(_finish()))
