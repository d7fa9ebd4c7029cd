"""Receptive fields of a built network: the theoretical field of the centre output pixel, its
coverage (which pixels inside it reach the output at all: the holes of dilated convolutions),
the field without global pooling, and a per-branch breakdown of ASPP-style modules.

Method: gradient support on the real module graph, so skips, parallel branches, strides,
padding, dilation, resizing and attention count as the network computes them, with no table to
keep. The network is copied into float64 with every convolution and linear weight set to
1/fan_in (positive) and biases to 0, batch norm to the identity (eval, mean 0, variance 1),
dropout off (eval), and max pooling replaced by average pooling of the same window (a max
passes its gradient to one pixel of the window; the window is what the output depends on). On
an input of ones every activation is then positive and about 1, so no ReLU cuts a path, and the
gradient of the centre output with respect to the input is strictly positive exactly where a
path reaches: its support is the field. Global pooling (an adaptive pool to 1x1: ASPP's image
branch, CBAM's channel attention) makes the field the whole image; it is reported as such, and
the field is measured a second time with those poolings' outputs set to zero.

Coverage is the fraction of the field's bounding box that reaches the output (a 3x3 conv at
rate d: 9 / (2d + 1)^2); holes inside the box flag gridding (Wang et al. 2018). A field that
touches the image border is clipped by this input size, and said so.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from bench.models.context import ASPP, DenseASPP, ParallelASPP, PyramidPooling

__all__ = [
    "ERF_IMAGES",
    "EffectiveField",
    "Field",
    "ReceptiveField",
    "effective_field",
    "receptive_field",
    "receptive_record",
    "support",
]

ERF_IMAGES = 16  # validation images a run's effective field is averaged over

MASS = (0.5, 0.9, 0.99)  # the effective field's radii hold these fractions of the gradient mass


@dataclass(frozen=True)
class Field:
    """The support of the centre output pixel in input pixels."""

    height: int  # extent of the support's bounding box, px
    width: int
    coverage: float  # fraction of the bounding box that reaches the output
    clipped: bool  # the support touches the image border: this input size cuts the field

    @property
    def holes(self) -> bool:
        return self.coverage < 1.0


@dataclass(frozen=True)
class ReceptiveField:
    """The theoretical receptive field of one network at one input size."""

    input: tuple[int, int, int]
    centre: tuple[int, int]  # the output pixel analysed (row, column)
    field: Field  # everything the network computes
    global_pooling: bool  # some global pooling makes the field the whole image
    local: Field  # global pooling's outputs set to zero (= field where there is none)
    branches: dict[str, Field] = field(default_factory=dict)  # per branch of an ASPP-style module (local)
    # the context module's own field, in the pixels of the feature map it reads (None: the network has none)
    context: ReceptiveField | None = None
    context_name: str = ""

    def record(self) -> dict[str, Any]:
        """Flat columns for a run's profile and the results table (`rf_` prefix, px)."""
        out: dict[str, Any] = {
            "rf_height": self.field.height,
            "rf_width": self.field.width,
            "rf_global": self.global_pooling,
            "rf_local_height": self.local.height,
            "rf_local_width": self.local.width,
            "rf_coverage": self.local.coverage,
            "rf_holes": self.local.holes,
            "rf_clipped": self.local.clipped,
        }
        if self.context is not None:
            c = self.context.local
            out.update(rf_context_height=c.height, rf_context_width=c.width, rf_context_coverage=c.coverage,
                       rf_context_holes=c.holes, rf_context_input="x".join(map(str, self.context.input)))  # fmt: skip
        return out

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Support(TorchFunctionMode):
    """Max pooling as average pooling of the same window; global pooling zeroed when asked."""

    def __init__(self, drop_global: bool) -> None:
        super().__init__()
        self.drop_global = drop_global
        self.saw_global = False  # some adaptive pooling to 1x1 ran

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in ("max_pool2d", "_max_pool2d", "max_pool2d_with_indices"):
            return _avg_like_max(*args, **kwargs)
        out = func(*args, **kwargs)
        if name in ("adaptive_avg_pool2d", "adaptive_max_pool2d", "_adaptive_max_pool2d"):
            res = out[0] if isinstance(out, tuple) else out
            if res.shape[-2:] == (1, 1):
                self.saw_global = True
                if self.drop_global:
                    return res * 0.0
        return out


