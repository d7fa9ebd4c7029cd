"""Losses (bench/losses.py): every loss honours the ignore label and trains; class weights by hand and by torch."""

from __future__ import annotations

import pytest
import torch

from bench.errors import UserError
from bench.losses import build_loss, class_weights
from bench.registry import losses


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
    assert float(loss_fn(changed, target).detach()) == pytest.approx(float(loss.detach()), rel=1e-5)
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
