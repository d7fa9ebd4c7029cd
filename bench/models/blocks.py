"""Small layers every model here is composed from (torchvision's ten-line style)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import KnobError

__all__ = [
    "ConvBNReLU",
    "SeparableConvBNReLU",
    "check_rates",
    "resize_to",
    "seg_output",
]


class ConvBNReLU(nn.Sequential):
    """k x k convolution (optionally atrous) + BatchNorm + ReLU, 'same' padding."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, *, dilation: int = 1, stride: int = 1) -> None:
        pad = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=pad, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class SeparableConvBNReLU(nn.Sequential):
    """Depthwise k x k (atrous) + BN + ReLU, then pointwise 1x1 + BN + ReLU (DeepLabV3+, arXiv:1802.02611)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, *, dilation: int = 1) -> None:
        pad = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_ch, in_ch, kernel_size, padding=pad, dilation=dilation, groups=in_ch, bias=False),
            nn.BatchNorm2d(in_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_ch, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


def resize_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize to an (H, W), align_corners=False as torchvision's segmentation models do."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def check_rates(rates: Sequence[int], *, knob: str = "rates") -> tuple[int, ...]:
    """Validate a dilation-rate set: non-empty, positive integers. Returns it as a tuple."""
    if isinstance(rates, (str, bytes)) or not isinstance(rates, Sequence):
        raise KnobError(knob, repr(rates), "expected a non-empty list of positive integers, e.g. [6, 12, 18]")
    out = tuple(rates)
    if not out:
        raise KnobError(knob, "[]", "at least one dilation rate is needed, e.g. [6, 12, 18]")
    bad = [r for r in out if isinstance(r, bool) or not isinstance(r, int) or r < 1]
    if bad:
        raise KnobError(
            knob, repr(list(out)), f"every rate must be a positive integer (got {bad[0]!r}); e.g. [6, 12, 18]"
        )
    return out


def seg_output(
    out: torch.Tensor, aux: torch.Tensor | None, size: Sequence[int], training: bool
) -> torch.Tensor | dict[str, torch.Tensor]:
    """Logits at input size; while training a model with an aux head, {'out', 'aux'}."""
    out = resize_to(out, size)
    if aux is not None and training:
        return {"out": out, "aux": resize_to(aux, size)}
    return out