def _avg_like_max(x: torch.Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                  ceil_mode: bool = False, return_indices: bool = False) -> torch.Tensor:  # fmt: skip
    """The window a max pool reads, as a mean (a dilated window through a strided convolution)."""
    if dilation not in (1, (1, 1)):
        c = x.shape[1]
        k = nn.modules.utils._pair(kernel_size)
        w = torch.ones(c, 1, *k, dtype=x.dtype) / (k[0] * k[1])
        return F.conv2d(x, w, stride=stride or kernel_size, padding=padding, dilation=dilation, groups=c)
    return F.avg_pool2d(x, kernel_size, stride, padding, ceil_mode=ceil_mode, count_include_pad=False)


def _positive(model: nn.Module) -> nn.Module:
    """A float64 copy whose weights are 1/fan_in, biases 0, batch norm the identity, in eval mode."""
    m = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
                fan_in = mod.weight[0].numel() if not isinstance(mod, nn.ConvTranspose2d) else mod.weight[:, 0].numel()
                mod.weight.fill_(1.0 / max(fan_in, 1))
                if mod.bias is not None:
                    mod.bias.zero_()
            elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.reset_running_stats()
                if mod.affine:
                    mod.weight.fill_(1.0)
                    mod.bias.zero_()
    return m


def _output(out: Any) -> torch.Tensor:
    """The segmentation logits of a model's output (a tensor, or torchvision's dict with 'out')."""
    if isinstance(out, dict):
        return out["out"]
    if isinstance(out, tuple | list):
        return out[0]
    return out


def support(model: nn.Module, input: tuple[int, int, int], *, drop_global: bool = False,
            silence: list[nn.Module] = ()) -> tuple[torch.Tensor, tuple[int, int], bool]:  # fmt: skip
    """(H x W boolean support of the centre output pixel, that pixel, whether global pooling ran)
    of an already positive float64 model. `silence`: modules whose outputs are set to zero."""
    hooks = [m.register_forward_hook(lambda _m, _i, o: o * 0.0) for m in silence]
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        x = torch.ones(1, *input, dtype=torch.float64, device=device, requires_grad=True)
        mode = _Support(drop_global)
        with mode:
            y = _output(model(x))
        cy, cx = (y.shape[-2] - 1) // 2, (y.shape[-1] - 1) // 2
        y[0, :, cy, cx].sum().backward()
    finally:
        for h in hooks:
            h.remove()
    return (x.grad[0].abs().sum(0) > 0).cpu(), (cy, cx), mode.saw_global


def _field(s: torch.Tensor) -> Field:
    rows, cols = torch.nonzero(s.any(1)).flatten(), torch.nonzero(s.any(0)).flatten()
    if len(rows) == 0:
        return Field(0, 0, math.nan, False)
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    box = s[r0 : r1 + 1, c0 : c1 + 1]
    clipped = r0 == 0 or c0 == 0 or r1 == s.shape[0] - 1 or c1 == s.shape[1] - 1
    return Field(r1 - r0 + 1, c1 - c0 + 1, float(box.double().mean()), bool(clipped))


def _branches(model: nn.Module) -> Iterator[tuple[str, nn.Module, list[nn.Module]]]:
    """(name, branch, its sibling branches) of every ASPP-style module: ASPP's convs, the parallel
    pyramid's branches."""
    for name, mod in model.named_modules():
        group = mod.convs if isinstance(mod, ASPP) else mod.branches if isinstance(mod, ParallelASPP) else None
        if group is None:
            continue
        for i, b in enumerate(group):
            yield f"{name}.{i}" if name else str(i), b, [o for o in group if o is not b]


CONTEXTS = (ASPP, ParallelASPP, DenseASPP, PyramidPooling)


def receptive_field(model: nn.Module, input: tuple[int, int, int], *, branches: bool = True) -> ReceptiveField:
    """The theoretical field of the centre output pixel of `model` on a C x H x W input; where the
    network holds a context module (ASPP and kin), that module's own field at the feature map it
    reads, with a field per branch."""
    with torch.no_grad():
        pos = _positive(model)
    name, ctx = ("", None) if isinstance(pos, CONTEXTS) else _first_context(pos)
    seen: dict[str, tuple[int, int, int]] = {}

    def grab(_m: nn.Module, inputs: tuple[torch.Tensor, ...], _out: Any) -> None:
        seen.setdefault("in", tuple(inputs[0].shape[1:]))  # what the context module reads, C x H x W

    hook = ctx.register_forward_hook(grab) if ctx is not None else None
    try:
        full, centre, saw_global = support(pos, input)
    finally:
        if hook is not None:
            hook.remove()
    local = support(pos, input, drop_global=True)[0] if saw_global else full
    per_branch = {}
    if branches and isinstance(pos, ASPP | ParallelASPP):
        for bname, b, others in _branches(pos):
            kind = _describe(b)  # the image-pooling branch alone is the whole image: measured with it kept
            s = support(pos, input, drop_global=kind != "image pooling", silence=others)[0]
            per_branch[f"{bname} ({kind})"] = _field(s)
    context = receptive_field(ctx, seen["in"], branches=branches) if ctx is not None and "in" in seen else None
    f_full, f_local = _field(full), _field(local)
    global_pooling = bool(saw_global and not torch.equal(full, local))
    return ReceptiveField(tuple(input), centre, f_full, global_pooling, f_local, per_branch, context, name)


