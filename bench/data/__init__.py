"""Datasets (registry `datasets`): every dataset is decoded once into memory at the run's `size`
(images uint8), so loading never starves the model; transforms run per sample (the loaders are
bench.data.loaders', re-exported here).

A dataset read from files (it registers `sources`: the files a split is decoded from) is decoded
once per (dataset, split, size, options) into an on-disk cache shared by every cell and by
`evaluate`: $XDG_CACHE_HOME/aspp-bench/decoded/. The key holds each source file's path, size and
modification time, so an edited, added or removed file decodes again; the cache file is written
atomically, so two cells filling it at once both leave a whole file (the same bytes). Set
ASPP_BENCH_NO_DATA_CACHE=1 to decode every time.

Where the data lies is not part of an experiment (docs/datasets.md). A relative `data.root` is
found below $ASPP_BENCH_DATA when that is set (`root: camvid` with ASPP_BENCH_DATA=/data/sets
reads /data/sets/camvid), else below the current folder. What a run's identity holds instead is
`fingerprint(data_cfg)`: a hash of the files the run reads (train and evaluation split), each by
its path below the root and its size, so the same files at another path are the same experiment."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bench.data.base import SegData, SegDataset
from bench.data.camvid import CAMVID_CLASSES, LAYOUT, VOID, camvid_pairs, load_camvid
from bench.data.loaders import ResumableSampler, build_dataset, make_loader
from bench.data.synthetic import check_synthetic, make_synthetic
from bench.data.tvdatasets import CITYSCAPES_LAYOUT, VOC_LAYOUT, load_cityscapes, load_voc
from bench.errors import UserError
from bench.files import atomic_path, cache_dir
from bench.registry import datasets

__all__ = [
    "DATA_ENV",
    "ResumableSampler",
    "SegData",
    "SegDataset",
    "build_dataset",
    "data_config_problem",
    "data_problem",
    "dataset_facts",
    "eval_split",
    "fingerprint",
    "load_split",
    "locate_root",
    "make_loader",
    "split_key",
]


DATA_ENV = "ASPP_BENCH_DATA"


def locate_root(root: str | None) -> str | None:
    """Where `data.root` is on this machine: absolute (after ~) as given; relative below
    $ASPP_BENCH_DATA when that is set, else below the current folder."""
    if root is None:
        return None
    p = Path(root).expanduser()
    base = os.environ.get(DATA_ENV)
    if not p.is_absolute() and base:
        p = Path(base).expanduser() / p
    return str(p)


def _where_hint(root: str | None) -> str:
    """How a relative root was looked for, for an error about a root that is not there."""
    if root is None or Path(root).expanduser().is_absolute():
        return ""
    base = os.environ.get(DATA_ENV)
    if base:
        return f" (data.root {root!r} is looked for below ${DATA_ENV}={base})"
    return (
        f" (data.root {root!r} is relative: it is looked for below ${DATA_ENV} when that is set, here it is not, "
        "so below the current folder; set it to the folder that holds your datasets, docs/datasets.md)"
    )


def _synthetic_facts(classes: int = 6, **_: Any) -> tuple[int, int]:
    return classes, 255


def _camvid_facts(void_as_class: bool = False, **_: Any) -> tuple[int, int]:
    return (len(CAMVID_CLASSES) + 1, 255) if void_as_class else (len(CAMVID_CLASSES), VOID)


def _camvid_check(root: str | None, split: str) -> None:
    from pathlib import Path

    if root is None:
        raise UserError(f"data.root is not set for camvid; {LAYOUT}")
    camvid_pairs(Path(root), split)


def _cityscapes_check(root: str | None, split: str) -> None:
    from pathlib import Path

    for sub in ("leftImg8bit", "gtFine"):
        if root is None or not (Path(root) / sub / split).is_dir():
            raise UserError(f"data.root '{root}': no {sub}/{split} folder; {CITYSCAPES_LAYOUT}")


def _voc_check(root: str | None, split: str) -> None:
    from pathlib import Path

    listing = Path(str(root)) / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / f"{split}.txt"
    if root is None or not listing.is_file():
        raise UserError(f"data.root '{root}': no {listing.relative_to(str(root))} for split {split!r}; {VOC_LAYOUT}")


def _synthetic_config_check(data_cfg: Any, split: str) -> None:
    check_synthetic(split=split, size=tuple(data_cfg.size), classes=data_cfg.classes or 6)


@datasets.register(
    "synthetic",
    paper="aspp-bench: procedural shapes, the embedded default",
    facts=_synthetic_facts,
    check=None,
    check_config=_synthetic_config_check,
)
def synthetic(
    *, split: str = "train", size: Sequence[int] = (64, 64), count: int | None = None, classes: int = 6, seed: int = 0
) -> SegData:
    """Procedural scenes: textured background, objects 3 px to half the image; class = shape."""
    return make_synthetic(split=split, size=tuple(size), count=count, classes=classes, seed=seed)


def _camvid_sources(root: str | None = None, split: str = "train", **_: Any) -> list[Path]:
    if root is None:
        return []
    return [Path(root) / f"{split}.txt", *(p for pair in camvid_pairs(Path(root), split) for p in pair)]


@datasets.register(
    "camvid",
    paper="Brostow et al., PRL 2009 (SegNet layout)",
    facts=_camvid_facts,
    check=_camvid_check,
    sources=_camvid_sources,
)
def camvid(
    *,
    root: str | None = None,
    split: str = "train",
    size: Sequence[int] = (180, 240),
    void_as_class: bool = False,
    native_masks: bool = False,
) -> SegData:
    """CamVid, 11 classes + void (ignored, or a 12th class with void_as_class)."""
    return load_camvid(root=root, split=split, size=tuple(size), void_as_class=void_as_class, native_masks=native_masks)


@datasets.register("cityscapes", paper="Cordts et al., CVPR 2016", facts=lambda **_: (19, 255), check=_cityscapes_check)
def cityscapes(
    *, root: str | None = None, split: str = "train", size: Sequence[int] = (512, 1024), native_masks: bool = False
) -> SegData:
    """Cityscapes fine, 19 train ids, 255 ignored (torchvision.datasets.Cityscapes)."""
    return load_cityscapes(root=root, split=split, size=tuple(size), native_masks=native_masks)


@datasets.register("voc", paper="Everingham et al., IJCV 2010", facts=lambda **_: (21, 255), check=_voc_check)
def voc(
    *, root: str | None = None, split: str = "train", size: Sequence[int] = (320, 320), native_masks: bool = False
) -> SegData:
    """PASCAL VOC 2012 segmentation, 21 classes, 255 ignored (torchvision.datasets.VOCSegmentation)."""
    return load_voc(root=root, split=split, size=tuple(size), native_masks=native_masks)


def _given(data_cfg: Any, split: str | None) -> dict[str, Any]:
    return {
        "root": locate_root(data_cfg.root),
        "split": split or data_cfg.split,
        "size": tuple(data_cfg.size),
        "void_as_class": data_cfg.void_as_class,
        "count": data_cfg.count,
        "classes": data_cfg.classes,
    }


def load_split(data_cfg: Any, split: str | None = None, *, native_masks: bool = False) -> SegData:
    """Decode one split of the configured dataset; only the keys its builder takes are passed,
    and a set key it does not take is an error (e.g. data.root for synthetic). With
    `native_masks`, the masks at the annotation's own size are kept too (datasets generated at
    `size`, like synthetic, have no other size)."""
    name = data_cfg.name
    knobs = datasets.get(name).knobs
    given = _given(data_cfg, split)
    if native_masks and "native_masks" in knobs:
        given["native_masks"] = True
    kwargs = {}
    for k, v in given.items():
        if k in knobs:
            if v is not None:
                kwargs[k] = v
        elif v is not None and k not in ("split", "size", "native_masks"):
            raise UserError(f"data.{k}={v!r}: dataset '{name}' has no '{k}'; its keys are {', '.join(knobs)}")
    return _cached(name, kwargs)


CACHE_FORMAT = 1  # bump when SegData's layout or a decoder's output changes


def _cached(name: str, kwargs: dict[str, Any]) -> SegData:
    """The decoded split from the cache when its source files are unchanged, else decoded and cached."""
    sources = datasets.get(name).meta.get("sources")
    if sources is None or os.environ.get("ASPP_BENCH_NO_DATA_CACHE"):
        return datasets.build(name, **kwargs)
    files = sources(**kwargs)
    if not files:
        return datasets.build(name, **kwargs)
    stamp = []
    for f in files:
        st = Path(f).stat()
        stamp.append([str(Path(f).resolve()), st.st_size, st.st_mtime_ns])
    key = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items() if k != "root"}
    digest = hashlib.sha256(
        json.dumps({"format": CACHE_FORMAT, "dataset": name, "kwargs": key, "files": stamp}, sort_keys=True).encode()
    ).hexdigest()[:20]

    path = cache_dir("decoded") / f"{name}-{kwargs.get('split', '')}-{digest}.pt"
    if path.is_file():
        try:
            d = torch.load(path, weights_only=True, map_location="cpu")
            natives = d.get("native_masks")
            return SegData(d["images"], d["masks"], int(d["num_classes"]), tuple(d["class_names"]),
                           int(d["ignore_index"]), tuple(natives) if natives is not None else None)  # fmt: skip
        except Exception:  # noqa: BLE001 - a damaged or foreign cache file is decoded again, never trusted
            pass
    data = datasets.build(name, **kwargs)
    payload = {
        "images": data.images,
        "masks": data.masks,
        "num_classes": data.num_classes,
        "class_names": list(data.class_names),
        "ignore_index": data.ignore_index,
        "native_masks": list(data.native_masks) if data.native_masks is not None else None,
    }
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except (OSError, UserError):  # a read-only or full cache folder slows the next run, nothing else
        pass
    return data


def split_key(data_cfg: Any) -> str:
    """What names a decoded training split, for the caches of what is computed from it (class weights)."""
    c = data_cfg
    return f"{c.name}|{c.root}|{c.split}|{tuple(c.size)}|{c.void_as_class}|{c.count}|{c.classes}"


def eval_split(train_split: str) -> str:
    """The split a run is evaluated on: val, or test when it trains on val."""
    return "val" if train_split != "val" else "test"


def dataset_facts(data_cfg: Any) -> tuple[int, int]:
    """(num_classes, ignore_index) of the configured dataset, known without decoding it."""
    entry = datasets.get(data_cfg.name)
    kwargs = {k: v for k, v in _given(data_cfg, None).items() if k in entry.knobs and v is not None}
    return entry.meta["facts"](**kwargs)


def data_config_problem(data_cfg: Any, splits: Sequence[str]) -> str | None:
    """What the dataset refuses in its config alone (a size too small, an unknown split), wherever
    its files are: a problem of the sweep, not of the machine. None when it accepts it."""
    try:
        entry = datasets.get(data_cfg.name)
    except UserError as e:
        return str(e)
    check_config = entry.meta.get("check_config")
    try:
        for split in splits if check_config is not None else ():
            check_config(data_cfg, split)
    except UserError as e:
        return str(e)
    return None


def data_problem(data_cfg: Any, splits: Sequence[str]) -> str | None:
    """Why the configured dataset cannot be read (each dataset checks its own root), or None.
    Cheap: listings and folders are looked at, no image is decoded."""
    try:
        entry = datasets.get(data_cfg.name)
    except UserError as e:
        return str(e)
    problem = data_config_problem(data_cfg, splits)
    if problem:
        return problem
    check = entry.meta.get("check")
    if check is None:
        return None
    for split in splits:
        try:
            check(locate_root(data_cfg.root), split)
        except UserError as e:
            return f"{e}{_where_hint(data_cfg.root)}"
    given = getattr(data_cfg, "fingerprint", None)
    if given is not None:
        found = fingerprint(data_cfg)
        if found != given:
            return (
                f"data.fingerprint={given}: the {data_cfg.name} files at '{locate_root(data_cfg.root)}' have "
                f"fingerprint {found} (another set of files or sizes than the run's); point data.root at the data "
                "the run was made with, or drop data.fingerprint to run on these files as a new experiment"
            )
    return None


FINGERPRINT_FORMAT = 1  # bump when what a fingerprint covers changes


def _split_files(name: str, root: str, split: str) -> list[Path]:
    """The files a split is read from: the dataset's own `sources`, else every file below its root."""
    sources = datasets.get(name).meta.get("sources")
    if sources is not None:
        return list(sources(root=root, split=split))
    return [p for p in Path(root).rglob("*") if p.is_file()]


