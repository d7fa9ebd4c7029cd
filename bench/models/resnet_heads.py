"""The multi-backbone report's other models (Xiang et al., Tables 1, 3 and 4):
fcn_baseline, resnet_deconv, resnet_aspp."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from bench.models.backbones import Backbone
from bench.models.blocks import resize_to
from bench.models.context import build_context
from bench.models.unet import MULTIBACKBONE, check_width
from bench.registry import architectures, backbones

__all__ = ["DeconvNet", "ResNetContext"]

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")


def _deconv(in_ch: int, out_ch: int) -> nn.Sequential:
    """ConvTranspose2d 3x3, stride 2, padding 1, output_padding 1 (doubles the size) + BN + ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class DeconvNet(nn.Module):
    """An encoder (a Sequential of stride-2 blocks, or a Backbone's c5), transposed convs back up,
    a 1x1 classifier, and a resize to the input (odd sizes come back one pixel larger)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.classifier = classifier

    def parts(self) -> dict[str, nn.Module]:
        return {"backbone": self.encoder, "decoder": self.decoder, "head": self.classifier}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.encoder(x)
        if isinstance(y, dict):
            y = y["c5"]
        return resize_to(self.classifier(self.decoder(y)), x.shape[-2:])


@architectures.register(
    "fcn_baseline",
    paper=f"{MULTIBACKBONE}, Table 1",
    presets={"paper": {"num_classes": 34, "width": 32}, "cpu": {"num_classes": 12, "width": 16}},
)
def fcn_baseline(*, num_classes: int = 34, width: int = 32) -> DeconvNet:
    """FCN baseline: five stride-2 3x3 conv+BN+ReLU (32..512 at width 32), five transposed convs, 1x1.

    Table 1 layer for layer: conv k3 s2 p1 (bias, PyTorch's default) to width*(1,2,4,8,16);
    transposed convs k3 s2 p1 op1 to 16w, 8w, 4w, 2w, w; a 1x1 classifier.
    """
    check_width(width)
    chs = [width * 2**i for i in range(5)]
    enc: list[nn.Module] = []
    prev = 3
    for c in chs:
        enc += [nn.Sequential(nn.Conv2d(prev, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=True))]
        prev = c
    dec_chs = [chs[4], *chs[::-1][1:]]  # 512, 256, 128, 64, 32
    dec = []
    for c in dec_chs:
        dec.append(_deconv(prev, c))
        prev = c
    return DeconvNet(nn.Sequential(*enc), nn.Sequential(*dec), nn.Conv2d(prev, num_classes, 1))


@architectures.register(
    "resnet_deconv",
    paper=f"{MULTIBACKBONE}, Table 3",
    backbones=RESNETS,
    presets={"paper": {"num_classes": 34, "backbone": "resnet50"}, "cpu": {"num_classes": 12, "backbone": "resnet18"}},
)
def resnet_deconv(*, num_classes: int = 34, backbone: str = "resnet50", weights: str | None = None) -> DeconvNet:
    """ResNet + five transposed convs (c5 -> 512 -> 256 -> 128 -> 64 -> 32) + 1x1 classifier (Table 3)."""
    enc: Backbone = backbones.build(backbone, output_stride=32, weights=weights)
    prev = enc.channels["c5"]
    dec = []
    for c in (512, 256, 128, 64, 32):
        dec.append(_deconv(prev, c))
        prev = c
    return DeconvNet(enc, nn.Sequential(*dec), nn.Conv2d(prev, num_classes, 1))


class ResNetContext(nn.Module):
    """Backbone -> context on c5 -> 1x1 classifier -> upsample."""

    def __init__(self, backbone: Backbone, context: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.context = context
        self.classifier = classifier

    def parts(self) -> dict[str, nn.Module]:
        return {"backbone": self.backbone, "context": self.context, "head": self.classifier}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize_to(self.classifier(self.context(self.backbone(x)["c5"])), x.shape[-2:])


@architectures.register(
    "resnet_aspp",
    paper=f"{MULTIBACKBONE}, Sec. 3.4 and Table 4",
    backbones=RESNETS,
    presets={"paper": {"num_classes": 34, "backbone": "resnet50"}, "cpu": {"num_classes": 12, "backbone": "resnet18"}},
)
def resnet_aspp(
    *,
    num_classes: int = 34,
    backbone: str = "resnet50",
    context: str = "aspp",
    rates: Sequence[int] = (6, 12, 18),
    output_stride: int = 32,
    width: int = 128,
    weights: str | None = None,
    image_pool: bool | None = None,
    context_options: Mapping[str, Any] | None = None,
) -> ResNetContext:
    """ResNet + ASPP head (Table 4: 128-channel branches, rates 6, 12, 18, image pooling) + 1x1.

    The report appends ASPP to an undilated ResNet (output stride 32); `output_stride`
    8/16 gives the DeepLab-style dilated variant. ResNet-50 was its best backbone.
    """
    enc: Backbone = backbones.build(backbone, output_stride=output_stride, weights=weights)
    ctx = build_context(
        context, enc.channels["c5"], out_ch=width, rates=rates, image_pool=image_pool, options=context_options
    )
    return ResNetContext(enc, ctx, nn.Conv2d(ctx.out_channels, num_classes, 1))
