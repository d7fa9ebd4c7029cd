"""The report's decisions table, for a sweep whose `decide:` section names comparisons (`sweep
--until-decided`): per comparison (and per budget, where `decide.budgets` names several) its verdict
(different / equivalent within ±delta / undecided at max_seeds / still open), "at this budget" where
the curves it compares had not flattened, the seeds per side it used, the difference with the
interval the verdict was decided on, the probability of improvement with its stratified bootstrap
interval, and whether the seeds' curves had flattened; with budgets, each comparison's trend over
them and the agreement of the rankings between budgets (Kendall's tau, bootstrap interval).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from bench.configure.naming import cell_label, row_label
from bench.results.convergence import configuration_convergence
from bench.sweep import Sweep
from bench.verdicts import stats
from bench.verdicts.budgets import budget_trend, ranking_agreement
from bench.verdicts.sequential import equivalence_interval
from bench.verdicts.waves import check_decide, comparisons, configurations, every_wave_cells

__all__ = ["decisions"]

STATES = {
    "different": "different",
    "equivalent": "equivalent within ±{delta:g}",
    "undecided": "undecided at max_seeds",
    "open": "open",
}


def budget_labels(sweep: Sweep) -> list[str]:
    """A short name per decide.budgets entry, as written: 'train.epochs=16'."""
    return [cell_label(b) or "base" for b in (sweep.decide.budgets if sweep.decide else [])]


def decisions(sweep: Sweep, df: Any, *, source: str) -> tuple[pd.DataFrame, str, list[str]] | None:
    """(table, caption, extra Markdown lines: trends and rank agreement across budgets) of the
    sweep's declared comparisons as the finished runs of `df` leave them; None where it declares none."""
    if sweep.decide is None:
        return None
    d = sweep.decide
    cells = every_wave_cells(sweep, source=source)
    design = check_decide(sweep, cells, source=source)
    done = df[df["status"] == "done"]
    miou = {str(r): 100 * float(m) for r, m in zip(done["run_id"], done["miou"], strict=True)}
    conv = {str(r["run_id"]): (r.get("conv_status"), r.get("conv_tail_gain"), r.get("conv_headroom"))
            for _, r in done.iterrows()}  # fmt: skip

    def curve(side: Any, seeds: list[int]) -> dict[str, Any]:  # the side's curves over the seeds used
        runs = [conv.get(side.cells[s].run_id, (None, None, None)) for s in seeds if s in side.cells]
        return configuration_convergence(*zip(*runs, strict=True)) if runs else {"status": "undetermined", "text": "-"}

    comps = comparisons(sweep, cells, miou, source=source)
    budget_keys = set(k for b in d.budgets for k in b)
    axes = list(dict.fromkeys(k for c in comps for side in (c.base, c.current) for k in side.varying
                              if k not in budget_keys))  # fmt: skip
    blabels = budget_labels(sweep)

    def label(side: Any) -> str:  # as the main table names a configuration: arch=unet, rates=-
        return row_label({a: side.varying.get(a) for a in axes}, axes, empty="all")

    rows, trend_in = [], {}
    for c in comps:
        seeds = list(c.paired)
        base = {s: miou[c.base.cells[s].run_id] for s in seeds}
        cur = {s: miou[c.current.cells[s].run_id] for s in seeds}
        imp = stats.probability_of_improvement(base, cur) if seeds else None
        decided = c.state != "open"
        cb, cc = curve(c.base, seeds), curve(c.current, seeds)
        flat = cb["status"] == "plateau" and cc["status"] == "plateau"
        verdict = STATES[c.state].format(delta=d.delta)
        if c.state == "equivalent":  # shown as decided: the TOST interval (1 - 2 x level), inside ±delta
            low, high = equivalence_interval(design, [base[s] for s in seeds], [cur[s] for s in seeds], int(c.n))
            interval = f"{c.diff:+.2f} [{low:+.2f}, {high:+.2f}] (TOST)"
        elif math.isnan(c.diff):
            interval = "-"
        else:
            interval = f"{c.diff:+.2f} [{c.low:+.2f}, {c.high:+.2f}]"
        row = {"current": label(c.current), "base": label(c.base)}
        if blabels:
            row["budget"] = blabels[c.budget]
        row.update({
            "verdict": verdict if flat or c.state in ("open", "undecided") else f"{verdict} at this budget",
            "seeds": f"{c.seeds}" + ("" if decided or c.needs is None else f" (next look: {c.needs})"),
            "Δ mIoU [CI]": interval,
            "P(current > base)": "-" if imp is None else stats.poi_text(imp.p, imp.low, imp.high),
            "curves": f"{cc['text']} / {cb['text']}",
        })  # fmt: skip
        rows.append(row)
        trend_in.setdefault((row["current"], row["base"]), []).append((c.budget, c.state, c.diff))
    extra: list[str] = []
    if len(blabels) > 1:
        extra += ["**Across budgets** (smallest first: " + "; ".join(blabels) + ").", ""]
        for (cur_l, base_l), got in trend_in.items():
            got = sorted(got, key=lambda g: g[0])
            trend = budget_trend([blabels[b] for b, _, _ in got], [s for _, s, _ in got], [x for _, _, x in got])
            extra.append(f"- {cur_l} vs {base_l}: {trend}.")
        extra += ["", *_rank_agreement(sweep, cells, miou, blabels, label), ""]
    caption = (
        f"Decided at the least compute (`sweep --until-decided`): {len(comps)} comparison(s)"
        + (f" ({len(comps) // max(len(blabels), 1)} at each of {len(blabels)} budgets)" if blabels else "")
        + f", seeds added {d.wave} at a time from a first wave of {len(sweep.seeds)} up to {d.max_seeds} per "
        "configuration, only where a comparison was open. Paired by seed. Different: two-sided t-test at the look's "
        f"level (Lan-DeMets spending {d.spending}, alpha {d.alpha}"
        + (f", Bonferroni over the {len(comps)} comparisons{' and budgets' if blabels else ''}: {design.alpha:.4g} "
           "each" if d.correction == "bonferroni" else "")  # fmt: skip
        + f"); equivalent: two one-sided tests within ±{d.delta:g} points. Δ: current - base in mIoU points at the "
        "deciding (or last) look, with the interval the verdict was decided on: for different (or open) the "
        "two-sided repeated-confidence interval at that look's level, for equivalent the TOST interval (1 - 2 x the "
        "look's one-sided level), which lies inside ±delta. P(current > base): over all pairs of the seeds used, "
        "ties half, with a 95% bootstrap interval that resamples the seed pairs together (paired seeds). Curves "
        "(current / base): whether the seeds' validation curves had flattened (plateau rule, docs/budgets.md; "
        "'rising k/n': the mean curve still rose, k of n runs on their own); a verdict between curves that had not "
        "both flattened holds at this budget only."
    )
    return pd.DataFrame(rows), caption, extra


