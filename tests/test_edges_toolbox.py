"""The edges a new user hit (tried as one would, against the tools the field knows): each was an exit-1
traceback or a wrong answer and is now exit 2 with the usual message, or the right state. Each test
here failed before its fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.fixtures import tmpfs, write_spec

ROOT = Path(__file__).resolve().parents[1]
CLAIM = ROOT / "results" / "baselines" / "asppunet_claim.parquet"

SWEEP = """
name: tb
base:
  model: {arch: unet, width: 4}
  data: {size: [32, 32], count: 8, batch_size: 4}
  train: {epochs: 1}
  profile: {latency: false, receptive: false}
grid: {optim.lr: [0.01, 0.02]}
seeds: [0, 1]
launch: {executor: inline}
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    from bench.cli import main

    root = tmp_path_factory.mktemp("tb")
    assert main(["sweep", str(write_spec(root, SWEEP)), "--results", str(root / "res")]) == 0
    return root / "res"


# --------------------------------------------------------------------------- plan


@pytest.mark.parametrize("args", [["--delta", "100"], ["--alpha", "1e-300"], ["--delta", "0.01"]])
@pytest.mark.slow
def test_plan_at_extreme_differences_and_levels_answers(cli, args: list[str]) -> None:
    """--delta 100: statsmodels' solver returned NaN (ValueError: cannot convert float NaN to
    integer); --alpha 1e-300: a root-finding error."""
    code, out, err = cli("plan", str(CLAIM), *args)
    assert code == 0 and "Traceback" not in err and "| arch=" in out, err


def test_plan_refuses_a_power_at_or_below_alpha_and_answers_a_huge_difference(cli) -> None:
    code, _, err = cli("plan", str(CLAIM), "--power", "1e-300")
    assert code == 2 and "--power 1e-300 with --alpha 0.05: the power must exceed alpha" in err
    code, out, err = cli("plan", str(CLAIM), "--delta", "100")  # the default tier's one; the rest are slow
    assert code == 0 and "Traceback" not in err and "| arch=" in out, err


def test_plan_picks_the_same_default_baseline_whatever_the_folder_order() -> None:
    from bench.results.table import load_table
    from bench.verdicts.plan import plan

    df = load_table(CLAIM)
    df = df[df["train.epochs"] == 64]
    one = plan(df, difference=50.0)[1]  # a large difference: no design search, the order is what is tested
    other = plan(df.iloc[::-1].reset_index(drop=True), difference=50.0)[1]
    assert [r["configuration"] for r in one] == [r["configuration"] for r in other]


# --------------------------------------------------------------------------- configs


def test_a_bool_where_a_number_is_meant_is_refused(cli) -> None:
    code, _, err = cli("config", "--set", "train.seed=true")
    assert code == 2 and "train.seed: a number, not true" in err  # was seed 1
    code, out, _ = cli("config", "--set", "model.skip=false")
    assert code == 0 and "skip: false" in out  # a bool field keeps its bool


def test_a_yaml_key_given_twice_is_refused_naming_both_lines(cli, tmp_path) -> None:
    f = tmp_path / "dup.yaml"
    f.write_text("model:\n  arch: unet\n  width: 8\n  arch: aspp_unet\n")
    code, _, err = cli("config", str(f))
    assert code == 2 and f"{f}: key 'arch' appears twice in one mapping (lines 2 and 4)" in err, err


# --------------------------------------------------------------------------- commands


