"""torchvision's own segmentation models, as reference baselines with the suite's interface.

They return a logits tensor like every other architecture (the dict with 'aux' only while
training with an aux head). `weights` is a torchvision weights name for the whole model;
nothing is downloaded unless it is given.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from bench.errors import UserError
from bench.models.backbones import resolve_weights
from bench.registry import architectures

__all__ = ["TorchvisionSegmentation"]

PAPERS = {
    "fcn_resnet50": "Long et al., FCN, arXiv:1411.4038 (torchvision)",
    "deeplabv3_resnet50": "Chen et al., DeepLabV3, arXiv:1706.05587 (torchvision)",
    "deeplabv3_mobilenet_v3_large": "Chen et al., DeepLabV3, arXiv:1706.05587 (torchvision)",
    "lraspp_mobilenet_v3_large": "Howard et al., MobileNetV3 / LR-ASPP, arXiv:1905.02244 (torchvision)",
}


# torchvision's published configuration (21 VOC classes); on a CPU the same models at 12 classes.
_PRESETS = {"paper": {"num_classes": 21}, "cpu": {"num_classes": 12}}


class TorchvisionSegmentation(nn.Module):
    """Wraps a torchvision segmentation model: forward returns logits, parts() names its parts."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def parts(self) -> dict[str, nn.Module]:
        names = {"backbone": "backbone", "classifier": "head", "aux_classifier": "aux_head"}
        return {names[n]: m for n, m in self.model.named_children() if m is not None and n in names}

    @property
    def aux_head(self) -> nn.Module | None:
        """torchvision's aux classifier (used only in training, like this suite's own aux heads)."""
        return getattr(self.model, "aux_classifier", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        if not self.training and self.aux_head is not None:
            # torchvision runs the aux classifier in every forward and the caller throws it away;
            # inference (and its latency and FLOPs) is backbone + classifier alone
            feats = self.model.backbone(x)
            out = self.model.classifier(feats["out"])
            return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        out = self.model(x)
        if self.training and "aux" in out:
            return {"out": out["out"], "aux": out["aux"]}
        return out["out"]


def _build(builder: str, *, num_classes: int, aux: bool | None, weights: str | None) -> TorchvisionSegmentation:
    w = resolve_weights(builder, weights, num_classes=num_classes)
    kwargs: dict[str, object] = {"weights": w, "weights_backbone": None, "num_classes": num_classes}
    if aux is not None:
        kwargs["aux_loss"] = aux
    try:
        model = getattr(torchvision.models.segmentation, builder)(**kwargs)
    except ValueError as e:  # torchvision's check that num_classes/aux match the weights
        raise UserError(f"tv_{builder}: {e} (weights {weights} fix num_classes and aux)") from None
    return TorchvisionSegmentation(model)


def _register_with_aux(builder: str) -> None:
    def build(*, num_classes: int = 21, aux: bool = True, weights: str | None = None) -> TorchvisionSegmentation:
        return _build(builder, num_classes=num_classes, aux=aux, weights=weights)

    build.__doc__ = f"torchvision {builder} as published (aux head on by default, as its weights have it)."
    architectures.register(f"tv_{builder}", paper=PAPERS[builder], presets=_PRESETS)(build)


for _b in ("fcn_resnet50", "deeplabv3_resnet50", "deeplabv3_mobilenet_v3_large"):
    _register_with_aux(_b)


@architectures.register("tv_lraspp_mobilenet_v3_large", paper=PAPERS["lraspp_mobilenet_v3_large"], presets=_PRESETS)
def tv_lraspp_mobilenet_v3_large(*, num_classes: int = 21, weights: str | None = None) -> TorchvisionSegmentation:
    """torchvision lraspp_mobilenet_v3_large as published (LR-ASPP head, no aux head)."""
    return _build("lraspp_mobilenet_v3_large", num_classes=num_classes, aux=None, weights=weights)
