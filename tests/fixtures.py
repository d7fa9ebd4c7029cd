"""Shared test builders: tiny datasets in the exact on-disk layouts, sweep files, the tiny run's
settings, and a tree's content hashes (what "nothing changed" is compared by)."""

from __future__ import annotations

import contextlib
import hashlib
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.data import build_dataset, make_loader
from bench.data.synthetic import make_synthetic
from bench.losses import build_loss
from bench.models import build_model
from bench.optim import make_optimizer, make_scheduler
from bench.run.engine import Trainer, TrainSpec


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


def write_spec(folder: Path, text: str, name: str = "s.yaml") -> Path:
    """A sweep (or config) file FOLDER/NAME written from TEXT as given, dedented."""
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


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


def deciding_sweep(folder: Path, *, launch: str, alpha: float = 0.05) -> Path:
    """FOLDER/deciding.yaml: three configurations, two seeds as the first wave, max 3, deciding
    each against the base (batch 1, lr 0.01). profile.batch does not touch training, so the
    batch-2 configuration equals the base to the bit (equivalent at the first look); lr 0.011
    trains differently (open at the first look where alpha leaves a 2-seed look no room)."""
    path = folder / "deciding.yaml"
    path.write_text(
        "name: deciding\n"
        "base:\n"
        "  model: {arch: aspp_unet, width: 4}\n"
        "  data: {size: [32, 32], count: 16, batch_size: 4}\n"
        "  train: {epochs: 1}\n"
        "  profile: {latency: false}\n"
        "zip:\n"
        "  - {profile.batch: [1, 2, 1], optim.lr: [0.01, 0.01, 0.011]}\n"
        "seeds: [0, 1]\n"
        f"decide: {{against: {{profile.batch: 1, optim.lr: 0.01}}, delta: 0.001, max_seeds: 3, wave: 1, "
        f"alpha: {alpha}}}\n"
        f"launch: {{{launch}}}\n"
    )
    return path


def seeds_by_configuration(results: Path) -> dict[str, list[int]]:
    """The deciding sweep's seeds per configuration, read from its run folders: 'base', 'batch2', 'lr'."""
    import yaml

    out: dict[str, list[int]] = {"base": [], "batch2": [], "lr": []}
    for cfg in results.glob("*/config.yaml"):
        c = yaml.safe_load(cfg.read_text())
        batch, lr = c.get("profile", {}).get("batch", 1), c.get("optim", {}).get("lr")
        out["batch2" if batch == 2 else "lr" if lr == 0.011 else "base"].append(c["train"]["seed"])
    return {k: sorted(v) for k, v in out.items()}


# The smallest run the command-line tests train: a width-4 network on 16 synthetic 32x32 images.
TINY = ["model.width=4", "data.count=16", "data.size=[32,32]", "data.batch_size=4", "profile.latency=false"]


def set_args(*items: str) -> list[str]:
    """`--set` before each item, as the command line takes them."""
    return [arg for item in items for arg in ("--set", item)]


def tiny_sets(*extra: str) -> list[str]:
    """The tiny run's settings, then EXTRA (a later --set wins), as command-line arguments."""
    return set_args(*TINY, *extra)


def train_tiny(cli, out: Path, *extra: str) -> tuple[int, str, str]:  # noqa: ANN001
    """`aspp-bench train` of the tiny run for one epoch into OUT, through the `cli` fixture."""
    return cli("train", "--out", str(out), *tiny_sets("train.epochs=1", *extra))


def tree_hashes(root: Path, *, dirs: bool = False) -> dict[str, str]:
    """Every file under ROOT with its content hash (and, with DIRS, every folder as 'dir'): 'nothing
    changed' is this being equal before and after."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
        if dirs or p.is_file()
    }


def tiny_trainer(tmp_path, *, epochs=2, lr=1e-3, ckpt=True, loss=None, seed=0, init_seed=0) -> Trainer:
    """A Trainer of a width-4 aspp_unet on 16 synthetic 32x32 images (3 classes), Adam, poly."""
    torch.manual_seed(init_seed)
    data = make_synthetic(split="train", size=(32, 32), count=16, classes=3)
    val = make_synthetic(split="val", size=(32, 32), count=4, classes=3)

    class Cfg:  # the augment part of a DataConfig
        crop = None

        class augment:  # noqa: N801
            flip, scale, rotate = True, None, 0.0

    train_loader = make_loader(build_dataset(data, train=True, data_cfg=Cfg), batch_size=4, shuffle=True, seed=seed)
    val_loader = make_loader(build_dataset(val, train=False), batch_size=4, shuffle=False)
    model = build_model("aspp_unet", width=4, num_classes=3)
    opt = make_optimizer("adam", model.parameters(), lr=lr, weight_decay=0.0, momentum=0.9)
    spec = TrainSpec(epochs=epochs, seed=seed, progress=False)
    sched = make_scheduler("poly", opt, total_iters=epochs * len(train_loader), power=0.9)
    return Trainer(
        model,
        opt,
        sched,
        loss or build_loss("ce", ignore_index=255, weight=None),
        train_loader,
        val_loader,
        spec=spec,
        device=torch.device("cpu"),
        num_classes=3,
        ignore_index=255,
        class_names=data.class_names,
        checkpoint_path=(tmp_path / "checkpoint.pt") if ckpt else None,
        log=lambda m: None,
    )


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (e.g. '12m') mounted at `folder` (made here), unmounted afterwards; the
    test is skipped where it cannot be mounted (mounting needs root: CI runs as root)."""
    import os
    import subprocess

    import pytest

    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True,
                       text=True)  # fmt: skip
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
