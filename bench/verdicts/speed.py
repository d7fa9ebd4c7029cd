"""A speed comparison decided over interleaved rounds: faster, slower, or equivalent within
+-tolerance, with the repeated looks accounted for.

A round times side A and side B back to back (ABBA order across rounds: A,B then B,A, so a load
that rises or falls during a round hits both sides alike over two rounds) and yields one paired
value, the log of the ratio of the two medians (B / A). Load that lasts longer than a round
scales both sides of that round alike and cancels in the ratio; what is left is the round's
noise, which the test measures instead of assuming.

The decision is the accuracy machinery's group-sequential design (bench.verdicts.sequential)
applied to the rounds as its seeds: looks after `first` rounds and then every `every` rounds up to
`max_rounds`, alpha spent over the looks (Hwang-Shih-DeCani gamma -2 by default), each look's
nominal level calibrated on null paths of the paired t statistic. At each look:
- different: two-sided one-sample t-test of the mean log ratio against 0 -> faster (B < A) or
  slower (B > A);
- equivalent: TOST that the mean log ratio lies within +-log(1 + tolerance).
A comparison still open at `max_rounds` is undecided; stopped by the time limit first, undecided
at the time limit. The ratio is exp(mean log ratio) (the geometric mean of the rounds' ratios)
with the repeated confidence interval of the deciding look.

The gate (`fails`): slower, with the estimated ratio beyond 1 + tolerance (the rule `regress` uses
for accuracy: significant and beyond the tolerance).

`single_ratio` and `median_ratio` are what an asv-style one-shot ratio and a plain median
comparison say on the same measurements, for docs/measurement.md's side-by-side table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.verdicts.sequential import DIFFERENT, EQUIVALENT, OPEN, UNDECIDED, Design, decide_arrays

__all__ = ["FASTER", "SLOWER", "SAME", "SpeedDesign", "SpeedVerdict", "decide_rounds", "median_ratio",
           "single_ratio"]  # fmt: skip

FASTER, SLOWER, SAME = "faster", "slower", "equivalent"
_LABEL = {EQUIVALENT: SAME, OPEN: OPEN, UNDECIDED: UNDECIDED}


@dataclass(frozen=True)
class SpeedDesign:
    """How a speed comparison is decided (every field has the command's default)."""

    tolerance: float = 0.05  # equivalent means within +-5% (as a ratio: 1/1.05 .. 1.05)
    max_rounds: int = 40
    first: int = 6  # the first look, in rounds
    every: int = 2  # rounds between looks
    alpha: float = 0.05  # false-decision rate of each of the two decisions, over all looks
    spending: str = "hsd:-2"

    def design(self) -> Design:
        return Design(delta=math.log1p(self.tolerance), max_seeds=self.max_rounds, first=self.first,
                      wave=self.every, alpha=self.alpha, spending=self.spending)  # fmt: skip

    def check(self) -> None:
        """Refuse a design the machinery cannot run (ValueError; the command turns it into exit 2)."""
        if not 0 < self.tolerance < 1:
            raise ValueError(f"--tolerance {self.tolerance:g}: give a fraction between 0 and 1, e.g. 0.05 for +-5%")
        if not 0 < self.alpha < 0.5:
            raise ValueError(f"--alpha {self.alpha:g}: give a level between 0 and 0.5, e.g. 0.05")
        if self.first < 3 or self.every < 1 or self.max_rounds < self.first:
            raise ValueError(
                f"--first-look {self.first}, --look-every {self.every}, --max-rounds {self.max_rounds}: the first "
                "look needs at least 3 rounds, looks at least 1 round apart, and --max-rounds at least the first look"
            )
        if self.max_rounds > 400:
            raise ValueError(f"--max-rounds {self.max_rounds}: at most 400 (a design is calibrated on simulated paths "
                             "of that length)")  # fmt: skip


@dataclass
class SpeedVerdict:
    """Where a comparison stands after the rounds given."""

    state: str  # faster, slower, equivalent, open, undecided
    rounds: int  # rounds at the look that decided (or the last look taken)
    ratio: float  # B / A, geometric mean over those rounds
    low: float  # its repeated confidence interval at that look's level
    high: float
    p: float
    p_equivalence: float
    level: float
    looks: list[dict[str, Any]] = field(default_factory=list)  # every look taken: rounds, ratio, interval, state

    @property
    def decided(self) -> bool:
        return self.state in (FASTER, SLOWER, SAME)

    def fails(self, tolerance: float) -> bool:
        """The gate: significantly slower and slower than the tolerance allows."""
        return self.state == SLOWER and self.ratio > 1 + tolerance


def decide_rounds(design: SpeedDesign, ratios: list[float] | np.ndarray) -> SpeedVerdict:
    """The sequential decision on the rounds' ratios (B / A), in the order they were measured."""
    r = np.asarray(ratios, float)
    if r.size and not (np.isfinite(r).all() and (r > 0).all()):
        raise ValueError("every round's ratio must be a positive finite number")
    d = design.design()
    logs = np.log(r)[None, :]
    dec = decide_arrays(d, np.zeros_like(logs), logs, paired=True)
    looks = []
    for n in d.looks():  # the trail of looks, for the record (each look's own test)
        if n > r.size:
            break
        one = decide_arrays(d, np.zeros((1, n)), logs[:, :n], paired=True)
        diff = float(one.diff[0])
        looks.append({"rounds": n, "ratio": math.exp(diff), "low": math.exp(float(one.low[0])),
                      "high": math.exp(float(one.high[0])), "state": _state(one.state[0], diff)})  # fmt: skip
        if looks[-1]["state"] != OPEN:
            break
    if math.isnan(float(dec.n[0])):  # no look reached yet
        return SpeedVerdict(OPEN, int(r.size), _gmean(r), math.nan, math.nan, math.nan, math.nan, math.nan, looks)
    diff = float(dec.diff[0])
    return SpeedVerdict(
        state=_state(dec.state[0], diff), rounds=int(dec.n[0]), ratio=math.exp(diff), low=math.exp(float(dec.low[0])),
        high=math.exp(float(dec.high[0])), p=float(dec.p[0]), p_equivalence=float(dec.p_equivalence[0]),
        level=float(dec.level[0]), looks=looks,
    )  # fmt: skip


def _state(state: str, diff: float) -> str:
    if state == DIFFERENT:
        return SLOWER if diff > 0 else FASTER
    return _LABEL[state]


def _gmean(r: np.ndarray) -> float:
    return float(np.exp(np.log(r).mean())) if r.size else math.nan


def single_ratio(a_ms: float, b_ms: float, factor: float) -> str:
    """asv continuous's rule on one measurement of each side: slower beyond `factor`, faster
    beyond 1 / factor, else the same."""
    ratio = b_ms / a_ms
    return SLOWER if ratio > factor else FASTER if ratio < 1 / factor else SAME


def median_ratio(a_ms: list[float], b_ms: list[float], tolerance: float) -> str:
    """A plain comparison of medians against a fixed tolerance (regress's rule between equal
    fingerprints): slower when B's median exceeds A's by more than the tolerance."""
    ratio = float(np.median(b_ms) / np.median(a_ms))
    return SLOWER if ratio > 1 + tolerance else FASTER if ratio < 1 / (1 + tolerance) else SAME
