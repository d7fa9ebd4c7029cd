"""Decided at the least compute: a group-sequential comparison over seeds that looks after every
wave of seeds and stops a comparison as soon as it is settled, with its false-decision rate held
at alpha despite the repeated looks.

The design. Seeds arrive in waves: a first wave (`first`), then `wave` more at a time, up to
`max_seeds` per side; each wave is a look. Alpha is spent over the looks by a Lan-DeMets spending
function of the information fraction t = n / max_seeds: Hwang-Shih-DeCani with gamma -2 by default
(between O'Brien-Fleming-type, which spends almost nothing early, and Pocock-type, which spends
evenly; both are available). Each look's nominal level is calibrated on null paths of the very
t statistic the look computes (`calibrated_levels`), not on its normal limit, so 3- and 4-seed
looks keep their t tails (the normal-limit levels let a Pocock-type design reach 0.062 at alpha
0.05 in a 3-seed-first design; calibrated: 0.046).

Two decisions, each with its own alpha spent the same way:
- different: the two-sided t-test (paired where both sides ran the same seeds, else Welch) at the
  look's nominal level; its interval is the repeated confidence interval at that level;
- equivalent within +-delta: two one-sided tests (TOST: the difference is above -delta and below
  +delta), each at the look's one-sided nominal level.
A comparison still open at `max_seeds` is undecided there. The first decision along the looks is
the verdict: a later look (more seeds added for another comparison) never revisits it.

Everything is vectorised over rows (one comparison, or ten thousand simulated ones), so the
simulation in tests and scripts/simulate_sequential.py runs this very code, and `fixed_arrays`
is the fixed-n design it is measured against (one look, the same two tests at alpha).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats

__all__ = [
    "SPENDING",
    "spending_function",
    "Design",
    "calibrated_levels",
    "decide_arrays",
    "equivalence_interval",
    "fixed_arrays",
    "naive_arrays",
    "simulate",
    "Simulated",
]

OPEN, DIFFERENT, EQUIVALENT, UNDECIDED = "open", "different", "equivalent", "undecided"


def _obrien_fleming(t: float, alpha: float) -> float:
    """Lan & DeMets (1983), O'Brien-Fleming-type: 2 - 2 Phi(z_{1-alpha/2} / sqrt(t))."""
    return float(2 * stats.norm.sf(stats.norm.isf(alpha / 2) / math.sqrt(t)))


def _pocock(t: float, alpha: float) -> float:
    """Lan & DeMets (1983), Pocock-type: alpha ln(1 + (e - 1) t)."""
    return float(alpha * math.log(1 + (math.e - 1) * t))


def _hsd(t: float, alpha: float, gamma: float) -> float:
    """Hwang, Shih & DeCani (1990): alpha (1 - e^{-gamma t}) / (1 - e^{-gamma}); gamma -4 is close
    to O'Brien-Fleming, 1 to Pocock. expm1 keeps a gamma near 0 exact (the limit is alpha t)."""
    return float(alpha * math.expm1(-gamma * t) / math.expm1(-gamma))


HSD_GAMMA = 40.0  # |gamma| beyond it: e^{-gamma} overflows or the function is a step at t = 0 or 1


SPENDING = {"obrien-fleming": _obrien_fleming, "pocock": _pocock}  # and hsd:GAMMA, a family


def spending_function(name: str):
    """The spending function a design names: obrien-fleming, pocock or hsd:GAMMA."""
    kind, _, arg = name.partition(":")
    if kind == "hsd":
        try:
            gamma = float(arg)
        except ValueError:
            gamma = math.nan
        if not math.isfinite(gamma) or gamma == 0 or abs(gamma) > HSD_GAMMA:
            raise ValueError(
                f"spending {name!r}: hsd takes a gamma between -{HSD_GAMMA:g} and {HSD_GAMMA:g}, not 0, e.g. hsd:-2 "
                "(-4 is close to O'Brien-Fleming, 1 to Pocock)"
            )
        return lambda t, alpha: _hsd(t, alpha, gamma)
    if kind not in SPENDING or arg:
        raise ValueError(f"spending {name!r}: allowed are obrien-fleming, pocock and hsd:GAMMA (e.g. hsd:-2)")
    return SPENDING[kind]


