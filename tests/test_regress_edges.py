"""regress on the edges of ordinary use: a configuration on one side only, runs a side left out,
and a damaged environment noise file. Defects: a configuration missing in current crashed or failed
the gate (a rerun of a subset is ordinary); corrupt runs were dropped without a word (a paired test
silently became Welch or a threshold); a damaged noise CSV gave a traceback on every regress, and NaN
in it turned a 15-point one-seed drop into INCONCLUSIVE."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.errors import UserError
from bench.verdicts import noise
from tests.fixtures import write_spec

SWEEP = """
name: rg
base:
  model: {arch: aspp_unet, width: 4}
  data: {size: [32, 32], count: 16, batch_size: 4}
  train: {epochs: 1}
  profile: {latency: false, receptive: false}
grid: {optim.lr: [0.01, 0.02]}
seeds: [0, 1, 2]
launch: {executor: inline}
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    from bench.cli import main

    root = tmp_path_factory.mktemp("rg")
    spec = write_spec(root, SWEEP)
    assert main(["sweep", str(spec), "--results", str(root / "base")]) == 0
    return root / "base"


def _copy(results: Path, tmp_path: Path) -> Path:
    cur = tmp_path / "cur"
    shutil.copytree(results, cur)
    return cur


def _folders(cur: Path, lr: float) -> list[Path]:
    return sorted(p.parent for p in cur.glob("*/result.json") if f"lr: {lr}" in (p.parent / "config.yaml").read_text())


def test_a_configuration_on_one_side_only_is_a_row_of_its_own(cli, results, tmp_path) -> None:
    cur = _copy(results, tmp_path)
    for f in _folders(cur, 0.02):
        shutil.rmtree(f)
    code, out, err = cli("regress", str(results), str(cur), "--json")
    r = json.loads(out)
    missing = [c for c in r["configurations"] if c["verdict"] == "MISSING"]
    assert code == 0 and r["passed"] and "Traceback" not in err
    assert [c["why"] for c in missing] == ["missing in current"] and missing[0]["n_cur"] == 0
    code, out, _ = cli("regress", str(results), str(cur), "--require-all")
    assert code == 1 and "missing in current (--require-all)" in out
    code, out, _ = cli("regress", str(cur), str(results), "--json")  # the other way round
    assert code == 0 and [c["why"] for c in json.loads(out)["configurations"] if c["verdict"] == "MISSING"] == [
        "missing in baseline"
    ]


@pytest.mark.parametrize(
    "damage",
    ["nan", "inf", "negative", "text", "null", "truncated"],
)
def test_a_run_a_side_leaves_out_is_named_and_counted(cli, results, tmp_path, damage: str) -> None:
    cur = _copy(results, tmp_path)
    victim = _folders(cur, 0.01)[1] / "result.json"
    if damage == "truncated":
        victim.write_text(victim.read_text()[:40])
    else:
        value = {"nan": "NaN", "inf": "Infinity", "negative": "-0.5", "text": '"high"', "null": "null"}[damage]
        r = json.loads(victim.read_text())
        r["metrics"]["miou"] = "__V__"
        victim.write_text(json.dumps(r).replace('"__V__"', value))
    code, out, err = cli("regress", str(results), str(cur), "--json")
    r = json.loads(out)
    assert code == 0 and "Traceback" not in err
    assert f"left out {victim.parent}" in err  # named on stderr
    (row,) = [c for c in r["configurations"] if c["configuration"] == "lr=0.01"]
    assert row["dropped_cur"] == 1 and row["n_cur"] == 2 and "lost its pairing on seed(s)" in row["why"], row
    assert len(r["left_out"]["current"]) == 1 and "1 of the current" in r["summary"]


def test_every_run_of_a_configuration_left_out_is_missing_not_a_crash(cli, results, tmp_path) -> None:
    cur = _copy(results, tmp_path)
    for f in _folders(cur, 0.02):
        (f / "result.json").write_text("{")
    code, out, err = cli("regress", str(results), str(cur), "--json")
    r = json.loads(out)
    assert code == 0 and err.count("left out") == 3 and "Traceback" not in err
    (row,) = [c for c in r["configurations"] if c["verdict"] == "MISSING"]
    assert row["dropped_cur"] == 3 and "3 run(s) left out" in row["why"]


GOOD = "model,data.name,change,experiment,seed,first,second,source\n"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (GOOD + "m,synthetic,threads,a,0,forty,41,x\n", "line 2: column first is 'forty'"),
        (GOOD + "m,synthetic,threads,a,0,40\n", "line 2: 6 fields, the header names 8"),
        (GOOD + 'm,synthetic,threads,"a,0,40,41,x\n', "not a readable CSV"),
        (GOOD + "m,synthetic,threads,a,0,nan,41,x\n", "line 2: column first is 'nan'"),
        (GOOD + "m,synthetic,threads,a,0,40,inf,x\n", "line 2: column second is 'inf'"),
        (GOOD + "m,synthetic,threads,a,0,40,41,x,extra\n", "line 2: 9 fields"),
    ],
)
def test_a_damaged_noise_file_is_refused_naming_file_line_and_column(tmp_path, body: str, says: str) -> None:
    f = tmp_path / "noise.csv"
    f.write_text(body)
    with pytest.raises(UserError) as e:
        noise.models(f)
    assert says in str(e.value) and str(f) in str(e.value) and "restore the file" in str(e.value)


def test_a_noise_file_of_binary_bytes_is_refused(tmp_path) -> None:
    f = tmp_path / "noise.csv"
    f.write_bytes(b"\xff\xfe\x00\x81binary")
    with pytest.raises(UserError) as e:
        noise.models(f)
    assert "not a readable CSV" in str(e.value)


def test_multi_seed_comparisons_never_read_the_noise_file(cli, results, tmp_path, monkeypatch) -> None:
    def broken(*_a, **_k):  # noqa: ANN002, ANN003
        raise UserError("environment_noise.csv: damaged")

    monkeypatch.setattr(noise, "models", broken)
    code, out, err = cli("regress", str(results), str(results))
    assert code == 0 and "damaged" not in err, err


def test_a_busy_latency_is_never_presented_as_a_finding() -> None:
    """Defect: a report bolded a busy FPS (70.3 ± 0.9) as significantly best. Every latency of the
    committed CamVid baseline was measured while two cells shared the cores."""
    import pandas as pd

    from bench.report.captions import protocol_note
    from bench.report.tables import display_frame, main_table

    root = Path(__file__).resolve().parents[1]
    df = pd.read_parquet(root / "results" / "baselines" / "camvid_cpu.parquet")
    df["fps_bs1"] = [500.0 + s * s if a == "unet" else 50.0 + s
                     for a, s in zip(df["model.arch"], df["train.seed"], strict=True)]  # fmt: skip
    axes = ["model.arch", "model.rates"]
    quiet = main_table(df.assign(busy=False), axes)
    assert quiet["best_fps_bs1"].any()  # on quiet measurements the fastest row can be bolded
    t = main_table(df.assign(busy=True), axes)
    shown, bold = display_frame(t, axes)
    assert not t["best_fps_bs1"].any() and not bold["FPS"].any()
    assert all(v.endswith(" †") for v in shown["FPS"])
    assert "FPS marked † were measured while the machine was busier than its cores" in protocol_note(t)
    assert "never bolded" not in protocol_note(quiet)
