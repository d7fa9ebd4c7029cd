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
    from bench.config import load_run_config
    from bench.models import build_model
    from bench.profile import count_params, parse_input

    shape = parse_input(args.input)
    cfg = load_run_config(None, [f"model.arch={args.arch}", *args.set])
    model = build_model(cfg.model.arch, **cfg.model.knobs())
    record = {"arch": cfg.model.arch, "model": cfg.model.model_dump(), "input": list(shape)}
    record.update(count_params(model))
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(
            f"{cfg.model.arch}: {record['params']:,} params ({record['params_m']:.2f} M), "
            f"{record['params_trainable']:,} trainable"
        )
        for part, n in record["params_by_part"].items():
            print(f"  {part:<12} {n:>14,}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aspp-bench", description="Benchmark and ablate atrous-convolution / ASPP segmentation models."
    )
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("models", help="list every backbone, context and architecture")
    m.add_argument("--json", action="store_true", help="machine-readable listing with knobs and defaults")
    m.set_defaults(func=_cmd_models)

    pr = sub.add_parser("profile", help="parameter count of an architecture (by part)")
    pr.add_argument("arch", help="architecture name (see 'aspp-bench models')")
    pr.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, value parsed as YAML (e.g. model.rates=[6,12,18])",
    )
    pr.add_argument("--input", required=True, help="input shape CxHxW, e.g. 3x520x520")
    pr.add_argument(
        "--metrics",
        default="params",
        choices=["params"],
        help="what to measure (FLOPs and latency are not implemented yet)",
    )
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