@lru_cache(maxsize=64)
def calibrated_levels(looks: tuple[int, ...], max_seeds: int, alpha: float, spending: str, sides: int,
                      paired: bool) -> tuple[float, ...]:  # fmt: skip
    """Nominal p-levels of the looks, such that under the null the t-test first reaches its
    level at look k with probability spend(t_k) - spend(t_{k-1}), t = n / max_seeds.

    Calibrated on null paths of the t statistic itself, not its normal limit: under normality the
    paired (one-sample) t statistic's joint law over the looks is free of the spread, so the
    levels are exact up to Monte-Carlo error (200,000 paths: +-0.0005 at alpha 0.05). The normal
    limit (nominal levels from z boundaries) let a Pocock-type design reach 0.062 at alpha 0.05
    with 3-seed first looks. Welch's statistic depends a little on the variance ratio; it is
    calibrated at equal variances. `sides` 2: the two-sided test; 1: one of TOST's one-sided tests."""
    rng = np.random.default_rng(20261204)  # fixed: a design's levels are the same in every process
    paths, n_max = 200_000, looks[-1]
    base = np.zeros((paths, n_max)) if paired else rng.standard_normal((paths, n_max))
    cur = rng.standard_normal((paths, n_max))
    one = spending_function(spending)

    def spend(t: float, a: float) -> float:  # two-sided: each side spends alpha/2 (symmetric design)
        return one(t, a) if sides == 1 else 2 * one(t, a / 2)

    alive = np.ones(paths, dtype=bool)
    levels, spent = [], 0.0
    for n in looks:
        if n < 2:
            levels.append(0.0)
            continue
        p = _pvalue(base[:, :n], cur[:, :n], paired, sides)
        target = spend(n / max_seeds, alpha) - spent
        spent += target
        ranked = np.sort(np.where(alive, p, np.inf))
        k = int(math.floor(target * paths))
        level = float(ranked[k - 1]) if k >= 1 else 0.0
        levels.append(level)
        alive &= ~(p <= level)
    return tuple(levels)


def _pvalue(base: np.ndarray, cur: np.ndarray, paired: bool, sides: int) -> np.ndarray:
    alternative = "two-sided" if sides == 2 else "greater"
    if paired:
        return np.asarray(stats.ttest_1samp(cur - base, 0.0, axis=1, alternative=alternative).pvalue)
    return np.asarray(stats.ttest_ind(cur, base, equal_var=False, axis=1, alternative=alternative).pvalue)


@dataclass(frozen=True)
class Design:
    """The sequential design of one sweep's comparisons, every field given: a sweep's `decide:`
    section (bench.sweep.DecideConfig, the one owner of the defaults) states it."""

    delta: float  # the smallest difference that matters, in mIoU points
    max_seeds: int  # seeds per side at the last look
    first: int  # seeds of the first wave
    wave: int  # seeds each later wave adds
    alpha: float  # false-decision rate of each comparison, over all its looks
    spending: str

    def looks(self) -> tuple[int, ...]:
        """Seeds per side at each look: first, first + wave, ..., max_seeds."""
        n, out = min(self.first, self.max_seeds), []
        while True:
            out.append(n)
            if n >= self.max_seeds:
                return tuple(out)
            n = min(n + self.wave, self.max_seeds)

    def levels(self, paired: bool) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per look: the nominal two-sided level of the 'different' test and the nominal one-sided
        level of each of the two TOST tests."""
        args = (self.looks(), self.max_seeds, self.alpha, self.spending)
        return calibrated_levels(*args, 2, paired), calibrated_levels(*args, 1, paired)

    def next_look(self, n: int) -> int | None:
        """Seeds per side at the first look beyond n (None: n is already at max_seeds)."""
        return next((k for k in self.looks() if k > n), None)


@dataclass(frozen=True)
class Decisions:
    """Row-wise outcome of `decide_arrays`: state, the look's seeds per side, the difference
    (current - baseline), its interval at the deciding (or last) look's level, and p-values."""

    state: np.ndarray  # OPEN / DIFFERENT / EQUIVALENT / UNDECIDED
    n: np.ndarray  # seeds per side at the look that decided (or the last look taken)
    diff: np.ndarray
    low: np.ndarray
    high: np.ndarray
    p: np.ndarray  # two-sided p of the difference at that look
    p_equivalence: np.ndarray  # TOST p (the larger of the two one-sided p's) at that look
    level: np.ndarray  # the nominal two-sided level of that look


