"""Context modules: ASPP and its variants, pyramid pooling, and `none`.

Every context is built as `contexts.build(name, in_ch, out_ch=..., rates=...)`, accepts any
non-empty tuple of positive rates (modules without atrous branches validate and ignore
them, so one sweep axis crosses every context), sizes itself from its inputs
(`len(branches) * out_ch`), and exposes `out_channels` for the layer after it.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from pydantic import TypeAdapter, ValidationError
from torch import nn

from bench.errors import KnobError, did_you_mean
from bench.explain import describe_type
from bench.models.blocks import ConvBNReLU, SeparableConvBNReLU, check_rates, resize_to
from bench.registry import contexts

__all__ = [
    "ASPP",
    "CONTEXT_SHARED",
    "ASPPPooling",
    "DenseASPP",
    "ParallelASPP",
    "PyramidPooling",
    "build_context",
    "check_context_options",
    "context_option_defaults",
    "context_option_types",
]

DEEPLAB = "Chen et al., Rethinking Atrous Convolution (DeepLabV3), arXiv:1706.05587"


class ASPPPooling(nn.Sequential):
    """Image-level branch: global average, 1x1 conv + BN + ReLU, broadcast back."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_ch, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize_to(super().forward(x), x.shape[-2:])


class ASPP(nn.Module):
    """1x1 branch + one atrous branch per rate (+ image pooling), concatenated, 1x1 projection.

    Same layout as torchvision's ASPP (`convs`, `project`), so its weights load unchanged.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        rates: Sequence[int],
        *,
        branch: Callable[..., nn.Module] = ConvBNReLU,
        image_pool: bool = True,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        convs: list[nn.Module] = [ConvBNReLU(in_ch, out_ch, 1)]
        convs += [branch(in_ch, out_ch, 3, dilation=r) for r in rates]
        if image_pool:
            convs.append(ASPPPooling(in_ch, out_ch))
        self.convs = nn.ModuleList(convs)
        self.project = nn.Sequential(
            nn.Conv2d(len(self.convs) * out_ch, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.out_channels = out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([conv(x) for conv in self.convs], dim=1))


class ParallelASPP(nn.Module):
    """AsppUNet's pyramid: one atrous 3x3 per rate straight to `out_ch`, concatenated, 1x1.

    The paper (Fig. 4) has no 1x1 or pooling branch and no normalisation: each atrous conv
    maps the decoder's features to class scores, and the output layer fuses them.
    """

    def __init__(self, in_ch: int, out_ch: int, rates: Sequence[int]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv2d(in_ch, out_ch, 3, padding=r, dilation=r) for r in rates)
        self.project = nn.Conv2d(len(self.branches) * out_ch, out_ch, 1)
        self.out_channels = out_ch
        self.linear_output = True  # ends in a plain 1x1: can serve as the output layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([b(x) for b in self.branches], dim=1))


class PyramidPooling(nn.Module):
    """Average pooling at several bin counts, upsampled and fused with the input.

    fuse='sum' is ICNet's (pooled maps added to the features, arXiv:1704.08545);
    fuse='concat' is PSPNet's (pooled maps reduced by 1x1 + BN + ReLU and concatenated,
    arXiv:1612.01105). With `rates` (AtICNet), each level first runs an atrous 3x3
    (padding = rate, so the size is kept) + 1x1 + BN, one rate per level. A final
    1x1 + BN + ReLU maps the fused features to `out_ch`.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        *,
        bins: Sequence[int] = (1, 2, 3, 6),
        rates: Sequence[int] | None = None,
        fuse: Literal["sum", "concat"] = "sum",
    ) -> None:
        super().__init__()
        if fuse not in ("sum", "concat"):
            raise KnobError("fuse", repr(fuse), "allowed are 'sum' (ICNet) and 'concat' (PSPNet)")
        self.bins = check_rates(bins, knob="bins")
        if rates is not None and len(rates) != len(self.bins):
            raise KnobError(
                "rates",
                str(list(rates)),
                f"atrous pyramid pooling takes one rate per level and there are {len(self.bins)} levels "
                f"(bins {list(self.bins)}); give {len(self.bins)} rates",
            )
        self.fuse = fuse
        mid = max(in_ch // len(self.bins), 1)
        level_ch = in_ch if fuse == "sum" else mid
        pre: list[nn.Module] = []
        post: list[nn.Module] = []
        for i in range(len(self.bins)):
            if rates is None:
                pre.append(nn.Identity())
                post.append(nn.Identity() if fuse == "sum" else ConvBNReLU(in_ch, level_ch, 1))
            else:
                r = rates[i]
                pre.append(
                    nn.Sequential(
                        nn.Conv2d(in_ch, mid, 3, padding=r, dilation=r, bias=False),
                        nn.Conv2d(mid, level_ch, 1, bias=False),
                        nn.BatchNorm2d(level_ch),
                    )
                )
                post.append(nn.Identity())
        self.pre = nn.ModuleList(pre)
        self.post = nn.ModuleList(post)
        fused_ch = in_ch if fuse == "sum" else in_ch + len(self.bins) * level_ch
        self.project = ConvBNReLU(fused_ch, out_ch, 1)
        self.out_channels = out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        levels = [
            resize_to(post(nn.functional.adaptive_avg_pool2d(pre(x), b)), size)
            for b, pre, post in zip(self.bins, self.pre, self.post, strict=True)
        ]
        if self.fuse == "sum":
            fused = x + torch.stack(levels).sum(0)
        else:
            fused = torch.cat([x, *levels], dim=1)
        return self.project(fused)


class DenseASPP(nn.Module):
    """Densely connected atrous stack (Yang et al., DenseASPP, CVPR 2018): each layer sees the
    input and every earlier layer's output, so receptive fields compose across rates."""

    def __init__(self, in_ch: int, out_ch: int, rates: Sequence[int], *, growth: int | None = None) -> None:
        super().__init__()
        growth = growth or max(out_ch // 4, 8)
        layers = []
        ch = in_ch
        for r in rates:
            layers.append(
                nn.Sequential(
                    ConvBNReLU(ch, 2 * growth, 1),
                    ConvBNReLU(2 * growth, growth, 3, dilation=r),
                )
            )
            ch += growth
        self.layers = nn.ModuleList(layers)
        self.project = ConvBNReLU(ch, out_ch, 1)
        self.out_channels = out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, dim=1)))
        return self.project(torch.cat(feats, dim=1))


