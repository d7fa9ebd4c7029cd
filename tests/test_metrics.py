"""Metrics (bench/metrics.py) against torchmetrics, absent classes, IoU by object size, logits accepted."""

from __future__ import annotations

import pytest
import torch

from bench.metrics import SegMetrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_torchmetrics(seed: int) -> None:
    pytest.importorskip("torchmetrics", reason="the reference implementation comes with the test extra")
    from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassJaccardIndex

    g = torch.Generator().manual_seed(seed)
    k, ign = 6, 255
    pred = torch.randint(0, k, (3, 29, 31), generator=g)
    target = torch.randint(0, k, (3, 29, 31), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.2] = ign
    m = SegMetrics(k, ignore_index=ign)
    for i in range(3):  # streaming: one image at a time
        m.update(pred[i : i + 1], target[i : i + 1])
    r = m.compute()
    names = [str(i) for i in range(k)]
    tm = {
        "iou": MulticlassJaccardIndex(k, ignore_index=ign, average="none")(pred, target),
        "recall": MulticlassAccuracy(k, ignore_index=ign, average="none")(pred, target),
        "f1": MulticlassF1Score(k, ignore_index=ign, average="none")(pred, target),
    }
    for key, ref in tm.items():
        assert [r[key][n] for n in names] == pytest.approx(ref.tolist(), abs=1e-6)
    assert r["miou"] == pytest.approx(float(MulticlassJaccardIndex(k, ignore_index=ign)(pred, target)), abs=1e-6)
    assert r["mean_class_acc"] == pytest.approx(float(MulticlassAccuracy(k, ignore_index=ign)(pred, target)), abs=1e-6)
    assert r["macro_f1"] == pytest.approx(float(MulticlassF1Score(k, ignore_index=ign)(pred, target)), abs=1e-6)
    micro = MulticlassAccuracy(k, ignore_index=ign, average="micro")(pred, target)
    assert r["pixel_acc"] == pytest.approx(float(micro), abs=1e-6)


def test_absent_classes_are_excluded_and_listed() -> None:
    pred = torch.tensor([[[0, 0, 1, 1]]])
    target = torch.tensor([[[0, 0, 1, 2]]])
    m = SegMetrics(4, ignore_index=None, class_names=["a", "b", "c", "d"], size_buckets=False)
    m.update(pred, target)
    r = m.compute()
    assert r["absent_classes"] == ["d"]
    assert r["miou"] == pytest.approx((1 + 0.5 + 0) / 3)


def test_iou_by_object_size() -> None:
    """One 2x2 object (small) and one 30x30 object (large) in a 64x64 image."""
    target = torch.zeros(1, 64, 64, dtype=torch.long)
    target[0, 2:4, 2:4] = 1
    target[0, 20:50, 20:50] = 1
    pred = target.clone()
    pred[0, 2:4, 2:4] = 0  # the small object is missed
    m = SegMetrics(2, ignore_index=None)
    m.update(pred, target)
    s = m.compute()["size_iou"]
    assert s["small"]["iou"]["1"] == 0.0 and s["large"]["iou"]["1"] == 1.0
    # class 0 is one large component too: 64*64 - 4 - 900 = 3192 px, plus the 900 px object
    assert s["small"]["objects_pixels"] == 4 and s["large"]["objects_pixels"] == 900 + 3192


def test_metrics_accept_logits() -> None:
    logits = torch.randn(2, 3, 8, 8)
    target = logits.argmax(1)
    m = SegMetrics(3, ignore_index=None, size_buckets=False)
    m.update(logits, target)
    assert m.compute()["miou"] == 1.0
