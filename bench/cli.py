"""`aspp-bench` command line: argument parsing only; every command calls into the package."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from bench.errors import UserError

__all__ = ["main"]


def _cmd_models(args: argparse.Namespace) -> int:
    from bench.models import registry_listing

    rows = registry_listing()
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for kind in ("backbone", "context", "architecture"):
        sel = [r for r in rows if r["kind"] == kind]
        print(f"{kind}s ({len(sel)}):")
        width = max(len(r["name"]) for r in sel)
        for r in sel:
            print(f"  {r['name']:<{width}}  {r['description']}")
            if r["paper"]:
                print(f"  {'':<{width}}  [{r['paper']}]")
        print()
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    from bench.profile import ProfileSpec, check_spec, parse_input

    spec = ProfileSpec(
        input=parse_input(args.input),
        batch=args.batch,
        device=args.device,
        threads=args.threads,
        dtype=args.dtype,
        channels_last=args.channels_last,
        compile=args.compile,
        metrics=tuple(m.strip() for m in args.metrics.split(",") if m.strip()),
        min_run_time=args.min_run_time,
    )
    check_spec(spec)  # before building anything

    from bench.config import load_run_config
    from bench.models import build_model
    from bench.profile import profile_model

    cfg = load_run_config(None, [f"model.arch={args.arch}", *args.set])
    model = build_model(cfg.model.arch, **cfg.model.knobs())
    record = {"arch": cfg.model.arch, "model": cfg.model.model_dump(), **profile_model(model, spec)}
    if args.json:
        print(json.dumps(record, indent=2, default=str))
    else:
        print(format_profile(record))
    return 0


def format_profile(r: dict) -> str:
    """Human-readable profile: each figure with its unit and how it was taken."""
    env = r["env"]
    lines = [
        f"{r['arch']} at {'x'.join(map(str, r['input']))} on {env['device_name']} ({env['device']}, "
        f"{env['dtype']}, threads={env['threads']}, channels_last={env['channels_last']}, "
        f"compile={env['compile']}, torch {env['torch']})"
    ]
    if "params" in r:
        parts = ", ".join(f"{k} {v / 1e6:.3f}" for k, v in r["params_by_part"].items())
        lines.append(f"  params        {r['params']:,} ({r['params_m']:.3f} M; {parts})")
    if "gmacs" in r:
        parts = ", ".join(f"{k} {v:.3f}" for k, v in r["gmacs_by_part"].items())
        lines.append(f"  GMACs         {r['gmacs']:.3f} (GFLOPs = 2 x MACs = {r['gflops']:.3f}; {parts})")
        for name, c in r["flop_counters"].items():
            skipped = ", ".join(f"{k} x{v}" for k, v in list(c["skipped_ops"].items())[:8]) or "none"
            lines.append(f"    {name:<8} {c['gmacs']:.3f} GMACs [{c['unit']}]; not counted: {skipped}")
        if r["gmacs_context_modules"]:
            ctx = ", ".join(f"{k} {v:.4f}" for k, v in r["gmacs_context_modules"].items())
            lines.append(f"    context branches (GMACs): {ctx}")
        for d in r["counters_disagree"]:
            lines.append(f"    WARNING counters disagree >5%: {d}")
    if "latency_ms_p50" in r:
        lines.append(
            f"  latency bs1   median {r['latency_ms_p50']:.2f} ms, p90 {r['latency_ms_p90']:.2f} ms, "
            f"IQR {r['latency_ms_iqr']:.2f} ms ({r['latency_blocks']} blocks x "
            f"{r['latency_runs_per_block']} runs) -> {r['fps_bs1']:.1f} FPS"
        )
        if "throughput_ips" in r:
            lines.append(f"  throughput    {r['throughput_ips']:.1f} images/s at batch {r['batch']}")
        if r.get("peak_mem_mb") is not None:
            lines.append(f"  peak memory   {r['peak_mem_mb']:.1f} MiB ({r['mem_kind']})")
        if "efficiency" in r:
            lines.append(
                f"  efficiency    {r['achieved_gflops_s']:.1f} GFLOP/s achieved of a measured "
                f"{r['peak_gflops_s']:.1f} GFLOP/s matmul peak ({100 * r['efficiency']:.1f}%)"
            )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aspp-bench", description="Benchmark and ablate atrous-convolution / ASPP segmentation models."
    )
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("models", help="list every backbone, context and architecture")
    m.add_argument("--json", action="store_true", help="machine-readable listing with knobs and defaults")
    m.set_defaults(func=_cmd_models)

    pr = sub.add_parser("profile", help="params, FLOPs (three counters), latency/FPS and memory of an architecture")
    pr.add_argument("arch", help="architecture name (see 'aspp-bench models')")
    pr.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, value parsed as YAML (e.g. model.rates=[6,12,18])",
    )
    pr.add_argument("--input", required=True, help="input shape CxHxW, e.g. 3x520x520")
    pr.add_argument("--batch", type=int, default=1, help="batch for the throughput figure (latency is at batch 1)")
    pr.add_argument("--device", default="cpu", help="cpu or cuda")
    pr.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    pr.add_argument("--dtype", default="fp32", help="fp32, bf16 or fp16")
    pr.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    pr.add_argument("--compile", action="store_true", help="torch.compile the model first")
    pr.add_argument("--metrics", default="params,flops,latency", help="comma-separated subset of params,flops,latency")
    pr.add_argument("--min-run-time", type=float, default=1.0, help="seconds of timed runs (default 1.0)")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=_cmd_profile)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except UserError as e:
        print(f"aspp-bench: error: {e}", file=sys.stderr)
        return e.exit_code


def main_exit() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
