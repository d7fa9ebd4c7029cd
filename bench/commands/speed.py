"""`speed`: which of two sides is faster, decided over interleaved rounds (bench.profile.speed)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.files import atomic_write_text
from bench.precision import PRECISIONS
from bench.profile.spec import parse_input
from bench.profile.speed import WORKTREE, check_side, checkout, run_speed, side_from_argument
from bench.verdicts.speed import SpeedDesign


def cmd_speed(args: argparse.Namespace) -> int:
    design = SpeedDesign(tolerance=args.tolerance, max_rounds=args.max_rounds, first=args.first_look,
                         every=args.look_every, alpha=args.alpha)  # fmt: skip
    try:
        design.check()
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.dtype not in PRECISIONS:
        raise UserError(f"--dtype {args.dtype!r}: allowed are {', '.join(PRECISIONS)}")
    if args.dtype == "fp16":
        raise UserError("--dtype fp16: not supported for CPU timing here; use fp32 or bf16")
    if args.measure == "train" and args.dtype != "fp32":
        raise UserError(f"--measure train --dtype {args.dtype}: training steps are timed in fp32; drop --dtype or "
                        "time latency")  # fmt: skip
    if args.out and Path(args.out).suffix != ".json":
        raise UserError(f"--out {args.out}: give a .json file name")
    spec = {
        "input": list(parse_input(args.input)),
        "batch": args.batch,
        "threads": args.threads,
        "dtype": args.dtype,
        "channels_last": args.channels_last,
        "measure": args.measure,
    }
    sides = (side_from_argument("A", args.a, [*args.set, *args.set_a]),
             side_from_argument("B", args.b, [*args.set, *args.set_b]))  # fmt: skip
    if args.python:
        for side, py in zip(sides, args.python, strict=True):
            found = shutil.which(py)
            if found is None:
                raise UserError(f"--python {py}: no such interpreter (give a path, e.g. /opt/env/bin/python)")
            side.python = found
    made: Path | None = None
    try:
        if args.rev:
            for side, rev in zip(sides, args.rev, strict=True):
                if rev == WORKTREE:
                    continue
                if made is None:
                    made = Path(tempfile.mkdtemp(prefix="aspp-bench-revs-"))
                side.rev, folder = checkout(rev, made)
                side.code = str(folder)
        for side in sides:
            check_side(side)
        progress = None if args.json else (lambda line: print(line, file=sys.stderr, flush=True))
        record = run_speed(sides, design, spec, slice_s=args.slice, clock=args.clock, max_time_s=args.max_time,
                           progress=progress)  # fmt: skip
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)  # only the folder this command made
    if args.out:
        atomic_write_text(args.out, json.dumps(record, indent=2, default=str) + "\n")
    if args.json:
        print(json.dumps(record, indent=2, default=str))
    else:
        print(format_speed(record))
    return 1 if record["verdict"]["fails"] else 0


def format_speed(r: dict[str, Any]) -> str:
    v, d = r["verdict"], r["design"]
    tol = d["tolerance"]
    what = "a batch-1 forward" if r["measure"] == "latency" else f"a training step (batch {r['protocol']['batch']})"
    what = f"{'CPU time' if r['clock'] == 'cpu' else 'wall time (latency)'} of {what}"
    interval = f" [{v['low']:.3f}, {v['high']:.3f}]" if v["low"] == v["low"] else ""
    state = {
        "faster": "B is faster",
        "slower": "B is slower",
        "equivalent": f"equivalent within +-{100 * tol:g}%",
        "undecided": f"undecided ({r['stopped']})",
    }[v["state"]]
    a, b = r["sides"]["A"], r["sides"]["B"]
    lines = [
        f"speed of {what}: B/A x{v['ratio']:.3f}{interval} after {v['rounds']} round(s): {state}",
        f"  A: {a['describe']}: {a['params']:,} params, torch {a['torch']}, {a['threads']} thread(s), code {a['code']}",
        f"  B: {b['describe']}: {b['params']:,} params, torch {b['torch']}, {b['threads']} thread(s), code {b['code']}",
        f"  rounds: {len(r['rounds'])} in ABBA order, {r['protocol']['slice_s']:g} s a side, {r['elapsed_s']:.0f} s; "
        f"interval: repeated {100 * (1 - v['level']):.2f}% at the deciding look (alpha {d['alpha']:g} over "
        f"looks from round {d['first']} every {d['every']} to {d['max_rounds']})" if v["level"] == v["level"] else
        f"  rounds: {len(r['rounds'])} in ABBA order, {r['protocol']['slice_s']:g} s a side, {r['elapsed_s']:.0f} s",
    ]  # fmt: skip
    other = "wall" if r["clock"] == "cpu" else "cpu"
    if r[f"{other}_ratio"] is not None:
        lines.append(f"  by the {other} clock (not deciding): B/A x{r[f'{other}_ratio']:.3f} over all rounds"
                     + (" (a busy machine moves wall time: decide by --clock cpu)" if other == "wall" else ""))
    if r["clock"] == "cpu" and r["protocol"]["threads"] > 1:
        lines.append(f"  note: CPU time sums {r['protocol']['threads']} threads (waiting included): a change in how "
                     "well a forward parallelises shows in wall time only")
    if r["load"]:
        lines.append(f"  load {r['load']['min']:.1f}-{r['load']['max']:.1f} (median {r['load']['median']:.1f}) on "
                     f"{r['cpu_count']} CPUs; {a['env']['device_name']}; "
                     + ("fingerprints equal" if r["same_fingerprint"]
                        else f"fingerprints differ: {a['env_fingerprint']} vs {b['env_fingerprint']}"))  # fmt: skip
    if v["fails"]:
        lines.append(f"  gate: FAIL: slower by more than the {100 * tol:g}% tolerance")
    elif v["state"] == "slower":
        lines.append(f"  gate: pass: slower, but by less than the {100 * tol:g}% tolerance")
    else:
        lines.append("  gate: pass")
    return "\n".join(lines)
