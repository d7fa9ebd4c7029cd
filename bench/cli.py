"""`aspp-bench` command line: argument parsing only; every command calls into the package."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.errors import UserError
from bench.labels import cell_label

__all__ = ["main"]


def _cmd_models(args: argparse.Namespace) -> int:
    from bench.models import registry_listing

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
        print()
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    """The resolved RunConfig as YAML (what run_id hashes), or every key with --fields."""
    import yaml

    from bench.config import field_rows, load_run_config

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
    from bench.identity import NOT_IDENTITY, resolve, run_id

    cfg = resolve(load_run_config(args.config, args.set))
    data = json.loads(cfg.model_dump_json())
    if args.json:
        print(json.dumps({"run_id": run_id(cfg, resolved=True), "config": data}, indent=2))
        return 0
    print(f"# run_id {run_id(cfg, resolved=True)}: the hash of this resolved config without {', '.join(NOT_IDENTITY)}")
    print(yaml.safe_dump(data, sort_keys=False, default_flow_style=None).rstrip())
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
                f"  efficiency    {r['achieved_gflops_s']:.1f} GFLOP/s achieved of a measured "
                f"{r['peak_gflops_s']:.1f} GFLOP/s matmul peak ({100 * r['efficiency']:.1f}%)"
            )
    return "\n".join(lines)


def _cmd_train(args: argparse.Namespace) -> int:
    from bench.config import load_run_config
    from bench.identity import resolve
    from bench.runner import check_folder, execute
    from bench.store import RESULT

    cfg = resolve(load_run_config(args.config, args.set))
    out = Path(args.out)
    rid = check_folder(cfg, out)  # a folder holding another experiment: exit 2, nothing changed
    if (out / RESULT).is_file():
        print(f"{out / RESULT} exists: run {rid} is finished (remove the folder to run it again)")
        return 0

    result = execute(cfg, out)
    m = result["metrics"] or {}
    print(
        json.dumps(
            {"status": result["status"], "out": str(out), "miou": m.get("miou"), "pixel_acc": m.get("pixel_acc")}
        )
    )
    return 0 if result["status"] == "done" else 1


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from bench.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(args.checkpoint, args.set, resolution=args.resolution)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    m = result["metrics"]
    print(
        f"{result['arch']} on {result['data']['name']}, split '{result['split']}' ({result['images']} images), "
        f"scored at {result['scored_at']}: mIoU {100 * m['miou']:.2f}, "
        f"pixel acc {100 * m['pixel_acc']:.2f}, mean class acc {100 * m['mean_class_acc']:.2f}"
    )
    for name, v in m["iou"].items():
        print(f"  {name:<14} IoU {100 * v:6.2f}")
    return 0


def _sweep_setup(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from bench.sweep import expand_sweep, load_sweep

    sweep = load_sweep(args.sweep)
    expansion = expand_sweep(sweep, source=str(args.sweep))
    for note in expansion.notes():
        print(f"{args.sweep}: note: {note}", file=sys.stderr)
    results = Path(args.results) if args.results else Path("results") / sweep.name
    if results.exists() and not results.is_dir():
        raise UserError(f"--results {results}: exists and is not a folder; give a results folder")
    return sweep, expansion.cells, results


def _cmd_sweep(args: argparse.Namespace) -> int:
    from bench.launch import RETRYABLE, cell_problems, cell_states, check_cells, data_problem_lines, submit

    sweep, cells, results = _sweep_setup(args)
    executor = args.executor or sweep.launch.executor
    if args.dry_run:
        model_errors, data_errors = cell_problems(cells, source=str(args.sweep))
        if model_errors:
            listing = "\n  ".join(model_errors)
            raise UserError(f"{len(model_errors)} cell(s) would fail; nothing was written:\n  {listing}")
        states = {s.cell.run_id: s for s in cell_states(cells, results)}
        todo = [
            c
            for c in cells
            if states[c.run_id].state == "missing" or (args.retry_failed and states[c.run_id].state in RETRYABLE)
        ]
        print(f"{sweep.name}: {len(cells)} cells -> {results}/<run_id>/")
        for c in cells:
            print(f"  {c.run_id}  {states[c.run_id].state:<8}  {cell_label(c.varying)}")
        array = " as one Slurm job array" if executor == "slurm" and todo else ""
        print(f"would submit {len(todo)} cell(s) with the {executor} executor{array}; nothing was written")
        print(f"models: all {len(cells)} built on the meta device")
        launch = sweep.launch
        if launch.world_size > 1:
            print(
                f"each cell: one DistributedDataParallel job of {launch.world_size} tasks ({launch.nodes} node(s) x "
                f"{launch.tasks} task(s), one per device); data.batch_size is the global batch"
            )
        if executor == "slurm" or launch.setup or launch.sbatch:
            from bench.launch import sbatch_preview

            print(
                "the sbatch script of each Slurm job array (made by submitit, not submitted; every #SBATCH "
                "option and setup line runs on the cluster):"
            )
            print("\n".join(f"  | {ln}" for ln in sbatch_preview(launch, results, sweep.name).splitlines()))
        if data_errors:
            n = sum(map(len, data_errors.values()))
            print(f"data: {n} cell(s) lack their data; a real submission stops there with exit 2:")
            for line in data_problem_lines(data_errors):
                print(f"  {line}")
        return 0
    check_cells(cells, source=str(args.sweep))
    submitted, skipped = submit(sweep, cells, results, executor=executor, retry_failed=args.retry_failed)
    counts: dict[str, int] = {}
    for s in skipped:
        counts[s.state] = counts.get(s.state, 0) + 1
    skipped_txt = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none"
    print(
        f"{sweep.name}: submitted {len(submitted)} of {len(cells)} cells ({executor}); skipped: {skipped_txt}; "
        f"results in {results}"
    )
    retryable = sum(counts.get(k, 0) for k in RETRYABLE)
    if retryable:
        print(
            f"  {retryable} failed, diverged or corrupt cell(s) were not resubmitted: 'aspp-bench status "
            f"{args.sweep}' says why; add --retry-failed to run them again (a failed run resumes from its checkpoint)"
        )
    if counts.get("unknown"):
        print(
            f"  {counts['unknown']} cell(s) have an unknown state (the scheduler could not be asked): not "
            "resubmitted, their jobs may still be queued or running; ask again with 'aspp-bench status'"
        )
    if args.wait or executor == "inline":
        return _wait(cells, results, poll=0 if executor == "inline" else 5)
    return 0


def _wait(cells, results: Path, poll: float) -> int:  # type: ignore[no-untyped-def]
    import time

    from tqdm import tqdm

    from bench.launch import FINISHED, cell_states

    bar = tqdm(total=len(cells), unit="cell", disable=not sys.stderr.isatty())
    while True:
        states = cell_states(cells, results)
        finished = sum(s.state in FINISHED for s in states)
        bar.n = finished
        bar.refresh()
        if finished == len(cells) or poll == 0:
            break
        time.sleep(poll)
    bar.close()
    bad = [s for s in states if s.state != "done"]
    for s in bad:
        print(f"  {s.cell.run_id}  {s.state}: {s.detail}  ({cell_label(s.cell.varying)})")
    return 1 if bad else 0


def _cmd_status(args: argparse.Namespace) -> int:
    from bench.launch import cell_states

    sweep, cells, results = _sweep_setup(args)
    if args.results and not results.is_dir():
        raise UserError(
            f"--results {results}: no such folder; give the folder the sweep wrote to (default results/<name>)"
        )
    states = cell_states(cells, results)
    counts: dict[str, int] = {}
    for s in states:
        counts[s.state] = counts.get(s.state, 0) + 1
    if args.json:
        print(
            json.dumps(
                {
                    "sweep": sweep.name,
                    "results": str(results),
                    "counts": counts,
                    "cells": [
                        {"run_id": s.cell.run_id, "state": s.state, "detail": s.detail, "varying": s.cell.varying}
                        for s in states
                    ],
                },
                indent=2,
            )
        )
        return 0
    print(f"{sweep.name}: {len(cells)} cells in {results}")
    for s in states:
        print(
            f"  {s.cell.run_id}  {s.state:<8}  {cell_label(s.cell.varying)}" + (f"  [{s.detail}]" if s.detail else "")
        )
    print("  " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return 0


def _cmd_collect(args: argparse.Namespace) -> int:
    from bench.store import collect

    res = Path(args.results)
    if not res.is_dir():
        raise UserError(f"{res}: results folder not found")
    df, skipped = collect(res)
    for path, why in skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    out = Path(args.out) if args.out else res / "table.parquet"
    if out.suffix not in (".parquet", ".csv"):
        raise UserError(f"--out {out}: use a .parquet or .csv file name")
    if df.empty:
        raise UserError(f"{res}: no finished runs to collect ({len(skipped)} folder(s) skipped, listed above)")
    from bench.store import atomic_path

    with atomic_path(out) as tmp:
        df.to_parquet(tmp, index=False) if out.suffix == ".parquet" else df.to_csv(tmp, index=False)
    if out.suffix == ".parquet":
        with atomic_path(out.with_suffix(".csv")) as tmp:
            df.to_csv(tmp, index=False)
    print(
        f"{len(df)} runs -> {out}"
        + (f" (and {out.with_suffix('.csv')})" if out.suffix == ".parquet" else "")
        + f"; {len(skipped)} folder(s) skipped"
    )
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from bench.report import build_report

    formats = tuple(f.strip() for f in args.format.split(",") if f.strip()) if args.format else None
    notes = None
    if args.notes:
        try:
            notes = Path(args.notes).read_text()
        except OSError as e:
            raise UserError(f"--notes {args.notes}: cannot read it ({e.strerror}); give a Markdown file") from None
    r = build_report(args.results, args.out, formats=formats, baseline=args.baseline, notes=notes, sweep=args.sweep)
    for path, why in r["skipped"]:
        print(f"skipped {path}: {why}", file=sys.stderr)
    for line in r["overfull"]:
        print(f"warning: report.pdf: {line} (a table or figure is wider than the page)", file=sys.stderr)
    print(f"report: {r['rows']} rows, {len(r['written'])} files in {args.out}")
    return 0


def _cmd_regress(args: argparse.Namespace) -> int:
    from bench.regress import load_table, regress

    passed, table, records = regress(
        load_table(args.baseline),
        load_table(args.current),
        miou_tol=args.miou_tol,
        speed_tol=args.speed_tol,
        alpha=args.alpha,
        speed_normalised=args.speed_normalised,
        ignore=tuple(args.ignore),
    )
    counts = {v: sum(r["verdict"] == v for r in records) for v in ("ok", "INCONCLUSIVE", "FAIL")}
    summary = (
        f"{'PASS' if passed else 'FAIL'}: {counts['ok']} ok, {counts['INCONCLUSIVE']} inconclusive, "
        f"{counts['FAIL']} failed of {len(records)} configurations. A configuration fails when its mean mIoU "
        f"drops by more than {args.miou_tol} points and the drop is significant (one-sided Welch, or paired "
        f"where both sides ran the same seeds; Holm-corrected over {len(records)} configurations; alpha "
        f"{args.alpha}); with one seed on a side, on the threshold alone. Speed: "
        + ("fractions of the measured matmul peak" if args.speed_normalised else "latency between equal environments")
        + f", tolerance x{1 + args.speed_tol:.2f}."
    )
    if args.json:
        print(json.dumps({"passed": passed, "summary": summary, "configurations": records}, indent=2, default=str))
    else:
        print(table)
        print("\n" + summary)
    return 0 if passed else 1


def _cmd_plan(args: argparse.Namespace) -> int:
    from bench.plan import plan
    from bench.regress import load_table

    table, records = plan(
        load_table(args.results), difference=args.difference, alpha=args.alpha, power=args.power, baseline=args.baseline
    )
    if args.json:
        print(json.dumps(records, indent=2, default=str))
    else:
        print(table)
    return 0


def _add_set(parser: argparse.ArgumentParser, help_text: str) -> None:
    """The one --set option: repeatable, and each takes one or more KEY=VALUE."""
    parser.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help=help_text)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aspp-bench")
    except PackageNotFoundError:  # run from a checkout without installing
        from bench import __version__

        return __version__


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aspp-bench", description="Benchmark and ablate atrous-convolution / ASPP segmentation models."
    )
    p.add_argument("--version", action="version", version=f"aspp-bench {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    cf = sub.add_parser(
        "config", help="print the fully resolved run config as YAML (what run_id hashes); --fields lists every key"
    )
    cf.add_argument("config", nargs="?", help="YAML file with the differences from the defaults")
    _add_set(cf, "config overrides (YAML values), e.g. --set model.arch=aspp_unet 'model.rates=[6,12,18]'")
    cf.add_argument("--fields", action="store_true", help="every key with its type, default and allowed values")
    cf.add_argument("--json", action="store_true")
    cf.set_defaults(func=_cmd_config)

    m = sub.add_parser(
        "models", help="every registered backbone, context, architecture, dataset, loss, optimiser and schedule"
    )
    m.add_argument("pattern", nargs="?", default="*", help="shell-style name pattern, e.g. 'deeplab*' or '*aspp*'")
    m.add_argument("--json", action="store_true", help="machine-readable listing with knobs and defaults")
    m.set_defaults(func=_cmd_models)

    pr = sub.add_parser("profile", help="params, FLOPs (three counters), latency/FPS and memory of an architecture")
    pr.add_argument("arch", help="architecture name (see 'aspp-bench models')")
    _add_set(
        pr, "config overrides, values parsed as YAML (e.g. --set model.backbone=resnet101 'model.rates=[6,12,18]')"
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

    tr = sub.add_parser("train", help="train and evaluate one configuration into a run folder (resumes)")
    tr.add_argument("config", nargs="?", help="YAML file with the differences from the defaults")
    _add_set(tr, "config overrides (YAML values), e.g. --set train.amp=bf16 train.channels_last=true")
    tr.add_argument("--out", required=True, help="run folder: config.yaml, checkpoint.pt, train.log, result.json")
    tr.set_defaults(func=_cmd_train)

    ev = sub.add_parser("evaluate", help="evaluate a checkpoint on any split of its dataset kind")
    ev.add_argument("checkpoint", help="a run folder's checkpoint.pt (its config.yaml is read beside it)")
    _add_set(ev, "override data keys, e.g. data.root=... data.split=test (default split: the one the run validated on)")
    ev.add_argument(
        "--resolution",
        choices=["data", "label"],
        default="data",
        help="score at data.size (as the run validated; default) or at each annotation's own size (as papers do)",
    )
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=_cmd_evaluate)

    sw = sub.add_parser("sweep", help="validate a sweep, then submit its missing cells (returns at once)")
    sw.add_argument("sweep", help="ablations/X.yaml")
    sw.add_argument("--executor", choices=["inline", "local", "slurm"], help="overrides launch.executor")
    sw.add_argument("--dry-run", action="store_true", help="print the cells and what would be submitted; write nothing")
    sw.add_argument("--retry-failed", action="store_true", help="also resubmit failed and diverged cells")
    sw.add_argument("--wait", action="store_true", help="follow progress until every cell has finished")
    sw.add_argument("--results", help="results folder (default results/<sweep name>)")
    sw.set_defaults(func=_cmd_sweep)

    st = sub.add_parser("status", help="state of every cell of a sweep (done, running, queued, failed, ...)")
    st.add_argument("sweep", help="ablations/X.yaml")
    st.add_argument("--results", help="results folder (default results/<sweep name>)")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=_cmd_status)

    co = sub.add_parser("collect", help="one row per finished run -> parquet and csv")
    co.add_argument("results", help="a results folder (results/<sweep>)")
    co.add_argument("--out", help="table file (.parquet or .csv; default RESULTS/table.parquet)")
    co.set_defaults(func=_cmd_collect)

    rp = sub.add_parser("report", help="Markdown / LaTeX tables and figures from a results folder")
    rp.add_argument("results", help="a results folder, or a table collected from one (.parquet/.csv)")
    rp.add_argument("--out", required=True, help="report folder, e.g. reports/X")
    rp.add_argument(
        "--format",
        help="comma-separated subset of md,tex,png,pdf (default: all four, pdf only where pdflatex is installed)",
    )
    rp.add_argument("--baseline", help="the row deltas refer to, e.g. 'arch=unet' (default: the first row)")
    rp.add_argument("--notes", help="a Markdown file placed under the report's title (what the ablation shows)")
    rp.add_argument("--sweep", help="the sweep file the results came from (name, axes, order, paper tables)")
    rp.set_defaults(func=_cmd_report)

    rg = sub.add_parser("regress", help="accuracy/speed regression check; exit 1 on any regression")
    rg.add_argument("baseline", help="results folder or collected table (.parquet/.csv)")
    rg.add_argument("current", help="results folder or collected table (.parquet/.csv)")
    rg.add_argument("--miou-tol", type=float, default=1.0, help="mIoU drop in points that counts (default 1.0)")
    rg.add_argument("--speed-tol", type=float, default=0.2, help="allowed latency increase as a fraction (0.2)")
    rg.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm's correction (0.05)")
    rg.add_argument(
        "--speed-normalised",
        action="store_true",
        help="compare the fraction of each machine's measured matmul peak (a speed gate across machines)",
    )
    rg.add_argument("--json", action="store_true", help="machine-readable verdicts (for CI)")
    rg.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="KEY",
        help="config key left out when matching configurations (e.g. train.epochs to gate a shorter schedule)",
    )
    rg.set_defaults(func=_cmd_regress)
    pl = sub.add_parser("plan", help="how many seeds each comparison needs, from measured results")
    pl.add_argument("results", help="results folder or collected table (.parquet/.csv)")
    pl.add_argument("--difference", type=float, default=1.0, help="mIoU difference worth detecting, points (1.0)")
    pl.add_argument("--alpha", type=float, default=0.05, help="significance level (0.05)")
    pl.add_argument("--power", type=float, default=0.8, help="probability of detecting it (0.8)")
    pl.add_argument("--baseline", help="the configuration the others are compared with, e.g. 'arch=unet'")
    pl.add_argument("--json", action="store_true")
    pl.set_defaults(func=_cmd_plan)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except UserError as e:
        print(f"aspp-bench: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # the reader went away (`aspp-bench config --fields | head`): nothing to say
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # the environment (a full disk, a read-only or missing path), not a bug
        where = f"{e.filename}: " if e.filename else ""
        print(
            f"aspp-bench: error: {where}{e.strerror or e} (the file system refused; nothing half-written was left)",
            file=sys.stderr,
        )
        return 2


def main_exit() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