def test_receptive_with_omp_num_threads_set(cli, monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # plan_threads leaves the count to torch: None
    code, out, err = cli("receptive", "unet", "--set", "model.width=4", "--input", "3x32x32")
    assert code == 0 and "theoretical field" in out, err


def test_status_keeps_a_huge_job_error_to_one_short_line(cli, results, tmp_path) -> None:
    from bench.launch.states import DETAIL_CHARS

    spec = write_spec(tmp_path, SWEEP.replace("name: tb", "name: tb2"))
    res = tmp_path / "res"
    shutil.copytree(results, res)
    victim = sorted(p.parent for p in res.glob("*/result.json"))[0]
    (victim / "result.json").unlink()
    (victim / "job.json").write_text(json.dumps({"executor": "inline", "job_id": "1", "error": "x\n" * 50_000}))
    code, out, err = cli("status", str(spec), "--results", str(res))
    line = next(ln for ln in out.splitlines() if victim.name in ln)
    assert code == 0 and "failed" in line and len(line) < DETAIL_CHARS + 200 and "more characters" in line, line


def test_a_text_per_class_iou_is_a_corrupt_run_named_and_the_report_is_made(cli, results, tmp_path) -> None:
    res = tmp_path / "res"
    shutil.copytree(results, res)
    victim = sorted(res.glob("*/result.json"))[0]
    r = json.loads(victim.read_text())
    cls = next(iter(r["metrics"]["iou"]))
    r["metrics"]["iou"][cls] = "high"
    victim.write_text(json.dumps(r))
    code, out, err = cli("report", str(res), "--out", str(tmp_path / "rep"), "--format", "md")
    assert code == 0 and "Traceback" not in err, err  # was TypeError in a groupby mean
    assert f"metrics.iou.{cls} is 'high', not a number in [0, 1], NaN or null" in err


def test_report_says_when_it_skips_report_pdf(cli, results, tmp_path, monkeypatch) -> None:
    import bench.report.build as build

    real = shutil.which
    monkeypatch.setattr(build.shutil, "which", lambda name, *a, **k: None if name == "pdflatex" else real(name))
    code, _, err = cli("report", str(results), "--out", str(tmp_path / "rep"))
    assert code == 0 and "report.pdf not made: pdflatex is not installed" in err
    assert not (tmp_path / "rep" / "report.pdf").exists()


def test_the_receptive_figure_counts_the_runs_each_point_draws(tmp_path) -> None:
    """The claim report said 'n = 10, 7 seeds' while its effective fields came from 3, 3 and 0 runs."""
    from bench.report.receptive import receptive_figure
    from bench.report.tables import main_table
    from bench.results.table import load_table

    df = load_table(CLAIM)
    df = df[df["train.epochs"] == 16]
    axes = ["model.arch"]
    fig = receptive_figure(df, main_table(df, axes), axes, tmp_path)
    assert fig is not None
    counts = {a: (int(g["erf_r90"].notna().sum()), len(g)) for a, g in df.groupby("model.arch")}
    for arch, (k, n) in counts.items():
        assert f"{arch} ({k} of {n} runs)" in fig.caption, fig.caption
    assert "seed(s), means" not in fig.caption


# --------------------------------------------------------------------------- a full disk


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MiB tmpfs, filled (root only: CI runs as root)."""
    with tmpfs(tmp_path / "disk", "1m") as mnt:
        try:
            with open(mnt / "fill", "wb") as f:
                f.write(b"\0" * (2 << 20))
        except OSError:
            pass
        yield mnt


def test_a_full_disk_names_the_path_and_leaves_no_new_folder(cli, results, full_disk, monkeypatch) -> None:
    spec = full_disk / "s.yaml"
    try:
        spec.write_text(SWEEP)
    except OSError:
        spec = write_spec(full_disk.parent, SWEEP)
    monkeypatch.chdir(full_disk)
    before = sorted(p.name for p in full_disk.iterdir())
    code, _, err = cli("sweep", str(spec), "--results", str(full_disk / "res"))
    assert code == 2 and "res/sweep.json: No space left on device" in err, err
    assert "No space left on device" in err and "Traceback" not in err
    code, _, err = cli("collect", str(results), "--out", str(full_disk / "t.parquet"))
    assert code == 2 and f"{full_disk / 't.parquet'}: " in err and "No space left on device" in err, err
    code, _, err = cli("report", str(results), "--out", str(full_disk / "rep"), "--format", "md,png")
    assert code == 2 and str(full_disk / "rep") in err and "No space left on device" in err, err
    assert sorted(p.name for p in full_disk.iterdir()) == before  # no new folder, no .submit.lock


# --------------------------------------------------------------------------- sweep --set


def test_sweep_set_overrides_the_base_and_status_takes_the_same(cli, tmp_path) -> None:
    """`sweep` had no --set: changing a sweep's base meant editing its file."""
    import re

    spec = write_spec(tmp_path, SWEEP)
    ids = lambda out: set(re.findall(r"^  ([0-9a-f]{12}) ", out, flags=re.M))  # noqa: E731
    code, plain, _ = cli("sweep", str(spec), "--dry-run")
    code2, wide, err = cli("sweep", str(spec), "--dry-run", "--set", "model.width=8", "train.epochs=2")
    assert code == code2 == 0 and len(ids(wide)) == 4 and not ids(wide) & ids(plain), err
    code, out, err = cli("sweep", str(spec), "--results", str(tmp_path / "res"), "--set", "model.width=8")
    assert code == 0, err
    code, out, _ = cli("status", str(spec), "--results", str(tmp_path / "res"), "--set", "model.width=8", "--json")
    assert code == 0 and json.loads(out)["counts"]["done"] == 4
    cfg = next((tmp_path / "res").glob("*/config.yaml")).read_text()
    assert "width: 8" in cfg


@pytest.mark.parametrize(
    ("sets", "says"),
    [
        (["optim.lr=0.5"], "--set optim.lr: "),  # the grid varies it
        (["model.widht=8"], "'model.widht' is not a config field (did you mean 'model.width'"),
        (["model.width"], "--set"),
    ],
)
def test_sweep_set_refuses_what_cannot_apply(cli, tmp_path, sets: list[str], says: str) -> None:
    spec = write_spec(tmp_path, SWEEP)
    code, _, err = cli("sweep", str(spec), "--dry-run", "--set", *sets)
    assert code == 2 and says in err and "Traceback" not in err, err
