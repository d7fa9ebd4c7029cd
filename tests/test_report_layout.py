"""Tables that fit the page, figures whose labels never collide, factor plots only where
the design supports them, and a 6-factor report that compiles without an overfull box."""

from __future__ import annotations

import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pandas as pd
import pytest


def _t(rows: list[dict]) -> pd.DataFrame:
    t = pd.DataFrame(rows)
    t.insert(0, "row", range(1, len(t) + 1))
    t["miou"] = [40.0 + i for i in range(len(t))]
    t["n"] = 1
    return t


def test_split_columns_keeps_every_column_once_and_each_part_within_budget() -> None:
    from bench.report import split_columns

    widths = {"#": 20.0, "arch": 80.0, "rates": 60.0, **{f"m{k}": 70.0 for k in range(12)}}
    parts = split_columns(widths, ["#", "arch", "rates"], budget=500.0)
    assert len(parts) > 1 and all(p[:3] == ["#", "arch", "rates"] for p in parts)
    assert all(sum(widths[c] for c in p) <= 500.0 for p in parts)
    assert sorted(c for p in parts for c in p[3:]) == sorted(c for c in widths if c.startswith("m"))
    assert split_columns({"#": 20.0, "a": 50.0}, ["#"], budget=500.0) == [["#", "a"]]  # fits: one part
    wide_ids = {"#": 20.0, **{f"f{k}": 100.0 for k in range(4)}, "m": 60.0}
    parts = split_columns(wide_ids, ["#", "f0", "f1", "f2", "f3"], budget=500.0)  # factors alone: 420 of 500
    assert parts[0][0] == "#" and all(sum(wide_ids[c] for c in p) <= 500.0 for p in parts)


def test_latex_table_splits_itself_rather_than_overflowing() -> None:
    from bench.report import PAGE_WIDTH_PT, latex_tables

    disp = pd.DataFrame({"\\#": ["1", "2"], "arch": ["deeplabv3plus", "unet"],
                         **{f"class{k}": ["99.9", "0.0"] for k in range(30)}})  # fmt: skip
    tex, labels, widest = latex_tables(disp, None, "cap", "tab:x", ["\\#", "arch"], left=2)
    assert len(labels) == tex.count("\\begin{table}") == tex.count("\\label{") > 1 and widest <= PAGE_WIDTH_PT
    assert "continued from Table~\\ref{tab:x-a}" in tex and tex.count("\\caption{") == len(labels)


def test_crossed_and_matched_pairs() -> None:
    from bench.report.effects import crossed, matched_pairs

    full = _t([{"a": a, "b": b} for a in ("x", "y") for b in (1, 2)])
    assert crossed(full, "a", ["a", "b"]) and crossed(full, "b", ["a", "b"])
    zip_design = _t([{"arch": "unet", "skip": True}, {"arch": "unet", "skip": False},
                     {"arch": "dual", "skip": False}])  # fmt: skip
    assert not crossed(zip_design, "skip", ["arch", "skip"])
    assert matched_pairs(zip_design, "skip", ["arch", "skip"]) == [(0, 1)]  # only unet has skip on and off
    assert matched_pairs(zip_design, "arch", ["arch", "skip"]) == [(1, 2)]  # the two skip=False archs


def test_labels_never_overlap_on_a_crowded_plot() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from bench.report.plotting import place_labels

    rng = np.random.default_rng(0)
    xs = list(rng.normal(1.0, 0.05, 25)) + [1.0, 1.0, 1.001]  # a tight cluster and three coincident points
    ys = list(rng.normal(40.0, 1.0, 25)) + [40.0, 40.0, 40.0]
    fig = plt.figure(figsize=(6, 4))
    ax = fig.add_axes((0.1, 0.1, 0.8, 0.8))
    ax.scatter(xs, ys)
    ax.margins(0.3)
    anns = place_labels(ax, xs, ys, [str(i + 1) for i in range(len(xs))])
    from matplotlib.text import Text

    fig.canvas.draw()
    boxes = [Text.get_window_extent(a) for a in anns]  # the text itself, not its leader line
    for i in range(len(boxes)):
        for j in range(i):
            assert not boxes[i].overlaps(boxes[j]), (anns[i].get_text(), anns[j].get_text())
    plt.close(fig)