_FINGERPRINTS: dict[tuple[Any, ...], str | None] = {}


def fingerprint(data_cfg: Any) -> str | None:
    """The content fingerprint of what a run reads: sha256 over (path below the root, size) of every
    file of its train split and its evaluation split. None for a dataset read from no files (synthetic)
    or one whose root cannot be read here (the launch refuses such a run before it starts). Computed
    once per process and root (stat calls only; CamVid's 1,400 files take milliseconds)."""
    entry = datasets.get(data_cfg.name)
    if entry.meta.get("check") is None or data_cfg.root is None:
        return None
    root = locate_root(data_cfg.root)
    splits = tuple(dict.fromkeys((data_cfg.split, eval_split(data_cfg.split))))
    key = (data_cfg.name, str(Path(root).resolve()), splits)  # type: ignore[arg-type]
    if key in _FINGERPRINTS:
        return _FINGERPRINTS[key]
    try:
        for split in splits:
            entry.meta["check"](root, split)
        # paths as found below the root (not resolved: a dataset of symbolic links is named by its
        # links' names), sizes of what they point to
        rows = sorted(
            {(split, Path(os.path.relpath(f, root)).as_posix(), Path(f).stat().st_size)
             for split in splits for f in _split_files(data_cfg.name, root, split)}  # fmt: skip
        )
    except (UserError, OSError, ValueError):
        _FINGERPRINTS[key] = None
        return None
    body = json.dumps({"format": FINGERPRINT_FORMAT, "dataset": data_cfg.name, "files": rows}, separators=(",", ":"))
    _FINGERPRINTS[key] = "sha256:" + hashlib.sha256(body.encode()).hexdigest()[:16]
    return _FINGERPRINTS[key]
