"""Cityscapes and PASCAL VOC through torchvision's own dataset classes (nothing downloads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data.base import SegData, resize_pair
from bench.errors import UserError

__all__ = ["load_cityscapes", "load_voc"]

CITYSCAPES_LAYOUT = (
    "expected ROOT/leftImg8bit/{split}/<city>/*_leftImg8bit.png and ROOT/gtFine/{split}/<city>/*_gtFine_labelIds.png "
    "(leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from cityscapes-dataset.com)"
)
VOC_LAYOUT = (
    "expected ROOT/VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation/<split>.txt} "
    "(VOCtrainval_11-May-2012.tar from host.robots.ox.ac.uk)"
)
VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


def _decode(pairs, size, label_map=None, natives: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    images, masks = [], []
    for img, lbl in pairs:
        x = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)
        y = np.array(lbl)
        if label_map is not None:
            y = label_map[y]
        native = torch.from_numpy(y.astype(np.uint8))
        x, m = resize_pair(x, native, size)
        images.append(x)
        masks.append(m)
        if natives is not None:
            natives.append(native)
    return torch.stack(images), torch.stack(masks)


def _open(
    dataset: Any, name: str, layout: str, root: str | None, split: str, splits: tuple[str, ...], /, **kw: Any
) -> Any:
    """A torchvision dataset opened from `root`, every problem a UserError that shows the layout."""
    if root is None or not Path(root).is_dir():
        raise UserError(f"data.root '{root}' does not exist; {layout}")
    if split not in splits:
        raise UserError(f"data.split={split!r}: {name} has {', '.join(splits)}")
    try:
        return dataset(root, **kw)
    except RuntimeError as e:
        raise UserError(f"data.root '{root}': {e}; {layout}") from None


def load_cityscapes(
    *, root: str | None, split: str = "train", size: tuple[int, int] = (512, 1024), native_masks: bool = False
) -> SegData:
    """Cityscapes fine annotations, 19 train ids; everything else is 255 (ignored)."""
    from torchvision.datasets import Cityscapes

    ds = _open(Cityscapes, "Cityscapes", CITYSCAPES_LAYOUT, root, split, ("train", "val", "test"),
               split=split, mode="fine", target_type="semantic")  # fmt: skip
    if len(ds) == 0:
        raise UserError(f"data.root '{root}': no images for split {split!r}; {CITYSCAPES_LAYOUT}")
    lut = np.full(256, 255, dtype=np.uint8)
    train = sorted((c for c in Cityscapes.classes if 0 <= c.train_id < 255), key=lambda c: c.train_id)
    for c in Cityscapes.classes:
        if 0 <= c.train_id < 255:
            lut[c.id] = c.train_id
    natives: list | None = [] if native_masks else None
    images, masks = _decode((ds[i] for i in range(len(ds))), size, lut, natives)
    return SegData(images, masks, len(train), tuple(c.name for c in train), 255, tuple(natives) if natives else None)


def load_voc(
    *, root: str | None, split: str = "train", size: tuple[int, int] = (320, 320), native_masks: bool = False
) -> SegData:
    """PASCAL VOC 2012 segmentation, 21 classes; 255 (object borders) ignored."""
    from torchvision.datasets import VOCSegmentation

    ds = _open(VOCSegmentation, "VOC 2012 segmentation", VOC_LAYOUT, root, split, ("train", "val", "trainval"),
               year="2012", image_set=split, download=False)  # fmt: skip
    natives: list | None = [] if native_masks else None
    images, masks = _decode((ds[i] for i in range(len(ds))), size, None, natives)
    return SegData(images, masks, len(VOC_CLASSES), VOC_CLASSES, 255, tuple(natives) if natives else None)
