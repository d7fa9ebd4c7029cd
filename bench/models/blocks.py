"""Small layers every model here is composed from (torchvision's ten-line style)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import KnobError
from bench.registry import contexts

__all__ = [
    "CONTEXT_SHARED",
    "ConvBNReLU",
    "SeparableConvBNReLU",
    "build_context",
    "check_rates",
    "context_option_defaults",
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


def build_context(
    name: str,
    in_ch: int,
    *,
    out_ch: int,
    rates: Sequence[int],
    image_pool: bool | None,
    options: Mapping[str, Any] | None = None,
) -> nn.Module:
    """A registered context; `image_pool=None` keeps the context's own default (and is the
    only value accepted by contexts without an image-pooling branch). `options` are the
    variant's own knobs (`model.context_options`: DenseASPP's growth, ASPP's dropout, ...); one
    it does not take is a KnobError that lists the ones it does."""
    kwargs: dict[str, Any] = {"in_ch": in_ch, "out_ch": out_ch, "rates": tuple(rates)}
    if image_pool is not None:
        kwargs["image_pool"] = image_pool
    for key, value in (options or {}).items():
        if key in CONTEXT_SHARED:
            raise KnobError(f"context_options.{key}", repr(value), f"set it as model.{SHARED_AS.get(key, key)}")
        if key not in contexts.get(name).knobs:
            own = ", ".join(context_option_defaults(name)) or "none"
            why = f"context '{name}' takes no such option; its options: {own}"
            raise KnobError(f"context_options.{key}", repr(value), why)
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    try:
        return contexts.build(name, **kwargs)
    except KnobError as e:  # a refused option is named by its key under model.context_options
        if e.knob in (options or {}):
            raise KnobError(f"context_options.{e.knob}", e.value, e.why) from None
        raise


# The knobs every context takes, set by the architecture from model.width/rates/image_pool:
# not options of a variant.
CONTEXT_SHARED = ("in_ch", "out_ch", "rates", "image_pool")
SHARED_AS = {"in_ch": "arch (the layer before the context sets it)", "out_ch": "width"}


def context_option_defaults(name: str) -> dict[str, Any]:
    """A context variant's own knobs and their defaults (what `model.context_options` may set)."""
    return {k: (None if d is inspect.Parameter.empty else d) for k, d in contexts.get(name).knobs.items()
            if k not in CONTEXT_SHARED}  # fmt: skip


def seg_output(
    out: torch.Tensor, aux: torch.Tensor | None, size: Sequence[int], training: bool
) -> torch.Tensor | dict[str, torch.Tensor]:
    """Logits at input size; while training a model with an aux head, {'out', 'aux'}."""
    out = resize_to(out, size)
    if aux is not None and training:
        return {"out": out, "aux": resize_to(aux, size)}
    return out
