"""collect / report / regress on a small results folder made by real runs."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pandas as pd
import pytest

SPEC = """
name: tiny_report
reference: [asppunet_table1, asppunet_table2]
base:
  model: {width: 2}
  data: {size: [24, 32], count: 4, batch_size: 2}
  train: {epochs: 1}
  profile: {latency: true}
grid:
  model.arch: [unet, aspp_unet]
seeds: [0, 1]
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    from bench.cli import main

    root = tmp_path_factory.mktemp("report")
    spec = root / "tiny.yaml"
    spec.write_text(textwrap.dedent(SPEC))
    res = root / "results"
    assert main(["sweep", str(spec), "--executor", "inline", "--results", str(res)]) == 0
    return res


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_collect_rows_columns_and_skips(cli, results: Path, tmp_path) -> None:
    res = _copy(results, tmp_path / "res")
    runs = sorted(p for p in res.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "tensorboard")
    (tmp_path / "res" / "partial").mkdir()
    (tmp_path / "res" / "partial" / "config.yaml").write_text("model: {}\n")
    broken = _copy(runs[0], res / "broken")
    (broken / "result.json").write_text('{"status": "do')
    code, out, err = cli("collect", str(res), "--out", str(tmp_path / "t.parquet"))
    assert code == 0, err
    assert "4 runs" in out and "2 folder(s) skipped" in out and "corrupt result file" in err and "unfinished" in err
    df = pd.read_parquet(tmp_path / "t.parquet")
    assert len(df) == 4 and (tmp_path / "t.csv").is_file()
    for col in (
        "run_id",
        "status",
        "model.arch",
        "loss.name",
        "miou",
        "pixel_acc",
        "iou.background",
        "iou.disk",
        "size_miou.small",
        "params",
        "gmacs",
        "latency_ms_p50",
        "fps_bs1",
        "env_fingerprint",
        "env.torch",
    ):
        assert col in df.columns, col
    assert set(df["model.rates"].dropna()) == {"3,6,9,12"}  # readable rate sets


