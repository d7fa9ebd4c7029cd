"""`aspp-bench speed` (bench/verdicts/speed.py, bench/profile/speed.py) and regress's speed verdict.

Defects this shows fixed: regress compared latencies measured at any load and between any two
environments against a fixed 20% (a busy latency moves 5-40x); nothing could decide whether one
code version or configuration is faster on a busy machine."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.verdicts.sequential import decide_arrays
from bench.verdicts.speed import FASTER, SAME, SLOWER, SpeedDesign, decide_rounds, median_ratio, single_ratio

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the decision


def test_known_answers_slower_faster_equivalent_and_open() -> None:
    rng = np.random.default_rng(3)
    d = SpeedDesign()
    slow = decide_rounds(d, np.exp(rng.normal(math.log(1.10), 0.03, 40)))
    assert slow.state == SLOWER and slow.low > 1 and 1.05 < slow.ratio < 1.15 and slow.fails(d.tolerance)
    fast = decide_rounds(d, np.exp(rng.normal(math.log(0.90), 0.03, 40)))
    assert fast.state == FASTER and fast.high < 1 and not fast.fails(d.tolerance)
    same = decide_rounds(d, np.exp(rng.normal(0.0, 0.03, 40)))
    assert same.state == SAME and 1 / 1.05 < same.ratio < 1.05 and not same.fails(d.tolerance)
    early = decide_rounds(d, np.exp(rng.normal(math.log(1.5), 0.03, d.first - 1)))  # before the first look
    assert early.state == "open" and math.isnan(early.low) and early.looks == []
    # a decision stops at its look; later rounds do not revisit it
    assert slow.rounds == slow.looks[-1]["rounds"] and slow.rounds < 40


def test_a_significant_slowdown_inside_the_tolerance_does_not_fail_the_gate() -> None:
    d = SpeedDesign(tolerance=0.05)
    v = decide_rounds(d, np.exp(np.random.default_rng(0).normal(math.log(1.02), 0.002, 12)))
    assert v.state == SLOWER and v.ratio < 1.05 and not v.fails(d.tolerance)


def test_repeated_looks_hold_alpha_where_a_plain_test_at_every_look_does_not() -> None:
    """4000 simulated A/A comparisons at a per-round spread of 4%: the design's false 'different'
    rate stays at most alpha (+ Monte Carlo error); a plain t-test at each look exceeds it."""
    from scipy import stats

    d = SpeedDesign()
    rng = np.random.default_rng(11)
    logs = rng.normal(0.0, 0.04, (4000, d.max_rounds))
    dec = decide_arrays(d.design(), np.zeros_like(logs), logs, paired=True)
    false = float(np.mean(dec.state == "different"))
    assert false <= d.alpha + 0.01, false
    peek = np.zeros(len(logs), dtype=bool)
    for n in d.design().looks():
        peek |= stats.ttest_1samp(logs[:, :n], 0.0, axis=1).pvalue < d.alpha
    assert peek.mean() > 2 * d.alpha  # what looking without accounting for it would have done
    slow = rng.normal(math.log(1.10), 0.04, (4000, d.max_rounds))
    dec = decide_arrays(d.design(), np.zeros_like(slow), slow, paired=True)
    assert np.mean(dec.state == "different") >= 0.95 and np.nanmean(dec.n) < 10


def test_bad_rounds_and_designs_are_refused() -> None:
    with pytest.raises(ValueError, match="positive finite"):
        decide_rounds(SpeedDesign(), [1.0, math.nan, 1.0])
    with pytest.raises(ValueError, match="first look needs at least 3"):
        SpeedDesign(first=2).check()
    with pytest.raises(ValueError, match="--tolerance"):
        SpeedDesign(tolerance=1.5).check()


def test_the_one_shot_rules_it_is_compared_with() -> None:
    assert single_ratio(10.0, 10.5, 1.1) == SAME and single_ratio(10.0, 12.0, 1.1) == SLOWER
    assert single_ratio(10.0, 8.0, 1.1) == FASTER and single_ratio(10.0, 14.0, 1.5) == SAME
    assert median_ratio([10, 10, 11], [12.5, 12.5, 30], 0.2) == SLOWER
    assert median_ratio([10, 10, 11], [11.0, 11.0, 30], 0.2) == SAME


# --------------------------------------------------------------------------- the command


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["unett", "unet"], "side A: 'unett' is neither an architecture"),
        (["unet", "unet", "--set-b", "model.widht=3"], "side B:"),
        (["unet", "unet", "--set-b", "model.width=0"], "side B:"),
        (["unet", "unet", "--rev", "no-such-commit-xyz", "HEAD"], "--rev 'no-such-commit-xyz': not a commit"),
        (["unet", "unet", "--python", "/no/such/python", "python3"], "--python /no/such/python: no such interpreter"),
        (["unet", "unet", "--out", "x.txt"], "--out x.txt: give a .json file name"),
        (["unet", "unet", "--measure", "train", "--dtype", "bf16"], "training steps are timed in fp32"),
        (["unet", "unet", "--first-look", "20", "--max-rounds", "10"], "--max-rounds at least the first look"),
        (["unet", "unet", "--input", "3x0x4"], "--input"),
        (["nowhere/config.yaml", "unet"], "side A: nowhere/config.yaml: config file not found"),
    ],
)
def test_bad_input_exits_2_naming_what_to_fix(cli, args: list[str], says: str, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    argv = ["speed", *args] + ([] if "--input" in args else ["--input", "3x16x16"])
    code, out, err = cli(*argv)
    assert code == 2 and says in err and "Traceback" not in err, err


def test_rounds_are_fresh_process_pairs_in_abba_order(cli, tmp_path) -> None:
    """End to end on a tiny input: every round's record, a new pair of processes each round."""
    out = tmp_path / "speed.json"
    code, stdout, err = cli("speed", "unet", "unet", "--set", "model.width=4", "--input", "3x16x16",
                            "--max-rounds", "4", "--first-look", "4", "--slice", "0.05", "--out", str(out))  # fmt: skip
    r = json.loads(out.read_text())
    assert code == (1 if r["verdict"]["fails"] else 0), err
    assert [x["order"] for x in r["rounds"]] == ["ABBA", "BAAB", "ABBA", "BAAB"]
    pids = [p for x in r["rounds"] for p in x["pids"]]
    assert len(set(pids)) == 8  # two processes a round, none reused
    assert r["same_fingerprint"] and all(x["fingerprints"][0] == x["fingerprints"][1] for x in r["rounds"])
    assert all(x["a_blocks"] >= 6 and x["load_before"] is not None for x in r["rounds"])
    assert r["verdict"]["state"] in ("faster", "slower", "equivalent", "undecided") and r["clock"] == "cpu"
    assert "speed of CPU time of a batch-1 forward: B/A x" in stdout and "load " in stdout


