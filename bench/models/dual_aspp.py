"""Dual ASPP and its encoder-only baseline (Xiao et al., Sec. 3.2 and 4.3)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from bench.models.backbones import Backbone
from bench.models.blocks import ConvBNReLU, SeparableConvBNReLU, check_rates, resize_to, seg_output
from bench.models.context import build_context
from bench.registry import architectures, backbones

__all__ = ["DualASPP", "EncoderOnly", "FusionBlock"]

PAPER = 'Xiao, Wang, Zhao and Chen, "Dual ASPP for Lightweight Semantic Segmentation on High-Resolution Image"'


class FusionBlock(nn.Sequential):
    """The paper's '3x3 convolution block' (Fig. 3): two depthwise-separable 3x3 convs at the
    fused width (147 = 128 + 19 for Cityscapes), then a 1x1 to the classes: two depthwise
    and three pointwise convolutions, as Sec. 3.2 counts them."""

    def __init__(self, in_ch: int, num_classes: int) -> None:
        super().__init__(
            SeparableConvBNReLU(in_ch, in_ch),
            SeparableConvBNReLU(in_ch, in_ch),
            nn.Conv2d(in_ch, num_classes, 1),
        )


class DualASPP(nn.Module):
    """ASPP1 on c5 (1/32) and ASPP2 on c3 (1/8), ASPP1 upsampled and concatenated with ASPP2,
    fused by FusionBlock, upsampled. With the optional skip, the fused input is taken to
    stride 4 and concatenated with 48 1x1-reduced c2 channels first (DeepLabV3+'s skip)."""

    def __init__(
        self, backbone: Backbone, aspp1: nn.Module, aspp2: nn.Module, fusion: nn.Module, low_level: nn.Module | None
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.aspp1 = aspp1
        self.aspp2 = aspp2
        self.low_level = low_level
        self.fusion = fusion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        a2 = self.aspp2(feats["c3"])
        y = torch.cat([resize_to(self.aspp1(feats["c5"]), a2.shape[-2:]), a2], dim=1)
        if self.low_level is not None:
            low = self.low_level(feats["c2"])
            y = torch.cat([resize_to(y, low.shape[-2:]), low], dim=1)
        out = seg_output(self.fusion(y), None, x.shape[-2:], self.training)
        assert isinstance(out, torch.Tensor)
        return out


class EncoderOnly(nn.Module):
    """Encoder at output stride 16, a 3x3 depthwise-separable block to the classes, upsample."""

    def __init__(self, backbone: Backbone, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize_to(self.head(self.backbone(x)["c5"]), x.shape[-2:])


@architectures.register(
    "dual_aspp",
    paper=PAPER,
    presets={
        "paper": {"num_classes": 19, "backbone": "mobilenet_v2"},
        "cpu": {"num_classes": 12, "backbone": "mobilenet_v3_small", "width": 64},
    },
)
def dual_aspp(
    *,
    num_classes: int = 19,
    backbone: str = "mobilenet_v2",
    context: str = "aspp_separable",
    rates: Sequence[int] = (6, 12, 18),
    rates2: Sequence[int] = (12, 24, 36),
    output_stride: int = 32,
    width: int = 128,
    skip: bool = False,
    weights: str | None = None,
    image_pool: bool | None = None,
    context_options: Mapping[str, Any] | None = None,
) -> DualASPP:
    """Dual ASPP head: ASPP1 (rates, `width` ch) on 1/32 + ASPP2 (rates2, num_classes ch) on 1/8, fused.

    The paper removes DeepLabV3+'s stride-4 skip (skip=False) and ablates it in Table 4.
    Both ASPPs are the registered `context`; the default is DeepLabV3+'s separable ASPP, the
    head it improves on, which with MobileNetV2 gives the paper's 2.16M parameters (Table 3).
    """
    enc: Backbone = backbones.build(backbone, output_stride=output_stride, weights=weights)
    aspp1 = build_context(
        context, enc.channels["c5"], out_ch=width, rates=rates, image_pool=image_pool, options=context_options
    )
    rates2 = check_rates(rates2, knob="rates2")
    aspp2 = build_context(
        context, enc.channels["c3"], out_ch=num_classes, rates=rates2, image_pool=image_pool, options=context_options
    )
    low_level = ConvBNReLU(enc.channels["c2"], 48, 1) if skip else None
    fused = aspp1.out_channels + aspp2.out_channels + (48 if skip else 0)
    return DualASPP(enc, aspp1, aspp2, FusionBlock(fused, num_classes), low_level)


@architectures.register(
    "encoder_only",
    paper=PAPER,
    presets={
        "paper": {"num_classes": 19, "backbone": "mobilenet_v2"},
        "cpu": {"num_classes": 12, "backbone": "mobilenet_v3_small"},
    },
)
def encoder_only(
    *, num_classes: int = 19, backbone: str = "mobilenet_v2", output_stride: int = 16, weights: str | None = None
) -> EncoderOnly:
    """The Dual ASPP paper's 'no head' baseline: encoder (output stride 16) + 3x3 block + upsample.

    The 3x3 block is read as a depthwise 3x3 + BN + ReLU and a 1x1 to the classes (the
    paper's block of Fig. 3 reduced to one separable conv), keeping the baseline cheap as
    in its Table 2.
    """
    enc: Backbone = backbones.build(backbone, output_stride=output_stride, weights=weights)
    ch = enc.channels["c5"]
    head = nn.Sequential(
        nn.Conv2d(ch, ch, 3, padding=1, groups=ch, bias=False),
        nn.BatchNorm2d(ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(ch, num_classes, 1),
    )
    return EncoderOnly(enc, head)