def _tests(base: np.ndarray, cur: np.ndarray, paired: bool, delta: float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Per row: mean difference, its standard error, degrees of freedom, the two-sided p of the
    difference and the TOST p, from scipy's t-tests along axis 1."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if paired:
            d = cur - base
            res = stats.ttest_1samp(d, 0.0, axis=1)
            lo = stats.ttest_1samp(d, -delta, axis=1, alternative="greater").pvalue
            hi = stats.ttest_1samp(d, delta, axis=1, alternative="less").pvalue
            diff = d.mean(axis=1)
            se = d.std(axis=1, ddof=1) / math.sqrt(d.shape[1])
            df = np.full(len(d), d.shape[1] - 1.0)
        else:
            res = stats.ttest_ind(cur, base, equal_var=False, axis=1)
            lo = stats.ttest_ind(cur + delta, base, equal_var=False, axis=1, alternative="greater").pvalue
            hi = stats.ttest_ind(cur - delta, base, equal_var=False, axis=1, alternative="less").pvalue
            diff = cur.mean(axis=1) - base.mean(axis=1)
            vb, vc = base.var(axis=1, ddof=1) / base.shape[1], cur.var(axis=1, ddof=1) / cur.shape[1]
            se = np.sqrt(vb + vc)
            df = (vb + vc) ** 2 / (vb**2 / (base.shape[1] - 1) + vc**2 / (cur.shape[1] - 1))
        p, p_eq = np.asarray(res.pvalue, float), np.maximum(lo, hi)
    # no spread at all (bit-equal runs, to rounding): the t statistic is undefined; the difference is exact
    flat = ~(se > 1e-9 * np.maximum(1.0, np.abs(diff)))
    p = np.where(flat, np.where(np.abs(diff) > 1e-9, 0.0, 1.0), p)
    p_eq = np.where(flat, np.where(np.abs(diff) < delta, 0.0, 1.0), p_eq)
    return diff, np.where(flat, 0.0, se), np.where(flat, 1.0, df), p, p_eq


def decide_arrays(design: Design, base: np.ndarray, cur: np.ndarray, *, paired: bool) -> Decisions:
    """Run the design along the looks its seeds reach. base, cur: (rows, seeds) in the order the
    waves added them (paired: column j of both is seed j). A row is decided at its first look
    whose test crosses; open when its seeds end before the next look; undecided at max_seeds."""
    base, cur = np.atleast_2d(np.asarray(base, float)), np.atleast_2d(np.asarray(cur, float))
    rows, have = base.shape[0], min(base.shape[1], cur.shape[1])
    diff_levels, eq_levels = design.levels(paired)
    state = np.full(rows, OPEN, dtype=object)
    out = {k: np.full(rows, math.nan) for k in ("n", "diff", "low", "high", "p", "p_equivalence", "level")}
    for n, a_diff, a_eq in zip(design.looks(), diff_levels, eq_levels, strict=True):
        if n > have or n < 2:
            continue
        todo = state == OPEN
        if not todo.any():
            break
        diff, se, df, p, p_eq = _tests(base[todo, :n], cur[todo, :n], paired, design.delta)
        new = np.where(p <= a_diff, DIFFERENT, np.where(p_eq <= a_eq, EQUIVALENT, OPEN)).astype(object)
        if n >= design.max_seeds:
            new[new == OPEN] = UNDECIDED
        half = stats.t.isf(a_diff / 2, df) * se
        for k, v in (("n", n), ("diff", diff), ("low", diff - half), ("high", diff + half), ("p", p),
                     ("p_equivalence", p_eq), ("level", a_diff)):  # fmt: skip
            out[k][todo] = v
        state[todo] = new
    return Decisions(state=state, **out)


def equivalence_interval(design: Design, base: list[float], cur: list[float], n: int, *, paired: bool = True
                         ) -> tuple[float, float]:  # fmt: skip
    """The interval TOST decided on at the look of `n` seeds per side: the difference's
    1 - 2 x (the look's one-sided level) confidence interval. Equivalence within +-delta at that look
    is exactly this interval lying inside (-delta, +delta)."""
    looks = design.looks()
    if n not in looks:
        return math.nan, math.nan
    level = design.levels(paired)[1][looks.index(n)]
    b, c = np.asarray([base[:n]], float), np.asarray([cur[:n]], float)
    diff, se, df, _, _ = _tests(b, c, paired, design.delta)
    half = float(stats.t.isf(level, df[0]) * se[0])
    return float(diff[0]) - half, float(diff[0]) + half


def fixed_arrays(base: np.ndarray, cur: np.ndarray, *, paired: bool, delta: float, alpha: float = 0.05) -> np.ndarray:
    """The fixed-n design: one look at all the seeds given, 'different' at two-sided alpha, else
    'equivalent' where TOST's p is at most alpha, else undecided. Row-wise states."""
    base, cur = np.atleast_2d(np.asarray(base, float)), np.atleast_2d(np.asarray(cur, float))
    _, _, _, p, p_eq = _tests(base, cur, paired, delta)
    return np.where(p <= alpha, DIFFERENT, np.where(p_eq <= alpha, EQUIVALENT, UNDECIDED)).astype(object)


def naive_arrays(design: Design, base: np.ndarray, cur: np.ndarray, *, paired: bool, alpha: float = 0.05) -> np.ndarray:
    """The procedure the design replaces, for comparison: look after every wave and stop as
    'different' the first time the plain t-test's p is below alpha. Row-wise True where it did."""
    base, cur = np.atleast_2d(np.asarray(base, float)), np.atleast_2d(np.asarray(cur, float))
    hit = np.zeros(base.shape[0], dtype=bool)
    for n in design.looks():
        if n < 2 or n > min(base.shape[1], cur.shape[1]):
            continue
        _, _, _, p, _ = _tests(base[:, :n], cur[:, :n], paired, design.delta)
        hit |= p < alpha
    return hit


@dataclass(frozen=True)
class Simulated:
    """A design's operating characteristics at one spread, by simulation of `decide_arrays`."""

    power: float  # P(different) when the true difference is delta
    expected_seeds: float  # seeds per side used on average when the true difference is delta
    expected_seeds_null: float  # ... when there is no difference
    equivalent_null: float  # P(equivalent) when there is no difference
    false_different: float  # P(different) when there is no difference


def draws(rng: np.random.Generator, sims: int, n: int, sd: float, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """(base, current) seeds: independent per-configuration noise of sd `sd`, the current side
    shifted by `shift`. A paired design pairs them by seed (their difference has sd * sqrt(2))."""
    return rng.normal(0.0, sd, (sims, n)), rng.normal(shift, sd, (sims, n))


def simulate(design: Design, sd: float, *, paired: bool, sims: int = 4000, seed: int = 0) -> Simulated:
    """Run the design on `sims` simulated comparisons with no difference and `sims` with a true
    difference of delta, each configuration's seeds normal with spread `sd` (mIoU points)."""
    rng = np.random.default_rng(seed)
    b0, c0 = draws(rng, sims, design.max_seeds, sd, 0.0)
    b1, c1 = draws(rng, sims, design.max_seeds, sd, design.delta)
    null, alt = decide_arrays(design, b0, c0, paired=paired), decide_arrays(design, b1, c1, paired=paired)
    return Simulated(
        power=float(np.mean(alt.state == DIFFERENT)),
        expected_seeds=float(np.mean(alt.n)),
        expected_seeds_null=float(np.mean(null.n)),
        equivalent_null=float(np.mean(null.state == EQUIVALENT)),
        false_different=float(np.mean(null.state == DIFFERENT)),
    )
