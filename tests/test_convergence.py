"""The plateau rule (bench/results/convergence.py) on known answers, and the committed claim curves.

Defect: the AsppUNet claim was decided while every learning curve still rose about 2 points per 4
epochs; nothing in the suite said so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.results.convergence import GAIN_TOL, configuration_convergence, convergence, curve_of

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("scale", [4.0, 8.0, 12.0])
def test_a_saturating_curve_is_a_plateau_with_its_asymptote_recovered(scale: float) -> None:
    rng = np.random.default_rng(int(scale))
    x = np.arange(1, 81, dtype=float)
    y = 0.6 - 0.4 * np.exp(-x / scale) + rng.normal(0, 0.003, len(x))
    c = convergence(x, y)
    assert c["status"] == "plateau", c
    assert c["asymptote_low"] <= 0.6 <= c["asymptote_high"], c
    assert abs(c["headroom"]) < 0.01


def test_a_curve_cut_while_still_saturating_is_rising_and_points_to_its_asymptote() -> None:
    x = np.arange(2, 33, 2, dtype=float)
    noise = np.random.default_rng(3).normal(0, 0.003, len(x))
    y = 0.6 - 0.4 * np.exp(-x / 20) + noise  # at epoch 32 it is 0.519: 8 points below where it goes
    c = convergence(x, y)
    assert c["status"] == "rising" and c["tail_gain"] > GAIN_TOL
    assert c["asymptote_low"] <= 0.6 <= c["asymptote_high"] and c["headroom"] > 0.05, c


@pytest.mark.parametrize("slope", [0.0005, 0.001, 0.003, 0.02])
@pytest.mark.parametrize("epochs", [8, 16, 40, 100])
def test_a_straight_rising_line_is_never_converged(slope: float, epochs: int) -> None:
    x = np.arange(1, epochs + 1, dtype=float)
    c = convergence(x, 0.2 + slope * x)
    assert c["status"] != "plateau", c


def test_too_few_evaluations_cannot_be_called_a_plateau() -> None:
    c = convergence([4, 8, 12, 16], [0.40, 0.41, 0.412, 0.412])
    assert c["status"] == "undetermined" and "too few" in c["reason"]
    assert convergence([16], [0.4])["status"] == "undetermined"


def test_the_committed_16_epoch_claim_curves_are_rising() -> None:
    """The committed AsppUNet-claim runs of 16 epochs: no run is a plateau, and each configuration's
    mean curve still rose (the issue measured +1.85, +2.50 and +1.79 points from epoch 12 to 16)."""
    runs = [json.loads(p.read_text()) for p in (ROOT / "results" / "asppunet_claim").glob("*/result.json")]
    # the 27 the claim was first decided on (AsppUNet seeds 0-6; seeds 7 and 8 were added later)
    runs = [r for r in runs if r["config"]["train"]["epochs"] == 16
            and (r["arch"] != "aspp_unet" or r["config"]["train"]["seed"] < 7)]  # fmt: skip
    assert len(runs) == 27
    by_arch: dict[str, list] = {}
    for r in runs:
        c = convergence(*curve_of(r), 16)
        assert c["status"] != "plateau"
        by_arch.setdefault(r["arch"], []).append(c)
    gains = {}
    for arch, cs in by_arch.items():
        conf = configuration_convergence([c["status"] for c in cs], [c["tail_gain"] for c in cs],
                                         [c["headroom"] for c in cs])  # fmt: skip
        assert conf["status"] == "rising", (arch, conf)
        gains[arch] = round(100 * conf["tail_gain"], 2)
    assert gains == {"unet": 1.85, "atrous_unet": 2.5, "aspp_unet": 1.79}


def test_a_finished_run_records_its_convergence_and_collect_shows_it(cli, tmp_path) -> None:
    from bench.results.table import collect
    from tests.fixtures import train_tiny

    out = tmp_path / "res" / "run"
    code, _, err = train_tiny(cli, out, "train.epochs=3")
    assert code == 0, err
    r = json.loads((out / "result.json").read_text())
    assert r["convergence"]["status"] in ("rising", "undetermined") and r["convergence"]["evals"] == 3
    df, _ = collect(tmp_path / "res")
    assert df["conv_status"][0] == r["convergence"]["status"] and df["conv_evals"][0] == 3
