"""Is the profiler's latency the model's latency? Two checks, with figures for the README.

1. Overhead: the profiler's median vs a bare `torch.utils.benchmark` loop over the same
   model and input under inference_mode (target: within 3%).
2. Repeatability: two profiler runs in a row (target: within 5% on a quiet CPU).

Each line is one model at its CPU preset. Run on an otherwise idle machine:

    python scripts/bench_profiler.py [--input 3x180x240] [--min-run-time 2]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch.utils import benchmark

from bench.models import build_model
from bench.profile import ProfileSpec, device_name, parse_input, profile_model
from bench.registry import architectures

MODELS = ["aspp_unet", "unet", "deeplabv3", "dual_aspp", "fcn_baseline", "icnet"]


def bare_median_ms(model: torch.nn.Module, x: torch.Tensor, min_run_time: float) -> float:
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        # Timer defaults to num_threads=1: give it the same threads as the profiler uses
        timer = benchmark.Timer("model(x)", globals={"model": model, "x": x}, num_threads=torch.get_num_threads())
        m = timer.adaptive_autorange(threshold=0.05, min_run_time=min_run_time)
    return m.median * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", default="3x180x240")
    p.add_argument("--min-run-time", type=float, default=2.0)
    p.add_argument("--models", default=",".join(MODELS))
    args = p.parse_args()
    shape = parse_input(args.input)
    spec = ProfileSpec(input=shape, metrics=("latency",), min_run_time=args.min_run_time)
    print(f"# {device_name('cpu')}, {torch.get_num_threads()} threads, torch {torch.__version__}, input {args.input}")
    print("| model | bare loop median ms | profiler run 1 ms (p90, IQR) | profiler run 2 ms | overhead | run-to-run |")
    print("|---|---:|---:|---:|---:|---:|")
    overheads, repeats = [], []
    for arch in args.models.split(","):
        torch.manual_seed(0)
        model = build_model(arch, **architectures.get(arch).meta["presets"]["cpu"]).eval()
        x = torch.randn(1, *shape)
        bare = bare_median_ms(model, x, args.min_run_time)
        r1 = profile_model(model, spec)
        r2 = profile_model(model, spec)
        a, b = r1["latency_ms_p50"], r2["latency_ms_p50"]
        over = a / bare - 1
        rep = abs(b / a - 1)
        overheads.append(abs(over))
        repeats.append(rep)
        print(
            f"| {arch} | {bare:.2f} | {a:.2f} ({r1['latency_ms_p90']:.2f}, {r1['latency_ms_iqr']:.2f}) | {b:.2f} "
            f"| {100 * over:+.1f}% | {100 * rep:.1f}% |"
        )
    print(
        f"\nmedian |overhead| {100 * statistics.median(overheads):.1f}% (max {100 * max(overheads):.1f}%); "
        f"median run-to-run {100 * statistics.median(repeats):.1f}% (max {100 * max(repeats):.1f}%)"
    )


if __name__ == "__main__":
    main()
