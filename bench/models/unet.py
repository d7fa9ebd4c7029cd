"""The UNet family of the AsppUNet paper (Guo, Xu and Sun) and the multi-backbone report
(Xiang et al.): unet, atrous_unet, aspp_unet, cbam_unet.

At width 64, `unet` is the report's "modified U-Net" layer for layer (Table 2): five
double-conv blocks (64 -> 1024; the first block's first conv has no BN, as the table
lists it; convolutions keep PyTorch's default bias), four 2x2 max-pools, four decoder
steps of bilinear upsampling (align_corners=True) + 3x3 conv + BN + ReLU, concatenation
with the encoder block of the same size, a double-conv block, and a 1x1 classifier.
Widths 8-16 are CPU scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import KnobError
from bench.models.context import build_context
from bench.registry import architectures

__all__ = ["CBAM", "UNet", "conv_bn_relu"]

ASPPUNET = 'Guo, Xu and Sun, "Image Semantic Segmentation Model based on AsppUNet"'
# the CamVid-scale presets of the UNet family (paper width 64, CPU width 16; 12 classes)
_PRESETS_12 = {"paper": {"num_classes": 12, "width": 64}, "cpu": {"num_classes": 12, "width": 16}}
MULTIBACKBONE = 'Xiang, Yang, Zeng and Yue, "ASPP with Multi-Backbone for Semantic Segmentation" (UCSD course report)'


def conv_bn_relu(in_ch: int, out_ch: int, *, bn: bool = True) -> list[nn.Module]:
    """3x3 conv (bias, as the report's tables) [+ BN] + ReLU."""
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(out_ch))
    layers.append(nn.ReLU(inplace=True))
    return layers


def double_conv(in_ch: int, out_ch: int, *, first_bn: bool = True) -> nn.Sequential:
    return nn.Sequential(*conv_bn_relu(in_ch, out_ch, bn=first_bn), *conv_bn_relu(out_ch, out_ch))


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al., ECCV 2018): channel attention from
    average- and max-pooled descriptors through a shared MLP, then spatial attention from
    channel-wise average and max through a 7x7 conv."""

    def __init__(self, ch: int, *, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        hidden = max(ch // reduction, 1)
        self.mlp = nn.Sequential(nn.Conv2d(ch, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, ch, 1))
        self.spatial = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ca = torch.sigmoid(self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1)))
        x = x * ca
        sa = torch.sigmoid(self.spatial(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)))
        return x * sa


class Up(nn.Module):
    """Decoder upsampling to the skip's size: bilinear (align_corners=True) + 3x3 conv + BN +
    ReLU (the report's 'deconv'), or a 2x2 transposed conv + BN + ReLU."""

    def __init__(self, in_ch: int, out_ch: int, mode: Literal["bilinear", "transpose"]) -> None:
        super().__init__()
        self.mode = mode
        if mode == "bilinear":
            self.conv = nn.Sequential(*conv_bn_relu(in_ch, out_ch))
        else:
            self.conv = nn.Sequential(
                nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)
            )

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        if self.mode == "bilinear":
            return self.conv(F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True))
        y = self.conv(x)
        if tuple(y.shape[-2:]) != tuple(size):  # odd sizes: the transposed conv overshoots by one
            y = F.interpolate(y, size=tuple(size), mode="bilinear", align_corners=True)
        return y


