"""Segmentation losses (registry `losses`); every one honours ignore_index.

Builders take the run's facts (num_classes, ignore_index, class weights) and return a
callable (logits N x K x H x W, target N x H x W) -> scalar loss.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.data import split_key
from bench.errors import UserError
from bench.files import atomic_write_text, cache_dir
from bench.registry import losses

__all__ = ["build_loss", "class_frequencies", "class_weights", "run_loss"]


def _valid(target: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    return torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index


def _probs_onehot(logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None):
    """Softmax probabilities and one-hot targets with ignored pixels zeroed in both."""
    valid = _valid(target, ignore_index)
    probs = logits.float().softmax(1) * valid[:, None]
    onehot = F.one_hot(torch.where(valid, target, 0), logits.shape[1]).permute(0, 3, 1, 2).float() * valid[:, None]
    return probs, onehot, valid


class CrossEntropy(nn.Module):
    def __init__(self, ignore_index: int | None, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.ignore_index = -100 if ignore_index is None else ignore_index
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target, weight=self.weight, ignore_index=self.ignore_index)


class Dice(nn.Module):
    """1 - mean over classes present in the batch of soft Dice (Milletari et al., V-Net, 2016)."""

    def __init__(self, ignore_index: int | None, smooth: float = 1.0) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs, onehot, _ = _probs_onehot(logits, target, self.ignore_index)
        inter = (probs * onehot).sum((0, 2, 3))
        denom = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
        dice = (2 * inter + self.smooth) / (denom + self.smooth)
        present = onehot.sum((0, 2, 3)) > 0
        return 1 - (dice[present].mean() if present.any() else dice.mean())


class Focal(nn.Module):
    """(1 - p_t)^gamma * CE (Lin et al., Focal Loss, ICCV 2017), mean over valid pixels."""

    def __init__(self, ignore_index: int | None, gamma: float = 2.0, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.ignore_index = -100 if ignore_index is None else ignore_index
        self.gamma = gamma
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        ce = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none")
        valid = target != self.ignore_index
        pt = torch.exp(-ce)
        loss = (1 - pt) ** self.gamma * ce
        if self.weight is not None:
            loss = loss * self.weight[torch.where(valid, target, 0)]
        return loss[valid].mean() if valid.any() else loss.sum() * 0


def _lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if len(gt_sorted) > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


class Lovasz(nn.Module):
    """Lovasz-softmax (Berman et al., CVPR 2018): a convex surrogate of per-class IoU, averaged
    over the classes present in the batch."""

    def __init__(self, ignore_index: int | None) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        k = logits.shape[1]
        probs = logits.float().softmax(1).permute(0, 2, 3, 1).reshape(-1, k)
        labels = target.reshape(-1)
        valid = _valid(labels, self.ignore_index)
        probs, labels = probs[valid], labels[valid]
        if labels.numel() == 0:
            return logits.sum() * 0
        out = []
        for c in range(k):
            fg = (labels == c).float()
            if fg.sum() == 0:
                continue
            errors = (fg - probs[:, c]).abs()
            errors_sorted, perm = torch.sort(errors, descending=True)
            out.append(torch.dot(errors_sorted, _lovasz_grad(fg[perm])))
        return torch.stack(out).mean()


class Sum(nn.Module):
    def __init__(self, *parts: nn.Module) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(p(logits, target) for p in self.parts)  # type: ignore[return-value]


@losses.register("ce", paper="")
def ce(*, ignore_index: int | None, weight: torch.Tensor | None = None) -> nn.Module:
    """Pixel-wise cross-entropy (class weights optional)."""
    return CrossEntropy(ignore_index, weight)


@losses.register("weighted_ce", paper="Eigen & Fergus 2015 (median frequency balancing); SegNet")
def weighted_ce(*, ignore_index: int | None, weight: torch.Tensor | None = None) -> nn.Module:
    """Cross-entropy with class weights (median-frequency balancing unless loss.class_weights says otherwise)."""
    if weight is None:
        raise UserError("loss.name=weighted_ce needs loss.class_weights (median_freq, inverse_freq or a list)")
    return CrossEntropy(ignore_index, weight)


@losses.register("dice", paper="Milletari et al., V-Net, 3DV 2016")
def dice(*, ignore_index: int | None) -> nn.Module:
    """Soft Dice over the classes present in the batch."""
    return Dice(ignore_index)


@losses.register("focal", paper="Lin et al., Focal Loss, ICCV 2017")
def focal(*, ignore_index: int | None, weight: torch.Tensor | None = None, gamma: float = 2.0) -> nn.Module:
    """Focal loss, gamma 2 (class weights optional)."""
    return Focal(ignore_index, gamma, weight)


@losses.register("lovasz", paper="Berman et al., The Lovasz-Softmax loss, CVPR 2018")
def lovasz(*, ignore_index: int | None) -> nn.Module:
    """Lovasz-softmax, a surrogate of mean IoU."""
    return Lovasz(ignore_index)


@losses.register("ce_dice", paper="")
def ce_dice(*, ignore_index: int | None, weight: torch.Tensor | None = None) -> nn.Module:
    """Cross-entropy + soft Dice."""
    return Sum(CrossEntropy(ignore_index, weight), Dice(ignore_index))


# --------------------------------------------------------------------------- class weights


def class_frequencies(masks: torch.Tensor, num_classes: int, ignore_index: int | None) -> tuple[list[int], list[int]]:
    """Per class: pixel count, and pixel count of the images in which it appears."""
    counts = torch.zeros(num_classes, dtype=torch.long)
    image_pixels = torch.zeros(num_classes, dtype=torch.long)
    for m in masks:
        m = m.long().flatten()
        if ignore_index is not None:
            m = m[m != ignore_index]
        c = torch.bincount(m, minlength=num_classes)[:num_classes]
        counts += c
        image_pixels += (c > 0).long() * m.numel()
    return counts.tolist(), image_pixels.tolist()


def class_weights(
    scheme: str | Sequence[float],
    masks: torch.Tensor,
    num_classes: int,
    ignore_index: int | None,
    *,
    cache_key: str | None = None,
) -> torch.Tensor | None:
    """'median_freq': w_c = median(f) / f_c with f_c = pixels of c / pixels of images containing c
    (Eigen & Fergus; SegNet); 'inverse_freq': w_c proportional to 1 / share of c, mean 1; a list
    is used as given. Computed once per training split and cached on disk."""
    if isinstance(scheme, str) and scheme == "none":
        return None
    if not isinstance(scheme, str):
        w = [float(v) for v in scheme]
        if len(w) != num_classes or any(v < 0 for v in w):
            raise UserError(
                f"loss.class_weights: {len(w)} weights given, the dataset has {num_classes} classes "
                "(give one non-negative weight per class)"
            )
        return torch.tensor(w)
    if scheme not in ("median_freq", "inverse_freq"):
        raise UserError(f"loss.class_weights={scheme!r}: allowed are none, median_freq, inverse_freq or a list")
    cache = None
    if cache_key is not None:
        digest = hashlib.sha1(f"{cache_key}|{scheme}|{num_classes}|{ignore_index}".encode()).hexdigest()[:16]

        cache = cache_dir("class_weights") / f"{digest}.json"
        if cache.is_file():
            return torch.tensor(json.loads(cache.read_text())["weights"])
    counts, image_pixels = class_frequencies(masks, num_classes, ignore_index)
    counts_t = torch.tensor(counts, dtype=torch.float64)
    if scheme == "median_freq":
        freq = counts_t / torch.tensor(image_pixels, dtype=torch.float64).clamp_min(1)
        present = freq > 0
        w = torch.where(present, freq[present].quantile(0.5) / freq.clamp_min(1e-12), torch.zeros_like(freq))
    else:
        share = counts_t / counts_t.sum()
        w = torch.where(share > 0, 1 / share.clamp_min(1e-12), torch.zeros_like(share))
        w = w / w[share > 0].mean()
    w = w.float()
    if cache is not None:
        atomic_write_text(cache, json.dumps({"key": cache_key, "scheme": scheme, "weights": w.tolist()}))
    return w


def build_loss(name: str, *, ignore_index: int | None, weight: torch.Tensor | None) -> nn.Module:
    """A registered loss; class weights go to losses that take them, and are an error elsewhere."""
    knobs = losses.get(name).knobs
    kwargs: dict[str, object] = {"ignore_index": ignore_index}
    if weight is not None:
        if "weight" not in knobs:
            raise UserError(
                f"loss.class_weights: loss '{name}' takes no class weights; use ce, weighted_ce, focal or "
                "ce_dice, or set loss.class_weights=none"
            )
        kwargs["weight"] = weight
    return losses.build(name, **kwargs)


def run_loss(loss_cfg: Any, data: Any, data_cfg: Any) -> nn.Module:
    """The loss a run trains with: `loss.name` with the class weights `loss.class_weights` asks
    for, computed on the decoded training split `data` and cached per split. weighted_ce without
    class weights uses median-frequency balancing, the scheme of the papers that define it."""
    scheme = loss_cfg.class_weights
    if loss_cfg.name == "weighted_ce" and scheme == "none":
        scheme = "median_freq"
    weights = class_weights(scheme, data.masks, data.num_classes, loss_cfg.ignore_index, cache_key=split_key(data_cfg))
    return build_loss(loss_cfg.name, ignore_index=loss_cfg.ignore_index, weight=weights)
