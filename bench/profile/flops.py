"""Parameters and FLOPs: three counters (torch.utils.flop_counter, fvcore, ptflops) in
multiply-accumulates, by part and by context module, the aux head apart."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from bench.models import model_parts
from bench.profile.spec import DISAGREE

# --------------------------------------------------------------------------- params


def count_params(model: nn.Module) -> dict[str, Any]:
    """Total and trainable parameters, and the split by part (backbone, context, head, ...),
    so that a context module's own cost is visible next to the backbone's."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    by_part = {name: sum(p.numel() for p in part.parameters()) for name, part in model_parts(model).items()}
    return {"params": total, "params_m": total / 1e6, "params_trainable": trainable, "params_by_part": by_part}


# --------------------------------------------------------------------------- FLOPs


class _OpRecorder(TorchDispatchMode):
    """Records every aten op that runs, to list what a counter did not count. TorchDispatchMode is
    the extension point PyTorch documents for this ("Extending PyTorch", section on modes; its
    FlopCounterMode is one), though its module's name is underscored."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.ops[str(func.overloadpacket).replace("aten.", "aten::")] += 1
        return func(*args, **(kwargs or {}))


_NOT_COMPUTE = {"aten::empty", "aten::view", "aten::detach", "aten::t", "aten::_unsafe_view", "aten::expand"}
# Composite ops that reach the counter through the op it decomposes to.
_ALIASES = {
    "aten::conv1d": "aten::convolution",
    "aten::conv2d": "aten::convolution",
    "aten::conv3d": "aten::convolution",
    "aten::conv_transpose2d": "aten::convolution",
    "aten::_convolution": "aten::convolution",
    "aten::linear": "aten::addmm",
    "aten::matmul": "aten::mm",
}


def _module_fqns(model: nn.Module) -> dict[int, str]:
    root = type(model).__name__
    return {id(m): (f"{root}.{n}" if n else root) for n, m in model.named_modules()}


def _children(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """Named children, with ModuleList/ModuleDict containers opened (they are never called)."""
    out: list[tuple[str, nn.Module]] = []
    for name, child in module.named_children():
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
            out += [(f"{name}.{n}", c) for n, c in child.named_children()]
        else:
            out.append((name, child))
    return out


def _inclusive(module: nn.Module, fqn: dict[int, str], per_module: dict[str, int]) -> int:
    """MACs of a module: its own (inclusive) count if it was called, else its children's."""
    key = fqn.get(id(module))
    if key is not None and key in per_module:
        return per_module[key]
    return sum(_inclusive(c, fqn, per_module) for c in module.children())


def _by_part(model: nn.Module, per_module: dict[str, int]) -> dict[str, float]:
    fqn = _module_fqns(model)
    return {name: _inclusive(part, fqn, per_module) / 1e9 for name, part in model_parts(model).items()}


def _context_modules(model: nn.Module, per_module: dict[str, int]) -> dict[str, float]:
    """MACs of each branch of the context module (which ASPP branch costs what)."""
    ctx = getattr(model, "context", None)
    if not isinstance(ctx, nn.Module):
        return {}
    fqn = _module_fqns(model)
    return {f"context.{n}": _inclusive(m, fqn, per_module) / 1e9 for n, m in _children(ctx)}


