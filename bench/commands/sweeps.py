"""`sweep` and `status`: a grid validated, its missing cells submitted, its cells followed."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from bench.configure.naming import cell_label
from bench.errors import UserError
from bench.launch import (
    FINISHED,
    RETRYABLE,
    cell_problems,
    cell_states,
    check_cells,
    data_problem_lines,
    sbatch_preview,
    submit,
)
from bench.launch.submit import time_limit_problem
from bench.results.convergence import MIN_EVALS
from bench.run.resources import GiB, machine_memory
from bench.sweep import expand_sweep, load_sweep
from bench.verdicts.plan import operating
from bench.verdicts.waves import check_decide, comparisons, every_wave_cells, seed_order, wanted_cells


def _sweep_setup(args: argparse.Namespace):  # type: ignore[no-untyped-def]

    sweep = load_sweep(args.sweep, args.set)
    expansion = expand_sweep(sweep, source=str(args.sweep))
    for note in expansion.notes():
        print(f"{args.sweep}: note: {note}", file=sys.stderr)
    results = Path(args.results) if args.results else Path("results") / sweep.name
    blocker = next((q for q in [results, *results.parents] if q.exists() and not q.is_dir()), None)
    if blocker is not None:
        what = "exists and is not a folder" if blocker == results else f"lies under {blocker}, a regular file"
        raise UserError(f"--results {results}: {what}; give a results folder")
    return sweep, expansion.cells, results


def _where(launch, executor: str) -> dict:  # type: ignore[no-untyped-def]
    """Where the cells will run, for the pre-flight: this machine (inline, local), or Slurm's nodes,
    whose devices are not this machine's and whose memory is launch.mem_gb where given."""
    if executor == "slurm":
        mem = int(launch.mem_gb * GiB) if launch.mem_gb else None
        return {"here": False, "memory": mem, "where": f"launch.mem_gb={launch.mem_gb}"}
    return {"here": True, "memory": machine_memory(), "where": "this machine"}


def cmd_sweep(args: argparse.Namespace) -> int:
    sweep, cells, results = _sweep_setup(args)
    executor = args.executor or sweep.launch.executor
    where = _where(sweep.launch, executor)
    if executor == "slurm":
        problem = time_limit_problem(sweep.launch)
        if problem:
            raise UserError(f"{args.sweep}: {problem}; nothing was submitted")
    if sweep.decide is not None or args.until_decided:
        # a bad decide section is refused by every command, --dry-run included, before anything runs
        design = check_decide(sweep, every_wave_cells(sweep, source=str(args.sweep)), source=str(args.sweep))
        if args.until_decided and args.dry_run:
            print(f"{sweep.name}: until decided, seeds per configuration at the looks {list(design.looks())} "
                  f"(seed order {seed_order(sweep)}); alpha {design.alpha:.4g} per comparison")  # fmt: skip
            print(f"  {_design_line(sweep, design, results)}")
            print(f"{sweep.name}: the first wave:")
        elif args.until_decided:
            return _until_decided(args, sweep, results, executor, where)
    if args.dry_run:
        model_errors, data_errors = cell_problems(cells, source=str(args.sweep), **where)
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
        short = _short_curves(cells)
        if short:
            print(f"curves: {short}")
        launch = sweep.launch
        if launch.world_size > 1:
            print(
                f"each cell: one DistributedDataParallel job of {launch.world_size} tasks ({launch.nodes} node(s) x "
                f"{launch.tasks} task(s), one per device); data.batch_size is the global batch"
            )
        if executor == "slurm" or launch.setup or launch.sbatch:
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
    check_cells(cells, source=str(args.sweep), **where)
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
        try:
            return _wait(cells, results, poll=0 if executor == "inline" else 5)
        except KeyboardInterrupt:  # the cells run detached (their own session): only the watching stops
            print(
                f"\nstopped watching; the submitted cells go on running. Follow them with 'aspp-bench status "
                f"{args.sweep}'",
                file=sys.stderr,
            )
            return 130
    return 0


