"""ICNet (Zhao et al., arXiv:1704.08545) and AtICNet (the AtICNet paper).

Three branches: full resolution through three stride-2 convs (1/8); half resolution through
the ResNet stem, layer1 and layer2 (1/16 of the input); quarter resolution through the *same*
stem..layer2 weights, then layer3 and layer4 dilated (1/32), and the pyramid context.
Cascade feature fusion (CFF) units merge 1/32 into 1/16 and 1/16 into 1/8; a 1x1 classifier
and upsampling give the logits. AtICNet removes one residual block of stage 5 (layer4) and
puts padding + atrous 3x3 + 1x1 + BN before each of the four pyramid levels (`atrous_ppm`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.backbones import Backbone
from bench.models.blocks import ConvBNReLU, resize_to, seg_output
from bench.models.context import build_context
from bench.models.resnet_heads import RESNETS
from bench.registry import architectures, backbones

__all__ = ["CascadeFeatureFusion", "ICNet"]

ICNET = "Zhao et al., ICNet for Real-Time Semantic Segmentation, arXiv:1704.08545"
ATICNET = (
    '"AtICNet: semantic segmentation with atrous spatial pyramid pooling in image cascade network" '
    "(its authors are not named in the copy read)"
)


class CascadeFeatureFusion(nn.Module):
    """CFF: low-resolution features upsampled x2 -> dilated 3x3 + BN; high-resolution features ->
    1x1 + BN; sum, ReLU. With `num_classes`, also the label-guidance logits of the low branch."""

    def __init__(self, low_ch: int, high_ch: int, out_ch: int, num_classes: int | None = None) -> None:
        super().__init__()
        self.low = nn.Sequential(
            nn.Conv2d(low_ch, out_ch, 3, padding=2, dilation=2, bias=False), nn.BatchNorm2d(out_ch)
        )
        self.high = nn.Sequential(nn.Conv2d(high_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))
        self.guide = nn.Conv2d(low_ch, num_classes, 1) if num_classes else None

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        low = resize_to(low, high.shape[-2:])
        out = F.relu(self.low(low) + self.high(high))
        return out, (self.guide(low) if self.guide is not None else None)


class ICNet(nn.Module):
    """The image cascade; `shared` runs at 1/2 and 1/4 input resolution with one set of weights."""

    def __init__(
        self,
        sub1: nn.Module,
        shared: nn.Module,
        deep: nn.Module,
        context: nn.Module,
        cff_low: CascadeFeatureFusion,
        cff_high: CascadeFeatureFusion,
        classifier: nn.Module,
    ) -> None:
        super().__init__()
        self.sub1 = sub1
        self.shared = shared
        self.deep = deep
        self.context = context
        self.cff_low = cff_low
        self.cff_high = cff_high
        self.classifier = classifier

    def parts(self) -> dict[str, nn.Module]:
        return {
            "backbone": nn.ModuleList([self.sub1, self.shared, self.deep]),
            "context": self.context,
            "head": nn.ModuleList([self.cff_low, self.cff_high, self.classifier]),
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        half = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
        quarter = F.interpolate(x, scale_factor=0.25, mode="bilinear", align_corners=False)
        f1 = self.sub1(x)
        f2 = self.shared(half)
        f4 = self.context(self.deep(self.shared(quarter)))
        y, guide = self.cff_low(f4, f2)
        y, _ = self.cff_high(y, f1)
        y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
        return seg_output(self.classifier(y), guide if self.training else None, x.shape[-2:], self.training)


def _icnet(
    *,
    num_classes: int,
    backbone: str,
    context: str,
    rates: Sequence[int],
    aux: bool,
    weights: str | None,
    image_pool: bool | None,
    context_options: Mapping[str, Any] | None,
    drop_stage5_blocks: int,
) -> ICNet:
    enc: Backbone = backbones.build(backbone, output_stride=8, weights=weights)
    body = enc.body
    shared = nn.Sequential(body.conv1, body.bn1, body.relu, body.maxpool, body.layer1, body.layer2)
    layer4 = body.layer4
    if drop_stage5_blocks:
        layer4 = nn.Sequential(*list(layer4)[: len(layer4) - drop_stage5_blocks])
    deep = nn.Sequential(body.layer3, layer4)
    ctx = build_context(
        context, enc.channels["c5"], out_ch=256, rates=rates, image_pool=image_pool, options=context_options
    )
    sub1 = nn.Sequential(
        ConvBNReLU(3, 32, 3, stride=2), ConvBNReLU(32, 32, 3, stride=2), ConvBNReLU(32, 64, 3, stride=2)
    )
    cff_low = CascadeFeatureFusion(ctx.out_channels, enc.channels["c3"], 128, num_classes if aux else None)
    cff_high = CascadeFeatureFusion(128, 64, 128)
    return ICNet(sub1, shared, deep, ctx, cff_low, cff_high, nn.Conv2d(128, num_classes, 1))


_PRESETS = {"paper": {"num_classes": 19, "backbone": "resnet50"}, "cpu": {"num_classes": 12, "backbone": "resnet18"}}


def _variant(default_context: str, drop_stage5_blocks: int, doc: str):  # type: ignore[no-untyped-def]
    """An ICNet builder: icnet and aticnet differ only in their default context and stage 5."""

    def build(
        *,
        num_classes: int = 19,
        backbone: str = "resnet50",
        context: str = default_context,
        rates: Sequence[int] = (2, 4, 8, 12),
        aux: bool = False,
        weights: str | None = None,
        image_pool: bool | None = None,
        context_options: Mapping[str, Any] | None = None,
    ) -> ICNet:
        return _icnet(
            num_classes=num_classes,
            backbone=backbone,
            context=context,
            rates=rates,
            aux=aux,
            weights=weights,
            image_pool=image_pool,
            context_options=context_options,
            drop_stage5_blocks=drop_stage5_blocks,
        )

    build.__doc__ = doc
    return build


icnet = architectures.register("icnet", paper=ICNET, backbones=RESNETS, presets=_PRESETS)(
    _variant(
        "ppm",
        0,
        """ICNet: 1, 1/2, 1/4 resolution branches (1/2 and 1/4 share weights), CFF units, 1/2/3/6 pyramid pooling.

    The pyramid is ICNet's: pooled maps summed into the features, then 1x1 to 256 channels.
    `rates` are used only by atrous contexts. `aux` adds the 1/16 cascade label guidance
    (returned as 'aux' while training). For CPU scale use resnet18/34.
    """,
    )
)
aticnet = architectures.register("aticnet", paper=ATICNET, backbones=RESNETS, presets=_PRESETS)(
    _variant(
        "atrous_ppm",
        1,
        """AtICNet: icnet with one fewer stage-5 block and atrous 3x3 (rates 2,4,8,12) before each pyramid level.

    Each level: padding + atrous 3x3 (rate r_i) + 1x1 + BN, then average pooling at 1, 2, 3
    or 6 bins, upsampled and summed with the features entering the pyramid (the paper's
    "fused with the feature map before entering"), then ICNet's 1x1 to 256 channels.
    """,
    )
)
