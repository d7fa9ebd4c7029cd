"""The statistics have known answers, and the gate says only what the seeds support."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.verdicts import stats

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "results" / "baselines" / "camvid_cpu.parquet"

# Welch's t-test, worked example 1 of the Wikipedia article "Welch's t-test":
# t = -2.46, df = 24.9, two-sided p = 0.021
A1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
A2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]


def test_welch_textbook_example() -> None:
    c = stats.compare(A2, A1, alternative="less")  # H1: A1 (current) < A2 (baseline)
    assert c.test == "welch"
    assert c.p == pytest.approx(0.021 / 2, abs=0.0015)  # one-sided: half the two-sided p
    assert c.diff == pytest.approx(np.mean(A1) - np.mean(A2))
    assert c.ci_low < c.diff < c.ci_high < 0  # the 95% interval excludes 0, as p < 0.05 two-sided says


def test_paired_when_the_same_seeds_ran() -> None:
    base = {0: 40.0, 1: 38.0, 2: 42.0}
    cur = {0: 36.0, 1: 39.0, 2: 40.5}  # -4, +1, -1.5
    c = stats.compare(base, cur)
    assert c.test == "paired" and c.sd == pytest.approx(2.5)
    t = -1.5 / (2.5 / math.sqrt(3))
    from scipy.stats import t as tdist

    assert c.p == pytest.approx(tdist.cdf(t, df=2))
    assert stats.compare({0: 1.0, 1: 2.0}, {5: 1.0, 6: 2.0}).test == "welch"  # other seeds: unpaired
    assert stats.compare([40.0], [38.0]).test == "threshold"


def test_holm_on_known_p_values() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = stats.holm([0.01, math.nan, 0.04])  # an untested entry does not count
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)


@pytest.mark.parametrize(("diff", "sd"), [(1.0, 2.0), (2.0, 1.5), (0.5, 0.4)])
def test_seeds_needed_reach_the_power_by_scipys_noncentral_t(diff: float, sd: float) -> None:
    from scipy.stats import nct
    from scipy.stats import t as tdist

    def power(n: int) -> float:  # one-sided two-sample t-test, n per side
        df = 2 * n - 2
        return float(nct.sf(tdist.ppf(0.95, df), df, (diff / sd) * math.sqrt(n / 2)))

    n = stats.seeds_needed(diff, sd, alpha=0.05, power=0.8)
    assert power(n) >= 0.8 > power(n - 1)
    assert stats.detectable_difference(n, sd) <= diff < stats.detectable_difference(n - 1, sd)


def test_probability_of_improvement_is_the_normalised_mann_whitney_u() -> None:
    """P(X > Y) over all pairs of seeds, ties half: 7 of 9 pairs for (2,3,4) over (1,2,3)."""
    from scipy.stats import mannwhitneyu

    got = stats.probability_of_improvement([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert got.p == pytest.approx(7 / 9) and not got.paired
    rng = np.random.default_rng(3)
    b, c = rng.normal(40, 2, 7), rng.normal(41, 2, 5)
    u = mannwhitneyu(c, b).statistic  # scipy's U of the first sample: wins plus half the ties
    got = stats.probability_of_improvement(list(b), list(c))
    assert got.p == pytest.approx(u / (len(b) * len(c)))
    assert 0 <= got.low <= got.p <= got.high <= 1
    assert stats.probability_of_improvement([1.0, 2.0], [1.0, 2.0]).p == 0.5  # the same runs: a coin toss


def test_probability_of_improvement_interval_is_stratified_and_stays_paired() -> None:
    """Each side resampled within itself (a side's values never mix with the other's), pairs together
    where both sides ran the same seeds; one seed on a side: the estimate without an interval."""
    far = stats.probability_of_improvement([30.0, 31.0, 32.0], [40.0, 41.0, 42.0])
    assert (far.p, far.low, far.high) == (1.0, 1.0, 1.0)  # no resample of either side can overlap
    paired = stats.probability_of_improvement({0: 40.0, 1: 38.0, 2: 42.0}, {0: 41.0, 1: 37.0, 2: 43.5})
    assert paired.paired and paired.low <= paired.p <= paired.high
    one = stats.probability_of_improvement([40.0], [41.0, 42.0])
    assert one.p == 1.0 and math.isnan(one.low) and math.isnan(one.high)
    again = stats.probability_of_improvement({0: 40.0, 1: 38.0, 2: 42.0}, {0: 41.0, 1: 37.0, 2: 43.5})
    assert again == paired  # a fixed generator: the same table twice
    lo, hi = stats.mean_interval([38.0, 40.0, 41.0, 43.0])
    assert 38.0 <= lo < 40.5 < hi <= 43.0 and all(math.isnan(v) for v in stats.mean_interval([40.0]))


# ----------------------------------------------------------------------------- the gate on the real baseline


def _shifted(tmp_path: Path, name: str, change) -> Path:  # noqa: ANN001
    df = pd.read_parquet(BASELINE)
    change(df)
    path = tmp_path / f"{name}.parquet"
    df.to_parquet(path)
    return path


def _config(df: pd.DataFrame, arch: str, rates: str | None = None) -> pd.Series:
    sel = df["model.arch"] == arch
    if rates is not None:
        sel &= df["model.rates"] == rates
    return sel


def test_noise_inside_the_seed_spread_passes(cli, tmp_path) -> None:
    rng = np.random.default_rng(7)

    def noise(df: pd.DataFrame) -> None:
        df["miou"] = df["miou"] + rng.uniform(-0.012, 0.012, len(df))  # +-1.2 points, spread is 1.5-3.8

    code, out, _ = cli("regress", str(BASELINE), str(_shifted(tmp_path, "noise", noise)))
    assert code == 0 and "PASS" in out and "FAIL" not in out.split("PASS")[0]


def test_a_real_drop_of_one_configuration_fails_and_is_named(cli, tmp_path) -> None:
    def drop(df: pd.DataFrame) -> None:
        sel = _config(df, "atrous_unet")
        df.loc[sel, "miou"] = df.loc[sel, "miou"] - np.array([0.07, 0.08, 0.09])

    code, out, _ = cli("regress", str(BASELINE), str(_shifted(tmp_path, "drop", drop)), "--json")
    r = json.loads(out)
    assert code == 1 and not r["passed"]
    failed = [c for c in r["configurations"] if c["verdict"] == "FAIL"]
    assert [c["configuration"] for c in failed] == ["arch=atrous_unet, rates=-"]
    assert failed[0]["test"] == "paired" and failed[0]["p_holm"] < 0.05 and failed[0]["diff"] == pytest.approx(-8)
    # every seed of the current side is 7-9 points down: no current run beats its baseline runs
    assert failed[0]["p_improvement"] < 0.5 and failed[0]["p_improvement_high"] <= 0.5
    same = [c for c in r["configurations"] if c["verdict"] != "FAIL"]
    assert all(c["p_improvement"] == 0.5 and c["p_improvement_low"] <= 0.5 <= c["p_improvement_high"] for c in same)
    row = next(ln for ln in cli("regress", str(BASELINE), str(BASELINE))[1].splitlines() if "arch=unet" in ln)
    assert "| 0.50 (" in row  # the Markdown table shows it with its interval


def _one_seed(tmp_path: Path, drop_points: float, host: str | None = None) -> tuple[Path, Path]:
    """The baseline's seed-0 runs and a copy of them with unet's mIoU lowered; `host`: both sides
    record that host (one environment), else neither does (the committed baseline has none)."""
    one = pd.read_parquet(BASELINE)
    one = one[one["train.seed"] == 0].copy()
    if host is not None:
        one["env.host"] = host
    one.to_parquet(tmp_path / "one.parquet")
    one.loc[_config(one, "unet"), "miou"] -= drop_points / 100
    one.to_parquet(tmp_path / "one_drop.parquet")
    return tmp_path / "one.parquet", tmp_path / "one_drop.parquet"


def _unet_row(out: str) -> str:
    return next(ln for ln in out.splitlines() if ln.startswith("| arch=unet"))


def test_a_single_seed_drop_is_a_threshold_verdict_without_a_noise_model(cli, tmp_path) -> None:
    base, cur = _one_seed(tmp_path, 2.0)
    code, out, _ = cli("regress", str(base), str(cur), "--miou-tol", "1", "--noise-model", "none")
    assert code == 1
    row = _unet_row(out)
    assert "| threshold |" in row and "FAIL" in row and "no test" in row


def test_a_single_seed_drop_inside_the_environment_noise_is_inconclusive(cli, tmp_path) -> None:
    """Defect: one seed a side, another environment, a 2-point drop that a change of machine and
    threads alone gives (CamVid: sd 2.26 points over 12 measured pairs) was a FAIL with exit 1."""
    from bench.verdicts import noise

    model = noise.models()["camvid-cpu"]
    assert model.n >= 12 and 1.5 < model.sd < 3.5
    base, cur = _one_seed(tmp_path, 2.0)
    code, out, _ = cli("regress", str(base), str(cur), "--miou-tol", "1", "--json")
    r = json.loads(out)
    (unet,) = [c for c in r["configurations"] if c["configuration"] == "arch=unet, rates=-"]
    assert code == 0 and r["passed"] and unet["verdict"] == "INCONCLUSIVE"
    from scipy.stats import norm

    assert unet["noise_model"]["name"] == "camvid-cpu" and unet["noise_model"]["sd"] == pytest.approx(model.sd)
    # P(an environment change alone drops it 2 points), Holm over the 4 configurations (the others moved 0)
    assert unet["p_holm"] == pytest.approx(min(1.0, 4 * norm.sf(2.0 / model.sd)))
    assert "environment noise model 'camvid-cpu'" in unet["why"] and unet["seeds_needed"] >= 2
    far_base, far = _one_seed(tmp_path, 8.0)  # beyond what an environment change gives: a real drop
    code, out, _ = cli("regress", str(far_base), str(far), "--miou-tol", "1")
    assert code == 1 and "FAIL" in _unet_row(out) and "beyond what the environment noise model" in _unet_row(out)


def test_one_environment_keeps_the_plain_threshold(cli, tmp_path) -> None:
    """Both sides on one host with one fingerprint: results repeat to the bit, so any drop beyond
    the tolerance is real, and the noise model is not used."""
    base, cur = _one_seed(tmp_path, 2.0, host="abc123")
    code, out, _ = cli("regress", str(base), str(cur), "--miou-tol", "1")
    assert code == 1 and "FAIL" in _unet_row(out) and "one environment" in out
    code, _, err = cli("regress", str(base), str(cur), "--noise-model", "nope")
    assert code == 2 and "'nope'" in err and "camvid-cpu" in err and "auto" in err


def test_a_noise_model_is_the_rms_of_its_measured_changes(tmp_path) -> None:
    from bench.verdicts import noise

    f = tmp_path / "noise.csv"
    f.write_text("# a comment\nmodel,data.name,change,experiment,seed,first,second,source\n"
                 "m,synthetic,threads,a,0,40,43,here\nm,synthetic,machine,b,0,40,36,there\n")  # fmt: skip
    (m,) = noise.models(f).values()
    assert m.sd == pytest.approx(math.sqrt((9 + 16) / 2)) and m.max_abs == 4 and m.changes == ("threads", "machine")


@pytest.mark.parametrize("paired", [True, False])
def test_a_drop_the_seeds_cannot_resolve_is_inconclusive(cli, tmp_path, paired: bool) -> None:
    def drop(df: pd.DataFrame) -> None:
        sel = _config(df, "unet")
        df.loc[sel, "miou"] = df.loc[sel, "miou"] + np.array([-0.04, 0.01, -0.015])  # mean -1.5 points
        if not paired:
            df.loc[sel, "train.seed"] = df.loc[sel, "train.seed"] + 10  # other seeds: Welch

    code, out, _ = cli("regress", str(BASELINE), str(_shifted(tmp_path, "maybe", drop)), "--miou-tol", "1",
                       "--json")  # fmt: skip
    r = json.loads(out)
    (unet,) = [c for c in r["configurations"] if c["configuration"] == "arch=unet, rates=-"]
    assert code == 0 and r["passed"]
    assert unet["verdict"] == "INCONCLUSIVE" and unet["test"] == ("paired" if paired else "welch")
    assert unet["diff"] == pytest.approx(-1.5) and unet["seeds_needed"] > 3


# ----------------------------------------------------------------------------- report marks


def _runs(values: dict[str, list[float]], params: float = 1.0) -> pd.DataFrame:
    rows = []
    for arch, vals in values.items():
        for seed, v in enumerate(vals):
            rows.append({"model.arch": arch, "train.seed": seed, "status": "done", "miou": v / 100,
                         "pixel_acc": 0.5, "params_m": params if arch != "b" else params / 2, "gmacs": 1.0,
                         "fps_bs1": 10.0 + seed})  # fmt: skip
    return pd.DataFrame(rows)


def test_report_bolds_only_a_significantly_better_best_and_marks_deltas_after_holm() -> None:
    from bench.report import display_frame, main_table

    close = _runs({"a": [40.0, 42.0, 38.0], "b": [42.5, 41.0, 41.0], "c": [30.0, 31.0, 29.5]})
    t = main_table(close, ["model.arch"])
    assert not t["best_miou"].any()  # b leads a by 1.5 points inside a 2-point spread: no bold
    assert t["best_params_m"].tolist() == [False, True, False]  # deterministic: strictly smaller is best
    disp, bold = display_frame(t, ["model.arch"])
    assert not bold["mIoU (%)"].any() and bold["Params (M)"].tolist() == [False, True, False]
    assert disp["Params (M)"][1] == "0.500" and "±" in disp["mIoU (%)"][1]
    assert disp["Δ mIoU"][2].endswith("*") and not disp["Δ mIoU"][1].endswith("*")  # c is far below a, b is not
    assert t["test_vs_baseline"].tolist()[1:] == ["paired", "paired"]
    assert "±" not in disp["Params (M)"][0] and "±" not in disp["GMACs"][0]  # Params and GMACs carry no spread
    apart = _runs({"a": [40.0, 41.0, 40.5], "b": [48.0, 49.0, 48.4]})
    assert main_table(apart, ["model.arch"])["best_miou"].tolist() == [False, True]
    one = _runs({"a": [40.0], "b": [48.0]})
    t1 = main_table(one, ["model.arch"])
    assert not t1["best_miou"].any() and "±" not in display_frame(t1, ["model.arch"])[0]["mIoU (%)"][0]


def test_holm_changes_a_delta_mark() -> None:
    from bench.report import main_table

    # five rows, each a few points below the baseline: raw p < 0.05 for some, not all survive Holm
    vals = {"base": [40.0, 41.0, 39.0, 40.5]}
    for k, shift in enumerate([1.5, 1.6, 1.7, 3.0]):
        vals[f"x{k}"] = [v - shift + 0.6 * ((i * 7 + k) % 3 - 1) for i, v in enumerate(vals["base"])]
    t = main_table(_runs(vals), ["model.arch"])
    raw, adj = t["p_vs_baseline_raw"].to_numpy()[1:], t["p_vs_baseline"].to_numpy()[1:]
    assert np.all(adj >= raw) and adj == pytest.approx(stats.holm(raw))


def test_plan_on_the_baseline(cli) -> None:
    code, out, err = cli("plan", str(BASELINE), "--baseline", "arch=unet", "--difference", "2", "--json")
    assert code == 0, err
    rows = {r["configuration"]: r for r in json.loads(out)}
    r = rows["arch=aspp_unet, rates=6,12,18,24"]
    base = pd.read_parquet(BASELINE)
    a = base[base["model.arch"] == "unet"].sort_values("train.seed")["miou"].to_numpy() * 100
    b = base[base["model.rates"] == "6,12,18,24"].sort_values("train.seed")["miou"].to_numpy() * 100
    sd = float(np.std(b - a, ddof=1))
    assert r["test"] == "paired" and r["sd"] == pytest.approx(sd) and r["difference"] == pytest.approx((b - a).mean())
    assert r["seeds_for_difference"] == stats.seeds_needed(2, sd, paired=True)
    assert r["detectable"] == pytest.approx(stats.detectable_difference(3, sd, paired=True))
    from statsmodels.stats.power import TTestPower

    n_fix = TTestPower().solve_power(effect_size=2 / sd, alpha=0.05, power=0.8, alternative="two-sided")
    assert r["fixed_seeds"] == math.ceil(n_fix)  # the fixed design: two-sided test of 2 points at power 0.8
    seq = r["sequential"]  # the --until-decided design, simulated at the measured spread
    assert seq["max_seeds"] == math.ceil(1.25 * r["fixed_seeds"]) and seq["power"] >= 0.75
    assert seq["expected_seeds"] <= r["fixed_seeds"] and 0 <= seq["saving"] < 1
    assert "sequential (--until-decided)" in cli("plan", str(BASELINE), "--baseline", "arch=unet", "--delta", "2")[1]
    code, _, err = cli("plan", str(BASELINE), "--difference", "0")
    assert code == 2 and "--delta/--difference: '0'" in err


def test_the_fingerprint_tells_apart_what_changes_the_numbers() -> None:
    from bench.profile import ProfileSpec, environment, fingerprint

    spec = ProfileSpec(input=(3, 32, 32))
    one, two = environment(spec, train_threads=1), environment(spec, train_threads=2)
    assert fingerprint(one) != fingerprint(two)  # a 2-thread training run computes other numbers
    assert one["device_features"] and one["kernels"] and one["load_avg"] is not None
    assert fingerprint({**one, "device_features": "avx2,fma"}) != fingerprint(one)
    assert fingerprint({**one, "load_avg": 9.0}) == fingerprint(one)  # the load is recorded, not identity


def test_a_one_seed_drop_across_cpu_kinds_is_judged_by_the_cpu_kind_model(cli, tmp_path) -> None:
    """A CPU of another kind moves a synthetic smoke cell by up to 3.91 points (AMD EPYC Zen 5 against
    Intel Xeon with AMX, 13 cells): a one-seed drop between them is judged by that model, and the
    verdict names it and the change; between thread counts the threads model is used."""
    from bench.results.table import collect
    from bench.verdicts import noise
    from tests.fixtures import train_tiny

    cpu = noise.models()["synthetic-cpu-kind"]
    assert cpu.n == 13 and cpu.max_abs == pytest.approx(3.91, abs=0.01) and "cpu-kind" in cpu.changes
    code, _, err = train_tiny(cli, tmp_path / "res" / "run")
    assert code == 0, err
    df, _ = collect(tmp_path / "res")
    df["miou"] = 0.40  # a 1-epoch run scores near 0: set a value a 3-point drop can come from
    df.to_parquet(tmp_path / "base.parquet")
    other = df.copy()
    other["miou"] -= 0.03
    other["env.device_name"] = "AMD EPYC 9B45 (another kind)"
    other["env_fingerprint"] = "another"  # as a profile on that CPU records it
    other.to_parquet(tmp_path / "cpu.parquet")
    code, out, _ = cli("regress", str(tmp_path / "base.parquet"), str(tmp_path / "cpu.parquet"), "--miou-tol", "1",
                       "--json")  # fmt: skip
    (rec,) = json.loads(out)["configurations"]
    assert rec["noise_model"]["name"] == "synthetic-cpu-kind" and rec["noise_model"]["change"] == "cpu-kind"
    assert rec["verdict"] == "INCONCLUSIVE" and "differ in: cpu-kind" in rec["why"]
    threads = df.copy()
    threads["miou"] -= 0.03
    threads["env.threads"] = int(df["env.threads"].iloc[0]) + 1
    threads["env_fingerprint"] = "another"
    threads.to_parquet(tmp_path / "threads.parquet")
    code, out, _ = cli("regress", str(tmp_path / "base.parquet"), str(tmp_path / "threads.parquet"), "--miou-tol",
                       "1", "--json")  # fmt: skip
    (rec,) = json.loads(out)["configurations"]
    assert rec["noise_model"]["name"] == "synthetic-threads" and rec["noise_model"]["change"] == "threads"