class NoContext(nn.Identity):
    """Identity: the ablation's 'no context module' cell (out_channels = in_channels)."""

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.out_channels = in_ch


def _check_channels(in_ch: int, out_ch: int) -> None:
    for knob, v in (("in_ch", in_ch), ("out_ch", out_ch)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise KnobError(knob, repr(v), "a context needs a positive channel count")


def _check_dropout(p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p < 1:
        raise KnobError("dropout", repr(p), "a dropout probability is a number in [0, 1)")
    return float(p)


@contexts.register("aspp", paper=DEEPLAB)
def aspp(
    in_ch: int, *, out_ch: int = 256, rates: Sequence[int] = (6, 12, 18), image_pool: bool = True, dropout: float = 0.5
) -> ASPP:
    """DeepLabV3 ASPP: 1x1 + atrous 3x3 per rate + image pooling, concat, 1x1, dropout (0.5)."""
    _check_channels(in_ch, out_ch)
    return ASPP(in_ch, out_ch, check_rates(rates), image_pool=image_pool, dropout=_check_dropout(dropout))


@contexts.register("aspp_separable", paper="Chen et al., DeepLabV3+, arXiv:1802.02611")
def aspp_separable(
    in_ch: int, *, out_ch: int = 256, rates: Sequence[int] = (6, 12, 18), image_pool: bool = True, dropout: float = 0.5
) -> ASPP:
    """DeepLabV3+ ASPP with depthwise-separable atrous branches (a fraction of the MACs)."""
    _check_channels(in_ch, out_ch)
    return ASPP(
        in_ch,
        out_ch,
        check_rates(rates),
        branch=SeparableConvBNReLU,
        image_pool=image_pool,
        dropout=_check_dropout(dropout),
    )


@contexts.register(
    "aspp_parallel", paper='Guo, Xu and Sun, "Image Semantic Segmentation Model based on AsppUNet", Sec. 3.3'
)
def aspp_parallel(
    in_ch: int, *, out_ch: int = 256, rates: Sequence[int] = (3, 6, 9, 12), image_pool: bool = False
) -> ParallelASPP:
    """AsppUNet pyramid: parallel atrous 3x3 per rate to out_ch each, concat, 1x1 (no pooling)."""
    _check_channels(in_ch, out_ch)
    if image_pool:
        raise KnobError("image_pool", "true", "aspp_parallel has no image-pooling branch (AsppUNet Fig. 4)")
    return ParallelASPP(in_ch, out_ch, check_rates(rates))


@contexts.register(
    "atrous_ppm", paper='"AtICNet: semantic segmentation with atrous spatial pyramid pooling in image cascade network"'
)
def atrous_ppm(
    in_ch: int,
    *,
    out_ch: int = 256,
    rates: Sequence[int] = (2, 4, 8, 12),
    bins: Sequence[int] | None = None,
    fuse: Literal["sum", "concat"] = "sum",
) -> PyramidPooling:
    """AtICNet pyramid: per level padding + atrous 3x3 + 1x1 + BN, then 1/2/3/6-bin avg pooling, fused."""
    _check_channels(in_ch, out_ch)
    rates = check_rates(rates)
    if bins is None:
        # One level per rate, at the first len(rates) of the usual bin counts (4 rates: 1, 2, 3, 6).
        standard = (1, 2, 3, 6, 8, 12, 16, 24)
        if len(rates) > len(standard):
            raise KnobError("rates", str(list(rates)), f"atrous_ppm supports at most {len(standard)} levels")
        bins = standard[: len(rates)]
    return PyramidPooling(in_ch, out_ch, bins=bins, rates=rates, fuse=fuse)


@contexts.register("ppm", paper="Zhao et al., PSPNet arXiv:1612.01105 / ICNet arXiv:1704.08545", uses_rates=False)
def ppm(
    in_ch: int,
    *,
    out_ch: int = 256,
    rates: Sequence[int] = (1,),
    bins: Sequence[int] = (1, 2, 3, 6),
    fuse: Literal["sum", "concat"] = "sum",
) -> PyramidPooling:
    """Pyramid pooling, the non-atrous baseline: 1/2/3/6-bin avg pooling fused into the features."""
    _check_channels(in_ch, out_ch)
    check_rates(rates)  # accepted for a uniform sweep axis; pyramid pooling has no atrous conv
    return PyramidPooling(in_ch, out_ch, bins=bins, fuse=fuse)


@contexts.register("dense_aspp", paper="Yang et al., DenseASPP, CVPR 2018")
def dense_aspp(
    in_ch: int, *, out_ch: int = 256, rates: Sequence[int] = (3, 6, 12, 18, 24), growth: int | None = None
) -> DenseASPP:
    """Densely connected atrous stack: each rate's layer takes all earlier outputs, 1x1 projection
    (growth: channels each layer adds; None: max(out_ch // 4, 8))."""
    _check_channels(in_ch, out_ch)
    if growth is not None and (isinstance(growth, bool) or not isinstance(growth, int) or growth < 1):
        raise KnobError("growth", repr(growth), "the channels each dense layer adds: a positive integer, or null")
    return DenseASPP(in_ch, out_ch, check_rates(rates), growth=growth)


@contexts.register("none", paper="", uses_rates=False)
def none(in_ch: int, *, out_ch: int = 256, rates: Sequence[int] = (1,)) -> NoContext:
    """No context module (identity; out_channels = in_ch): the ablation's lower bound."""
    _check_channels(in_ch, out_ch)
    check_rates(rates)
    return NoContext(in_ch)


# The knobs every context takes from the architecture (model.width, model.rates,
# model.image_pool): not options of a variant.
CONTEXT_SHARED = ("in_ch", "out_ch", "rates", "image_pool")


def context_option_defaults(name: str) -> dict[str, Any]:
    """A context variant's own knobs and their defaults (what `model.context_options` may set)."""
    return {k: (None if d is inspect.Parameter.empty else d) for k, d in contexts.get(name).knobs.items()
            if k not in CONTEXT_SHARED}  # fmt: skip


def context_option_types(name: str) -> dict[str, Any]:
    """The type each of a variant's own knobs is declared with (Any where it declares none)."""
    hints = typing.get_type_hints(contexts.get(name).builder)
    return {k: hints.get(k, Any) for k in context_option_defaults(name)}


def check_context_options(name: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """`model.context_options` checked against the variant `name`: every key one of its own
    knobs, every value of its declared type (as the config validates its own keys). Returns the
    validated values; a KnobError keyed `context_options.<knob>` names what is wrong."""
    types_ = context_option_types(name)
    out: dict[str, Any] = {}
    for key, value in (options or {}).items():
        knob = f"context_options.{key}"
        if key in CONTEXT_SHARED:
            how = {"rates": "set model.rates", "image_pool": "set model.image_pool"}.get(
                key, "the architecture sets it (from model.width where it takes one)"
            )
            raise KnobError(knob, repr(value), f"'{key}' is every context's, not an option; {how}")
        if key not in types_:
            raise KnobError(knob, repr(value), f"context '{name}' has no option '{key}'{did_you_mean(key, types_)}; "
                            f"its options: {', '.join(types_) or 'none'}")  # fmt: skip
        try:
            out[key] = TypeAdapter(types_[key]).validate_python(value)
        except ValidationError as e:
            what, example = describe_type(types_[key])
            raise KnobError(knob, repr(value), f"context '{name}' takes {what} ({e.errors()[0]['msg'].lower()}); "
                            f"write it as --set model.{knob}={example}") from None  # fmt: skip
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
    variant's own knobs (`model.context_options`: DenseASPP's growth, ASPP's dropout, ...),
    checked by `check_context_options`; a value the builder refuses is named by its key too."""
    kwargs: dict[str, Any] = {"in_ch": in_ch, "out_ch": out_ch, "rates": tuple(rates)}
    if image_pool is not None:
        kwargs["image_pool"] = image_pool
    checked = check_context_options(name, options)
    try:
        return contexts.build(name, **kwargs, **checked)
    except KnobError as e:
        if e.knob in checked:
            raise KnobError(f"context_options.{e.knob}", e.value, e.why) from None
        raise
