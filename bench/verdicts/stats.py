"""Statistics for comparisons over seeds: Welch and paired t-tests, Holm's correction, intervals
for a difference of means, and seed planning (power). scipy and statsmodels do the arithmetic;
this module only decides which test fits the data and packages the answer.

Conventions: samples are per-seed values of one configuration (mIoU in points); a difference is
`current - baseline` (negative: current is worse).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "Comparison",
    "Improvement",
    "compare",
    "detectable_difference",
    "holm",
    "mean_interval",
    "poi_text",
    "probability_of_improvement",
    "seeds_needed",
]

BOOTSTRAP_RESAMPLES = 5000  # percentile intervals; a fixed generator seed, so a table reads the same twice


@dataclass(frozen=True)
class Comparison:
    """current vs baseline over seeds. `test` is 'welch', 'paired' or 'threshold' (one seed on a
    side: no test is possible, only the difference of the two numbers)."""

    n_base: int
    n_cur: int
    mean_base: float
    mean_cur: float
    diff: float  # mean_cur - mean_base
    ci_low: float  # 95% interval of diff (nan for threshold)
    ci_high: float
    p: float  # one-sided p for H1: current < baseline (nan for threshold)
    test: str
    sd: float  # the spread the test saw: pooled sample sd, or the sd of the paired differences


def _paired(base: dict[int, float] | None, cur: dict[int, float] | None) -> bool:
    """Seeds pair when both sides ran exactly the same seeds (same initial weights, same data order)."""
    return base is not None and cur is not None and set(base) == set(cur) and len(base) >= 2


def compare(
    base: Sequence[float] | dict[int, float],
    cur: Sequence[float] | dict[int, float],
    *,
    alternative: str = "less",
    confidence: float = 0.95,
) -> Comparison:
    """Compare the seeds of `cur` with those of `base`. Dicts map seed -> value: where both sides
    ran the same seeds, the paired t-test is used (the seed fixes initial weights and data order,
    so a seed's two runs are a pair); otherwise Welch's t-test (unequal variances). One-sided by
    default (H1: current mean < baseline mean, a regression)."""
    from scipy import stats

    bd = base if isinstance(base, dict) else None
    cd = cur if isinstance(cur, dict) else None
    b = np.asarray(list(base.values()) if bd is not None else base, dtype=float)
    c = np.asarray(list(cur.values()) if cd is not None else cur, dtype=float)
    if len(b) == 0 or len(c) == 0:
        raise ValueError("compare needs at least one value on each side")
    diff = float(c.mean() - b.mean())
    if len(b) < 2 or len(c) < 2:
        sd = float(np.std(np.concatenate([b, c]), ddof=1)) if len(b) + len(c) > 2 else math.nan
        return Comparison(len(b), len(c), float(b.mean()), float(c.mean()), diff, math.nan, math.nan, math.nan,
                          "threshold", sd)  # fmt: skip
    if _paired(bd, cd):
        seeds = sorted(bd)  # type: ignore[arg-type]
        bp = np.array([bd[s] for s in seeds])  # type: ignore[index]
        cp = np.array([cd[s] for s in seeds])  # type: ignore[index]
        d = cp - bp
        if _flat(d):  # no spread in the differences (to rounding): the t statistic is undefined
            p = 0.0 if d[0] < 0 else 1.0
            return Comparison(len(b), len(c), float(b.mean()), float(c.mean()), diff, float(d[0]), float(d[0]), p,
                              "paired", 0.0)  # fmt: skip
        res = stats.ttest_rel(cp, bp, alternative=alternative)
        ci = stats.ttest_rel(cp, bp).confidence_interval(confidence)
        return Comparison(len(b), len(c), float(b.mean()), float(c.mean()), diff, float(ci.low), float(ci.high),
                          float(res.pvalue), "paired", float(np.std(d, ddof=1)))  # fmt: skip
    if _flat(b) and _flat(c):
        p = 0.0 if diff < 0 else (1.0 if diff > 0 else 1.0)
        return Comparison(len(b), len(c), float(b.mean()), float(c.mean()), diff, diff, diff, p, "welch", 0.0)
    res = stats.ttest_ind(c, b, equal_var=False, alternative=alternative)
    ci = stats.ttest_ind(c, b, equal_var=False).confidence_interval(confidence)
    pooled = math.sqrt((np.var(b, ddof=1) * (len(b) - 1) + np.var(c, ddof=1) * (len(c) - 1)) / (len(b) + len(c) - 2))
    return Comparison(len(b), len(c), float(b.mean()), float(c.mean()), diff, float(ci.low), float(ci.high),
                      float(res.pvalue), "welch", pooled)  # fmt: skip


def _flat(x: np.ndarray) -> bool:
    """All values equal up to float rounding (a spread of 0 makes the t statistic undefined)."""
    return bool(np.ptp(x) <= 1e-9 * max(1.0, float(np.abs(x).max())))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (statsmodels); nan entries (no test) stay nan and do not
    count towards the number of comparisons."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), math.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out.tolist()


def seeds_needed(
    difference: float, sd: float, *, alpha: float = 0.05, power: float = 0.8, paired: bool = False, limit: int = 1000,
    alternative: str = "larger",
) -> int | None:
    """Seeds per side for a t-test (one-sided by default; `alternative` "two-sided") to detect
    `difference` at spread `sd` with `power` (statsmodels' power functions; the paired test counts
    pairs). None if it needs over `limit`."""
    from statsmodels.stats.power import TTestIndPower, TTestPower

    if not sd or math.isnan(sd) or sd <= 0:
        return 2
    effect = abs(difference) / sd
    if effect == 0:
        return None
    solver = TTestPower() if paired else TTestIndPower()
    key = "nobs" if paired else "nobs1"

    def reaches(n: int) -> bool:  # power grows with n
        got = float(np.asarray(solver.power(effect_size=effect, alpha=alpha, alternative=alternative,
                                            **{key: n})).item())  # fmt: skip
        if not math.isfinite(got):  # statsmodels' noncentral t gives NaN far in its tail: the normal limit
            from scipy.stats import norm

            z = norm.isf(alpha / 2 if alternative == "two-sided" else alpha)
            got = float(norm.cdf(effect * math.sqrt(n if paired else n / 2) - z))
        return got >= power

    # the smallest n that reaches the power, by bisection on the power function: statsmodels'
    # solve_power returns NaN where the answer is below its search range (a large effect) and fails
    # at an extreme alpha; its power function returns NaN far in the tail, where the normal limit holds
    if reaches(2):
        return 2
    if not reaches(limit):
        return None
    lo, hi = 2, limit
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    return hi


def detectable_difference(n: int, sd: float, *, alpha: float = 0.05, power: float = 0.8, paired: bool = False) -> float:
    """The smallest difference (in the units of sd) that n seeds per side detect with `power`."""
    from statsmodels.stats.power import TTestIndPower, TTestPower

    if n < 2 or not sd or math.isnan(sd):
        return math.nan
    try:
        if paired:
            effect = TTestPower().solve_power(nobs=n, alpha=alpha, power=power, alternative="larger")
        else:
            effect = TTestIndPower().solve_power(nobs1=n, alpha=alpha, power=power, alternative="larger")
        effect = float(np.asarray(effect).item())
    except (ValueError, RuntimeError, ArithmeticError):  # the solver found no root (an extreme alpha or power)
        return math.nan
    return effect * sd if math.isfinite(effect) and effect > 0 else math.nan


@dataclass(frozen=True)
class Improvement:
    """P(X_cur > X_base): the chance that a run of the current configuration beats a run of the
    baseline, ties counted half (rliable's probability of improvement, Agarwal et al. 2021), with
    a stratified bootstrap interval (nan where a side has one seed)."""

    p: float
    low: float
    high: float
    paired: bool  # the bootstrap resampled seeds as pairs (both sides ran the same seeds)


def _poi(c: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """The normalised Mann-Whitney U of c over b along `axis` (vectorised for scipy's bootstrap)."""
    c, b = np.moveaxis(c, axis, -1), np.moveaxis(b, axis, -1)
    wins = (c[..., :, None] > b[..., None, :]).mean(axis=(-2, -1))
    ties = (c[..., :, None] == b[..., None, :]).mean(axis=(-2, -1))
    return wins + 0.5 * ties


def _samples(
    base: Sequence[float] | dict[int, float], cur: Sequence[float] | dict[int, float]
) -> tuple[np.ndarray, np.ndarray, bool]:
    """The two sides as arrays, in seed order where they pair."""
    bd = base if isinstance(base, dict) else None
    cd = cur if isinstance(cur, dict) else None
    if _paired(bd, cd):
        seeds = sorted(bd)  # type: ignore[arg-type]
        return np.array([bd[s] for s in seeds]), np.array([cd[s] for s in seeds]), True  # type: ignore[index]
    b = np.asarray(list(base.values()) if bd is not None else base, dtype=float)
    c = np.asarray(list(cur.values()) if cd is not None else cur, dtype=float)
    return b, c, False


def probability_of_improvement(
    base: Sequence[float] | dict[int, float],
    cur: Sequence[float] | dict[int, float],
    *,
    confidence: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> Improvement:
    """P(current > baseline) over their seeds with a percentile bootstrap interval (scipy). The
    bootstrap is stratified by side, as rliable's is by task: each side's seeds are resampled
    within that side; where both sides ran the same seeds the pairs are resampled together, so a
    paired design stays paired. A side with one seed gives the point value and no interval."""
    from scipy import stats

    b, c, paired = _samples(base, cur)
    if len(b) == 0 or len(c) == 0:
        raise ValueError("probability_of_improvement needs at least one value on each side")
    p = float(_poi(c, b))
    if len(b) < 2 or len(c) < 2:
        return Improvement(p, math.nan, math.nan, paired)
    if _flat(np.concatenate([b, c])):
        return Improvement(p, p, p, paired)
    res = stats.bootstrap(
        (c, b), _poi, paired=paired, vectorized=True, n_resamples=resamples, confidence_level=confidence,
        method="percentile", rng=np.random.default_rng(0),
    )  # fmt: skip
    ci = res.confidence_interval
    return Improvement(p, float(ci.low), float(ci.high), paired)


def mean_interval(
    values: Sequence[float], *, confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES
) -> tuple[float, float]:
    """A percentile bootstrap interval of one configuration's mean over its seeds (nan with one seed;
    the value itself where every seed gave the same)."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return math.nan, math.nan
    if _flat(x):
        return float(x[0]), float(x[0])
    res = stats.bootstrap(
        (x,), np.mean, vectorized=True, n_resamples=resamples, confidence_level=confidence, method="percentile",
        rng=np.random.default_rng(0),
    )  # fmt: skip
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean with its t interval (nan bounds with fewer than two values)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    m = float(v.mean())
    if len(v) < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return m, m - half, m + half


def poi_text(p: float, low: float, high: float, dash: str = "–") -> str:
    """P(improvement) as a reader sees it: the estimate and, where there is one, its interval."""
    if p != p:
        return "-"
    return f"{p:.2f}" if low != low else f"{p:.2f} ({low:.2f}{dash}{high:.2f})"
