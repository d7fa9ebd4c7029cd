"""Seed planning (`aspp-bench plan`): from measured results, how many seeds a comparison needs.

For every configuration against the first (the baseline) it reports the difference measured,
the spread the comparison sees (the sd of the per-seed differences where both ran the same
seeds, as the paired test uses, else the pooled sd), the smallest difference the current seeds
detect (one-sided t-test, `alpha`, `power`), and the seeds per configuration needed to detect a
given difference and the measured one. And, with the machinery `sweep --until-decided` runs
(bench.verdicts.sequential), what deciding it would cost: the seeds a fixed design needs for the
two-sided test of the difference at `power`, against the sequential design's power and expected
seeds (simulated at the measured spread) when its max_seeds is 1.25 times that fixed n.
"""

from __future__ import annotations

import math
from typing import Any

from bench.configure.config import is_experiment_key
from bench.configure.naming import row_label
from bench.errors import UserError
from bench.sweep import DecideConfig
from bench.verdicts import stats
from bench.verdicts.gate import seed_miou
from bench.verdicts.sequential import Design, simulate

__all__ = ["plan"]

SEQUENTIAL_INFLATION = 1.25  # the sequential design's max_seeds over the fixed design's n
SIMULATED_UP_TO = 60  # fixed designs beyond this many seeds per side are not simulated
FIXED_LIMIT = 100_000  # fixed designs beyond this many seeds per side are reported as beyond it
SIMULATIONS = 2000  # comparisons per truth: Monte-Carlo error of a power near 0.8 is about 0.01


def sequential_cost(difference: float, sd: float, *, paired: bool, alpha: float, power: float) -> dict[str, Any]:
    """The fixed design's seeds per side for the two-sided test of `difference` at `power`, and the
    sequential design's (a sweep's decide: defaults, max_seeds 1.25 times that n) simulated power
    and expected seeds at `difference` and at none. `sd`: as the comparison sees it (the sd of
    the per-seed differences where paired, else the pooled sd)."""
    out: dict[str, Any] = {"fixed_seeds": None, "sequential": None}
    if not sd or math.isnan(sd) or sd <= 0:
        return out
    n_fix = stats.seeds_needed(difference, sd, alpha=alpha, power=power, paired=paired, limit=FIXED_LIMIT,
                               alternative="two-sided")  # fmt: skip
    out["fixed_seeds"] = n_fix
    if n_fix is None:  # beyond FIXED_LIMIT
        return out
    if n_fix > SIMULATED_UP_TO:
        return out
    d = DecideConfig(against="each-other")
    design = Design(delta=difference, max_seeds=max(int(math.ceil(SEQUENTIAL_INFLATION * n_fix)), 4), first=3,
                    wave=d.wave, alpha=alpha, spending=d.spending)  # fmt: skip
    per_config = sd / math.sqrt(2) if paired else sd  # simulate() draws each configuration's seeds
    sim = simulate(design, per_config, paired=paired, sims=SIMULATIONS)
    out["sequential"] = {
        "max_seeds": design.max_seeds, "power": sim.power, "expected_seeds": sim.expected_seeds,
        "expected_seeds_null": sim.expected_seeds_null, "equivalent_null": sim.equivalent_null,
        "saving": 1 - sim.expected_seeds / n_fix,
    }  # fmt: skip
    return out


def operating(design: Design, sd: float, *, paired: bool = True, sims: int = SIMULATIONS) -> dict[str, float]:
    """A design's power at its delta and expected seeds per side (at delta and at no difference),
    simulated at `sd`: the sd of the per-seed differences where paired, else each side's sd."""
    per_config = sd / math.sqrt(2) if paired else sd
    sim = simulate(design, per_config, paired=paired, sims=sims)
    return {"power": sim.power, "expected_seeds": sim.expected_seeds, "expected_seeds_null": sim.expected_seeds_null}


