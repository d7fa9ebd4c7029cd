"""Whether bf16 pays on this CPU: a probe of the layer this suite is about, once per machine.

A CPU without native bf16 arithmetic (no AVX512-BF16, no AMX; or oneDNN capped below them with
`ONEDNN_MAX_CPU_ISA`) sends a bf16 dilated convolution to ATen's reference kernel
(`slow_conv_dilated2d`) instead of oneDNN: measured 12x slower than fp32 on an AVX2 machine. So
before a run trains or profiles in bf16 on the CPU, the probe asks torch which convolution kernel
a bf16 dilated 3x3 convolution takes, and times its forward and backward pass against fp32 (a few
hundred milliseconds). Its verdict is cached per machine (CPU model and flags, torch and oneDNN,
the oneDNN ISA cap) under the user's cache folder, and recorded in the result's environment.
A slow verdict refuses `train.amp=bf16` and `profile --dtype bf16` with the measured ratio, unless
`ASPP_BENCH_FORCE_BF16=1` is set.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bench.profile.environment import device_features, device_name, kernel_library

__all__ = ["FORCE_ENV", "SLOW_RATIO", "bf16_problem", "probe"]

FORCE_ENV = "ASPP_BENCH_FORCE_BF16"
SLOW_RATIO = 1.5  # bf16 forward+backward this many times fp32's, or more: bf16 does not pay
# a dilated 3x3 convolution as an ASPP branch runs it (rate 6), small enough for a quick probe
_SHAPE, _RATE, _REPS = (2, 32, 48, 64), 6, 7
_CACHE_VERSION = 2  # 2: the fastest of alternating passes (was a median of separate runs)


def _key() -> str:
    parts = [device_name("cpu"), device_features("cpu"), torch.__version__, kernel_library("cpu"),
             os.environ.get("ONEDNN_MAX_CPU_ISA", ""), os.environ.get("DNNL_MAX_CPU_ISA", ""),
             str(torch.get_num_threads()), str(_CACHE_VERSION)]  # fmt: skip
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _cache_file() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "aspp-bench" / "bf16-probe.json"


def _kernel(x: torch.Tensor, w: torch.Tensor) -> str:
    """The convolution backend torch picks for these operands (e.g. Mkldnn, SlowDilated2d)."""
    try:
        backend = torch._C._select_conv_backend(x, w, None, (1, 1), (_RATE, _RATE), (_RATE, _RATE), False, (0, 0), 1)
    except (AttributeError, RuntimeError, TypeError):
        return "unknown"
    return str(backend).rsplit(".", 1)[-1]


def _pass_ms(x: torch.Tensor, w: torch.Tensor) -> float:
    """One forward+backward of the dilated convolution, in milliseconds."""
    xi, wi = x.detach().requires_grad_(), w.detach().requires_grad_()
    t0 = time.perf_counter()
    F.conv2d(xi, wi, padding=_RATE, dilation=_RATE).sum().backward()
    return (time.perf_counter() - t0) * 1e3


def _times_ms(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
    """The fastest of `_REPS` forward+backward passes of each operand pair, the pairs alternating
    within every repetition (one warm-up each), so a burst of other work slows them alike and the
    minimum, which an interruption can only raise, is compared."""
    for x, w in pairs:
        _pass_ms(x, w)
    times: list[list[float]] = [[] for _ in pairs]
    for _ in range(_REPS):
        for t, (x, w) in zip(times, pairs, strict=True):
            t.append(_pass_ms(x, w))
    return [min(t) for t in times]


def measure() -> dict[str, Any]:
    """Probe now: the bf16 kernel and the forward+backward times of bf16 and fp32."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*_SHAPE, generator=g)
    w = torch.randn(_SHAPE[1], _SHAPE[1], 3, 3, generator=g) * 0.05
    xb, wb = x.to(torch.bfloat16), w.to(torch.bfloat16)
    kernel = _kernel(xb, wb)
    fp32, bf16 = _times_ms([(x, w), (xb, wb)])
    ratio = bf16 / fp32
    fast = ratio < SLOW_RATIO and kernel not in ("SlowDilated2d", "Slow2d")
    flags = device_features("cpu")
    native = [f for f in ("amx_bf16", "avx512_bf16") if f in flags.split(",")]
    return {
        "verdict": "fast" if fast else "slow",
        "kernel": kernel,
        "bf16_ms": round(bf16, 3),
        "fp32_ms": round(fp32, 3),
        "ratio": round(ratio, 3),
        "native": ",".join(native) or "none",
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA"),
        "probe": f"dilated 3x3 conv {tuple(_SHAPE)}, rate {_RATE}, forward+backward, fastest of {_REPS}, alternating",
        "threads": torch.get_num_threads(),
    }


def probe() -> dict[str, Any]:
    """The cached verdict for this machine, probing once where there is none."""
    key, path = _key(), _cache_file()
    try:
        cached = json.loads(path.read_text())
        if isinstance(cached, dict) and isinstance(cached.get(key), dict):
            return {**cached[key], "cached": True}
    except (OSError, ValueError):
        cached = {}
    found = measure()
    try:  # a cache that cannot be written costs a probe next time, nothing more
        path.parent.mkdir(parents=True, exist_ok=True)
        entries = cached if isinstance(cached, dict) else {}
        entries[key] = found
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError:
        pass
    return {**found, "cached": False}


def bf16_problem(what: str, fix: str) -> str | None:
    """Why bf16 should not run on this CPU (`what` names the setting, `fix` the way out), or None."""
    found = probe()
    if found["verdict"] == "fast" or os.environ.get(FORCE_ENV) == "1":
        return None
    cap = f" (oneDNN capped at ONEDNN_MAX_CPU_ISA={found['onednn_max_cpu_isa']})" if found["onednn_max_cpu_isa"] else ""
    return (
        f"{what}: bf16 is slower than fp32 on this CPU{cap}: a bf16 dilated convolution ran forward+backward in "
        f"{found['bf16_ms']:.1f} ms against {found['fp32_ms']:.1f} ms in fp32 ({found['ratio']:.1f}x the time; "
        f"kernel {found['kernel']}; CPU bf16 flags: {found['native']}). "
        f"Use {fix}, or set {FORCE_ENV}=1 to run bf16 anyway"
    )
