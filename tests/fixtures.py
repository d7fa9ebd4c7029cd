"""Tiny datasets in the exact on-disk layouts, written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def _rgb(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def make_camvid(root: Path, splits=("train", "val"), n: int = 4, h: int = 36, w: int = 48) -> Path:
    """SegNet layout; list files carry another machine's absolute paths (/SegNet/CamVid/...)."""
    rng = np.random.default_rng(0)
    for split in splits:
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(exist_ok=True)
        lines = []
        for i in range(n):
            name = f"0001TP_{split}_{i:04d}.png"
            _rgb(rng, h, w).save(root / split / name)
            lbl = rng.integers(0, 12, (h, w), dtype=np.uint8)  # 0..10 classes, 11 void
            Image.fromarray(lbl, mode="L").save(root / f"{split}annot" / name)
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def make_cityscapes(root: Path, split: str = "train", n: int = 2, h: int = 32, w: int = 64) -> Path:
    rng = np.random.default_rng(1)
    for city in ("aachen", "bremen"):
        img_dir = root / "leftImg8bit" / split / city
        gt_dir = root / "gtFine" / split / city
        img_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            stem = f"{city}_{i:06d}_000019"
            _rgb(rng, h, w).save(img_dir / f"{stem}_leftImg8bit.png")
            ids = rng.choice([0, 7, 8, 11, 26, 33], size=(h, w)).astype(np.uint8)  # 0 unlabeled, 7 road, ...
            Image.fromarray(ids, mode="L").save(gt_dir / f"{stem}_gtFine_labelIds.png")
    return root


def make_voc(root: Path, split: str = "train", n: int = 3, h: int = 30, w: int = 40) -> Path:
    rng = np.random.default_rng(2)
    base = root / "VOCdevkit" / "VOC2012"
    (base / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (base / "SegmentationClass").mkdir(parents=True, exist_ok=True)
    (base / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        name = f"2007_{i:06d}"
        _rgb(rng, h, w).save(base / "JPEGImages" / f"{name}.jpg")
        lbl = rng.choice([0, 1, 15, 20, 255], size=(h, w)).astype(np.uint8)
        im = Image.fromarray(lbl, mode="P")
        im.putpalette([v for c in range(256) for v in (c, c, c)])
        im.save(base / "SegmentationClass" / f"{name}.png")
        names.append(name)
    (base / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


def write_sweep(
    folder: Path, name: str, *, model: str, data: str, train: str, launch: str, grid: str | None = None
) -> Path:
    """A sweep file FOLDER/NAME.yaml as a user writes it: each section given as the inside of its
    YAML flow mapping (`model="arch: aspp_unet, width: 4"`), `grid` as one `key: [values]` line;
    latency profiling off, as every tiny test sweep has it."""
    lines = [f"name: {name}", "base:", f"  model: {{{model}}}", f"  data: {{{data}}}", f"  train: {{{train}}}",
             "  profile: {latency: false}"]  # fmt: skip
    if grid is not None:
        lines += ["grid:", f"  {grid}"]
    lines.append(f"launch: {{{launch}}}")
    path = folder / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path
