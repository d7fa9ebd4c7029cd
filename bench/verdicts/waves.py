"""Seeds in waves until each declared comparison is decided (`sweep --until-decided`): which
comparisons a sweep's `decide:` section names, where each stands given the finished runs, and
which seeds each configuration needs next.

Everything here is a function of the sweep file and the results folder, nothing else: a launcher
that dies and is started again finds the same state, the same next wave, and submits only the
cells that are neither finished nor queued nor running (the launcher's rule), so no seed is
trained twice. Seeds continue the sweep's own list: `seeds: [0, 1, 2]` with `wave: 2` adds 3 and
4, then 5 and 6, ..., up to `max_seeds` per configuration; every configuration draws from the one
list, so the two sides of a comparison ran the same seeds and pair (the paired t-test).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from bench.configure.identity import config_id
from bench.configure.naming import cell_label
from bench.errors import UserError
from bench.sweep import Cell, Sweep, expand_sweep, matches
from bench.verdicts.sequential import OPEN, Design, decide_arrays, spending_function

__all__ = ["Comparison", "Configuration", "check_decide", "comparisons", "configurations", "design_of",
           "every_wave_cells", "seed_order", "wanted_cells"]  # fmt: skip


@dataclass(frozen=True)
class Configuration:
    """One configuration of the grid: its identity without the seed, its label, and its cell
    for each seed of the sweep's seed order."""

    config_id: str
    label: str
    varying: dict[str, Any]
    cells: dict[int, Cell]  # seed -> cell
    budget: int | None = None  # its decide.budgets entry (None: the sweep names no budgets)


@dataclass(frozen=True)
class Comparison:
    """current against base, where the finished runs leave it."""

    base: Configuration
    current: Configuration
    state: str  # open / different / equivalent / undecided
    seeds: int  # seeds per side that both have finished, in the seed order
    n: float  # seeds per side at the look that decided, or the last look taken (nan: none yet)
    diff: float  # current - base, mIoU points, at that look
    low: float
    high: float
    p: float
    p_equivalence: float
    needs: int | None  # seeds per side the next look needs (None: decided, or at max_seeds)
    alpha: float  # this comparison's share of the sweep's alpha
    paired: tuple[int, ...] = ()  # the seeds both sides finished, in the seed order (len: seeds)

    @property
    def budget(self) -> int | None:
        return self.base.budget

    def record(self) -> dict[str, Any]:
        """As JSON takes it: the two sides by label, no look yet as null (not NaN)."""
        out = {k: getattr(self, k) for k in ("state", "seeds", "n", "diff", "low", "high", "p", "p_equivalence",
                                             "needs", "alpha")}  # fmt: skip
        out = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in out.items()}
        return {"base": self.base.label, "current": self.current.label, "budget": self.budget, **out}


def design_of(sweep: Sweep, *, comparisons_count: int = 1, source: str = "sweep") -> Design:
    """The sequential design a sweep's decide section states (alpha split over the comparisons
    under the Bonferroni correction); UserError naming the key where it cannot be built."""
    d = sweep.decide
    if d is None:
        raise UserError(
            f"{source}: no 'decide:' section, so --until-decided has nothing to decide; add e.g. "
            "decide: {against: {model.arch: unet}, delta: 2.0, max_seeds: 10}"
        )
    try:
        spending_function(d.spending)
    except ValueError as e:
        raise UserError(f"{source}: decide.{e}") from None
    if d.max_seeds < len(sweep.seeds):
        raise UserError(
            f"{source}: decide.max_seeds={d.max_seeds} is below the {len(sweep.seeds)} seeds the sweep lists; give "
            f"max_seeds of at least {len(sweep.seeds)}"
        )
    alpha = d.alpha / max(comparisons_count, 1) if d.correction == "bonferroni" else d.alpha
    return Design(delta=d.delta, max_seeds=d.max_seeds, first=len(sweep.seeds), wave=d.wave, alpha=alpha,
                  spending=d.spending)  # fmt: skip


def seed_order(sweep: Sweep) -> list[int]:
    """The sweep's seeds, then the next integers after its largest, up to decide.max_seeds."""
    seeds = list(sweep.seeds)
    top = max(seeds)
    while sweep.decide is not None and len(seeds) < sweep.decide.max_seeds:
        top += 1
        seeds.append(top)
    return seeds


def every_wave_cells(sweep: Sweep, *, source: str = "sweep") -> list[Cell]:
    """The sweep's cells over the whole seed order: every seed a wave may add."""
    return expand_sweep(sweep.model_copy(update={"seeds": seed_order(sweep)}), source=source).cells


def configurations(cells: list[Cell]) -> list[Configuration]:
    """The grid's configurations in grid order, each with its cells by seed."""
    out: dict[str, dict[str, Any]] = {}
    for c in cells:
        cid = config_id(c.config, resolved=True)
        varying = {k: v for k, v in c.varying.items() if k != "train.seed"}
        entry = out.setdefault(cid, {"varying": varying, "cells": {}, "budget": c.budget})
        entry["cells"][c.config.train.seed] = c
    return [Configuration(cid, cell_label(e["varying"]) or "all", e["varying"], e["cells"], e["budget"])
            for cid, e in out.items()]  # fmt: skip


