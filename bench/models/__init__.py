"""The model zoo: importing this package registers every backbone, context and architecture."""

from __future__ import annotations

from typing import Any

from torch import nn

from bench.errors import KnobError, UserError
from bench.models import backbones as _backbones  # noqa: F401  (registers)
from bench.models import context as _context  # noqa: F401
from bench.models import deeplab as _deeplab  # noqa: F401
from bench.models import dual_aspp as _dual_aspp  # noqa: F401
from bench.models import icnet as _icnet  # noqa: F401
from bench.models import pa3 as _pa3  # noqa: F401
from bench.models import torchvision_ref as _torchvision_ref  # noqa: F401
from bench.models import unet as _unet  # noqa: F401
from bench.registry import architectures

__all__ = ["build_model", "model_parts"]


def build_model(arch: str, /, **knobs: Any) -> nn.Module:
    """Build a registered architecture; knobs left as None take the architecture's default.

    Errors name the config key (`model.rates=[]: ...`), so that a message printed for a
    sweep cell or a --set flag points at what to change.
    """
    knobs = {k: v for k, v in knobs.items() if v is not None}
    entry = architectures.get(arch)
    supported = entry.meta.get("backbones")
    if supported is not None and "backbone" in knobs and knobs["backbone"] not in supported:
        raise UserError(
            f"model.backbone={knobs['backbone']!r}: architecture '{arch}' supports the backbones {', '.join(supported)}"
        )
    try:
        return architectures.build(arch, **knobs)
    except KnobError as e:  # a knob of this architecture: named by its config key
        if e.knob in entry.knobs:
            raise e.keyed("model") from None
        raise


def model_parts(model: nn.Module) -> dict[str, nn.Module]:
    """The named parts of a model (backbone, context, decoder/head, ...) for cost breakdowns."""
    parts = getattr(model, "parts", None)
    if callable(parts):
        return dict(parts())
    return {n: m for n, m in model.named_children() if m is not None}