def _until_decided(args: argparse.Namespace, sweep, results: Path, executor: str, where: dict) -> int:  # type: ignore[no-untyped-def]
    """Waves of seeds until every comparison of the decide section is decided or at max_seeds:
    each wave submits only the cells the open comparisons' next look needs (and any earlier cell
    not yet finished), waits for them, and looks again. The state is read from the results folder
    each time, so a launcher started again after dying carries on where the first stopped."""
    source = str(args.sweep)
    cells = every_wave_cells(sweep, source=source)
    check_cells(cells, source=source, **where)
    wave, seen, submitted = 0, None, []
    while True:
        wave += 1
        miou = _finished_miou(cells, results)
        if seen is not None and set(miou) == seen and not submitted:  # nothing ran, nothing ended: no progress
            print(f"{sweep.name}: no cell finished since the last look and none was submitted; see 'aspp-bench "
                  f"status {source}'", file=sys.stderr)  # fmt: skip
            return 1
        seen = set(miou)
        comps = comparisons(sweep, cells, miou, source=source)
        wanted = wanted_cells(sweep, cells, comps)
        missing = [c for c in wanted if c.run_id not in miou]
        print(f"{sweep.name}: look {wave}: {len([c for c in comps if c.state == 'open'])} of {len(comps)} "
              f"comparison(s) open", flush=True)  # fmt: skip
        for line in comparison_lines(comps, sweep.decide.delta):
            print(f"  {line}", flush=True)
        if not missing:
            undecided = sum(c.state == "undecided" for c in comps)
            print(f"{sweep.name}: every comparison decided" + (f" or at max_seeds ({undecided} undecided)" if undecided
                  else "") + f"; {len(miou)} finished runs in {results}")  # fmt: skip
            return 0
        submitted, skipped = submit(sweep, wanted, results, executor=executor, retry_failed=args.retry_failed)
        waiting = sum(s.state in ("queued", "running") for s in skipped)
        bad = [s for s in skipped if s.state in RETRYABLE and s.cell.run_id not in miou]
        print(f"{sweep.name}: wave {wave}: submitted {len(submitted)} cell(s) ({executor}), {waiting} already "
              f"queued or running" + (f", {len(bad)} failed or damaged" if bad else ""), flush=True)  # fmt: skip
        if bad and not args.retry_failed and not submitted and not waiting:
            for s in bad:
                print(f"  {s.cell.run_id}  {s.state}: {s.detail}  ({cell_label(s.cell.varying)})")
            print(f"aspp-bench: error: {len(bad)} cell(s) this wave needs failed or hold a damaged result.json "
                  "(above); the comparisons they belong to stay open with the seeds that finished. Fix the cause, "
                  f"then 'aspp-bench sweep {source} --until-decided --retry-failed' runs them again",
                  file=sys.stderr)  # fmt: skip
            return 1
        rc = _wait(missing, results, poll=0 if executor == "inline" else 5)
        if rc:
            print(f"{sweep.name}: wave {wave} ended with failed cells (above); the comparisons they belong to stay "
                  f"open. Fix the cause, then 'aspp-bench sweep {source} --until-decided --retry-failed'")  # fmt: skip
            return rc


def _short_curves(cells) -> str | None:  # type: ignore[no-untyped-def]
    """Where cells will record too few evaluations for the plateau rule (docs/budgets.md), what to set."""
    few = {}
    for c in cells:
        t = c.config.train
        if t.epochs is not None:
            evals = t.epochs // t.eval_every + (1 if t.epochs % t.eval_every else 0)
            if evals < MIN_EVALS:
                few[(t.epochs, t.eval_every)] = evals
    if not few:
        return None
    (epochs, every), evals = next(iter(few.items()))
    return (f"{sum(1 for c in cells if (c.config.train.epochs, c.config.train.eval_every) in few)} cell(s) will "
            f"record {evals} evaluation(s) (e.g. train.epochs={epochs}, train.eval_every={every}): fewer than the "
            f"{MIN_EVALS} the plateau rule needs to say whether a curve has flattened (docs/budgets.md); lower "
            "train.eval_every (it is not part of a run's identity)")


def _design_line(sweep, design, results: Path) -> str:  # type: ignore[no-untyped-def]
    """The design's power at delta and expected seeds per side, simulated at the spread it can know:
    the median sd of the per-seed differences of the comparisons already run (2 seeds or more), else
    decide.prior_sd, else none (then it says how to give one)."""
    import numpy as np

    every = every_wave_cells(sweep, source="sweep")
    miou = _finished_miou(every, results)  # read once: the comparisons and the spreads use the same runs
    comps = comparisons(sweep, every, miou, source="sweep")
    sds = []
    for c in comps:
        if len(c.paired) >= 2:
            d = [miou[c.current.cells[s].run_id] - miou[c.base.cells[s].run_id] for s in c.paired]
            sds.append(float(np.std(d, ddof=1)))
    if sds:
        sd, where = float(np.median(sds)), f"the median sd of the per-seed differences of {len(sds)} comparison(s) run"
    elif sweep.decide.prior_sd:
        sd, where = sweep.decide.prior_sd, "decide.prior_sd"
    else:
        return ("power and expected seeds: no spread known yet (no comparison has 2 seeds in the results folder); "
                "give decide.prior_sd (the sd of per-seed differences you expect, mIoU points), or see 'aspp-bench "
                "plan' on a finished grid")  # fmt: skip
    op = operating(design, sd)
    return (f"at sd {sd:.2f} ({where}): power {op['power']:.2f} at ±{design.delta:g} points, expected seeds per "
            f"side {op['expected_seeds']:.1f} at that difference and {op['expected_seeds_null']:.1f} at none "
            f"(simulated; 'aspp-bench plan RESULTS --difference {design.delta:g}' recommends max_seeds and wave)")


