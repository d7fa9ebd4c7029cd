"""Each split is decoded once per (dataset, split, size) into a cache shared by every
cell and by evaluate; a changed source decodes again; two processes filling it at once are safe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import bench.data
from bench.configure.config import load_run_config
from bench.data import load_split
from tests.fixtures import make_camvid


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "aspp-bench" / "decoded"


def _cfg(root: Path, size: str = "[24,32]"):  # type: ignore[no-untyped-def]
    return load_run_config(None, ["data.name=camvid", f"data.root={root}", f"data.size={size}"]).data


def _counting(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = bench.data.load_camvid
    monkeypatch.setattr(bench.data, "load_camvid", lambda **k: calls.append(1) or real(**k))
    return calls


def test_a_split_is_decoded_once_and_read_back_equal(tmp_path, cache, monkeypatch) -> None:
    root = make_camvid(tmp_path / "camvid")
    calls = _counting(monkeypatch)
    first = load_split(_cfg(root), "train")
    again = load_split(_cfg(root), "train")
    assert len(calls) == 1 and len(list(cache.glob("camvid-train-*.pt"))) == 1
    assert torch.equal(first.images, again.images) and torch.equal(first.masks, again.masks)
    assert (first.num_classes, first.class_names, first.ignore_index) == (
        again.num_classes, again.class_names, again.ignore_index)  # fmt: skip
    load_split(_cfg(root, "[12,16]"), "train")  # another size: its own entry
    load_split(_cfg(root), "val")  # another split: its own entry
    assert len(calls) == 3 and len(list(cache.glob("*.pt"))) == 3


def test_a_changed_source_file_decodes_again(tmp_path, cache, monkeypatch) -> None:
    root = make_camvid(tmp_path / "camvid")
    calls = _counting(monkeypatch)
    before = load_split(_cfg(root), "train")
    lbl = root / "trainannot" / "0001TP_train_0000.png"
    Image.fromarray(np.zeros((36, 48), dtype=np.uint8), mode="L").save(lbl)
    os.utime(lbl, ns=(lbl.stat().st_atime_ns, lbl.stat().st_mtime_ns + 10**9))
    after = load_split(_cfg(root), "train")
    assert len(calls) == 2 and (after.masks[0] == 0).all() and not torch.equal(before.masks, after.masks)


def test_a_damaged_cache_file_is_decoded_again(tmp_path, cache, monkeypatch) -> None:
    root = make_camvid(tmp_path / "camvid")
    good = load_split(_cfg(root), "train")
    (path,) = cache.glob("*.pt")
    path.write_bytes(path.read_bytes()[:100])
    calls = _counting(monkeypatch)
    assert torch.equal(load_split(_cfg(root), "train").images, good.images) and len(calls) == 1


def test_two_processes_filling_the_cache_at_once(tmp_path, cache) -> None:
    root = make_camvid(tmp_path / "camvid", n=12, h=72, w=96)
    code = (
        "from bench.configure.config import load_run_config; from bench.data import load_split; "
        f"d = load_split(load_run_config(None, ['data.name=camvid', 'data.root={root}', 'data.size=[72,96]']).data, "
        "'train'); print(int(d.images.sum()))"
    )
    env = {**os.environ}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)
    ]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs) and outs[0] == outs[1]
    files = list(cache.glob("*.pt"))
    assert len(files) == 1 and not list(cache.glob(".*.tmp"))
    assert int(torch.load(files[0], weights_only=True)["images"].sum()) == int(outs[0])
