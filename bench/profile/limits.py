"""The compute limit `efficiency` is a fraction of: the best of measured kernels that do a model's
arithmetic in its dtype, timed alternately with the model itself.

The former anchor, one 2048^2 matmul timed once per process, was not a limit: models beat it
(aspp_unet at 180x240 reached 1.29 of it), because a convolution through oneDNN can run faster
than that one matmul shape, and because the matmul was timed at another moment (another load,
another clock) than the model. Here:

- the kernels: matmuls at 256, 512 and 1024 (and 2048, 4096 on a GPU), a 1x1 convolution
  (256 -> 256 channels at 56x56) and a 3x3 convolution (128 -> 128 at 56x56), in the profile's
  dtype, device, threads and memory format; the limit of a round is the fastest of them in
  FLOP/s;
- interleaved: each of `rounds` rounds times the model, then every kernel, each by its best
  block; a round's efficiency is the model's best-block FLOP/s over that round's limit, so load
  and clock changes hit both sides of the fraction alike; `efficiency` is the median over rounds.

A model can exceed this limit only where it runs an operation faster than every kernel in the
set (none of the zoo's does: docs/measurement.md#efficiency); the record names the anchor
(`limit_anchor`) and the kernel that set it (`limit_kernel`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from bench.profile.spec import DTYPES, ProfileSpec

__all__ = ["ANCHOR", "compute_limit", "kernels", "measure_efficiency"]

ANCHOR = "best of measured kernels (matmul 256-1024, conv 1x1 256ch and 3x3 128ch at 56x56), interleaved with the model"


def kernels(spec: ProfileSpec) -> dict[str, tuple[Callable[[], Any], float]]:
    """{name: (a call, its FLOPs)} in the profile's dtype, device and memory format."""
    dtype, dev = DTYPES[spec.dtype], spec.device
    out: dict[str, tuple[Callable[[], Any], float]] = {}
    sizes = (256, 512, 1024) + ((2048, 4096) if dev == "cuda" else ())
    for n in sizes:
        a = torch.randn(n, n, device=dev, dtype=dtype)
        b = torch.randn(n, n, device=dev, dtype=dtype)
        out[f"matmul {n}"] = ((lambda a=a, b=b: a @ b), 2.0 * n**3)
    for name, cin, k in (("conv1x1 256ch 56x56", 256, 1), ("conv3x3 128ch 56x56", 128, 3)):
        conv = torch.nn.Conv2d(cin, cin, k, padding=k // 2, bias=False).to(device=dev, dtype=dtype).eval()
        x = torch.randn(1, cin, 56, 56, device=dev, dtype=dtype)
        if spec.channels_last:
            conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        out[name] = ((lambda conv=conv, x=x: conv(x)), 2.0 * cin * cin * k * k * 56 * 56)
    return out


def _best_ms(call: Callable[[], Any], device: str, block_s: float) -> float:
    """The best of at least 3 timed calls (or as many as `block_s` allows), after one untimed."""

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    call()
    sync()
    best, n, start = float("inf"), 0, time.perf_counter()
    while n < 3 or time.perf_counter() - start < block_s:
        t0 = time.perf_counter()
        call()
        sync()
        best = min(best, time.perf_counter() - t0)
        n += 1
    return best * 1e3


def measure_efficiency(model_call: Callable[[], Any], gflops: float, spec: ProfileSpec, *, rounds: int = 3
                       ) -> dict[str, Any]:  # fmt: skip
    """Model and kernels timed alternately; the efficiency and the limit it is a fraction of. Each
    timing takes at least 3 calls and a tenth of the profile's `min_run_time` (at most 0.15 s)."""
    block_s = min(0.15, spec.min_run_time / 10)
    ks = kernels(spec)
    effs, limits, best_names = [], [], []
    with torch.inference_mode():
        for _ in range(rounds):
            model_rate = gflops / (_best_ms(model_call, spec.device, block_s) / 1e3)
            rates = {name: flops / 1e9 / (_best_ms(call, spec.device, block_s) / 1e3)
                     for name, (call, flops) in ks.items()}  # fmt: skip
            name = max(rates, key=rates.__getitem__)
            limits.append(rates[name])
            best_names.append(name)
            effs.append(model_rate / rates[name])
    return {
        "efficiency": statistics.median(effs),
        "limit_gflops_s": statistics.median(limits),
        "limit_kernel": max(set(best_names), key=best_names.count),
        "limit_anchor": ANCHOR,
        "efficiency_rounds": effs,
    }


def compute_limit(spec: ProfileSpec, *, block_s: float = 0.15) -> tuple[float, str]:
    """(GFLOP/s, kernel): the fastest of the kernels alone, for figures that are not one model's
    latency (a training step's FLOP rate in scripts/bench_fastpath.py)."""
    with torch.inference_mode():
        rates = {name: flops / 1e9 / (_best_ms(call, spec.device, block_s) / 1e3)
                 for name, (call, flops) in kernels(spec).items()}  # fmt: skip
    name = max(rates, key=rates.__getitem__)
    return rates[name], name
