"""What a run needs before it starts, checked before anything is allocated or submitted: the
memory a cell needs (estimated from its model built on the meta device and its data shape), the
disk space its checkpoints need, and whether the device and number format exist on this machine.

The memory estimate is deliberately rough (within a factor of about two): it is there to refuse
`model.width: 100000` or `data.count: 1000000000` with a figure before the machine runs out of
memory, not to plan a job's allocation.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.errors import UserError
from bench.models import build_model
from bench.models.backbones import weights_check_only
from bench.run.bf16 import bf16_problem

__all__ = [
    "Needs",
    "bf16_problem",
    "check_disk",
    "check_inference_memory",
    "check_memory",
    "device_problem",
    "estimate",
    "machine_memory",
    "step_gflop",
]

GiB = 2**30


@dataclass(frozen=True)
class Needs:
    """Bytes a cell needs: `state` (weights, gradients, optimiser moments), `activations` (one
    training batch's outputs, kept for backward, and their gradients), `data` (decoded splits held
    in memory) and `checkpoint` (one checkpoint file)."""

    params: int
    state: int
    activations: int
    data: int
    checkpoint: int

    @property
    def memory(self) -> int:
        return self.state + self.activations + self.data

    def describe(self) -> str:
        return (
            f"about {self.memory / GiB:.1f} GiB ({self.params / 1e6:.1f} M parameters: weights, gradients and "
            f"optimiser state {self.state / GiB:.2f} GiB; one batch's activations {self.activations / GiB:.2f} GiB; "
            f"decoded data {self.data / GiB:.2f} GiB)"
        )


def machine_memory() -> int:
    """Physical memory of this machine in bytes (the cgroup limit where one is lower)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for f in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(f).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def _meta_model(model_cfg: Any) -> Any:
    """The model of a ModelConfig on the meta device: shapes only, no memory, no weights."""
    with torch.device("meta"), weights_check_only():
        return build_model(model_cfg.arch, **model_cfg.knobs())


def _activation_bytes(model: Any, shape: tuple[int, int, int, int], *, train: bool, what: str) -> int | None:
    """Bytes of every leaf module's output for one batch on the meta device, times two when
    training (kept for backward, and their gradients); None where an op has no meta kernel. A
    shape the model cannot take is the UserError the real run would meet (`what` names the input)."""
    total = 0

    def hook(_m: Any, _i: Any, out: Any) -> None:
        nonlocal total
        for t in out if isinstance(out, tuple | list) else out.values() if isinstance(out, dict) else [out]:
            if isinstance(t, torch.Tensor):
                total += t.numel() * 4

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        model.train(train)
        with torch.no_grad():
            model(torch.empty(shape, device="meta"))
    except NotImplementedError:
        return None
    except (RuntimeError, ValueError, IndexError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:240]
        raise UserError(f"{what}: {first}") from None
    finally:
        for h in handles:
            h.remove()
    return 2 * total if train else total


def estimate(cfg: Any, model: Any = None) -> Needs:
    """The needs of a resolved RunConfig, from its model built on the meta device (`model`, when
    the caller has built it already)."""
    model = model if model is not None else _meta_model(cfg.model)
    params = sum(p.numel() for p in model.parameters())
    moments = {"sgd": 1, "adam": 2, "adamw": 2}.get(cfg.optim.name, 2)
    state = params * 4 * (2 + moments)
    h, w = cfg.data.crop or cfg.data.size
    key = "data.crop" if cfg.data.crop else "data.size"
    what = f"model.arch={cfg.model.arch} cannot run on a {h}x{w} input ({key}={[h, w]}; use a larger {key})"
    act = _activation_bytes(model, (cfg.data.batch_size, 3, h, w), train=True, what=what)
    if act is None:  # an op without a meta kernel: the input's size per layer
        act = cfg.data.batch_size * 3 * h * w * 4 * 2 * max(1, len(list(model.modules())))
    data = 0
    if cfg.data.name == "synthetic":  # rendered into memory: train and validation splits, image + mask
        sh, sw = cfg.data.size
        data = 2 * (cfg.data.count or 512) * sh * sw * 4
    checkpoint = params * 4 * (1 + moments) + (1 << 20)
    return Needs(params, state, act, data, checkpoint)


def check_inference_memory(model_cfg: Any, shape: tuple[int, int, int, int], *, source: str) -> int:
    """Refuse profiling a model at an input whose forward pass cannot fit in this machine's
    memory (weights plus one batch's activations, from the meta device); returns the bytes."""
    model = _meta_model(model_cfg)
    what = f"{source}: model.arch={model_cfg.arch} cannot run on this input"
    need = 4 * sum(p.numel() for p in model.parameters())
    need += _activation_bytes(model, shape, train=False, what=what) or 0
    limit = machine_memory()
    if need > limit:
        raise UserError(
            f"{source}: a forward pass needs about {need / GiB:.1f} GiB (weights and one batch's activations), more "
            f"than this machine's {limit / GiB:.1f} GiB; profile a smaller --input or --batch"
        )
    return need


def check_memory(
    cfg: Any, *, source: str, available: int | None = None, where: str = "this machine", model: Any = None
) -> Needs:
    """Refuse a cell that cannot fit in `available` bytes (default: this machine's memory)."""
    needs = estimate(cfg, model)
    limit = available if available is not None else machine_memory()
    if needs.memory > limit:
        raise UserError(
            f"{source}: this cell needs {needs.describe()}, more than {where}'s {limit / GiB:.1f} GiB; "
            "reduce model.width, data.batch_size, data.size or data.count (or give launch.mem_gb for a bigger node)"
        )
    return needs


def check_disk(folder: Path, needs: Needs) -> None:
    """Refuse to start when the folder's file system cannot hold two checkpoints (the one being
    written beside the previous one: the write is atomic)."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise UserError(
            f"{folder}: cannot be written ({probe} is on a read-only file system or not writable for this user); "
            "use another --out folder"
        )
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return
    want = 2 * needs.checkpoint
    if free < want:
        raise UserError(
            f"{folder}: {free / 2**20:.1f} MiB free on its file system, and a checkpoint of this run takes about "
            f"{needs.checkpoint / 2**20:.1f} MiB (two are on disk while one is written); free space or use another "
            "--out folder"
        )


def step_gflop(cfg: Any) -> float | None:
    """Forward GFLOPs of one training step (one device's batch), counted by torch's flop counter on
    the meta device (no memory, no weights); None where the model cannot run on meta."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        model = _meta_model(cfg.model).train()
        x = torch.empty(cfg.data.batch_size, 3, *cfg.data.size, device="meta")
        with FlopCounterMode(display=False) as counter:
            model(x)
    except (RuntimeError, ValueError, NotImplementedError):
        return None
    return counter.get_total_flops() / 1e9


def device_problem(device: str, amp: str) -> str | None:
    """Why `train.device` / `train.amp` cannot run here (or, for bf16 on a CPU, would run slower
    than fp32: bench.run.bf16), or None."""
    if device == "cuda" and not torch.cuda.is_available():
        return "train.device=cuda: this machine has no CUDA device (torch.cuda.is_available() is False); use cpu"
    resolved = "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"
    if amp == "fp16" and resolved != "cuda":
        return f"train.amp=fp16 needs CUDA (train.device={device} is {resolved}); use train.amp=bf16"
    if amp == "bf16" and resolved == "cpu":
        return bf16_problem("train.amp=bf16", "train.amp=fp32")
    return None
