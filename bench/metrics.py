"""Segmentation metrics from a streaming confusion matrix kept on the device, and IoU by
object size from connected components of the ground truth.

Conventions: pixels equal to ignore_index are left out everywhere. A class absent from both
ground truth and prediction (TP + FP + FN = 0) has no IoU (NaN) and is excluded from every
mean; the result lists such classes under `absent_classes`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from bench.distributed import all_sum

__all__ = ["SIZE_BUCKETS", "SegMetrics", "metrics_from_confusion"]

# Object size as a share of the image (COCO's 32^2 and 96^2 px at 640x480, as fractions).
SIZE_BUCKETS = {"small": (0.0, 0.0033), "medium": (0.0033, 0.03), "large": (0.03, 1.01)}
HALO = 3  # px around an object within which a wrong prediction counts as its false positive


def _nanmean(x: torch.Tensor) -> float:
    x = x[~torch.isnan(x)]
    return float(x.mean()) if x.numel() else float("nan")


def _div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(b > 0, a / b.clamp_min(1e-12), torch.full_like(a, float("nan")))


def metrics_from_confusion(cm: torch.Tensor, class_names: Sequence[str]) -> dict[str, Any]:
    """cm[t, p] = pixels of true class t predicted as p."""
    cm = cm.double().cpu()
    tp = cm.diag()
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    total = cm.sum()
    iou = _div(tp, tp + fp + fn)
    precision = _div(tp, tp + fp)
    recall = _div(tp, tp + fn)
    f1 = _div(2 * tp, 2 * tp + fp + fn)
    gt_freq = (tp + fn) / total.clamp_min(1)
    present = ~torch.isnan(iou)
    names = list(class_names)
    return {
        "miou": _nanmean(iou),
        "pixel_acc": float(tp.sum() / total) if total > 0 else float("nan"),
        "mean_class_acc": _nanmean(recall),
        "fw_iou": float((gt_freq[present] * iou[present]).sum()),
        "macro_precision": _nanmean(precision),
        "macro_recall": _nanmean(recall),
        "macro_f1": _nanmean(f1),
        "mean_dice": _nanmean(f1),  # Dice = F1 for hard labels
        "iou": {n: float(v) for n, v in zip(names, iou, strict=True)},
        "precision": {n: float(v) for n, v in zip(names, precision, strict=True)},
        "recall": {n: float(v) for n, v in zip(names, recall, strict=True)},
        "f1": {n: float(v) for n, v in zip(names, f1, strict=True)},
        "absent_classes": [n for n, p in zip(names, present, strict=True) if not p],
        "pixels": int(total),
    }


class SegMetrics:
    """Accumulates predictions batch by batch; `compute()` returns every metric."""

    def __init__(
        self,
        num_classes: int,
        *,
        ignore_index: int | None,
        class_names: Sequence[str] | None = None,
        device: torch.device | str = "cpu",
        size_buckets: bool = True,
    ) -> None:
        self.k = num_classes
        self.ignore_index = ignore_index
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])
        self.cm = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
        self.size_buckets = size_buckets
        self.bucket_counts = np.zeros((len(SIZE_BUCKETS), num_classes, 3), dtype=np.int64)  # tp, fp, fn

    def sum_over(self, world: Any) -> None:
        """Sum the counts of every rank of a distributed evaluation (bench.distributed.World), so
        that compute() sees the whole split; a single process is left as it is."""
        if not world.distributed:
            return

        all_sum(self.cm, world)
        buckets = torch.from_numpy(self.bucket_counts).to(self.cm.device)
        self.bucket_counts = all_sum(buckets, world).cpu().numpy()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred and target: N x H x W class indices (pred may also be N x K x H x W logits)."""
        if pred.dim() == target.dim() + 1:
            pred = pred.argmax(1)
        pred, target = pred.to(self.cm.device).long(), target.to(self.cm.device).long()
        valid = (target >= 0) & (target < self.k)
        if self.ignore_index is not None:
            valid &= target != self.ignore_index
        idx = target[valid] * self.k + pred[valid].clamp(0, self.k - 1)
        self.cm += torch.bincount(idx, minlength=self.k * self.k).reshape(self.k, self.k)
        if self.size_buckets:
            self._update_sizes(pred.cpu().numpy(), target.cpu().numpy(), valid.cpu().numpy())

    def _update_sizes(self, pred: np.ndarray, target: np.ndarray, valid: np.ndarray) -> None:
        from scipy import ndimage

        bounds = list(SIZE_BUCKETS.values())
        structure = np.ones((3, 3), dtype=bool)
        for p, t, v in zip(pred, target, valid, strict=True):
            area = t.size
            for c in np.unique(t[v]):
                comp, n = ndimage.label((t == c) & v, structure=structure)
                sizes = np.bincount(comp.ravel())[1:] / area
                for b, (lo, hi) in enumerate(bounds):
                    ids = np.flatnonzero((sizes >= lo) & (sizes < hi)) + 1
                    if ids.size == 0:
                        continue
                    region = np.isin(comp, ids)
                    halo = ndimage.binary_dilation(region, structure=structure, iterations=HALO) & v & (t != c)
                    pc = p == c
                    self.bucket_counts[b, c] += (
                        np.count_nonzero(pc & region),
                        np.count_nonzero(pc & halo),
                        np.count_nonzero(~pc & region),
                    )

    def compute(self) -> dict[str, Any]:
        out = metrics_from_confusion(self.cm, self.class_names)
        if self.size_buckets:
            out["size_iou"] = {}
            for b, name in enumerate(SIZE_BUCKETS):
                tp, fp, fn = self.bucket_counts[b].T.astype(np.float64)
                with np.errstate(invalid="ignore", divide="ignore"):
                    iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
                per_class = {n: float(v) for n, v in zip(self.class_names, iou, strict=True) if not math.isnan(v)}
                out["size_iou"][name] = {
                    "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
                    "objects_pixels": int((tp + fn).sum()),
                    "iou": per_class,
                }
            out["size_buckets"] = {k: list(v) for k, v in SIZE_BUCKETS.items()}
        out["note"] = (
            "classes absent from both ground truth and prediction are excluded from all means (absent_classes); "
            f"size buckets by connected-component area share of the image; FP counted within {HALO} px of the objects"
        )
        return out
