"""Does a conclusion survive more training? Rankings along the training curves and across budgets.

- `trajectory`: one comparison's difference (current - base, mIoU points) at every evaluation both
  sides recorded, paired by seed, with a 95% t interval over the seeds; the epoch from which the
  sign of the mean difference no longer changes (`sign_fixed_from`).
- `ranking_agreement`: Kendall's tau between the ranking of configurations by mean mIoU at one
  point (an evaluation, or a budget) and at another, with a bootstrap interval that resamples the
  seeds of each configuration independently (percentile, `B` resamples, a fixed generator).
- `budget_trend`: a comparison's verdicts at increasing budgets read as "holds from budget B on"
  (the same decided direction, or equivalence, at B and every larger budget) or "flips between B1
  and B2" (the sign of the difference changes between two budgets next to each other once the
  budgets where it was decided equivalent, which has no direction, are passed over).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from bench.verdicts.sequential import DIFFERENT, decide_arrays
from bench.verdicts.stats import t_interval

__all__ = ["Trajectory", "budget_trend", "kendall_tau", "ranking_agreement", "trajectory"]

B = 2000


@dataclass(frozen=True)
class Trajectory:
    epochs: tuple[float, ...]
    diff: tuple[float, ...]  # mean over seeds, points
    low: tuple[float, ...]
    high: tuple[float, ...]
    seeds: tuple[int, ...]  # seeds paired at each evaluation
    sign_fixed_from: float | None  # first epoch from which the mean difference keeps its final sign


def _curve(history: Sequence[Mapping[str, Any]]) -> dict[float, float]:
    ok = [h for h in history if isinstance(h, Mapping) and isinstance(h.get("miou"), int | float)]
    return {float(h["epoch"]): 100 * float(h["miou"]) for h in ok if math.isfinite(h["miou"])}


def trajectory(base: Mapping[int, Sequence[Mapping[str, Any]]], current: Mapping[int, Sequence[Mapping[str, Any]]]
               ) -> Trajectory | None:  # fmt: skip
    """`base`, `current`: seed -> the run's training history (train.history of result.json)."""
    seeds = sorted(set(base) & set(current))
    curves = {s: (_curve(base[s]), _curve(current[s])) for s in seeds}
    epochs = sorted(set.intersection(*(set(b) & set(c) for b, c in curves.values()))) if curves else []
    if not epochs:
        return None
    diff, low, high, ns = [], [], [], []
    for e in epochs:
        m, lo, hi = t_interval([curves[s][1][e] - curves[s][0][e] for s in seeds])
        diff.append(m)
        low.append(lo)
        high.append(hi)
        ns.append(len(seeds))
    final = np.sign(diff[-1])
    fixed = None
    for i in range(len(epochs)):
        if all(np.sign(v) == final for v in diff[i:]):
            fixed = epochs[i]
            break
    return Trajectory(tuple(epochs), tuple(diff), tuple(low), tuple(high), tuple(seeds), fixed)


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b of two score lists over the same configurations (nan where undefined)."""
    from scipy.stats import kendalltau

    if len(a) < 2:
        return math.nan
    with np.errstate(invalid="ignore"):
        return float(kendalltau(a, b).statistic)


def ranking_agreement(first: Sequence[Mapping[int, float]], second: Sequence[Mapping[int, float]], *,
                      seed: int = 20261207) -> tuple[float, float, float]:  # fmt: skip
    """(tau, low, high): Kendall's tau between the configurations' mean scores in `first` and in
    `second` (each: per configuration, seed -> score), with a 95% percentile bootstrap interval that
    resamples each configuration's seeds in each list independently."""
    if len(first) != len(second) or len(first) < 2 or any(not s for s in (*first, *second)):
        return math.nan, math.nan, math.nan
    tau = kendall_tau([float(np.mean(list(s.values()))) for s in first],
                      [float(np.mean(list(s.values()))) for s in second])  # fmt: skip
    rng = np.random.default_rng(seed)

    def means(side: Sequence[Mapping[int, float]]) -> np.ndarray:
        cols = []
        for s in side:
            v = np.array(list(s.values()), dtype=float)
            cols.append(v[rng.integers(0, len(v), (B, len(v)))].mean(axis=1))
        return np.stack(cols, axis=1)

    from scipy.stats import kendalltau

    m1, m2 = means(first), means(second)
    taus = np.array([kendalltau(m1[i], m2[i]).statistic for i in range(B)], dtype=float)
    taus = taus[np.isfinite(taus)]
    if not len(taus):
        return tau, math.nan, math.nan
    return tau, float(np.quantile(taus, 0.025)), float(np.quantile(taus, 0.975))


def budget_trend(labels: Sequence[str], states: Sequence[str], diffs: Sequence[float]) -> str:
    """A comparison's trend over budgets (smallest first): `labels` name the budgets, `states` the
    verdicts there (different / equivalent / undecided / open), `diffs` the differences (points)."""
    signs = [0 if not math.isfinite(d) else int(np.sign(d)) for d in diffs]
    signed = [i for i, st in enumerate(states) if st != "equivalent" and signs[i]]  # equivalence has no direction
    for a, b in zip(signed, signed[1:], strict=False):
        if signs[a] != signs[b]:
            return f"flips between {labels[a]} and {labels[b]}"
    last = len(states) - 1
    if states[last] not in ("different", "equivalent"):
        return f"not decided at the largest budget ({labels[last]})"

    def same(i: int) -> bool:
        if states[i] != states[last]:
            return False
        return states[i] == "equivalent" or signs[i] == signs[last]

    start = last
    while start > 0 and same(start - 1):
        start -= 1
    return f"holds from {labels[start]} on" if start < last or len(states) == 1 else f"holds at {labels[last]} only"


def simulate_budgets(design: Any, *, budgets: int, configs: int = 3, sims: int = 4000, rho: float = 0.5,
                     sd: float = 1.0, seed: int = 0) -> dict[str, float]:  # fmt: skip
    """The overall false-decision rate of deciding every pair of `configs` equal configurations at
    each of `budgets` budgets with `design` (its alpha already split, as design_of splits it), by
    simulation of decide_arrays: per simulated sweep, True where any comparison at any budget is
    called different. A seed's draw is shared across budgets with correlation `rho` (one seed at
    two budgets starts from the same weights), so the budgets' tests are dependent as in a real
    sweep. Returns the rate with its Monte-Carlo standard error, and the mean seeds per side used."""
    rng = np.random.default_rng(seed)
    n = design.max_seeds
    shared = rng.standard_normal((sims, configs, n))
    any_different = np.zeros(sims, dtype=bool)
    used = []
    for _ in range(budgets):
        own = rng.standard_normal((sims, configs, n))
        y = sd * (math.sqrt(rho) * shared + math.sqrt(1 - rho) * own)
        for a, b in combinations(range(configs), 2):
            r = decide_arrays(design, y[:, a, :], y[:, b, :], paired=True)
            any_different |= r.state == DIFFERENT
            used.append(np.nanmean(r.n))
    rate = float(any_different.mean())
    return {"rate": rate, "se": math.sqrt(rate * (1 - rate) / sims), "seeds": float(np.mean(used)),
            "comparisons": budgets * configs * (configs - 1) // 2}  # fmt: skip
