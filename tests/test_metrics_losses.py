from __future__ import annotations

import pytest
import torch

from bench.errors import UserError
from bench.losses import build_loss, class_weights
from bench.metrics import SegMetrics
from bench.registry import losses


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


@pytest.mark.parametrize("name", losses.names())
def test_losses_ignore_ignored_pixels_and_train(name: str) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 9, 11, generator=g, requires_grad=True)
    target = torch.randint(0, 4, (2, 9, 11), generator=g)
    target[:, :3] = 255
    weight = torch.tensor([1.0, 2.0, 0.5, 1.0]) if "weight" in losses.get(name).knobs else None
    loss_fn = build_loss(name, ignore_index=255, weight=weight)
    loss = loss_fn(logits, target)
    assert torch.isfinite(loss)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad[:, :, :3].abs().max() == 0  # ignored pixels get no gradient
    changed = logits.detach().clone()
    changed[:, :, :3] += 100
    assert loss_fn(changed, target) == pytest.approx(float(loss), rel=1e-5)
    perfect = torch.nn.functional.one_hot(torch.where(target == 255, 0, target), 4).permute(0, 3, 1, 2).float() * 20
    assert loss_fn(perfect, target) < loss


def test_weighted_ce_equals_torch_weighted_cross_entropy() -> None:
    logits = torch.randn(2, 3, 5, 5)
    target = torch.randint(0, 3, (2, 5, 5))
    w = torch.tensor([0.2, 1.0, 3.0])
    ours = build_loss("weighted_ce", ignore_index=255, weight=w)(logits, target)
    assert ours == pytest.approx(float(torch.nn.functional.cross_entropy(logits, target, weight=w)))


def test_class_weights_median_frequency_by_hand() -> None:
    # image 1: 3 px of class 0, 1 px of class 1; image 2: 4 px of class 0
    masks = torch.tensor([[[0, 0, 0, 1]], [[0, 0, 0, 0]]])
    w = class_weights("median_freq", masks, 2, None)
    # f0 = 7 / 8, f1 = 1 / 4 (only image 1 contains it); median = (7/8 + 1/4) / 2 = 9/16
    assert w.tolist() == pytest.approx([(9 / 16) / (7 / 8), (9 / 16) / (1 / 4)])
    inv = class_weights("inverse_freq", masks, 2, None)
    assert inv.mean() == pytest.approx(1.0) and inv[1] / inv[0] == pytest.approx(7.0)


def test_class_weights_list_and_errors(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    masks = torch.zeros(1, 2, 2, dtype=torch.long)
    assert class_weights([1, 2], masks, 2, None).tolist() == [1.0, 2.0]
    with pytest.raises(UserError, match="2 weights given, the dataset has 3 classes"):
        class_weights([1, 2], masks, 3, None)
    with pytest.raises(UserError, match="takes no class weights"):
        build_loss("dice", ignore_index=None, weight=torch.ones(2))
    w1 = class_weights("median_freq", torch.tensor([[[0, 1]]]), 2, None, cache_key="k")
    w2 = class_weights("median_freq", torch.tensor([[[0, 0]]]), 2, None, cache_key="k")  # read from the cache
    assert w1.tolist() == w2.tolist() and list((tmp_path / "aspp-bench" / "class_weights").iterdir())
