from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.configure.config import load_run_config
from bench.data import build_dataset, load_split
from bench.data.synthetic import make_synthetic
from bench.errors import UserError
from tests.fixtures import make_camvid, make_cityscapes, make_voc


def _cfg(*sets: str):
    return load_run_config(None, list(sets)).data


def test_synthetic_is_deterministic_and_splits_differ() -> None:
    a = make_synthetic(split="train", size=(48, 64), count=6, classes=5)
    b = make_synthetic(split="train", size=(48, 64), count=6, classes=5)
    v = make_synthetic(split="val", size=(48, 64), count=6, classes=5)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.images, v.images)
    assert a.images.shape == (6, 3, 48, 64) and a.images.dtype == torch.uint8
    assert a.num_classes == 5 and a.class_names[0] == "background" and int(a.masks.max()) <= 4


def test_synthetic_objects_span_sizes_and_share_colours() -> None:
    from scipy import ndimage

    d = make_synthetic(split="train", size=(96, 96), count=64, classes=6)
    sizes = []
    for m in d.masks.numpy():
        for c in range(1, 6):
            comp, n = ndimage.label(m == c)
            sizes += list(np.bincount(comp.ravel())[1:])
    sizes = np.array(sizes)
    assert sizes.min() <= 12 and sizes.max() >= 0.1 * 96 * 96  # a few pixels .. a large share of the image
    # colour does not give the class away: per-class mean colours are close to each other
    means = [d.images.permute(0, 2, 3, 1)[d.masks == c].float().mean(0) for c in range(1, 6)]
    spread = torch.stack(means).std(0).max()
    assert spread < 15, spread


def test_synthetic_bad_settings() -> None:
    with pytest.raises(UserError, match="data.classes=20"):
        make_synthetic(classes=20)
    with pytest.raises(UserError, match="data.split='foo'"):
        make_synthetic(split="foo")


def test_camvid_resolves_foreign_absolute_paths(tmp_path) -> None:
    root = make_camvid(tmp_path / "camvid")
    d = load_split(_cfg("data.name=camvid", f"data.root={root}", "data.size=[18,24]"))
    assert d.images.shape == (4, 3, 18, 24) and d.num_classes == 11 and d.ignore_index == 11
    assert d.class_names[0] == "Sky" and int(d.masks.max()) == 11
    v = load_split(_cfg("data.name=camvid", f"data.root={root}", "data.void_as_class=true"), "val")
    assert v.num_classes == 12 and v.class_names[-1] == "Void" and v.ignore_index == 255


def test_camvid_masks_are_resized_nearest(tmp_path) -> None:
    root = make_camvid(tmp_path / "camvid")
    d = load_split(_cfg("data.name=camvid", f"data.root={root}", "data.size=[17,23]"))
    assert set(d.masks.unique().tolist()) <= set(range(12))


@pytest.mark.parametrize(
    ("sets", "fragment"),
    [
        (["data.root=/nonexistent/camvid"], "data.root '/nonexistent/camvid' does not exist"),
        (["data.split=test"], "test.txt' not found"),
        ([], "data.root is not set for camvid"),
    ],
)
def test_camvid_missing_data_names_path_and_layout(tmp_path, sets, fragment) -> None:
    root = make_camvid(tmp_path / "camvid")
    args = ["data.name=camvid", *([f"data.root={root}"] if sets and not sets[0].startswith("data.root") else []), *sets]
    with pytest.raises(UserError) as e:
        load_split(_cfg(*args))
    assert fragment in str(e.value) and "SegNet" in str(e.value)


def test_camvid_missing_image_and_bad_line(tmp_path) -> None:
    root = make_camvid(tmp_path / "camvid")
    first = sorted((root / "train").iterdir())[0]
    first.unlink()
    with pytest.raises(UserError, match=f"'{first}' does not exist"):
        load_split(_cfg("data.name=camvid", f"data.root={root}"))
    (root / "val.txt").write_text("only-one-path.png\n")
    with pytest.raises(UserError, match="val.txt:1: expected"):
        load_split(_cfg("data.name=camvid", f"data.root={root}"), "val")


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path) -> None:
    root = make_cityscapes(tmp_path / "cs")
    d = load_split(_cfg("data.name=cityscapes", f"data.root={root}", "data.size=[32,64]"))
    assert d.num_classes == 19 and d.ignore_index == 255 and d.class_names[0] == "road"
    assert len(d.images) == 4
    # label ids 0, 7, 8, 11, 26, 33 -> 255, 0 (road), 1 (sidewalk), 2 (building), 13 (car), 18 (bicycle)
    assert set(d.masks.unique().tolist()) == {0, 1, 2, 13, 18, 255}


def test_cityscapes_missing_layout(tmp_path) -> None:
    (tmp_path / "cs").mkdir()
    with pytest.raises(UserError, match="leftImg8bit"):
        load_split(_cfg("data.name=cityscapes", f"data.root={tmp_path / 'cs'}"))


def test_voc_loads_21_classes_with_borders_ignored(tmp_path) -> None:
    root = make_voc(tmp_path / "voc")
    d = load_split(_cfg("data.name=voc", f"data.root={root}", "data.size=[30,40]"))
    assert d.num_classes == 21 and d.ignore_index == 255 and len(d.images) == 3
    assert set(d.masks.unique().tolist()) <= {0, 1, 15, 20, 255}
    with pytest.raises(UserError, match="VOCdevkit"):
        load_split(_cfg("data.name=voc", f"data.root={tmp_path}"))


def test_synthetic_rejects_root() -> None:
    with pytest.raises(UserError, match="data.root='/x': dataset 'synthetic' has no 'root'"):
        load_split(_cfg("data.root=/x"))


def test_train_transform_pads_with_ignore_and_keeps_labels() -> None:
    d = make_synthetic(split="train", size=(32, 32), count=4, classes=4)
    cfg = _cfg("data.crop=[48,48]", "data.augment.scale=[0.8,1.2]", "data.augment.rotate=5")
    ds = build_dataset(d, train=True, data_cfg=cfg)
    img, mask = ds[0]
    assert img.shape == (3, 48, 48) and img.dtype == torch.float32 and mask.dtype == torch.int64
    labels = set(mask.unique().tolist())
    assert 255 in labels and labels <= {0, 1, 2, 3, 255}  # padding is ignore; nearest keeps labels
    ev_img, ev_mask = build_dataset(d, train=False)[0]
    assert ev_img.shape == (3, 32, 32) and torch.equal(ev_mask, d.masks[0].long())