class UNet(nn.Module):
    """Encoder blocks with a downsampling layer before each but the first, decoder steps that
    upsample and (with skips) concatenate the encoder block of the same size, a head.

    `stop_at` ends the decoder early (unet_aspp replaces the last decoder step by ASPP);
    `context` runs on the last decoder features before `head`.
    """

    def __init__(
        self,
        encoder: nn.ModuleList,
        downs: nn.ModuleList,
        attention: nn.ModuleList | None,
        ups: nn.ModuleList,
        decoder: nn.ModuleList,
        context: nn.Module,
        head: nn.Module,
        *,
        skip: bool,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.downs = downs
        self.attention = attention
        self.ups = ups
        self.decoder = decoder
        self.context = context
        self.head = head
        self.skip = skip

    def parts(self) -> dict[str, nn.Module]:
        enc = [self.encoder, self.downs] + ([self.attention] if self.attention is not None else [])
        return {
            "backbone": nn.ModuleList(enc),
            "decoder": nn.ModuleList([self.ups, self.decoder]),
            "context": self.context,
            "head": self.head,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        skips = []
        y = x
        for i, block in enumerate(self.encoder):
            if i > 0:
                y = self.downs[i - 1](y)
            y = block(y)
            if self.attention is not None:
                y = self.attention[i](y)
            skips.append(y)
        skips.pop()  # the bottleneck is not a skip
        for up, block in zip(self.ups, self.decoder, strict=True):
            s = skips.pop()
            y = up(y, s.shape[-2:])
            y = block(torch.cat([y, s], dim=1) if self.skip else y)
        y = self.head(self.context(y))
        if tuple(y.shape[-2:]) != tuple(size):
            y = F.interpolate(y, size=tuple(size), mode="bilinear", align_corners=False)
        return y


def check_width(width: int) -> None:
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise KnobError("width", repr(width), "the base channel count must be a positive integer (64 = paper scale)")


def _build_unet(
    *,
    num_classes: int,
    width: int,
    skip: bool,
    upsample: str,
    down: Literal["maxpool", "atrous"],
    down_dilation: int = 2,
    cbam: bool = False,
    depth: int = 4,
    context: str = "none",
    rates: Sequence[int] = (1,),
    image_pool: bool | None = None,
    context_options: Mapping[str, Any] | None = None,
    context_ch: int | None = None,
) -> UNet:
    check_width(width)
    if upsample not in ("bilinear", "transpose"):
        raise KnobError("upsample", repr(upsample), "allowed are 'bilinear' (paper) and 'transpose'")
    if isinstance(down_dilation, bool) or not isinstance(down_dilation, int) or down_dilation < 1:
        raise KnobError("down_dilation", repr(down_dilation), "must be a positive integer (paper: 2)")
    chs = [width * 2**i for i in range(5)]
    encoder = nn.ModuleList(
        [double_conv(3, chs[0], first_bn=False)] + [double_conv(chs[i - 1], chs[i]) for i in range(1, 5)]
    )
    if down == "maxpool":
        downs = nn.ModuleList(nn.MaxPool2d(2, ceil_mode=True) for _ in range(4))
    else:  # AsppUNet Sec. 3.1: each max-pool becomes a stride-2 3x3 atrous conv (dilation 2)
        downs = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(c, c, 3, stride=2, padding=down_dilation, dilation=down_dilation),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
            )
            for c in chs[:4]
        )
    attention = nn.ModuleList(CBAM(c) for c in chs) if cbam else None
    ups = nn.ModuleList(Up(chs[i], chs[i - 1], upsample) for i in range(4, 4 - depth, -1))
    decoder = nn.ModuleList(double_conv(chs[i - 1] * (2 if skip else 1), chs[i - 1]) for i in range(4, 4 - depth, -1))
    dec_ch = chs[4 - depth]
    ctx_out = context_ch if context_ch is not None else num_classes
    ctx = build_context(context, dec_ch, out_ch=ctx_out, rates=rates, image_pool=image_pool, options=context_options)
    # A context that ends in a linear map to the classes (AsppUNet's parallel pyramid) is the
    # output layer itself; any other gets the 1x1 classifier.
    if getattr(ctx, "linear_output", False) and ctx.out_channels == num_classes:
        head: nn.Module = nn.Identity()
    else:
        head = nn.Conv2d(ctx.out_channels, num_classes, 1)
    return UNet(encoder, downs, attention, ups, decoder, ctx, head, skip=skip)


@architectures.register(
    "unet",
    paper=f"Ronneberger et al., arXiv:1505.04597; {MULTIBACKBONE}, Table 2",
    presets=_PRESETS_12,
)
def unet(*, num_classes: int = 12, width: int = 16, skip: bool = True, upsample: str = "bilinear") -> UNet:
    """UNet: VGG16-style double-conv encoder (width..16*width), max-pools, bilinear decoder, skips."""
    return _build_unet(num_classes=num_classes, width=width, skip=skip, upsample=upsample, down="maxpool")


