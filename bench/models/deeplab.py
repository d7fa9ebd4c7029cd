"""DeepLabV3 and DeepLabV3+ on any registered backbone and context."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torchvision.models.segmentation.fcn import FCNHead

from bench.models.backbones import Backbone
from bench.models.blocks import ConvBNReLU, SeparableConvBNReLU, resize_to, seg_output
from bench.models.context import build_context
from bench.registry import architectures, backbones

__all__ = ["DeepLabV3", "DeepLabV3Plus", "from_torchvision_deeplabv3"]

DEEPLABV3 = "Chen et al., Rethinking Atrous Convolution (DeepLabV3), arXiv:1706.05587"
DEEPLABV3P = "Chen et al., Encoder-Decoder with Atrous Separable Convolution (DeepLabV3+), arXiv:1802.02611"


class DeepLabV3(nn.Module):
    """backbone -> context on c5 -> 3x3 conv + BN + ReLU -> 1x1 classifier -> upsample;
    optional FCN aux head on c4 (used only while training, as in torchvision)."""

    def __init__(
        self, backbone: Backbone, context: nn.Module, head: nn.Module, aux_head: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.context = context
        self.head = head
        self.aux_head = aux_head

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        feats = self.backbone(x)
        out = self.head(self.context(feats["c5"]))
        aux = self.aux_head(feats["c4"]) if self.aux_head is not None and self.training else None
        return seg_output(out, aux, x.shape[-2:], self.training)


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+: context on c5, upsampled to stride 4 and (with the skip) concatenated with
    1x1-reduced c2 features, two separable 3x3 convs, 1x1 classifier, upsample."""

    def __init__(
        self,
        backbone: Backbone,
        context: nn.Module,
        decoder: nn.Module,
        classifier: nn.Module,
        low_level: nn.Module | None,
        aux_head: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.context = context
        self.low_level = low_level
        self.decoder = decoder
        self.classifier = classifier
        self.aux_head = aux_head

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        feats = self.backbone(x)
        y = resize_to(self.context(feats["c5"]), feats["c2"].shape[-2:])
        if self.low_level is not None:
            y = torch.cat([y, self.low_level(feats["c2"])], dim=1)
        out = self.classifier(self.decoder(y))
        aux = self.aux_head(feats["c4"]) if self.aux_head is not None and self.training else None
        return seg_output(out, aux, x.shape[-2:], self.training)


@architectures.register(
    "deeplabv3",
    paper=DEEPLABV3,
    presets={
        "paper": {"num_classes": 21, "backbone": "resnet50", "output_stride": 8, "rates": (12, 24, 36), "aux": True},
        "cpu": {"num_classes": 12, "backbone": "resnet18", "width": 64},
    },
)
def deeplabv3(
    *,
    num_classes: int = 21,
    backbone: str = "resnet50",
    context: str = "aspp",
    rates: Sequence[int] = (6, 12, 18),
    output_stride: int = 16,
    width: int = 256,
    aux: bool = False,
    weights: str | None = None,
    image_pool: bool | None = None,
    context_options: Mapping[str, Any] | None = None,
    freeze_backbone: bool = False,
) -> DeepLabV3:
    """DeepLabV3: dilated backbone + context (ASPP) + 3x3 head; `width` = context/head channels.

    The paper's settings are output_stride 16 with rates (6, 12, 18) and output_stride 8
    with (12, 24, 36); torchvision's deeplabv3_resnet50 is output_stride 8, (12, 24, 36),
    aux on, and this builder reproduces it parameter for parameter.
    """
    enc: Backbone = backbones.build(backbone, output_stride=output_stride, weights=weights)
    ctx = build_context(
        context, enc.channels["c5"], out_ch=width, rates=rates, image_pool=image_pool, options=context_options
    )
    head = nn.Sequential(
        nn.Conv2d(ctx.out_channels, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, num_classes, 1),
    )
    aux_head = FCNHead(enc.channels["c4"], num_classes) if aux else None
    if freeze_backbone:  # the report's transfer setting: only the head learns (BN statistics stay too)
        enc.freeze()
    return DeepLabV3(enc, ctx, head, aux_head)


@architectures.register(
    "deeplabv3plus",
    paper=DEEPLABV3P,
    presets={
        "paper": {"num_classes": 19, "backbone": "mobilenet_v2"},
        "cpu": {"num_classes": 12, "backbone": "mobilenet_v3_small", "width": 64},
    },
)
def deeplabv3plus(
    *,
    num_classes: int = 21,
    backbone: str = "resnet50",
    context: str = "aspp_separable",
    rates: Sequence[int] = (6, 12, 18),
    output_stride: int = 16,
    width: int = 256,
    skip: bool = True,
    aux: bool = False,
    weights: str | None = None,
    image_pool: bool | None = None,
    context_options: Mapping[str, Any] | None = None,
) -> DeepLabV3Plus:
    """DeepLabV3+: separable ASPP + decoder with the stride-4 skip (48-channel 1x1 reduction).

    `skip=False` keeps the decoder (two separable 3x3 convs at stride 4) but drops the
    low-level concatenation, so the ablation isolates the skip itself.
    """
    enc: Backbone = backbones.build(backbone, output_stride=output_stride, weights=weights)
    ctx = build_context(
        context, enc.channels["c5"], out_ch=width, rates=rates, image_pool=image_pool, options=context_options
    )
    low_level = ConvBNReLU(enc.channels["c2"], 48, 1) if skip else None
    dec_in = ctx.out_channels + (48 if skip else 0)
    decoder = nn.Sequential(SeparableConvBNReLU(dec_in, width), SeparableConvBNReLU(width, width))
    classifier = nn.Conv2d(width, num_classes, 1)
    aux_head = FCNHead(enc.channels["c4"], num_classes) if aux else None
    return DeepLabV3Plus(enc, ctx, decoder, classifier, low_level, aux_head)


def from_torchvision_deeplabv3(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision deeplabv3_* state dict to this module's names, so torchvision's
    trained weights (e.g. COCO_WITH_VOC_LABELS_V1) load into `deeplabv3` for transfer."""
    renames = (
        ("backbone.", "backbone.body."),
        ("classifier.0.", "context."),
        ("aux_classifier.", "aux_head."),
    )
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new = key
        if key.startswith("classifier.") and not key.startswith("classifier.0."):
            idx, rest = key[len("classifier.") :].split(".", 1)
            new = f"head.{int(idx) - 1}.{rest}"
        else:
            for old, repl in renames:
                if key.startswith(old):
                    new = repl + key[len(old) :]
                    break
        out[new] = value
    return out
