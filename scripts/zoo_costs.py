"""Params, GMACs (three counters) and CPU latency of every architecture at one input.

Each model at its CPU preset (the `presets` beside its registry entry), batch 1, fp32, the
profiler's protocol (README "How we measure"). Output: a Markdown table for the README.

    python scripts/zoo_costs.py [--input 3x180x240] [--min-run-time 1]
"""

from __future__ import annotations

import argparse

import torch

from bench.models import build_model
from bench.profile import ProfileSpec, device_name, parse_input, profile_model
from bench.registry import architectures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", default="3x180x240")
    p.add_argument("--min-run-time", type=float, default=1.0)
    args = p.parse_args()
    spec = ProfileSpec(input=parse_input(args.input), min_run_time=args.min_run_time)
    print(
        f"# {device_name('cpu')}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"input {args.input}, batch 1, fp32"
    )
    print(
        "| architecture | CPU preset | params (M) | GMACs torch | fvcore | ptflops | aux GMACs (training only) "
        "| latency ms median (p90) | FPS | load |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for e in architectures:
        knobs = e.meta["presets"]["cpu"]
        torch.manual_seed(0)
        r = profile_model(build_model(e.name, **knobs), spec)
        c = r["flop_counters"]
        preset = ", ".join(f"{k}={v}" for k, v in knobs.items() if k != "num_classes")
        print(
            f"| `{e.name}` | {preset or '-'} | {r['params_m']:.2f} | {r['gmacs']:.2f} | {c['fvcore']['gmacs']:.2f} "
            f"| {c['ptflops']['gmacs']:.2f} | {r['gmacs_aux']:.2f} | {r['latency_ms_p50']:.1f} "
            f"({r['latency_ms_p90']:.1f}) | {r['fps_bs1']:.1f} | {r['env']['load_avg']:.2f} |"
        )


if __name__ == "__main__":
    main()