def test_report_tables_figures_and_latex(cli, results: Path, tmp_path) -> None:
    out = tmp_path / "rep"
    notes = tmp_path / "notes.md"
    notes.write_text("What this ablation shows: a sentence of the author's.\n")
    code, stdout, err = cli("report", str(results), "--out", str(out), "--format", "md,tex,png", "--notes", str(notes))
    assert code == 0, err
    md = (out / "README.md").read_text()
    header = next(ln for ln in md.splitlines() if ln.startswith("| #"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols[:3] == ["#", "arch", "seeds"] and "mIoU (%)" in cols  # a column per factor
    assert cols[-2:] == ["Δ mIoU", "P(>base)"]
    assert md.index("What this ablation shows") < md.index(header)
    assert "**Protocol.** dataset synthetic; trained on train, evaluated on val; 24x32 px" in md and "seeds 0,1" in md
    rows = md.split(header)[1].splitlines()[2:4]
    assert "| unet " in rows[0] and "base" in rows[0] and "| aspp_unet " in rows[1]
    assert "Paper vs measured (asppunet_table1)" in md and "60.60" in md  # UNet's published mIoU
    pvm = md.split("## Paper vs measured (asppunet_table1)")[1].split("##")[0]
    unet_row = next(ln for ln in pvm.splitlines() if "| unet " in ln)
    measured = pd.read_csv(out / "main_table.csv").query("`model.arch` == 'unet'")["miou"].iloc[0]
    assert f"{measured:.2f}" in unet_row and unet_row.count("|") == 6, unet_row  # #, arch, paper, measured, diff
    assert "Paper vs measured (asppunet_table2)" in md and "68.70" in md  # AsppUNet's
    assert (out / "paper_vs_asppunet_table1.tex").is_file() and (out / "paper_vs_asppunet_table2.tex").is_file()
    assert "## Per-class IoU" in md
    stems = ("miou_vs_gmacs", "miou_vs_latency_ms", "per_class_iou", "effect_model_arch", "learning_curves",
             "miou_intervals", "receptive_field")  # fmt: skip
    rf = md.split("## Receptive fields")[1].split("\n## ")[0]  # a row per configuration, the runs' own fields
    rf_rows = [ln for ln in rf.splitlines() if ln.startswith("| 1 ") or ln.startswith("| 2 ")]
    assert len(rf_rows) == 2 and all("2 of 2" in ln and " x " in ln for ln in rf_rows), rf
    for stem in stems:
        assert (out / f"{stem}.png").stat().st_size > 1000 and (out / f"{stem}.pdf").is_file(), stem
        assert f"![{stem}]({stem}.png)" in md, stem  # every figure listed with its line
    assert "arch: fully crossed, level means" in md  # the README says which factor figure exists and why
    for tex in out.glob("*.tex"):
        if tex.name != "report.tex":
            body = tex.read_text()
            assert body.count("\\begin{table}") == body.count("\\label{tab:") >= 1, tex.name  # a label on each
            assert "\\toprule" in body and "\\caption{" in body and "\\bottomrule" in body, tex.name
    main = (out / "main.tex").read_text()
    assert r"$\pm$" in main and "aspp\\_unet" in main and "seeds 0,1" in main
    table = pd.read_csv(out / "main_table.csv")
    assert list(table["n"]) == [2, 2] and table["p_vs_baseline"].notna().sum() == 1  # 2 seeds each: Welch's t
    poi = table.iloc[1]  # aspp_unet against the base row, unet: its probability of improvement and interval
    assert 0 <= poi["p_improvement_low"] <= poi["p_improvement"] <= poi["p_improvement_high"] <= 1
    assert f"{poi['p_improvement']:.2f} ({poi['p_improvement_low']:.2f}–" in rows[1]
    assert table["miou_ci_low"].le(table["miou"]).all() and table["miou_ci_high"].ge(table["miou"]).all()


def test_tensorboard_events_one_run_per_cell_named_by_factors(results: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = results / "tensorboard"
    runs = sorted(p.name for p in tb.iterdir())
    assert runs == ["arch=aspp_unet, seed=0", "arch=aspp_unet, seed=1", "arch=unet, seed=0", "arch=unet, seed=1"]
    acc = EventAccumulator(str(tb / "arch=unet, seed=0"))
    acc.Reload()
    assert {"train/loss", "train/lr", "val/mIoU"} <= set(acc.Tags()["scalars"])
    results_by = {}
    for p in results.glob("*/result.json"):
        r = json.loads(p.read_text())
        results_by[(r["config"]["model"]["arch"], r["config"]["train"]["seed"])] = r
    result = results_by[("unet", 0)]
    assert acc.Scalars("val/mIoU")[-1].value == pytest.approx(100 * result["metrics"]["miou"], abs=1e-4)


@pytest.mark.latex
def test_latex_tables_compile_with_pdflatex(cli, results: Path, tmp_path) -> None:
    assert shutil.which("pdflatex"), "pdflatex is needed (Debian: texlive-latex-base texlive-latex-recommended)"
    out = tmp_path / "rep"
    code, _, err = cli("report", str(results), "--out", str(out))  # the default compiles report.pdf
    assert code == 0, err
    assert (out / "report.pdf").stat().st_size > 10_000 and "Overfull" not in err


def _table(cli, res: Path, path: Path) -> pd.DataFrame:
    assert cli("collect", str(res), "--out", str(path))[0] == 0
    return pd.read_parquet(path)


def test_regress_passes_on_identical_and_fails_on_regressions(cli, results: Path, tmp_path) -> None:
    base = tmp_path / "base.parquet"
    df = _table(cli, results, base)
    code, out, _ = cli("regress", str(base), str(results))
    assert code == 0 and "PASS" in out and out.count("| ok |") == 2  # two configurations x two seeds
    unet = df.index[df["model.arch"] == "unet"]
    df["miou"] += 0.1  # the tiny runs score a few points: lifted, a 5-point drop stays a valid mIoU
    df.to_parquet(base)
    worse = df.copy()
    worse.loc[unet, "miou"] -= [0.05, 0.052]  # both seeds about 5 points worse
    worse.to_parquet(tmp_path / "worse.parquet")
    code, out, _ = cli("regress", str(base), str(tmp_path / "worse.parquet"), "--miou-tol", "1")
    assert code == 1 and "FAIL: mIoU -5.10 points, significant" in out
    quiet = df.copy()
    quiet["env.load_avg"], quiet["env.cpu_count"] = 0.5, 2  # measured quietly (the test may run on a busy machine)
    quiet.to_parquet(base)
    slower = quiet.copy()
    slower.loc[unet, "latency_ms_p50"] *= 1.5
    slower.to_parquet(tmp_path / "slower.parquet")
    code, out, _ = cli("regress", str(base), str(tmp_path / "slower.parquet"), "--speed-tol", "0.2")
    assert code == 1 and "speed x1.50 (tolerance x1.20)" in out
    busy = slower.copy()
    busy.loc[unet, "env.load_avg"] = 5.0  # more jobs than the 2 cores: speed is shown, not judged
    busy.to_parquet(tmp_path / "busy.parquet")
    code, out, _ = cli("regress", str(base), str(tmp_path / "busy.parquet"), "--speed-tol", "0.2")
    assert code == 0 and "measured on a busy machine" in out
    other = slower.copy()
    other["env_fingerprint"] = "cuda|H200|..."
    other.to_parquet(tmp_path / "other.parquet")
    code, out, _ = cli("regress", str(base), str(tmp_path / "other.parquet"))
    assert code == 0 and "INCONCLUSIVE: latency" in out and "environments differ" in out and "aspp-bench speed" in out


def test_regress_matches_by_config_when_ids_differ(cli, results: Path, tmp_path) -> None:
    df = _table(cli, results, tmp_path / "base.parquet")
    renamed = df.copy()
    renamed["run_id"] = [f"new{i}" for i in range(len(df))]
    renamed.to_parquet(tmp_path / "renamed.parquet")
    code, out, _ = cli("regress", str(tmp_path / "base.parquet"), str(tmp_path / "renamed.parquet"))
    assert code == 0 and out.count("| 2/2 | paired |") == 2


def test_report_and_regress_bad_input(cli, tmp_path) -> None:
    code, _, err = cli("report", str(tmp_path), "--out", str(tmp_path / "o"), "--notes", str(tmp_path / "nope.md"))
    assert code == 2 and "nope.md" in err and "Traceback" not in err
    code, _, err = cli("regress", str(tmp_path / "nope.parquet"), str(tmp_path))
    assert code == 2 and "not a results folder or a collected table" in err
    code, _, err = cli("report", str(tmp_path / "missing"), "--out", str(tmp_path / "r"))
    assert code == 2 and "results folder not found" in err
    (tmp_path / "empty").mkdir()
    code, _, err = cli("report", str(tmp_path / "empty"), "--out", str(tmp_path / "r"), "--format", "md")
    assert code == 2 and "no finished runs" in err
    code, _, err = cli("report", str(tmp_path / "empty"), "--out", str(tmp_path / "r"), "--format", "html")
    assert code == 2 and "allowed are md, tex, png, pdf" in err


def test_status_reads_results(cli, results: Path, tmp_path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(textwrap.dedent(SPEC))
    code, out, _ = cli("status", str(spec), "--results", str(results), "--json")
    assert code == 0 and json.loads(out)["counts"] == {"done": 4}