def recommend(sd: float, delta: float, *, alpha: float, first: int = 3, power: float = 0.8, paired: bool = True,
              spending: str = "hsd:-2", limit: int = 60) -> dict[str, Any] | None:  # fmt: skip
    """The decide: design that reaches `power` at `delta` with the fewest expected seeds at delta: for
    waves of 1, 2 and 3 the smallest max_seeds whose simulated power is at least `power` (searched
    by bisection between the first wave and twice the fixed design's n, at most `limit`). None where
    none does."""
    if not sd or math.isnan(sd) or sd <= 0:
        return None
    n_fix = stats.seeds_needed(delta, sd, alpha=alpha, power=power, paired=paired, limit=limit,
                               alternative="two-sided")  # fmt: skip
    if n_fix is None:  # the fixed design needs more than `limit`: a sequential one (about 1.3 x) does too
        return None
    limit = min(limit, max(2 * n_fix, first + 2))  # a sequential design needs at most about 1.3 x the fixed n
    best = None
    for wave in (1, 2):
        def design(m: int, wave: int = wave) -> Design:
            return Design(delta=delta, max_seeds=m, first=min(first, m), wave=wave, alpha=alpha, spending=spending)

        lo, hi = max(first, 2), limit
        top = operating(design(hi), sd, paired=paired)
        if top["power"] < power:
            continue
        found = (hi, top)
        while lo < hi:
            mid = (lo + hi) // 2
            got = operating(design(mid), sd, paired=paired)
            if got["power"] >= power:
                hi, found = mid, (mid, got)
            else:
                lo = mid + 1
        m, got = found
        cand = {"max_seeds": m, "wave": wave, **got}
        if best is None or cand["expected_seeds"] < best["expected_seeds"] - 0.05:
            best = cand
    return best