def _torch_counter(model: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    from torch.utils.flop_counter import FlopCounterMode

    fc = FlopCounterMode(display=False)
    rec = _OpRecorder()
    with torch.inference_mode(), fc, rec:
        model(x)
    counted = {str(k).replace("aten.", "aten::") for k in fc.flop_registry}
    per_module = {k: sum(v.values()) // 2 for k, v in fc.get_flop_counts().items()}
    skipped = {
        op: n
        for op, n in sorted(rec.ops.items())
        if op not in counted and _ALIASES.get(op) not in counted and op not in _NOT_COMPUTE
    }
    return {
        "gmacs": fc.get_total_flops() / 2e9,
        "unit": "torch.utils.flop_counter FLOPs / 2 (conv, matmul; 2 FLOPs per MAC)",
        "skipped_ops": skipped,
        "by_part_gmacs": _by_part(model, per_module),
        "context_gmacs": _context_modules(model, per_module),
    }


def _fvcore_counter(model: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    import logging

    with warnings.catch_warnings():  # fvcore's own imports call torch.jit.script: a FutureWarning users cannot act on
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    fa = FlopCountAnalysis(model, (x,))
    fa.unsupported_ops_warnings(False)
    fa.uncalled_modules_warnings(False)
    with torch.inference_mode(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # torch.jit deprecation notices from fvcore's tracer
        total = fa.total()
        skipped = dict(sorted(fa.unsupported_ops().items()))
    ignored = sorted(getattr(fa, "_ignored_ops", set()))
    return {
        "gmacs": total / 1e9,
        "unit": "fvcore 'flops' (one per multiply-accumulate; also counts upsample, pooling, norm)",
        "skipped_ops": skipped,
        "zero_by_design_ops": ignored,
    }


def _ptflops_counter(model: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    from ptflops import get_model_complexity_info
    from ptflops.pytorch_ops import MODULES_MAPPING

    with torch.inference_mode(), contextlib.redirect_stdout(io.StringIO()):
        macs, _ = get_model_complexity_info(
            model,
            tuple(x.shape[1:]),
            input_constructor=lambda _shape: x,
            as_strings=False,
            print_per_layer_stat=False,
            verbose=False,
            backend="pytorch",
        )
    leaf_types = Counter(
        type(m).__name__
        for m in model.modules()
        if not list(m.children()) and type(m) not in MODULES_MAPPING and not isinstance(m, nn.Identity)
    )
    return {
        "gmacs": (macs or 0) / 1e9,
        "unit": "ptflops MACs (module hooks + patched functionals; counts BN, activations, pooling)",
        "skipped_ops": {f"module {k}": v for k, v in sorted(leaf_types.items())},
    }


COUNTERS = {"torch": _torch_counter, "fvcore": _fvcore_counter, "ptflops": _ptflops_counter}


def aux_head(model: nn.Module) -> nn.Module | None:
    """The auxiliary (deep-supervision) head of a segmentation model, if it has one (`aux_head`:
    this suite's models and the torchvision wrappers run it only while training)."""
    head = getattr(model, "aux_head", None)
    return head if isinstance(head, nn.Module) else None


def _torch_total(model: nn.Module, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    fc = FlopCounterMode(display=False)
    with torch.no_grad(), fc:
        model(x)
    return fc.get_total_flops()


def aux_gmacs(model: nn.Module, x: torch.Tensor) -> float:
    """MACs of the aux head alone (training only): a training-mode forward of a copy of the model
    minus its inference forward, with torch's counter, at batch 2 (BatchNorm after a global pooling
    needs two samples in training mode) and halved. 0.0 for a model without one."""
    import copy

    if aux_head(model) is None:
        return 0.0
    x2 = torch.cat([x[:1], x[:1]])
    inference = _torch_total(model.eval(), x2)
    train_copy = copy.deepcopy(model).train()  # BatchNorm statistics of the real model untouched
    training = _torch_total(train_copy, x2)
    return (training - inference) / 4e9  # 2 FLOPs per MAC, 2 images


def count_flops(model: nn.Module, x: torch.Tensor, counters: Sequence[str] = tuple(COUNTERS)) -> dict[str, Any]:
    """MACs from each counter for inference; the headline is torch's. The aux head's MACs, which run
    only in training, are a column of their own (`gmacs_aux`; headline + aux is what torchvision
    publishes). Flags counters >5% from the headline."""
    model.eval()
    results = {name: COUNTERS[name](model, x) for name in counters}
    aux = aux_gmacs(model, x)
    head = results["torch"]["gmacs"] if "torch" in results else next(iter(results.values()))["gmacs"]
    disagree = [
        f"{n}: {r['gmacs']:.4g} GMACs is {100 * (r['gmacs'] / head - 1):+.1f}% from torch's {head:.4g}"
        for n, r in results.items()
        if head and abs(r["gmacs"] / head - 1) > DISAGREE
    ]
    torch_res = results.get("torch", {})
    return {
        "gmacs": head,
        "gflops": 2 * head,
        "gmacs_aux": aux,
        "gmacs_with_aux": head + aux,
        "gmacs_by_part": torch_res.get("by_part_gmacs", {}),
        "gmacs_context_modules": torch_res.get("context_gmacs", {}),
        "flop_counters": {
            n: {k: v for k, v in r.items() if k not in ("by_part_gmacs", "context_gmacs")} for n, r in results.items()
        },
        "counters_disagree": disagree,
    }
