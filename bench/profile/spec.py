"""What a profile measures and how: the ProfileSpec, its input shape and its checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from bench.errors import UserError
from bench.precision import PRECISIONS

DTYPES = {name: getattr(torch, attr) for name, attr in PRECISIONS.items()}  # --dtype, as train.amp spells it
METRICS = ("params", "flops", "latency")
DISAGREE = 0.05


@dataclass(frozen=True)
class ProfileSpec:
    """How to profile: input (C, H, W), batch for throughput, device, threads, dtype, flags."""

    input: tuple[int, int, int] = (3, 512, 512)
    batch: int = 1
    device: str = "cpu"
    threads: int | None = None
    dtype: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    metrics: tuple[str, ...] = METRICS
    min_run_time: float = 1.0

    @classmethod
    def for_run(cls, cfg: Any, device: str) -> ProfileSpec:
        """The profile a run records (cfg: its RunConfig): profile.* at the training size unless
        profile.input says otherwise, on the device it trained on, half a second per timing."""
        p = cfg.profile
        return cls(
            input=tuple(p.input) if p.input else (3, *cfg.data.size),
            batch=p.batch,
            device=device,
            threads=p.threads,
            metrics=METRICS if p.latency else ("params", "flops"),
            min_run_time=0.5,
        )


def parse_input(text: str) -> tuple[int, int, int]:
    """'3x520x520' -> (3, 520, 520)."""
    parts = text.lower().split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or any(s < 1 for s in shape) or shape[0] > 64 or max(shape[1:]) > 16384:
        raise UserError(
            f"--input {text[:60]!r}: expected CxHxW with positive integers (C at most 64, H and W at most 16384), "
            "e.g. 3x520x520"
        )
    return shape  # type: ignore[return-value]


def check_spec(spec: ProfileSpec) -> None:
    """Reject what the device cannot do before any model is built (exit 2)."""
    if spec.device not in ("cpu", "cuda"):
        raise UserError(f"--device {spec.device!r}: allowed are cpu and cuda")
    if spec.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available on this machine (torch sees no GPU); use --device cpu")
    if spec.dtype not in DTYPES:
        raise UserError(f"--dtype {spec.dtype!r}: allowed are {', '.join(DTYPES)}")
    if spec.dtype == "fp16" and spec.device == "cpu":
        raise UserError("--dtype fp16 is not supported for CPU inference here; use bf16 or fp32 on cpu, fp16 on cuda")
    if spec.dtype == "bf16" and spec.device == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError(f"--dtype bf16: {torch.cuda.get_device_name()} has no bf16 support; use fp16 or fp32")
    bad = [m for m in spec.metrics if m not in METRICS]
    if bad or not spec.metrics:
        raise UserError(f"--metrics {','.join(spec.metrics)!r}: allowed are {', '.join(METRICS)} (comma-separated)")
    if spec.batch < 1:
        raise UserError(f"--batch {spec.batch}: must be a positive integer")
    if spec.threads is not None and spec.threads < 1:
        raise UserError(f"--threads {spec.threads}: must be a positive integer")


def torch_benchmark():  # type: ignore[no-untyped-def]
    """torch.utils.benchmark, imported without the "No CUDA runtime is found" warning its
    cpp_extension import logs on every CPU-only machine (nothing a user can act on)."""
    import logging

    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        from torch.utils import benchmark
    finally:
        log.setLevel(level)
    return benchmark
