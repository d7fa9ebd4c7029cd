"""`models`, `config`, `profile`: what the registries hold, what a config resolves to, what a
network costs."""

from __future__ import annotations

import argparse
import json

from bench.configure.config import load_run_config
from bench.configure.identity import NOT_IDENTITY, resolve, run_id
from bench.configure.listings import field_rows, registry_listing
from bench.data import data_problem, eval_split
from bench.errors import UserError
from bench.models import build_model
from bench.models.context import context_option_defaults
from bench.profile import ProfileSpec, check_spec, parse_input, profile_model
from bench.run.resources import bf16_problem, check_inference_memory
from bench.run.threads import plan_threads


def cmd_models(args: argparse.Namespace) -> int:
    rows = registry_listing(args.pattern)
    if not rows:
        raise UserError(f"no registered name matches '{args.pattern}'; 'aspp-bench models' lists them all")
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for kind in ("backbone", "context", "architecture", "dataset", "loss", "optimizer", "schedule"):
        sel = [r for r in rows if r["kind"] == kind]
        if not sel:
            continue
        print(f"{kind}{'es' if kind == 'loss' else 's'} ({len(sel)}):")
        width = max(len(r["name"]) for r in sel)
        for r in sel:
            print(f"  {r['name']:<{width}}  {r['description']}")
            if r["paper"]:
                print(f"  {'':<{width}}  [{r['paper']}]")
            if kind == "context":  # the variant's own knobs, which a config sets as context options
                own = context_option_defaults(r["name"])
                text = ", ".join(f"{k}={json.dumps(list(v) if isinstance(v, tuple) else v)}" for k, v in own.items())
                print(f"  {'':<{width}}  model.context_options: {text or 'none'}")
        print()
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """The resolved RunConfig as YAML (what run_id hashes), or every key with --fields."""
    import yaml

    if args.fields:
        rows = field_rows()
        if args.json:
            print(json.dumps(rows, indent=2, default=str))
            return 0
        width = max(len(r["key"]) for r in rows)
        for r in rows:
            default = json.dumps(r["default"]) if r["default"] is not None else "null"
            allowed = f"; allowed: {r['allowed']}" if r["allowed"] else ""
            print(f"{r['key']:<{width}}  {r['type']}; default {default}{allowed}; e.g. --set {r['example']}")
        return 0

    cfg = resolve(load_run_config(args.config, args.set))
    data = json.loads(cfg.model_dump_json())
    if args.json:
        print(json.dumps({"run_id": run_id(cfg, resolved=True), "config": data}, indent=2))
        return 0
    print(f"# run_id {run_id(cfg, resolved=True)}: the hash of this resolved config without {', '.join(NOT_IDENTITY)}")
    if cfg.data.fingerprint is None and cfg.data.root is not None:
        problem = data_problem(cfg.data, (cfg.data.split, eval_split(cfg.data.split)))
        print(f"# data not readable here, so this run_id lacks the data's fingerprint (docs/datasets.md): {problem}")
    print(yaml.safe_dump(data, sort_keys=False, default_flow_style=None).rstrip())
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    spec = ProfileSpec(
        input=parse_input(args.input),
        batch=args.batch,
        device=args.device,
        threads=args.threads if args.threads is not None else plan_threads(None).threads,
        dtype=args.dtype,
        channels_last=args.channels_last,
        compile=args.compile,
        metrics=tuple(m.strip() for m in args.metrics.split(",") if m.strip()),
        min_run_time=args.min_run_time,
    )
    check_spec(spec)  # before building anything

    problem = bf16_problem("--dtype bf16", "--dtype fp32") if spec.device == "cpu" and spec.dtype == "bf16" else None
    if problem:
        raise UserError(problem)

    cfg = load_run_config(None, [f"model.arch={args.arch}", *args.set])

    check_inference_memory(cfg.model, (spec.batch, *spec.input), source=f"--input {args.input} --batch {spec.batch}")
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
        if r.get("gmacs_aux"):
            lines.append(
                f"  aux GMACs     {r['gmacs_aux']:.3f} (the aux head, training only; inference + aux = "
                f"{r['gmacs_with_aux']:.3f})"
            )
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
                f"  efficiency    {100 * r['efficiency']:.1f}% of the {r['limit_gflops_s']:.1f} GFLOP/s the fastest "
                f"measured kernel reached ({r['limit_kernel']}; timed alternately with the model, best blocks); "
                f"{r['achieved_gflops_s']:.1f} GFLOP/s at the median latency"
            )
    return "\n".join(lines)