def plan(
    df: Any, *, difference: float, alpha: float = 0.05, power: float = 0.8, baseline: str | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """(Markdown table, records) over the configurations of a loaded table (bench.results.table.load_table)."""
    import numpy as np

    if difference <= 0:
        raise UserError(f"--difference {difference}: give the smallest difference worth detecting, in mIoU points")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise UserError(f"--alpha {alpha} / --power {power}: both are probabilities between 0 and 1")
    cfg_cols = [c for c in df.columns if is_experiment_key(c) and c != "train.seed"]
    varying = [c for c in cfg_cols if df[c].astype(str).nunique() > 1]
    groups = [(cid, g) for cid, g in df.groupby("_config", sort=False)]
    # the default baseline is the first configuration in the sweep's order (its manifest), else in
    # the order of the configurations' labels: never the order of folder names (hashes), where one
    # corrupt run could change which configuration is the base
    if "_order" in df.columns and df["_order"].notna().all():
        groups.sort(key=lambda cg: float(cg[1]["_order"].min()))
    else:
        groups.sort(key=lambda cg: row_label(cg[1].iloc[0], varying, empty="all"))
    if len(groups) < 2:
        raise UserError("plan compares configurations: the table holds only one")
    if baseline:
        labels = [row_label(g.iloc[0], varying, empty="all") for _, g in groups]
        hit = [i for i, lab in enumerate(labels) if all(p.strip() in lab for p in baseline.split(","))]
        if not hit:
            raise UserError(f"--baseline {baseline!r} matches no configuration; they are: {'; '.join(labels)}")
        groups.insert(0, groups.pop(hit[0]))
    base_id, base = groups[0]
    b = seed_miou(base)
    records = []
    for _, g in groups[1:]:
        c = seed_miou(g)
        paired = set(b) == set(c) and len(b) >= 2
        if paired:
            d = np.array([c[s] - b[s] for s in sorted(b)])
            sd = float(np.std(d, ddof=1))
        elif len(b) >= 2 and len(c) >= 2:
            vb, vc = np.var(list(b.values()), ddof=1), np.var(list(c.values()), ddof=1)
            sd = float(math.sqrt((vb * (len(b) - 1) + vc * (len(c) - 1)) / (len(b) + len(c) - 2)))
        else:
            sd = math.nan
        measured = float(np.mean(list(c.values())) - np.mean(list(b.values())))
        n = min(len(b), len(c))
        records.append(
            {
                "configuration": row_label(g.iloc[0], varying, empty="all"),
                "n": n,
                "test": "paired" if paired else "welch",
                "difference": measured,
                "sd": sd,
                "detectable": stats.detectable_difference(n, sd, alpha=alpha, power=power, paired=paired),
                "seeds_for_difference": stats.seeds_needed(difference, sd, alpha=alpha, power=power, paired=paired)
                if not math.isnan(sd)
                else None,
                "seeds_for_measured": stats.seeds_needed(measured, sd, alpha=alpha, power=power, paired=paired)
                if not math.isnan(sd) and measured
                else None,
                **sequential_cost(difference, sd, paired=paired, alpha=alpha, power=power),
            }
        )

    def f(v: Any, spec: str) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)

    def seeds(v: Any) -> str:
        return "> 1000" if v is None else str(v)

    def sequential(r: dict[str, Any]) -> str:
        q = r["sequential"]
        if q is None and r["sd"] is not None and r["sd"] > 0 and r["fixed_seeds"] is None:
            return "-"
        if q is None:
            return "-" if r["fixed_seeds"] is None else f"not simulated (fixed n > {SIMULATED_UP_TO})"
        return (f"max {q['max_seeds']}, power {q['power']:.2f}: {q['expected_seeds']:.1f} at {difference:g} "
                f"({abs(100 * q['saving']):.0f}% {'fewer' if q['saving'] >= 0 else 'more'}), "
                f"{q['expected_seeds_null']:.1f} at 0")  # fmt: skip

    sds = [r["sd"] for r in records if r["sd"] is not None and not math.isnan(r["sd"])]
    each = alpha / len(records)  # as a decide: section against this base splits it (bonferroni)
    rec = recommend(float(np.median(sds)), difference, alpha=each, power=power,
                    paired=all(r["test"] == "paired" for r in records)) if sds else None  # fmt: skip
    for r in records:
        r["recommended"] = rec
    advice = (
        f"Recommended decide: section for a difference of {difference:g} points at the median sd "
        f"{float(np.median(sds)):.2f} of these comparisons: max_seeds {rec['max_seeds']}, wave {rec['wave']} "
        f"(first wave 3, hsd:-2, alpha {alpha} split over the {len(records)} comparisons with the base: {each:.4g} "
        "each; a sweep deciding more comparisons or budgets splits it further): power "
        f"{rec['power']:.2f}, expected seeds per side {rec['expected_seeds']:.1f} at {difference:g} points and "
        f"{rec['expected_seeds_null']:.1f} at none (simulated, {SIMULATIONS} comparisons per truth)."
        if rec
        else "No decide: design of up to 60 seeds per side reaches the power asked at these spreads"
        if sds
        else "No spread measured (each configuration needs 2 seeds): no design recommended."
    )
    lines = [
        advice,
        "",
        f"against {row_label(base.iloc[0], varying, empty='all')} ({len(b)} seeds); one-sided t-test, "
        f"alpha {alpha}, power {power}",
        "",
        f"| configuration | seeds | test | Δ mIoU measured | sd | detectable now | seeds for {difference:g} points "
        f"| seeds for the measured Δ | fixed design, two-sided, power {power} | sequential (--until-decided): "
        "expected seeds per side |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['configuration']} | {r['n']} | {r['test']} | {f(r['difference'], '+.2f')} | {f(r['sd'], '.2f')} | "
            f"{f(r['detectable'], '.2f')} | {seeds(r['seeds_for_difference'])} | {seeds(r['seeds_for_measured'])} | "
            f"{r['fixed_seeds'] if r['fixed_seeds'] is not None else ('-' if not r['sd'] else f'> {FIXED_LIMIT:,}')} | "
            f"{sequential(r)} |"
        )
    return "\n".join(lines), records