def _rank_agreement(sweep: Sweep, cells: list, miou: dict[str, float], blabels: list[str], label: Any) -> list[str]:
    """Kendall's tau between the configurations' ranking at each budget and at the largest."""
    configs = configurations(cells)
    by_budget: dict[int, dict[str, dict[int, float]]] = {}
    for c in configs:
        scores = {s: miou[cell.run_id] for s, cell in c.cells.items() if cell.run_id in miou}
        if scores:
            by_budget.setdefault(c.budget, {})[label(c)] = scores
    last = len(blabels) - 1
    if last not in by_budget:
        return ["Rank agreement between budgets: no finished run at the largest budget yet."]
    lines = [f"Rank agreement with the largest budget ({blabels[last]}): Kendall's tau between the configurations' "
             "rankings by mean mIoU, 95% bootstrap interval resampling each configuration's seeds:"]  # fmt: skip
    for b in range(last):
        names = [n for n in by_budget.get(b, {}) if n in by_budget[last]]
        if len(names) < 2:
            lines.append(f"- {blabels[b]}: fewer than two configurations finished at both budgets")
            continue
        tau, lo, hi = ranking_agreement([by_budget[b][n] for n in names], [by_budget[last][n] for n in names])
        interval = "" if math.isnan(lo) else f" ({lo:+.2f} to {hi:+.2f})"
        lines.append(f"- {blabels[b]}: tau {tau:+.2f}{interval} over {len(names)} configurations")
    return lines