@pytest.mark.slow
def test_two_code_versions_run_their_own_code(cli, tmp_path, monkeypatch) -> None:
    """--rev HEAD worktree: side A runs a `git archive` of HEAD, side B the code here; the folder
    made for the checkout is removed afterwards."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    monkeypatch.chdir(ROOT)
    out = tmp_path / "speed.json"
    code, _, err = cli("speed", "unet", "unet", "--set", "model.width=4", "--input", "3x16x16", "--rev", "HEAD",
                       "worktree", "--max-rounds", "3", "--first-look", "3", "--slice", "0.05",
                       "--out", str(out))  # fmt: skip
    r = json.loads(out.read_text())
    assert code in (0, 1), err
    a, b = r["sides"]["A"], r["sides"]["B"]
    assert "aspp-bench-revs-" in a["code"] and a["rev"] and Path(b["code"]) == ROOT
    assert not Path(a["code"]).exists()  # the checkout this command made is gone


# --------------------------------------------------------------------------- regress


SWEEP = """
name: rgs
base:
  model: {arch: unet, width: 4}
  data: {size: [32, 32], count: 8, batch_size: 4}
  train: {epochs: 1}
  profile: {latency: false, receptive: false}
seeds: [0, 1]
launch: {executor: inline}
"""


@pytest.fixture(scope="module")
def timed(tmp_path_factory) -> Path:
    """Results with a latency each, measured quietly (load 0.5 of 2 CPUs)."""
    from bench.cli import main
    from tests.fixtures import write_spec

    root = tmp_path_factory.mktemp("rgs")
    assert main(["sweep", str(write_spec(root, SWEEP)), "--results", str(root / "base")]) == 0
    _set_speed(root / "base", latency=10.0, load=0.5)
    return root / "base"


def _set_speed(results: Path, *, latency: float, load: float, fingerprint: str | None = None,
               code: str | None = None) -> None:  # fmt: skip
    for f in results.glob("*/result.json"):
        r = json.loads(f.read_text())
        r["profile"].update(latency_ms_p50=latency, busy=load > 2)
        if fingerprint:
            r["profile"]["env_fingerprint"] = fingerprint
        r["env"].update(load_avg=load, cpu_count=2, code=code)
        f.write_text(json.dumps(r))


def test_a_busy_latency_is_inconclusive_and_names_the_deciding_command(cli, timed, tmp_path) -> None:
    cur = tmp_path / "cur"
    shutil.copytree(timed, cur)
    _set_speed(cur, latency=40.0, load=5.3, code="0123456789abcdef")  # 4x slower, measured busy
    code, out, err = cli("regress", str(timed), str(cur))
    assert code == 0, out + err  # not a FAIL: the busy latency decides nothing
    assert "INCONCLUSIVE: latency x4.00" in out and "busy machine (load 0.5 baseline, 5.3 current" in out
    # the configuration as the runs resolved it (num_classes from their data), the revisions they recorded
    assert ("aspp-bench speed unet unet --set model.skip=true model.width=4 model.upsample=bilinear "
            "model.num_classes=6 --input 3x32x32 --rev BASELINE_COMMIT 0123456789abcdef") in out
    code, out, _ = cli("regress", str(timed), str(cur), "--json")
    (row,) = json.loads(out)["configurations"]
    assert row["speed_verdict"] == "INCONCLUSIVE" and row["speed_command"].startswith("aspp-bench speed unet")


def test_different_fingerprints_are_inconclusive_even_when_quiet(cli, timed, tmp_path) -> None:
    cur = tmp_path / "cur"
    shutil.copytree(timed, cur)
    _set_speed(cur, latency=40.0, load=0.3, fingerprint="another|machine")
    code, out, _ = cli("regress", str(timed), str(cur), "--json")
    (row,) = json.loads(out)["configurations"]
    assert code == 0 and row["speed_verdict"] == "INCONCLUSIVE" and "environments differ" in row["speed"]


def test_equal_quiet_environments_keep_the_tolerance_and_state_its_assumption(cli, timed, tmp_path) -> None:
    cur = tmp_path / "cur"
    shutil.copytree(timed, cur)
    _set_speed(cur, latency=13.0, load=0.4)  # x1.30, beyond 20%
    code, out, _ = cli("regress", str(timed), str(cur), "--json")
    (row,) = json.loads(out)["configurations"]
    assert code == 1 and row["speed_verdict"] == "FAIL" and "assumed: two quiet measurements" in row["speed"]
    _set_speed(cur, latency=11.0, load=0.4)  # x1.10: inside
    code, out, _ = cli("regress", str(timed), str(cur), "--json")
    assert code == 0 and json.loads(out)["configurations"][0]["speed_verdict"] == "ok"


@pytest.mark.slow
def test_training_steps_and_another_interpreter(cli, tmp_path) -> None:
    """--measure train times SGD steps; --python runs each side under the interpreter given."""
    import sys

    out = tmp_path / "speed.json"
    code, stdout, err = cli("speed", "unet", "unet", "--set", "model.width=4", "--input", "3x16x16", "--measure",
                            "train", "--python", sys.executable, sys.executable, "--max-rounds", "3",
                            "--first-look", "3", "--slice", "0.05", "--out", str(out))  # fmt: skip
    r = json.loads(out.read_text())
    assert code in (0, 1), err
    assert r["measure"] == "train" and r["protocol"]["batch"] == 2 and "a training step (batch 2)" in stdout
    assert r["sides"]["A"]["python"] == sys.executable and all(x["a_cpu_ms"] > 0 for x in r["rounds"])