def _finished_miou(cells, results: Path) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """run_id -> mIoU in points of the cells whose runs have finished (as their states read it)."""
    return {s.cell.run_id: 100 * s.miou for s in cell_states(cells, results) if s.miou is not None}


def comparison_lines(comps, delta: float) -> list[str]:  # type: ignore[no-untyped-def]
    """One line per comparison: its state, the difference with its interval, and its seeds."""
    lines = []
    for c in comps:
        what = f"{c.current.label} vs {c.base.label}"
        shown = f"{c.diff:+.2f} [{c.low:+.2f}, {c.high:+.2f}] points" if c.diff == c.diff else "no look yet"
        if c.state == "different":
            state = f"different: {shown} (p {c.p:.3g} <= its look's level), at {int(c.n)} seeds"
        elif c.state == "equivalent":
            state = f"equivalent within ±{delta:g}: {shown} (TOST p {c.p_equivalence:.3g}), at {int(c.n)} seeds"
        elif c.state == "undecided":
            state = f"undecided at max_seeds ({int(c.n)}): {shown}"
        else:
            state = f"open: {c.seeds} seed(s) finished, {shown}; the next look needs {c.needs}"
        lines.append(f"{what}: {state}")
    return lines


def _wait(cells, results: Path, poll: float, *, summary_every: float = 60.0) -> int:  # type: ignore[no-untyped-def]
    """Watch the cells until every one has ended. On a terminal: a progress bar. Off one (a CI log,
    a pane piped to a file, a login-node script): a line for each cell that ends while watched,
    and every `summary_every` seconds one line of counts by state."""
    tty = sys.stderr.isatty()
    bar = tqdm(total=len(cells), unit="cell", disable=not tty)
    ended_before: set[str] | None = None  # cells that had ended when the watch began: not announced
    start = last_summary = time.monotonic()
    while True:
        states = cell_states(cells, results)
        finished = sum(s.state in FINISHED for s in states)
        bar.n = finished
        bar.refresh()
        if not tty:
            ended = {s.cell.run_id for s in states if s.state in FINISHED}
            if ended_before is not None:
                _announce([s for s in states if s.state in FINISHED and s.cell.run_id not in ended_before],
                          finished, len(cells))  # fmt: skip
            ended_before = ended
            now = time.monotonic()
            if finished < len(cells) and poll and now - last_summary >= summary_every:
                _summary(states, finished, now - start)
                last_summary = now
        if finished == len(cells) or poll == 0:
            break
        time.sleep(poll)
    bar.close()
    bad = [s for s in states if s.state != "done"]
    for s in bad:
        print(f"  {s.cell.run_id}  {s.state}: {s.detail}  ({cell_label(s.cell.varying)})")
    return 1 if bad else 0


def _announce(states, finished: int, total: int) -> None:  # type: ignore[no-untyped-def]
    """A line per newly ended cell, counted up to `finished` (several can end within one poll)."""
    for i, s in enumerate(states, start=finished - len(states) + 1):
        why = f": {s.detail}" if s.state != "done" and s.detail else ""
        print(f"  {s.state}: {s.cell.run_id} ({cell_label(s.cell.varying)}){why} [{i}/{total}]", flush=True)


def _summary(states, finished: int, elapsed: float) -> None:  # type: ignore[no-untyped-def]
    """One line of counts by state, and how long the watch has run."""
    counts: dict[str, int] = {}
    for s in states:
        counts[s.state] = counts.get(s.state, 0) + 1
    minutes, seconds = divmod(int(elapsed), 60)
    by_state = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    print(f"  {finished}/{len(states)} finished ({by_state}); watching for {minutes} min {seconds:02d} s", flush=True)


def cmd_status(args: argparse.Namespace) -> int:
    sweep, cells, results = _sweep_setup(args)
    if args.results and not results.is_dir():
        raise UserError(
            f"--results {results}: no such folder; give the folder the sweep wrote to (default results/<name>)"
        )
    comps = []
    if sweep.decide is not None:  # the cells of every wave so far, and where each comparison stands
        every = every_wave_cells(sweep, source=str(args.sweep))
        check_decide(sweep, every, source=str(args.sweep))
        comps = comparisons(sweep, every, _finished_miou(every, results), source=str(args.sweep))
        wanted = {c.run_id for c in wanted_cells(sweep, every, comps)}
        cells = [c for c, s in zip(every, cell_states(every, results), strict=True)
                 if c.run_id in wanted or s.state != "missing"]  # fmt: skip
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
                    "comparisons": [c.record() for c in comps],
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
    if comps:
        print(f"comparisons (decide: delta {sweep.decide.delta:g} points, max_seeds {sweep.decide.max_seeds}):")
        for line in comparison_lines(comps, sweep.decide.delta):
            print(f"  {line}")
    return 0
