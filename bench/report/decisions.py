"""The report's decisions table, for a sweep whose `decide:` section names comparisons (`sweep
--until-decided`): per comparison its verdict (different / equivalent within ±delta / undecided at
max_seeds / still open), the seeds per side it used, the difference with its repeated-confidence
interval at the deciding look's level, and the probability of improvement with its stratified
bootstrap interval over the same seeds.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from bench.configure.naming import row_label
from bench.sweep import Sweep
from bench.verdicts import stats
from bench.verdicts.waves import comparisons, design_of, every_wave_cells, seed_order

__all__ = ["decisions"]

STATES = {
    "different": "different",
    "equivalent": "equivalent within ±{delta:g}",
    "undecided": "undecided at max_seeds",
    "open": "open",
}


def decisions(sweep: Sweep, df: Any, *, source: str) -> tuple[pd.DataFrame, str] | None:
    """(table, caption) of the sweep's declared comparisons as the finished runs of `df` leave them;
    None where the sweep declares none."""
    if sweep.decide is None:
        return None
    cells = every_wave_cells(sweep, source=source)
    done = df[df["status"] == "done"]
    miou = {str(r): 100 * float(m) for r, m in zip(done["run_id"], done["miou"], strict=True)}
    comps = comparisons(sweep, cells, miou, source=source)
    order = seed_order(sweep)
    axes = list(dict.fromkeys(k for c in comps for side in (c.base, c.current) for k in side.varying))

    def label(side: Any) -> str:  # as the main table names a configuration: arch=unet, rates=-
        return row_label({a: side.varying.get(a) for a in axes}, axes, empty="all")

    rows = []
    for c in comps:
        seeds = order[: c.seeds]
        base = {s: miou[c.base.cells[s].run_id] for s in seeds}
        cur = {s: miou[c.current.cells[s].run_id] for s in seeds}
        imp = stats.probability_of_improvement(base, cur) if seeds else None
        decided = c.state != "open"
        rows.append({
            "current": label(c.current),
            "base": label(c.base),
            "verdict": STATES[c.state].format(delta=sweep.decide.delta),
            "seeds": f"{c.seeds}" + ("" if decided or c.needs is None else f" (next look: {c.needs})"),
            "Δ mIoU [CI]": "-" if math.isnan(c.diff) else f"{c.diff:+.2f} [{c.low:+.2f}, {c.high:+.2f}]",
            "P(current > base)": "-" if imp is None else stats.poi_text(imp.p, imp.low, imp.high),
        })  # fmt: skip
    design = design_of(sweep, comparisons_count=len(comps), source=source)
    d = sweep.decide
    caption = (
        f"Decided at the least compute (`sweep --until-decided`): {len(comps)} comparison(s), seeds added "
        f"{d.wave} at a time from a first wave of {len(sweep.seeds)} up to {d.max_seeds} per configuration, only "
        f"where a comparison was open. Paired by seed. Different: two-sided t-test at the look's level "
        f"(Lan-DeMets spending {d.spending}, alpha {d.alpha}"
        + (f", Bonferroni over {len(comps)}: {design.alpha:.4g} each" if d.correction == "bonferroni" else "")
        + f"); equivalent: two one-sided tests within ±{d.delta:g} points. Δ: current - base in mIoU points "
        "at the deciding (or last) look, with its repeated-confidence interval at that look's level. "
        "P(current > base): over all pairs of the seeds used, ties half, 95% stratified bootstrap interval."
    )
    return pd.DataFrame(rows), caption