def _pairs(sweep: Sweep, configs: list[Configuration], source: str) -> list[tuple[Configuration, Configuration]]:
    """The declared comparisons, within each budget (every budget when the sweep names several)."""
    d = sweep.decide
    against = d.against  # type: ignore[union-attr]
    groups: dict[int | None, list[Configuration]] = {}
    for c in configs:
        groups.setdefault(c.budget, []).append(c)
    factors = [*sweep.grid, *(k for g in sweep.zip for k in g)]
    if isinstance(against, dict):
        if not against:
            raise UserError(
                f"{source}: decide.against is empty ({{}}); name the base configuration by the values of the keys the "
                f"grid varies ({', '.join(factors) or 'none'}), e.g. against: {{model.arch: unet}}, or against: "
                "each-other for every pair"
            )
        fixed = [k for k in against if k not in factors]
        if fixed:
            raise UserError(
                f"{source}: decide.against key '{fixed[0]}' is not varied by the grid (it varies "
                f"{', '.join(factors) or 'nothing'}; seeds pair, they are never a base); name the base by the keys "
                "the grid varies, e.g. against: {" + (f"{factors[0]}: ..." if factors else "model.arch: unet") + "}"
            )
    pairs: list[tuple[Configuration, Configuration]] = []
    for budget, group in groups.items():
        where = "" if budget is None else f" at decide.budgets[{budget}]"
        if len(group) < 2:
            raise UserError(
                f"{source}: decide: the grid has {len(group)} configuration{'' if len(group) == 1 else 's'}{where} "
                f"({'; '.join(c.label for c in group) or 'none'}); a comparison needs two. Vary a key in grid or zip, "
                "or drop the decide: section"
            )
        if against == "each-other":
            pairs += list(combinations(group, 2))
            continue
        hits = [c for c in group if matches(against, c.cells[min(c.cells)].config)]
        labels = "; ".join(c.label for c in group)
        if len(hits) != 1:
            named = "; ".join(c.label for c in hits)
            what = "no configuration" if not hits else f"{len(hits)} configurations ({named})"
            raise UserError(
                f"{source}: decide.against {against} matches {what}{where}; it must name exactly one, the base every "
                f"other is compared with. The configurations are: {labels}. Give more keys, or against: each-other "
                "for every pair"
            )
        base = hits[0]
        pairs += [(base, c) for c in group if c is not base]
    return pairs


def check_decide(sweep: Sweep, cells: list[Cell], *, source: str = "sweep") -> Design:
    """The decide section as every command needs it, refused (UserError) before anything runs: its
    comparisons exist (two configurations at least, a base that names one), its design builds and
    its spending function can be evaluated at every look."""
    pairs = _pairs(sweep, configurations(cells), source)
    design = design_of(sweep, comparisons_count=len(pairs), source=source)
    fn = spending_function(design.spending)
    for n in design.looks():
        try:
            spent = fn(n / design.max_seeds, design.alpha)
        except (OverflowError, ZeroDivisionError, ValueError):
            spent = math.nan
        if not (math.isfinite(spent) and 0 <= spent <= design.alpha + 1e-12):
            raise UserError(
                f"{source}: decide.spending={design.spending!r} cannot be evaluated at the look of {n} seeds (it "
                f"gives {spent}); use obrien-fleming, pocock or hsd:GAMMA with GAMMA between -40 and 40, not 0 "
                "(-4 is close to O'Brien-Fleming, 1 to Pocock; the default hsd:-2 lies between)"
            )
    return design


def comparisons(sweep: Sweep, cells: list[Cell], miou: dict[str, float], *, source: str = "sweep") -> list[Comparison]:
    """Every declared comparison where the finished runs (`miou`: run_id -> mIoU in points) leave it."""
    configs = configurations(cells)
    pairs = _pairs(sweep, configs, source)
    design = design_of(sweep, comparisons_count=len(pairs), source=source)
    order = seed_order(sweep)
    out = []
    for base, cur in pairs:
        # the seeds both sides have finished, in the seed order: a seed whose run failed or whose
        # result is damaged is left out of the pair, never the seeds after it (which runs end is not
        # decided by their mIoU, so the pairs stay a fair sample)
        paired = [s for s in order if s in base.cells and s in cur.cells and base.cells[s].run_id in miou
                  and cur.cells[s].run_id in miou]  # fmt: skip
        seeds = len(paired)
        b = np.array([[miou[base.cells[s].run_id] for s in paired]])
        c = np.array([[miou[cur.cells[s].run_id] for s in paired]])
        if seeds >= 2:
            r = decide_arrays(design, b, c, paired=True)
            state, n, diff, low, high, p, peq = (r.state[0], r.n[0], r.diff[0], r.low[0], r.high[0], r.p[0],
                                                  r.p_equivalence[0])  # fmt: skip
        else:
            state, n, diff, low, high, p, peq = OPEN, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan
        looked = max((k for k in design.looks() if k <= seeds), default=0)
        needs = (design.next_look(looked) if looked else design.looks()[0]) if state == OPEN else None
        out.append(Comparison(base, cur, str(state), seeds, float(n), float(diff), float(low), float(high),
                              float(p), float(peq), needs, design.alpha, tuple(paired)))  # fmt: skip
    return out


def wanted_cells(sweep: Sweep, cells: list[Cell], comps: list[Comparison]) -> list[Cell]:
    """The cells the next wave needs, cumulative (earlier waves included): each configuration's
    first `seeds` of the seed order, at least the first wave, and as many as its open comparisons'
    next look needs."""
    order = seed_order(sweep)
    target: dict[str, int] = {}
    for c in configurations(cells):
        target[c.config_id] = len(sweep.seeds)
    for cp in comps:
        if cp.needs:
            for side in (cp.base, cp.current):
                target[side.config_id] = max(target[side.config_id], cp.needs)
    out = []
    for c in configurations(cells):
        out += [c.cells[s] for s in order[: target[c.config_id]] if s in c.cells]
    return sorted(out, key=lambda cell: cell.index)
