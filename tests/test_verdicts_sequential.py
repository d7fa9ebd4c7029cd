"""The sequential design (bench/verdicts/sequential.py): alpha spent over the looks holds the
false-decision rate where looking after every wave with a plain t-test does not; at a true
difference of delta it keeps the power and spends fewer seeds than the fixed-n design; at no
difference it reaches 'equivalent' as often; a decision is never revisited."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from bench.sweep import DecideConfig
from bench.verdicts.sequential import (
    DIFFERENT,
    EQUIVALENT,
    OPEN,
    UNDECIDED,
    Design,
    calibrated_levels,
    decide_arrays,
    spending_function,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = {k: DecideConfig.model_fields[k].default for k in ("alpha", "spending")}  # a decide section's own


def _script():
    spec = importlib.util.spec_from_file_location("simulate_sequential", ROOT / "scripts" / "simulate_sequential.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_ten_thousand_null_comparisons_hold_alpha_where_peeking_does_not() -> None:
    """10,000 simulated comparisons per truth, the paired design with max 36 seeds (sd 2 points
    per configuration, delta 2): the numbers docs/sweeps.md records for this scenario."""
    r = _script().scenario(Design(delta=2.0, max_seeds=36, first=4, wave=2, **DEFAULTS), 2.0, True, 10_000, seed=7)
    mc = 3 * r["mc_error"]
    assert r["false_different"] <= 0.05 + mc, r
    assert r["naive_false_different"] > 0.05 + mc, r  # stop-when-p<0.05 on the same draws: ~0.23
    assert r["power"] >= 0.8, r
    assert r["expected_seeds"] <= 0.7 * r["n_fix"], r  # at least 30% below the fixed design of equal power
    assert r["equivalent_null"] >= r["fixed_equivalent_null"] - mc, r
    assert r["false_equivalent_at_delta"] <= 0.05 + mc, r


def test_levels_approach_the_published_boundaries_for_many_seeds() -> None:
    """At 60 seeds the t statistic is nearly normal: the calibrated levels of five equally spaced
    looks approach the Lan-DeMets O'Brien-Fleming z boundaries (2.680, 2.290, 2.031 at looks 3-5,
    two-sided alpha 0.05; Jennison & Turnbull, table 2.x / gsDesign)."""
    levels = calibrated_levels((12, 24, 36, 48, 60), 60, 0.05, "obrien-fleming", 2, True)
    z = [stats.norm.isf(p / 2) for p in levels[2:]]
    assert np.allclose(z, [2.680, 2.290, 2.031], atol=0.04), z
    # Pocock-type spends evenly: near-constant boundaries (published 2.41, 2.40, 2.39)
    z = [stats.norm.isf(p / 2) for p in calibrated_levels((12, 24, 36, 48, 60), 60, 0.05, "pocock", 2, True)[2:]]
    assert np.allclose(z, [2.410, 2.397, 2.386], atol=0.05), z
    assert calibrated_levels((3, 5), 5, 0.05, "hsd:-2", 2, False) == calibrated_levels(
        (3, 5), 5, 0.05, "hsd:-2", 2, False
    )


def test_spending_functions_spend_alpha_by_the_end_and_not_before() -> None:
    for name in ("obrien-fleming", "pocock", "hsd:-2", "hsd:1"):
        f = spending_function(name)
        spent = [f(t, 0.05) for t in (0.1, 0.5, 1.0)]
        assert spent[0] < spent[1] < spent[2] and spent[2] == pytest.approx(0.05), (name, spent)
    with pytest.raises(ValueError, match="hsd:GAMMA"):
        spending_function("bonferroni")


def test_a_decision_stands_at_its_look_and_an_open_one_names_the_next() -> None:
    design = Design(delta=2.0, max_seeds=7, first=3, wave=2, **DEFAULTS)
    assert design.looks() == (3, 5, 7) and design.next_look(3) == 5 and design.next_look(7) is None
    base = np.zeros((3, 7))
    far = np.array([[10.0, 10.2, 9.8, 10.1, 9.9, -50.0, -50.0]])  # seeds 6-7 would flip it: never read
    near = np.array([[0.01, -0.02, 0.015, 0.0, 0.01, -0.01, 0.0]])
    noisy = np.array([[1.0, -1.5, 3.0, -2.0, 2.5, -3.0, 1.0]])
    got = decide_arrays(design, base, np.vstack([far, near, noisy]), paired=True)
    assert list(got.state) == [DIFFERENT, EQUIVALENT, UNDECIDED]
    assert got.n[0] == 3 and got.low[0] > 0  # decided at the first look, the interval above 0
    partial = decide_arrays(design, base[:, :4], noisy.repeat(3, 0)[:, :4], paired=True)
    assert set(partial.state) == {OPEN} and set(partial.n) == {3}


def test_bit_equal_sides_are_equivalent_not_an_error() -> None:
    same = np.array([[40.0, 41.0, 39.5]])
    got = decide_arrays(Design(delta=2.0, max_seeds=3, first=3, wave=2, **DEFAULTS), same, same, paired=True)
    assert got.state[0] == EQUIVALENT and got.diff[0] == 0.0