def _first_context(model: nn.Module) -> tuple[str, nn.Module | None]:
    """('name (Type)', module) of the first context module (ASPP and kin) of a network, or ('', None)."""
    for n, m in model.named_modules():
        if isinstance(m, CONTEXTS):
            return f"{n} ({type(m).__name__})", m
    return "", None


def _describe(branch: nn.Module) -> str:
    """A branch by what it is: '3x3 rate 6', '1x1', 'image pooling'."""
    convs = [m for m in branch.modules() if isinstance(m, nn.Conv2d)]
    pools = [m for m in branch.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    if pools:
        return "image pooling"
    spatial = [c for c in convs if c.kernel_size != (1, 1)]
    if not spatial:
        return "1x1"
    c = spatial[0]
    return f"{c.kernel_size[0]}x{c.kernel_size[1]} rate {c.dilation[0]}"


@dataclass(frozen=True)
class EffectiveField:
    """Luo et al. (2016): the mean absolute input gradient of the centre output pixel over real
    images, summarised by the radii (px, Euclidean, around the centre) that hold 50, 90 and 99%
    of its mass."""

    images: int
    centre: tuple[int, int]
    r50: float
    r90: float
    r99: float
    heat: torch.Tensor  # H x W mean |gradient|, summed over input channels (for the figure)

    def record(self, theoretical: Field | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"erf_images": self.images, "erf_r50": self.r50, "erf_r90": self.r90,
                               "erf_r99": self.r99}  # fmt: skip
        if theoretical is not None and theoretical.height > 0:
            # the 90%-mass disc's diameter over the theoretical (local) field's larger extent
            out["erf_ratio"] = (2 * self.r90 + 1) / max(theoretical.height, theoretical.width)
        return out


def effective_field(model: nn.Module, images: torch.Tensor) -> EffectiveField:
    """The effective field of `model` (its real weights, eval mode: batch norm from its running
    statistics, no dropout) over `images` (N x C x H x W, normalised as the model was trained):
    per image the gradient of the centre output pixel's logits (their sum over classes) with
    respect to the input, its absolute value summed over channels, averaged over the images."""
    if len(images) == 0:
        raise ValueError("effective_field needs at least one image")
    model = model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    heat = None
    centre = (0, 0)
    for img in images:
        x = img.unsqueeze(0).float().to(device).clone().requires_grad_(True)
        y = _output(model(x))
        centre = ((y.shape[-2] - 1) // 2, (y.shape[-1] - 1) // 2)
        y[0, :, centre[0], centre[1]].sum().backward()
        g = x.grad[0].abs().sum(0).double().cpu()
        heat = g if heat is None else heat + g
        model.zero_grad(set_to_none=True)
    heat = heat / len(images)
    scale = (images.shape[-2] / heat.shape[0], images.shape[-1] / heat.shape[1])
    cy, cx = int(centre[0] * scale[0]), int(centre[1] * scale[1])
    rr = torch.arange(heat.shape[0], dtype=torch.float64)[:, None] - cy
    cc = torch.arange(heat.shape[1], dtype=torch.float64)[None, :] - cx
    dist = torch.sqrt(rr**2 + cc**2).flatten()
    order = torch.argsort(dist)
    mass = torch.cumsum(heat.flatten()[order], 0)
    total = float(mass[-1]) or 1.0
    radii = [float(dist[order][int(torch.searchsorted(mass, q * total))]) for q in MASS]
    return EffectiveField(len(images), (cy, cx), *radii, heat.float())


def receptive_record(model: nn.Module, input: tuple[int, int, int], images: torch.Tensor | None) -> dict[str, Any]:
    """What a run records with its profile: the theoretical field at `input` and, over `images`
    (validation images), the trained network's effective field. An analysis that fails is
    recorded as `rf_error` instead: the run it belongs to has finished and is kept."""
    try:
        theory = receptive_field(model, input, branches=False)
        out = theory.record()
        if images is not None and len(images):
            out.update(effective_field(model, images).record(theory.local))
        return out
    except Exception as e:  # noqa: BLE001 - a finished run is never lost to its analysis
        return {"rf_error": f"{type(e).__name__}: {e}"[:300]}