def test_pdf_without_pdflatex_is_a_clear_error(cli, tmp_path, monkeypatch) -> None:
    (tmp_path / "res").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path))  # no pdflatex on it
    code, _, err = cli("report", str(tmp_path / "res"), "--out", str(tmp_path / "rep"), "--format", "md,pdf")
    assert code == 2 and "pdflatex" in err and "apt-get install" in err and "Traceback" not in err
    assert not (tmp_path / "rep").exists()


SIX = """
name: six_factors
base:
  model: {width: 2}
  data: {size: [32, 32], count: 4, batch_size: 2}
  train: {epochs: 1}
  profile: {latency: true}
zip:
  - model.arch:     [unet, unet, aspp_unet, aspp_unet, aspp_unet, deeplabv3plus, deeplabv3plus]
    model.context:  [null, null, aspp_parallel, dense_aspp, aspp_parallel, aspp_separable, aspp_separable]
    model.rates:    [null, null, [3, 6, 9, 12], [3, 6, 9, 12], [6, 12, 18, 24], [6, 12, 18], [6, 12, 18]]
    model.skip:     [true, false, true, true, true, true, false]
    loss.name:      [ce, ce, ce, dice, ce, ce, ce]
    model.backbone: [null, null, null, null, null, mobilenet_v3_small, mobilenet_v3_small]
seeds: [0]
"""


@pytest.mark.latex
def test_six_factor_report_fits_a4_landscape_and_compiles(cli, tmp_path) -> None:
    assert shutil.which("pdflatex"), "pdflatex is needed (Debian: texlive-latex-base texlive-latex-recommended)"
    spec = tmp_path / "six.yaml"
    spec.write_text(textwrap.dedent(SIX))
    res = tmp_path / "results"
    code, _, err = cli("sweep", str(spec), "--executor", "inline", "--results", str(res))
    assert code == 0, err
    out = tmp_path / "rep"
    code, _, err = cli("report", str(res), "--out", str(out))
    assert code == 0, err
    assert (out / "report.pdf").stat().st_size > 10_000
    main = (out / "main.tex").read_text()
    assert "\\label{tab:six-factors-main" in main
    head = re.search(r"\\midrule", main) and main.split("\\toprule")[1].split("\\\\")[0]
    for factor in ("arch", "context", "rates", "skip", "loss", "backbone"):
        assert factor in head, factor  # one column per factor
    for stem in ("main", "per_class"):  # each wrapped as a paper would: A4 landscape, 2 cm margins
        over = _overfull(out, stem)
        assert all(x <= 1.0 for x in over), (stem, over)


def _overfull(folder: Path, stem: str) -> list[float]:
    doc = folder / f"wrap_{stem}.tex"
    doc.write_text(
        "\\documentclass{article}\n\\usepackage[a4paper,landscape,margin=2cm]{geometry}\n"
        "\\usepackage[T1]{fontenc}\n\\usepackage{booktabs}\n\\begin{document}\n"
        f"\\input{{{stem}}}\n\\end{{document}}\n"
    )
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=folder,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:]
    log = (folder / f"wrap_{stem}.log").read_text()
    return [float(x) for x in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide", log)]


@pytest.mark.latex
@pytest.mark.parametrize("report", ["smoke", "camvid_cpu"])
def test_committed_reports_fit_a4_landscape(report: str, tmp_path) -> None:
    """The committed reports' tables, each wrapped in an A4 landscape article with 2 cm margins."""
    src = Path(__file__).resolve().parents[1] / "reports" / report
    tables = [p for p in src.glob("*.tex") if p.name != "report.tex"]
    assert {"main.tex", "per_class.tex"} <= {p.name for p in tables}
    for tex in tables:
        shutil.copy(tex, tmp_path / tex.name)
        body = tex.read_text()
        assert body.count("\\begin{table}") == body.count("\\label{tab:") >= 1, tex.name
        assert all(x <= 1.0 for x in _overfull(tmp_path, tex.stem)), tex.name
    assert (src / "report.pdf").stat().st_size > 10_000
