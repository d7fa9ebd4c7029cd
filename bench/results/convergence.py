"""Has a run's validation curve flattened? The plateau rule, and where the curve is heading.

A run's evaluation curve (val mIoU at each evaluation, `train.history`) is judged by two tests,
both needed for `plateau` (docs/budgets.md gives the reasons and the known answers):

1. **Tail gain.** What the last quarter of training added: the final mIoU minus the curve's value
   at 75% of the epochs (linear between evaluations). Below `GAIN_TOL` (0.5 points) it has
   flattened; this alone decides `rising` where the curve is too short to fit.
2. **Headroom of a saturating fit.** Learning-curve families of Domhan, Springenberg and Hutter
   (IJCAI 2015) that rise to an asymptote c, fitted by least squares (scipy's curve_fit) to the
   evaluations from the second on:
       pow3   y = c - a * x**(-alpha)
       exp3   y = c - a * exp(-b * x)
       log2   y = c - a / log(x + e)   (the slowest: a curve still climbing has a far asymptote)
   The family with the least corrected Akaike criterion (AICc) is kept; its asymptote is the
   extrapolated mIoU of training on, with a 95% interval from the fit's covariance (t with n - 3
   degrees of freedom). The run has flattened when the asymptote lies within `HEADROOM_TOL`
   (1.0 point) of the final mIoU.

`plateau` needs both, `rising` is either failing, `undetermined` where there are fewer than
`MIN_EVALS` evaluations to fit and the tail gain alone is small. A straight rising line is never a
plateau: its tail gain is its slope times a quarter of the budget, and every saturating family
puts its asymptote far above its end.

What it cannot tell: under a schedule that takes the learning rate to zero (poly, cosine) every
curve bends at its end because the steps shrink, not because the network has learned what it
can; the rule then says "flat under this schedule", and only a longer budget (a `decide.budgets`
entry) says whether more training changes the ranking.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["GAIN_TOL", "HEADROOM_TOL", "MIN_EVALS", "convergence", "curve_of"]

GAIN_TOL = 0.005  # mIoU fraction: 0.5 points over the last quarter of training
HEADROOM_TOL = 0.01  # 1.0 point between the fitted asymptote and the final mIoU
MIN_EVALS = 5  # a 3-parameter family on the evaluations from the second on: at least 1 degree of freedom


def _pow3(x: np.ndarray, c: float, a: float, alpha: float) -> np.ndarray:
    return c - a * np.power(x, -alpha)


def _exp3(x: np.ndarray, c: float, a: float, b: float) -> np.ndarray:
    return c - a * np.exp(-b * x)


def _log2(x: np.ndarray, c: float, a: float, _unused: float = 0.0) -> np.ndarray:
    return c - a / np.log(x + math.e)


FAMILIES = {
    # name: (function, parameter count, initial guess from (x, y), bounds)
    "pow3": (_pow3, 3, lambda x, y: (y[-1] + 0.01, max(y[-1] - y[0], 1e-3) * x[0] ** 0.5, 0.5),
             ([0.0, 0.0, 1e-3], [2.0, 100.0, 10.0])),
    "exp3": (_exp3, 3, lambda x, y: (y[-1] + 0.01, max(y[-1] - y[0], 1e-3) * 2, 2.0 / max(x[-1], 1.0)),
             ([0.0, 0.0, 1e-6], [2.0, 100.0, 10.0])),
    "log2": (_log2, 2, lambda x, y: (y[-1] + 0.05, max(y[-1] - y[0], 1e-3) * 3),
             ([0.0, 0.0], [10.0, 1000.0])),
}  # fmt: skip


def curve_of(result: dict[str, Any]) -> tuple[list[float], list[float]]:
    """(epochs, val mIoU) of every evaluation a result recorded, the final one included."""
    hist = ((result.get("train") or {}).get("history")) or []
    pts = {}
    for h in hist:
        if isinstance(h, dict) and isinstance(h.get("miou"), int | float) and isinstance(h.get("epoch"), int | float):
            if math.isfinite(h["miou"]):
                pts[float(h["epoch"])] = float(h["miou"])
    return sorted(pts), [pts[e] for e in sorted(pts)]


def _value_at(x: Sequence[float], y: Sequence[float], at: float) -> float:
    return float(np.interp(at, x, y))


def _fit(name: str, x: np.ndarray, y: np.ndarray) -> dict[str, Any] | None:
    from scipy.optimize import curve_fit
    from scipy.stats import t as t_dist

    f, k, guess, bounds = FAMILIES[name]
    p0 = np.clip(guess(x, y), np.array(bounds[0]) + 1e-9, np.array(bounds[1]) - 1e-9)
    fun = f if k == 3 else (lambda xx, c, a: f(xx, c, a))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            popt, pcov = curve_fit(fun, x, y, p0=p0, bounds=bounds, maxfev=20_000)
    except (RuntimeError, ValueError):
        return None
    resid = y - fun(x, *popt)
    n = len(x)
    sse = float(np.sum(resid**2))
    if not np.all(np.isfinite(popt)):
        return None
    sigma2 = max(sse / n, 1e-12)
    aic = n * math.log(sigma2) + 2 * k
    aicc = aic + (2 * k * (k + 1)) / (n - k - 1) if n - k - 1 > 0 else math.inf
    var_c = float(pcov[0, 0]) if np.all(np.isfinite(pcov)) else math.inf
    se = math.sqrt(var_c) if var_c >= 0 else math.inf
    q = float(t_dist.ppf(0.975, max(n - k, 1)))
    c = float(popt[0])
    return {"family": name, "asymptote": c, "low": c - q * se, "high": c + q * se, "aicc": aicc, "sse": sse}


def convergence(epochs: Sequence[float], miou: Sequence[float], total_epochs: float | None = None) -> dict[str, Any]:
    """The plateau rule of the module docstring over one run's curve. `total_epochs`: the budget
    (defaults to the last evaluation's epoch). Returns the `conv_*` fields a result and the
    collected table carry; mIoU values as fractions, as the metrics are kept."""
    x = np.asarray(epochs, dtype=float)
    y = np.asarray(miou, dtype=float)
    out: dict[str, Any] = {"status": "undetermined", "evals": int(len(x)), "tail_gain": None, "asymptote": None,
                           "asymptote_low": None, "asymptote_high": None, "headroom": None, "family": None}  # fmt: skip
    if len(x) < 2:
        out["reason"] = f"{len(x)} evaluation(s): no curve (set train.eval_every)"
        return out
    end = float(total_epochs or x[-1])
    final = float(y[-1])
    gain = final - _value_at(x, y, 0.75 * end)
    out["tail_gain"] = gain
    if gain >= GAIN_TOL:
        out["status"] = "rising"
        out["reason"] = f"the last quarter of training added {100 * gain:.2f} points (>= {100 * GAIN_TOL:.1f})"
    fits = [f for f in (_fit(n, x[1:], y[1:]) for n in FAMILIES) if f] if len(x) >= MIN_EVALS else []
    if fits:
        best = min(fits, key=lambda f: (f["aicc"], f["sse"]))
        out.update(family=best["family"], asymptote=best["asymptote"], asymptote_low=best["low"],
                   asymptote_high=best["high"], headroom=best["asymptote"] - final)  # fmt: skip
    if out["status"] == "rising":
        return out
    if not fits:
        out["reason"] = (
            f"the last quarter added {100 * gain:.2f} points, but {len(x)} evaluations are too few to fit a "
            f"saturating curve (at least {MIN_EVALS}: lower train.eval_every)"
        )
        return out
    if out["headroom"] >= HEADROOM_TOL:
        out["status"] = "rising"
        out["reason"] = (
            f"the fitted {out['family']} curve rises {100 * out['headroom']:.2f} points more "
            f"(>= {100 * HEADROOM_TOL:.1f})"
        )
        return out
    out["status"] = "plateau"
    out["reason"] = (
        f"the last quarter added {100 * gain:.2f} points and the fitted {out['family']} asymptote is "
        f"{100 * out['headroom']:+.2f} points from the final mIoU"
    )
    return out


def configuration_convergence(statuses: Sequence[Any], tail_gains: Sequence[Any], headrooms: Sequence[Any]) -> dict:
    """One configuration's plateau verdict over its seeds. The tail gain is linear in the curve, so
    the mean of the runs' tail gains is the tail gain of their mean curve; the headroom is averaged
    likewise over the runs that could be fitted. `rising` where the mean curve still rose (either
    test), `plateau` where it did not and every run could be fitted, else `undetermined`; with the
    count of runs judged rising on their own ('rising 9/10')."""
    gains = [float(g) for g in tail_gains if isinstance(g, int | float) and math.isfinite(g)]
    rooms = [float(h) for h in headrooms if isinstance(h, int | float) and math.isfinite(h)]
    n = len(statuses)
    rising = sum(s == "rising" for s in statuses)
    gain = sum(gains) / len(gains) if gains else None
    room = sum(rooms) / len(rooms) if rooms else None
    if gain is None:
        status = "undetermined"
    elif gain >= GAIN_TOL or (room is not None and room >= HEADROOM_TOL):
        status = "rising"
    elif room is not None and len(rooms) == n:
        status = "plateau"
    else:
        status = "undetermined"
    return {"status": status, "runs": n, "rising_runs": rising, "tail_gain": gain, "headroom": room,
            "text": f"{status} {rising}/{n}" if status != "plateau" else f"plateau {n - rising}/{n}"}  # fmt: skip
