"""`collect`, `report`, `regress`, `plan`: results into tables, reports, verdicts and seed plans."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.configure.config import read_text_file
from bench.errors import UserError
from bench.files import atomic_path
from bench.report import build_report, default_formats
from bench.results.table import collect, load_table
from bench.verdicts.gate import regress
from bench.verdicts.plan import plan


def cmd_collect(args: argparse.Namespace) -> int:
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


def cmd_report(args: argparse.Namespace) -> int:
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip()) if args.format is not None else None
    if formats == ():
        raise UserError(f"--format {args.format!r}: name at least one of md, tex, png, pdf (comma-separated)")
    notes = None
    if args.notes:
        notes = read_text_file(args.notes, "--notes Markdown")
    r = build_report(args.results, args.out, formats=formats, baseline=args.baseline, notes=notes, sweep=args.sweep)
    if formats is None and "pdf" not in default_formats():
        print("report: report.pdf not made: pdflatex is not installed (Debian: apt-get install texlive-latex-base "
              "texlive-latex-recommended); the .tex files are written, --format md,tex,png,pdf insists",
              file=sys.stderr)  # fmt: skip
    for path, why in r["skipped"]:
        print(f"skipped {path}: {why}", file=sys.stderr)
    for line in r["overfull"]:
        print(f"warning: report.pdf: {line} (a table or figure is wider than the page)", file=sys.stderr)
    print(f"report: {r['rows']} rows, {len(r['written'])} files in {args.out}")
    return 0


def cmd_regress(args: argparse.Namespace) -> int:
    dropped: tuple[list, list] = ([], [])
    base, cur = load_table(args.baseline, dropped=dropped[0]), load_table(args.current, dropped=dropped[1])
    for name, runs in zip((args.baseline, args.current), dropped, strict=True):
        for d in runs:  # every run a side leaves out is named, never dropped in silence
            print(f"regress: {name}: left out {d['where']}: {d['why']}", file=sys.stderr)
    passed, table, records = regress(
        base,
        cur,
        miou_tol=args.miou_tol,
        speed_tol=args.speed_tol,
        alpha=args.alpha,
        speed_normalised=args.speed_normalised,
        ignore=tuple(args.ignore),
        noise_model=args.noise_model,
        dropped=dropped,
        require_all=args.require_all,
    )
    counts = {v: sum(r["verdict"] == v for r in records) for v in ("ok", "INCONCLUSIVE", "FAIL", "MISSING")}
    left = (f" Runs left out (named on stderr): {len(dropped[0])} of the baseline, {len(dropped[1])} of the current."
            if any(dropped) else "")  # fmt: skip
    summary = (
        f"{'PASS' if passed else 'FAIL'}: {counts['ok']} ok, {counts['INCONCLUSIVE']} inconclusive, "
        f"{counts['FAIL']} failed, {counts['MISSING']} missing on one side of {len(records)} configurations.{left} "
        "A configuration on one side only is MISSING, which fails only with --require-all. "
        f"A configuration fails when its mean mIoU "
        f"drops by more than {args.miou_tol} points and the drop is significant (one-sided Welch, or paired "
        f"where both sides ran the same seeds; Holm-corrected over {len(records)} configurations; alpha "
        f"{args.alpha}); with one seed on a side, between two environments, when an environment change alone "
        f"would rarely drop it that far (the environment noise model each such row names; Holm with the rest), "
        f"else on the threshold alone. Speed: "
        + ("fractions of the measured compute limit" if args.speed_normalised else "latency between equal environments")
        + f" measured on quiet machines, tolerance x{1 + args.speed_tol:.2f} (no test: it assumes two quiet "
        "measurements of one environment differ by less); between other environments or on a busy machine the "
        "speed verdict is INCONCLUSIVE and names the `aspp-bench speed` command that decides it."
    )
    undecided = [r for r in records if r.get("speed_verdict") == "INCONCLUSIVE"]
    if args.json:
        print(json.dumps({"passed": passed, "summary": summary, "configurations": records,
                          "left_out": {"baseline": dropped[0], "current": dropped[1]}}, indent=2, default=str))
    else:
        print(table)
        print("\n" + summary)
        if undecided:
            print(f"\nSpeed INCONCLUSIVE for {len(undecided)} configuration(s); on one machine, decide with:")
            for r in undecided:
                print(f"  {r['configuration']}: {r['speed_command']}")
    return 0 if passed else 1


def cmd_plan(args: argparse.Namespace) -> int:
    if args.power <= args.alpha:
        raise UserError(f"--power {args.power:g} with --alpha {args.alpha:g}: the power must exceed alpha (a test "
                        "reaches alpha with no seeds at all); give e.g. --power 0.8")  # fmt: skip
    table, records = plan(
        load_table(args.results), difference=args.difference, alpha=args.alpha, power=args.power, baseline=args.baseline
    )
    if args.json:
        print(json.dumps(records, indent=2, default=str))
    else:
        print(table)
    return 0
