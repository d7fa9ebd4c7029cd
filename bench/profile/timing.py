"""Latency (torch.utils.benchmark's adaptive autorange, at least 5 timed runs) and peak memory."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.profile.spec import torch_benchmark

# --------------------------------------------------------------------------- latency, memory


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


MIN_TIMED_RUNS = 5  # a median of fewer is not a median


def measure_latency(
    model: nn.Module,
    x: torch.Tensor,
    *,
    device: str,
    threads: int | None = None,
    min_run_time: float = 1.0,
    max_run_time: float | None = None,
) -> dict[str, Any]:
    """Warm-up, then torch.utils.benchmark adaptive_autorange under inference_mode, topped up to
    at least MIN_TIMED_RUNS timed runs when its time cap stopped it earlier (a model whose forward
    takes seconds). Says whether the spread met the 5% IQR/median threshold and how many runs the
    cap left to the top-up."""
    benchmark = torch_benchmark()

    model.eval()
    cap = max_run_time if max_run_time is not None else max(10.0, min_run_time)
    with torch.inference_mode():
        start = time.perf_counter()
        for i in range(50):  # at least 3 runs and 0.2 s of warm-up (compilation happens here)
            model(x)
            if i >= 2 and time.perf_counter() - start > 0.2:
                break
        _sync(device)
        timer = benchmark.Timer(
            stmt="model(x)", globals={"model": model, "x": x}, num_threads=threads or torch.get_num_threads()
        )
        m = timer.adaptive_autorange(threshold=0.05, min_run_time=min(min_run_time, cap), max_run_time=cap)
        times = list(m.times)
        topped_up = 0
        while len(times) < MIN_TIMED_RUNS:
            times.append(timer.timeit(1).times[0])
            topped_up += 1
    times_ms = torch.tensor(times, dtype=torch.float64) * 1e3
    q = torch.quantile(times_ms, torch.tensor([0.25, 0.5, 0.75, 0.9], dtype=torch.float64)).tolist()
    return {
        "latency_ms_p50": q[1],
        "latency_ms_p90": q[3],
        "latency_ms_iqr": q[2] - q[0],
        "latency_blocks": len(times),
        "latency_runs_per_block": m.number_per_run,
        "latency_topped_up": topped_up,  # runs added because the time cap stopped autorange first
        "latency_converged": bool((q[2] - q[0]) / q[1] < 0.05) if q[1] > 0 else False,
    }


def _rss_peak_kb() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_rss_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)
        return True
    except OSError:
        return False


def measure_memory(model: nn.Module, x: torch.Tensor, *, device: str) -> dict[str, Any]:
    """Peak memory of one forward: CUDA max allocated, or growth of the process's peak RSS."""
    with torch.inference_mode():
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            model(x)
            torch.cuda.synchronize()
            return {"peak_mem_mb": (torch.cuda.max_memory_allocated() - base) / 2**20, "mem_kind": "cuda_max_allocated"}
        if not _reset_rss_peak():
            return {"peak_mem_mb": None, "mem_kind": "unavailable"}
        before = _rss_peak_kb() or 0
        model(x)
        after = _rss_peak_kb() or 0
        return {"peak_mem_mb": (after - before) / 1024, "mem_kind": "cpu_rss_peak_growth"}