@architectures.register(
    "atrous_unet",
    paper=f"{ASPPUNET}, Sec. 3.1",
    presets=_PRESETS_12,
)
def atrous_unet(
    *, num_classes: int = 12, width: int = 16, skip: bool = True, upsample: str = "bilinear", down_dilation: int = 2
) -> UNet:
    """AtrousUNet: unet with each max-pool replaced by a stride-2 3x3 atrous conv (dilation 2) + BN + ReLU.

    The paper says "AtrousConv2D layer with a dilation rate of 2" in place of pooling; the
    conv keeps the channel count (as a pool would) and is followed by BN + ReLU like every
    other conv of the network.
    """
    return _build_unet(
        num_classes=num_classes, width=width, skip=skip, upsample=upsample, down="atrous", down_dilation=down_dilation
    )


@architectures.register(
    "aspp_unet",
    paper=f"{ASPPUNET}, Sec. 3.3",
    presets=_PRESETS_12,
    equals={"atrous_unet": {"context": "none"}},  # the same network: identity makes them one run
)
def aspp_unet(
    *,
    num_classes: int = 12,
    width: int = 16,
    skip: bool = True,
    upsample: str = "bilinear",
    down_dilation: int = 2,
    context: str = "aspp_parallel",
    rates: Sequence[int] = (3, 6, 9, 12),
    image_pool: bool | None = None,
    context_options: Mapping[str, Any] | None = None,
) -> UNet:
    """AsppUNet: atrous_unet + a context after the decoder; default four parallel atrous 3x3 convs
    to the classes (rates 3,6,9,12; the paper's other set is 6,12,18,24), concat, output 1x1.

    Every context maps the full-resolution decoder features to num_classes channels, as the
    paper's pyramid does; contexts that end in BN/ReLU get a 1x1 classifier after them, and
    `context=none` gives exactly atrous_unet.
    """
    return _build_unet(
        num_classes=num_classes,
        width=width,
        skip=skip,
        upsample=upsample,
        down="atrous",
        down_dilation=down_dilation,
        context=context,
        rates=rates,
        image_pool=image_pool,
        context_options=context_options,
    )


@architectures.register(
    "cbam_unet",
    paper=f"Woo et al., CBAM, ECCV 2018; {ASPPUNET}, Table 1",
    presets=_PRESETS_12,
)
def cbam_unet(*, num_classes: int = 12, width: int = 16, skip: bool = True, upsample: str = "bilinear") -> UNet:
    """CBAM-UNet: unet with CBAM (channel then spatial attention) after each encoder block."""
    return _build_unet(num_classes=num_classes, width=width, skip=skip, upsample=upsample, down="maxpool", cbam=True)


@architectures.register(
    "unet_aspp",
    paper=f"{MULTIBACKBONE}, Sec. 3.4 and Table 4",
    presets={"paper": {"num_classes": 34, "width": 64}, "cpu": {"num_classes": 12, "width": 16}},
)
def unet_aspp(
    *,
    num_classes: int = 12,
    width: int = 16,
    skip: bool = True,
    upsample: str = "bilinear",
    context: str = "aspp",
    rates: Sequence[int] = (6, 12, 18),
    image_pool: bool | None = None,
    context_options: Mapping[str, Any] | None = None,
) -> UNet:
    """U-Net+ASPP: the modified U-Net with its last decoder step (deconv4) and classifier replaced by ASPP.

    Reading of Sec. 3.4: the decoder runs to block 8 (2*width = 128 channels at half
    resolution); an ASPP with 2*width-channel branches (rates 6, 12, 18, image pooling, as
    Table 4) takes the place of deconv4, a 1x1 classifier follows, and the logits are
    upsampled to the input. Block 9 consumed deconv4's output, so it goes with it.
    """
    check_width(width)
    return _build_unet(
        num_classes=num_classes,
        width=width,
        skip=skip,
        upsample=upsample,
        down="maxpool",
        depth=3,
        context=context,
        rates=rates,
        image_pool=image_pool,
        context_options=context_options,
        context_ch=2 * width,
    )
