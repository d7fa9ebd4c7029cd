"""torchvision classifiers as segmentation encoders with named multi-scale features.

Every backbone returns a dict with four maps, `c2`..`c5`, taken at the ends of the
stages whose nominal strides are 4, 8, 16 and 32 (FPN naming: c_i at stride 2**i).
`output_stride` 8 or 16 replaces the last strides by dilation (DeepLab, arXiv:1706.05587),
so c4/c5 keep their names but come out at a finer actual stride: `strides` says which.
Channel counts are read from the built network, never retyped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter

from bench.errors import KnobError, UserError, did_you_mean
from bench.registry import backbones

__all__ = ["Backbone", "FEATURES", "resolve_weights", "weights_check_only"]

FEATURES = ("c2", "c3", "c4", "c5")
OUTPUT_STRIDES = (8, 16, 32)


class Backbone(nn.Module):
    """Feature extractor: forward(x) -> {'c2': ..., 'c5': ...}; `channels` and `strides` per name."""

    def __init__(self, body: nn.Module, channels: dict[str, int], strides: dict[str, int]) -> None:
        super().__init__()
        self.body = body
        self.channels = dict(channels)
        self.strides = dict(strides)
        self.frozen = False

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(self.body(x))

    def freeze(self) -> Backbone:
        """The transfer setting: no gradients, and batch norm keeps its statistics (eval mode)
        even while the network around it trains."""
        self.requires_grad_(False)
        self.frozen = True
        return self.train(self.training)

    def train(self, mode: bool = True) -> Backbone:
        return super().train(mode and not self.frozen)


_CHECK_ONLY: ContextVar[bool] = ContextVar("weights_check_only", default=False)


@contextmanager
def weights_check_only() -> Iterator[None]:
    """Inside it, weights names are validated but not loaded: a sweep checks every cell's model
    on the meta device before submission, offline, without fetching any checkpoint."""
    token = _CHECK_ONLY.set(True)
    try:
        yield
    finally:
        _CHECK_ONLY.reset(token)


def resolve_weights(builder: str, weights: str | None, *, num_classes: int | None = None) -> object | None:
    """A torchvision weights enum from its name ('ResNet50_Weights.IMAGENET1K_V2', 'DEFAULT',
    'IMAGENET1K_V1'); nothing is downloaded here, torchvision fetches when the model is built.
    Under `weights_check_only()` the name is validated (and `num_classes` against the weights'
    categories, where given) and None is returned."""
    w = _resolve_weights(builder, weights)
    if w is None or not _CHECK_ONLY.get():
        return w
    n = len(w.meta.get("categories") or [])  # type: ignore[attr-defined]
    if num_classes is not None and n and num_classes != n:
        raise UserError(
            f"{builder}: weights {weights} have {n} classes, num_classes={num_classes}; set num_classes={n}"
        )
    return None


def _resolve_weights(builder: str, weights: str | None) -> object | None:
    if weights is None or str(weights).lower() == "none":
        return None
    enum = torchvision.models.get_model_weights(builder)
    name = str(weights)
    short = name.split(".", 1)[1] if name.startswith(enum.__name__ + ".") else name
    allowed = ["DEFAULT", *(f"{enum.__name__}.{w.name}" for w in enum)]
    if short == "DEFAULT":
        return enum.DEFAULT
    try:
        return enum[short]
    except KeyError:
        raise UserError(
            f"weights '{name}' are not torchvision weights for '{builder}'"
            f"{did_you_mean(name, allowed)}; allowed: {', '.join(allowed)}, or none"
        ) from None


def _check_output_stride(output_stride: int) -> None:
    if isinstance(output_stride, bool) or output_stride not in OUTPUT_STRIDES:
        why = "must be one of 8, 16, 32 (8 and 16 replace the last strides by dilation)"
        raise KnobError("output_stride", repr(output_stride), why)


def _last_conv_channels(module: nn.Module) -> int:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


def _downsamples(module: nn.Module) -> bool:
    return any(isinstance(m, (nn.Conv2d, nn.MaxPool2d)) and _pair(m.stride)[0] > 1 for m in module.modules())


def _pair(v: int | tuple[int, ...]) -> tuple[int, ...]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _dilate_stage(blocks: list[nn.Module], first: int, rest: int) -> None:
    """Turn a stage's stride-2 into stride 1 and dilate its k>1 convolutions: the first block
    keeps the previous dilation, the others take the new one (torchvision's ResNet rule)."""
    for i, block in enumerate(blocks):
        d = first if i == 0 else rest
        for m in block.modules():
            if isinstance(m, nn.Conv2d):
                if _pair(m.stride)[0] > 1:
                    m.stride = (1, 1)
                k = _pair(m.kernel_size)[0]
                if k > 1:
                    m.dilation = (d, d)
                    m.padding = (d * (k - 1) // 2,) * 2


def _staged(layers: list[tuple[str, nn.Module]], output_stride: int) -> tuple[dict[str, str], dict[str, int]]:
    """Group named layers into stages at each downsampling layer, dilate the stages beyond
    `output_stride`, and return {layer name: feature name} for c2..c5 plus actual strides."""
    stages: list[list[tuple[str, nn.Module]]] = []
    for name, layer in layers:
        if _downsamples(layer) or not stages:
            stages.append([])
        stages[-1].append((name, layer))
    nominal, actual, dilation = 1, 1, 1
    return_layers: dict[str, str] = {}
    strides: dict[str, int] = {}
    for stage in stages:
        if _downsamples(stage[0][1]):
            nominal *= 2
            if actual * 2 > output_stride:
                prev, dilation = dilation, dilation * 2
                _dilate_stage([m for _, m in stage], prev, dilation)
            else:
                actual *= 2
        if nominal >= 4:
            feat = f"c{nominal.bit_length() - 1}"
            if feat in FEATURES:
                return_layers[stage[-1][0]] = feat
                strides[feat] = actual
    if list(return_layers.values()) != list(FEATURES):
        raise RuntimeError(f"could not find stride 4..32 stages, got {return_layers}")
    return return_layers, strides


def _resnet(builder: str, output_stride: int, weights: str | None) -> Backbone:
    _check_output_stride(output_stride)
    net = getattr(torchvision.models, builder)(weights=resolve_weights(builder, weights))
    # A ResNet's stages are layer1..layer4 (strides 4..32); dilation goes block by block.
    return_layers: dict[str, str] = {}
    strides: dict[str, int] = {}
    actual, dilation = 4, 1
    for i, feat in zip(range(1, 5), FEATURES, strict=True):
        layer = getattr(net, f"layer{i}")
        if i > 1:
            if actual * 2 > output_stride:
                prev, dilation = dilation, dilation * 2
                _dilate_stage(list(layer), prev, dilation)
            else:
                actual *= 2
        return_layers[f"layer{i}"] = feat
        strides[feat] = actual
    body = IntermediateLayerGetter(net, return_layers=return_layers)
    channels = {feat: _last_conv_channels(getattr(net, name)) for name, feat in return_layers.items()}
    return Backbone(body, channels, strides)


def _features_backbone(builder: str, output_stride: int, weights: str | None) -> Backbone:
    """MobileNets and VGG: a `features` Sequential, split into stages at its stride-2 layers."""
    _check_output_stride(output_stride)
    net = getattr(torchvision.models, builder)(weights=resolve_weights(builder, weights))
    features: nn.Sequential = net.features
    if builder.startswith("mobilenet"):
        # c5 is the last inverted residual (320/160/96 ch); the final 1x1 expansion conv only
        # feeds the classifier's pooling. This is DeepLabV3+'s MobileNetV2 encoder, and it
        # reproduces the Dual ASPP paper's 2.72M (DeepLabV3+) and 2.16M (Dual ASPP) params.
        features = features[:-1]
    if builder.startswith("vgg"):
        return_layers, strides = _dilate_vgg(features, output_stride)
    else:
        return_layers, strides = _staged(list(features.named_children()), output_stride)
    body = IntermediateLayerGetter(features, return_layers=return_layers)
    names = list(dict(features.named_children()))
    channels: dict[str, int] = {}
    for name, feat in return_layers.items():
        upto = nn.Sequential(*[features[j] for j in range(names.index(name) + 1)])
        channels[feat] = _last_conv_channels(upto)
    return Backbone(body, channels, strides)


def _dilate_vgg(features: nn.Sequential, output_stride: int) -> tuple[dict[str, str], dict[str, int]]:
    """VGG pools at the end of each block: a pool beyond `output_stride` becomes a 3x3 stride-1
    pool (DeepLab-LargeFOV) and the convolutions after it are dilated."""
    nominal, actual, dilation = 1, 1, 1
    return_layers: dict[str, str] = {}
    strides: dict[str, int] = {}
    for name, layer in list(features.named_children()):
        if isinstance(layer, nn.MaxPool2d):
            nominal *= 2
            if actual * 2 > output_stride:
                setattr(features, name, nn.MaxPool2d(3, stride=1, padding=1))
                dilation *= 2
            else:
                layer.ceil_mode = True  # odd sizes keep their border row/column
                actual *= 2
            if nominal >= 4:
                feat = f"c{nominal.bit_length() - 1}"
                return_layers[name] = feat
                strides[feat] = actual
        elif isinstance(layer, nn.Conv2d) and dilation > 1:
            layer.dilation = (dilation, dilation)
            layer.padding = (dilation, dilation)
    return return_layers, strides


def _register(name: str, builder: str, make: Callable[[str, int, str | None], Backbone], paper: str) -> None:
    def build(*, output_stride: int = 32, weights: str | None = None) -> Backbone:
        return make(builder, output_stride, weights)

    build.__doc__ = f"torchvision {builder}, features c2..c5 at strides 4/8/16/32, dilated to output_stride."
    backbones.register(name, paper=paper, tv_builder=builder)(build)


for _n in ("resnet18", "resnet34", "resnet50", "resnet101"):
    _register(_n, _n, _resnet, "He et al., Deep Residual Learning, arXiv:1512.03385")
_register("mobilenet_v2", "mobilenet_v2", _features_backbone, "Sandler et al., MobileNetV2, arXiv:1801.04381")
for _n in ("mobilenet_v3_large", "mobilenet_v3_small"):
    _register(_n, _n, _features_backbone, "Howard et al., Searching for MobileNetV3, arXiv:1905.02244")
_register("vgg16", "vgg16_bn", _features_backbone, "Simonyan & Zisserman, VGG, arXiv:1409.1556 (with BN)")
