"""Comparison reports from a results folder: tables (Markdown through pandas/tabulate, LaTeX
through pandas' Styler with booktabs, caption and label), seaborn figures (PNG and PDF), paper vs
measured tables, learning curves, and one report.pdf compiled by pdflatex.

A table has one column per varying factor (short values: `3,6,9,12`, `yes`/`no`), the seeds
column, the metrics (mean ± sample sd over seeds, ± only with n >= 2) and Δ mIoU against a
baseline row marked with its Holm-corrected significance. Everything that is the same for every
row (dataset, split, size, schedule, seeds, device, number format, counters) goes to the caption.
A LaTeX table wider than a landscape A4 page (2 cm margins) splits itself into parts that fit.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from bench.config import is_experiment_key
from bench.errors import UserError
from bench.labels import factor_names, is_missing, row_label, show
from bench.store import atomic_path, atomic_write_text, collect, read_manifest

__all__ = ["FORMATS", "build_report", "display_frame", "main_table", "reference_table", "split_columns"]

HIGHER_BETTER = {"miou": True, "pixel_acc": True, "params_m": False, "gmacs": False, "fps_bs1": True}
LABELS = {"miou": "mIoU (%)", "pixel_acc": "PA (%)", "params_m": "Params (M)", "gmacs": "GMACs", "fps_bs1": "FPS"}
TEX_LABELS = {
    "miou": r"mIoU (\%)",
    "pixel_acc": r"PA (\%)",
    "params_m": "Params (M)",
    "gmacs": "GMACs",
    "fps_bs1": "FPS",
}
DIGITS = {"miou": 2, "pixel_acc": 2, "params_m": 3, "gmacs": 3, "fps_bs1": 1}
EXTRA_MEANS = ("latency_ms_p50", "latency_ms_iqr", "gmacs_aux")  # the latency figure; the aux head column
DETERMINISTIC = ("params_m", "gmacs")  # the same for every seed: no spread, no test
ALPHA = 0.05
FORMATS = ("md", "tex", "png", "pdf")

# A4 landscape with 2 cm margins: \textwidth = 297 mm - 40 mm = 257 mm = 731 pt. Tables are set in
# \small; the estimate below is conservative (it is checked against pdflatex by the latex tier).
PAGE_WIDTH_PT = 731.0
TABCOLSEP_PT = 6.0


def _axes(df: Any, manifest: dict[str, Any]) -> list[str]:
    """The varying factors: the sweep's varying keys where the results say which sweep they came
    from; for a bare table, every experiment key that differs between its rows (a factor in the
    table must be a column, never hidden)."""
    axes = [a for a in manifest.get("varying", []) if a in df.columns and a != "train.seed"]
    if axes:
        return axes
    done = df[df["status"] == "done"] if "status" in df.columns else df
    from bench.identity import NOT_IDENTITY

    skip = ("train.seed", "data.root", *NOT_IDENTITY)
    cfg = [c for c in done.columns if is_experiment_key(c) and c not in skip]
    return [c for c in cfg if done[c].astype(str).nunique() > 1]


def _seed_values(g: Any, col: str) -> dict[int, float]:
    import pandas as pd

    seeds = g["train.seed"] if "train.seed" in g else range(len(g))
    vals = pd.to_numeric(g[col], errors="coerce")
    return {int(s): float(v) for s, v in zip(seeds, vals, strict=True) if not pd.isna(v)}


def main_table(df: Any, axes: list[str], baseline: str | None = None) -> Any:
    """One row per configuration (the varying factors, in the sweep's order): mean/sd/n per
    metric, the Δ mIoU against the baseline row with its Holm-corrected p (two-sided Welch, or
    paired where both rows ran the same seeds), and per column whether the best value is
    significantly better than the runner-up (the only case in which it is bold)."""
    import pandas as pd

    from bench import stats

    done = df[df["status"] == "done"].copy()
    if "_order" in done.columns:
        done = done.sort_values("_order", kind="stable")
    if done.empty:
        raise UserError("no finished runs to report")
    done["miou"] = done["miou"] * 100
    done["pixel_acc"] = done["pixel_acc"] * 100
    keys = axes or ["status"]
    groups = []
    for key, g in done.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        row["cell"] = row_label(row, axes)
        row["n"] = len(g)
        row["seeds"] = sorted(int(s) for s in g["train.seed"]) if "train.seed" in g else []
        for col in HIGHER_BETTER:
            vals = pd.to_numeric(g[col], errors="coerce").dropna()
            row[col] = vals.mean() if len(vals) else math.nan
            row[f"{col}_std"] = vals.std(ddof=1) if len(vals) > 1 and col not in DETERMINISTIC else math.nan
            row[f"_{col}_seeds"] = _seed_values(g, col)
        for col in EXTRA_MEANS:
            vals = pd.to_numeric(g[col], errors="coerce").dropna() if col in g else []
            row[col] = float(vals.median()) if len(vals) else math.nan
        groups.append(row)
    t = pd.DataFrame(groups)
    t.insert(0, "row", range(1, len(t) + 1))
    base_idx = 0
    if baseline:
        matches = [i for i, c in enumerate(t["cell"]) if all(part.strip() in c for part in baseline.split(","))]
        if not matches:
            raise UserError(f"--baseline {baseline!r} matches no row; rows are: {'; '.join(t['cell'])}")
        base_idx = matches[0]
    base = t.iloc[base_idx]
    t["delta_miou"] = t["miou"] - base["miou"]
    raw, tests = [], []
    for i, r in t.iterrows():
        if i == base_idx or len(r["_miou_seeds"]) < 2 or len(base["_miou_seeds"]) < 2:
            raw.append(math.nan)
            tests.append("")
            continue
        c = stats.compare(base["_miou_seeds"], r["_miou_seeds"], alternative="two-sided")
        raw.append(c.p)
        tests.append(c.test)
    t["p_vs_baseline_raw"] = raw
    t["p_vs_baseline"] = stats.holm(raw)  # Holm over the rows compared with the baseline
    t["test_vs_baseline"] = tests
    t["is_baseline"] = [i == base_idx for i in range(len(t))]
    for col, hb in HIGHER_BETTER.items():
        t[f"best_{col}"] = _significant_best(t, col, hb)
    t.attrs["seed_values"] = {c: t[f"_{c}_seeds"].tolist() for c in ("miou",)}
    return t.drop(columns=[c for c in t.columns if c.startswith("_") and c.endswith("_seeds")])


def _significant_best(t: Any, col: str, higher_better: bool) -> list[bool]:
    """Which row (if any) is the best of `col` and better than the runner-up beyond doubt: for a
    deterministic column a strictly better value; for a measured one, a one-sided test of best vs
    runner-up at p < 0.05 with >= 2 seeds on each side. Otherwise no row is marked."""
    import numpy as np

    from bench import stats

    vals = t[col].to_numpy(dtype=float)
    order = [i for i in np.argsort(-vals if higher_better else vals) if np.isfinite(vals[i])]
    marks = [False] * len(t)
    if len(order) < 2:
        return marks
    best, second = order[0], order[1]
    if vals[best] == vals[second]:
        return marks
    if col in DETERMINISTIC:
        marks[best] = True
        return marks
    a, b = t.iloc[second][f"_{col}_seeds"], t.iloc[best][f"_{col}_seeds"]
    if len(a) < 2 or len(b) < 2:
        return marks
    c = stats.compare(a, b, alternative="greater" if higher_better else "less")
    marks[best] = bool(c.p < ALPHA)
    return marks


def _num(v: float, std: float, digits: int, pm: str) -> str:
    if is_missing(v):
        return "-"
    s = f"{v:.{digits}f}"
    if not is_missing(std):
        s += f"{pm}{std:.{digits}f}"
    return s


def _stars(p: float) -> str:
    if is_missing(p):
        return ""
    return "**" if p < 0.01 else "*" if p < 0.05 else ""


def tex_escape(s: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("_", r"\_"),
        ("%", r"\%"),
        ("&", r"\&"),
        ("#", r"\#"),
        ("$", r"\$"),
        ("{", r"\{"),
        ("}", r"\}"),
        ("^", r"\^{}"),
        ("~", r"\~{}"),
    ):
        s = s.replace(a, b)
    return s.replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace("×", r"$\times$").replace("≥", r"$\geq$")


def display_frame(t: Any, axes: list[str], tex: bool = False) -> tuple[Any, Any]:
    """(strings, bold mask): the main table as a reader sees it, one column per factor. For
    LaTeX the strings are already LaTeX (escaped values, $\\pm$); stars follow Δ after Holm."""
    import pandas as pd

    names = factor_names(axes)
    esc = tex_escape if tex else (lambda s: s)
    pm = r" $\pm$ " if tex else " ± "
    rows, bold = [], []
    has_aux = "gmacs_aux" in t and bool((t["gmacs_aux"].fillna(0) > 0).any())
    for _, r in t.iterrows():
        out: dict[str, str] = {"#": str(r["row"])}
        mark: dict[str, bool] = {"#": False}
        for a in axes:
            out[esc(names[a])] = esc(show(r[a]))
            mark[esc(names[a])] = False
        out["seeds"] = str(r["n"])
        mark["seeds"] = False
        for col in HIGHER_BETTER:
            head = TEX_LABELS[col] if tex else LABELS[col]
            out[head] = _num(r[col], r.get(f"{col}_std"), DIGITS[col], pm)
            mark[head] = bool(r.get(f"best_{col}"))
        if has_aux:  # training-only cost, its own column
            head = "aux GMACs"
            out[head] = "-" if is_missing(r["gmacs_aux"]) else f"{r['gmacs_aux']:.3f}"
            mark[head] = False
        d = r["delta_miou"]
        head = r"$\Delta$ mIoU" if tex else "Δ mIoU"
        out[head] = "base" if r["is_baseline"] else f"{d:+.2f}{_stars(r['p_vs_baseline'])}"
        mark[head] = False
        rows.append(out)
        bold.append(mark)
    return pd.DataFrame(rows), pd.DataFrame(bold)


def protocol_note(t: Any) -> str:
    """What the table's marks mean, for its caption."""
    tests = sorted({x for x in t.get("test_vs_baseline", []) if x})
    kind = " and ".join({"welch": "Welch's t-test", "paired": "paired t-test (same seeds)"}[x] for x in tests)
    n = int(t["p_vs_baseline"].notna().sum()) if "p_vs_baseline" in t else 0
    return (
        "Mean ± sample sd over the seeds (n in the seeds column; no ± with one seed; Params and GMACs are "
        "the same for every seed). Δ mIoU against the row marked base; * p < 0.05, ** p < 0.01, two-sided "
        + (f"{kind}, Holm-corrected over {n} comparisons" if n else "tests need >= 2 seeds per row: none made")
        + ". Bold: the best value of a column, only where it is significantly better than the runner-up "
        "(one-sided test, p < 0.05; for Params and GMACs, strictly smaller)."
    )


PROTOCOL_KEYS = {  # constant settings worth a reader's attention, in caption order
    "data.name": "dataset {}",
    "data.size": "{} px",
    "data.batch_size": "batch {}",
    "train.epochs": "{} epochs",
    "train.iters": "{} iterations",
    "optim.name": "{}",
    "optim.lr": "lr {}",
    "optim.schedule": "{} schedule",
    "model.width": "width {}",
    "model.output_stride": "output stride {}",
    "loss.name": "loss {}",
    "model.arch": "arch {}",
    "model.backbone": "backbone {}",
    "model.context": "context {}",
    "model.rates": "rates {}",
    "model.skip": "skip {}",
    "train.amp": "training in {}",
}


def protocol_caption(df: Any, axes: list[str]) -> str:
    """The constant factors and the protocol, in words, for a caption (plain text, Unicode)."""
    from bench.data import eval_split

    done = df[df["status"] == "done"]

    def const(col: str) -> str | None:
        if col not in done.columns or col in axes:
            return None
        vals = {show(v) for v in done[col]}
        return vals.pop() if len(vals) == 1 else None

    parts = []
    for col, fmt in PROTOCOL_KEYS.items():
        v = const(col)
        if v is None or v == "-" or (col == "train.amp" and v in ("no", "fp32", "none")):
            continue
        parts.append(fmt.format(v.replace(",", "x") if col == "data.size" else v))
    split = const("data.split")
    if split:
        parts.insert(1, f"trained on {split}, evaluated on {eval_split(split)}")
    seeds = sorted({int(s) for s in done["train.seed"]}) if "train.seed" in done else []
    if seeds:
        parts.append("seeds " + ",".join(str(s) for s in seeds))
    dev = const("env.device_name")
    dtype = const("env.dtype")
    threads = const("env.threads")
    where = f"latency on {dev or 'several devices'}" + (f", {threads} thread(s)" if threads else "")
    where += f", {dtype}" if dtype else ""
    text = (
        "; ".join(parts)
        + f". GMACs: torch.utils.flop_counter / 2 at the training size; FPS: batch 1, 1000 / median {where}."
    )
    if "busy" in done.columns:
        busy = int(done["busy"].fillna(False).astype(bool).sum())
        if busy:
            text += (
                f" {busy} of {len(done)} latencies were measured while the machine was busier than its cores "
                "(load average above the core count): compare speeds only from a quiet machine."
            )
    return text


def _markdown(df: Any, bold: Any | None = None, left: int = 1) -> str:
    """Markdown through pandas (tabulate): the first `left` columns (row number, factors) left-aligned,
    the numbers right-aligned."""
    d = df.copy()
    if bold is not None:
        for c in d.columns:
            d[c] = [f"**{v}**" if b else v for v, b in zip(d[c], bold[c], strict=True)]
    align = ["left" if k < left else "right" for k in range(len(df.columns))]
    return d.to_markdown(index=False, disable_numparse=True, colalign=align)


def _visible(s: str) -> str:
    """What a LaTeX cell shows, for the width estimate."""
    s = s.replace(r"$\pm$", "±").replace(r"$\Delta$", "Δ").replace(r"$\times$", "×")
    s = re.sub(r"\\textbf\{(.*?)\}", r"\1", s).replace("\\bfseries ", "")
    s = re.sub(r"\\rotatebox\{\d+\}\{(.*?)\}", "MMMM", s)
    return re.sub(r"\\(.)", r"\1", s)


def _char_pt(c: str) -> float:
    """Approximate advance of a character of Computer Modern at \\small (9 pt), rounded up."""
    if c.isdigit():
        return 4.6
    if c in ".,+-*":
        return 3.3
    if c in "±×Δ":
        return 7.2
    if c == " ":
        return 3.1
    if c.isupper() or c in "mw%@":
        return 7.0
    return 4.5


def column_width_pt(header: str, values: list[str], bold: list[bool] | None = None) -> float:
    cells = [_visible(header), *(_visible(v) for v in values)]
    w = max(sum(_char_pt(c) for c in s) for s in cells) * 1.03  # + bold and kerning slack
    return w + 2 * TABCOLSEP_PT


def split_columns(widths: dict[str, float], ids: list[str], budget: float = PAGE_WIDTH_PT) -> list[list[str]]:
    """Columns into parts no wider than `budget`, each part opening with the `ids` columns (the
    row number and, where they fit beside the data, the factors). One part where all fit."""
    cols = [c for c in widths if c not in ids]
    id_w = sum(widths[c] for c in ids)
    if id_w > 0.6 * budget and len(ids) > 1:  # the factors leave no room: key the parts by '#' alone
        return [ids] + split_columns({c: widths[c] for c in widths if c == ids[0] or c not in ids}, ids[:1], budget)
    parts: list[list[str]] = []
    cur: list[str] = []
    for c in cols:
        if cur and id_w + sum(widths[x] for x in cur) + widths[c] > budget:
            parts.append(cur)
            cur = []
        cur.append(c)
    if cur or not parts:
        parts.append(cur)
    return [ids + p for p in parts]


@dataclass
class TexTable:
    stem: str
    latex: str
    width_pt: float
    parts: int = 1
    labels: list[str] = field(default_factory=list)


def latex_tables(
    disp: Any, bold: Any | None, caption: str, label: str, ids: list[str], left: int, budget: float = PAGE_WIDTH_PT
) -> tuple[str, list[str], float]:
    """One booktabs table through pandas' Styler (caption, label, \\small, numbers right-aligned),
    or several when it would be wider than `budget`: each part repeats the id columns, the first
    carries the caption, the others say which table they continue. Returns (latex, labels, widest)."""
    widths = {c: column_width_pt(c, disp[c].tolist()) for c in disp.columns}
    parts = split_columns(widths, ids, budget)
    out, labels = [], []
    for k, cols in enumerate(parts):
        lab = label if len(parts) == 1 else f"{label}-{chr(ord('a') + k)}"
        labels.append(lab)
        cap = caption if k == 0 else f"continued from Table~\\ref{{{labels[0]}}} (part {k + 1} of {len(parts)})."
        sub = disp[cols]
        sty = sub.style.hide(axis="index")
        if bold is not None:
            mask = bold[cols]
            sty = sty.apply(lambda _, m=mask: m.map(lambda b: "font-weight: bold;" if b else ""), axis=None)
        sty = sty.set_table_styles([{"selector": "small", "props": ":;"}], overwrite=False)
        lefts = set(disp.columns[:left])
        fmt = "".join("l" if c in lefts else "r" for c in cols)
        out.append(
            sty.to_latex(
                hrules=True,
                caption=cap,
                label=lab,
                position="htbp",
                position_float="centering",
                column_format=fmt,
                convert_css=True,
            )
        )
    widest = max(sum(widths[c] for c in cols) for cols in parts)
    return "\n".join(out), labels, widest


def reference_table(name: str) -> Any:
    """A paper's published table (bench/references/<name>.csv)."""
    import pandas as pd

    try:
        path = resources.files("bench.references") / f"{name}.csv"
        with resources.as_file(path) as p:
            return pd.read_csv(p, comment="#")
    except (FileNotFoundError, ModuleNotFoundError):
        raise UserError(f"reference table '{name}' not found in bench/references/") from None


def _paper_vs_measured(t: Any, ref: Any) -> Any | None:
    """Join measured configurations to the paper's rows on the config columns both name."""
    import pandas as pd

    keys = [c for c in ref.columns if c in t.columns and is_experiment_key(c)]  # the join is on config only
    if not keys or "miou" not in ref.columns:
        return None
    names = factor_names(keys)
    rows = []
    for _, pr in ref.iterrows():
        sel = t
        for k in keys:
            sel = sel[sel[k].astype(str) == str(pr[k])]
        row = {"#": str(sel.iloc[0]["row"]) if not sel.empty else "-"}
        row.update({names[k]: show(pr[k]) for k in keys})
        row["paper mIoU (%)"] = f"{pr['miou']:.2f}"
        if sel.empty:
            row["measured mIoU (%)"], row["difference"] = "-", "-"
        else:
            m = sel.iloc[0]
            row["measured mIoU (%)"] = _num(m["miou"], m["miou_std"], 2, " ± ")
            row["difference"] = f"{m['miou'] - pr['miou']:+.2f}"
        rows.append(row)
    return pd.DataFrame(rows)


def row_numbers(t: Any, axes: list[str]) -> dict[tuple[Any, ...], int]:
    """The main table's row number of each configuration, keyed like groupby(axes) keys (tuples)."""
    if not axes:
        return {("done",): 1}
    return {tuple(r[a] for a in axes): int(r["row"]) for _, r in t.iterrows()}


def per_class(df: Any, t: Any, axes: list[str]) -> Any | None:
    """Per-class IoU (%) per configuration (mean over seeds), indexed by the main table's row."""
    done = df[df["status"] == "done"]
    cols = [c for c in done.columns if c.startswith("iou.")]
    if not cols:
        return None
    keys = axes or ["status"]
    g = done.groupby(keys, sort=False, dropna=False)[cols].mean() * 100
    g.columns = [c[4:] for c in cols]
    rows = row_numbers(t, axes)
    g.index = [rows[k if isinstance(k, tuple) else (k,)] for k in g.index]
    return g.sort_index()


def _tex_doc(name: str, tables: list[str], figures: list[tuple[str, str]]) -> str:
    """The report as one LaTeX document: A4 landscape, 2 cm margins, every table and figure."""
    lines = [
        r"\documentclass[a4paper]{article}",
        r"\usepackage[a4paper,landscape,margin=2cm]{geometry}",
        r"\usepackage[T1]{fontenc}",
        r"\usepackage{booktabs,graphicx}",
        r"\usepackage[font=small]{caption}",
        r"\begin{document}",
        rf"\section*{{{tex_escape(name)}: ablation report}}",
        r"Generated by \texttt{aspp-bench report}; the Markdown version is README.md beside this file.",
    ]
    lines += [rf"\input{{{stem}}}" for stem in tables]
    for fname, caption in figures:
        lines += [
            r"\begin{figure}[p]",
            r"\centering",
            rf"\includegraphics[width=\linewidth,height=0.82\textheight,keepaspectratio]{{{fname}}}",
            rf"\caption{{{tex_escape(caption)}}}",
            r"\end{figure}",
        ]
    lines.append(r"\end{document}")
    return "\n".join(lines) + "\n"


def _pdflatex() -> str:
    """pdflatex's path, or the UserError that says how to install it."""
    exe = shutil.which("pdflatex")
    if exe is None:
        raise UserError(
            "--format pdf needs pdflatex, which is not installed; install it (Debian: apt-get install "
            "texlive-latex-base texlive-latex-recommended) or leave pdf out of --format"
        )
    return exe


def compile_pdf(outdir: Path, stem: str = "report") -> tuple[Path, list[str]]:
    """pdflatex on outdir/stem.tex in a scratch copy; report.pdf is replaced atomically. Returns
    the PDF and the overfull-box lines of the log (empty when everything fits)."""
    exe = _pdflatex()
    with tempfile.TemporaryDirectory(prefix="aspp-report-") as tmp:
        for f in outdir.iterdir():
            if f.suffix in (".tex", ".pdf", ".png") and f.is_file():
                shutil.copy2(f, tmp)
        for _ in range(2):  # twice, so that \ref between table parts resolves
            r = subprocess.run(
                [exe, "-interaction=nonstopmode", "-halt-on-error", f"{stem}.tex"],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if r.returncode != 0:
                tail = "\n".join(r.stdout.splitlines()[-15:])
                raise UserError(f"{outdir / (stem + '.tex')}: pdflatex failed (exit {r.returncode}):\n{tail}")
        log = (Path(tmp) / f"{stem}.log").read_text(errors="replace")
        overfull = [ln for ln in log.splitlines() if ln.startswith("Overfull")]
        pdf = outdir / f"{stem}.pdf"
        with atomic_path(pdf) as dst:
            shutil.copy2(Path(tmp) / f"{stem}.pdf", dst)
    return pdf, overfull


def _sweep_manifest(path: str | Path) -> dict[str, Any]:
    """What a results folder's sweep.json says, from the sweep file itself (for a collected table)."""
    from bench.sweep import expand, load_sweep, varying_keys

    sw = load_sweep(path)
    cells = expand(sw, source=str(path))
    return {
        "name": sw.name,
        "reference": list(sw.reference),
        "varying": [k for k in varying_keys(cells) if k != "train.seed"],
        "cells": {c.run_id: c.varying for c in cells},
    }


def default_formats() -> tuple[str, ...]:
    """md, tex, png, and pdf when pdflatex is installed."""
    return FORMATS if shutil.which("pdflatex") else FORMATS[:3]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "report"


def build_report(
    results: str | Path,
    out: str | Path,
    *,
    formats: tuple[str, ...] | None = None,
    baseline: str | None = None,
    notes: str | None = None,
    sweep: str | Path | None = None,
) -> dict[str, Any]:
    """Write reports/X/README.md, the .tex tables, figures, report.tex/pdf; returns what was written."""
    from bench import figures

    formats = tuple(formats) if formats else default_formats()
    res = Path(results)
    table = res.is_file() and res.suffix in (".parquet", ".csv")
    if not res.is_dir() and not table:
        raise UserError(f"{res}: results folder not found (or give a table collected with 'aspp-bench collect')")
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise UserError(
            f"--format {','.join(formats)}: {', '.join(bad)} is not a format; allowed are {', '.join(FORMATS)}"
        )
    if "pdf" in formats:
        _pdflatex()  # before anything is read or written
    if table:  # a collected table, e.g. a committed baseline: rows read through their identity
        from bench.regress import load_table

        df, skipped = load_table(res), []
        df["run_id"] = df["_identity"]  # the runs' identities, whatever the table's ids were
    else:
        df, skipped = collect(res)
    if df.empty:
        raise UserError(f"{res}: no finished runs (skipped {len(skipped)} folder(s))")
    manifest = _sweep_manifest(sweep) if sweep else read_manifest(res)
    if table and not manifest:
        manifest = {"name": res.stem}
    order = {rid: i for i, rid in enumerate(manifest.get("cells", {}))}
    df["_order"] = [order.get(r, len(order)) for r in df["run_id"]]
    df = df.sort_values("_order", kind="stable")
    axes = _axes(df, manifest)
    t = main_table(df, axes, baseline)
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    name = manifest.get("name", res.name)
    slug = _slug(name)
    written: list[Path] = []
    protocol = protocol_caption(df, axes)
    note = protocol_note(t)
    names = factor_names(axes)

    md_disp, md_bold = display_frame(t, axes)
    sections = [
        f"# {name}: ablation report",
        "",
        f"{len(df)} runs ({int((df['status'] == 'done').sum())} done) from `{res}`; "
        f"factors: {', '.join(f'{names[a]} (`{a}`)' for a in axes) or 'none'}.",
        "",
        f"**Protocol.** {protocol}",
        "",
        f"**Table 1.** {note}",
        "",
        _markdown(md_disp, md_bold, left=1 + len(axes)),
        "",
    ]
    if notes:
        sections[1:1] = ["", notes.strip()]
    tex_disp, tex_bold = display_frame(t, axes, tex=True)
    ids = ["\\#"] + [tex_escape(names[a]) for a in axes]
    tex_disp = tex_disp.rename(columns={"#": "\\#"})
    tex_bold = tex_bold.rename(columns={"#": "\\#"})
    cap = tex_escape(f"{name}. {protocol} {note}")
    main_tex, main_labels, main_w = latex_tables(tex_disp, tex_bold, cap, f"tab:{slug}-main", ids, left=len(ids))
    tex_parts = [("main", main_tex)]
    widths = {"main": main_w}
    refs = manifest.get("reference") or []
    for ref_name in [refs] if isinstance(refs, str) else refs:
        pvm = _paper_vs_measured(t, reference_table(ref_name))
        if pvm is not None:
            sections += [
                f"## Paper vs measured ({ref_name})",
                "",
                "Measured: mean ± sd over seeds of the row `#` of Table 1.",
                "",
                _markdown(pvm, left=pvm.shape[1] - 3),
                "",
            ]
            tdisp = pvm.map(tex_escape).rename(columns=tex_escape)
            cap = tex_escape(
                f"{name}: the paper's {ref_name} against the measured mean ± sd (row # of Table 1). {protocol}"
            )
            body, _, w = latex_tables(
                tdisp,
                None,
                cap,
                f"tab:{slug}-{_slug(ref_name)}",
                list(tdisp.columns[: pvm.shape[1] - 3]),
                left=pvm.shape[1] - 3,
            )
            tex_parts.append((f"paper_vs_{ref_name}", body))
            widths[f"paper_vs_{ref_name}"] = w
    pc = per_class(df, t, axes)
    if pc is not None:
        import pandas as pd

        pcd = pd.DataFrame({"#": [str(i) for i in pc.index]})
        for a in axes:
            pcd[names[a]] = [show(v) for v in t.set_index("row").loc[pc.index, a]]
        for c in pc.columns:
            pcd[c] = [f"{v:.1f}" for v in pc[c]]
        sections += [
            "## Per-class IoU (%)",
            "",
            "Mean over the seeds of each configuration.",
            "",
            _markdown(pcd, left=1 + len(axes)),
            "",
        ]
        tdisp = pcd.map(tex_escape).rename(columns=tex_escape)
        cap = tex_escape(f"{name}: per-class IoU (%), mean over seeds; # is the row of Table 1. {protocol}")
        body, _, w = latex_tables(
            tdisp,
            None,
            cap,
            f"tab:{slug}-per-class",
            ["\\#"] + [tex_escape(names[a]) for a in axes],
            left=1 + len(axes),
        )
        tex_parts.append(("per_class", body))
        widths["per_class"] = w
    if skipped:
        sections += ["## Skipped run folders", ""] + [f"- `{p}`: {why}" for p, why in skipped] + [""]
    figs: list[figures.Figure] = []
    if "png" in formats or "pdf" in formats:
        figs, lines = figures.make_all(t, df, axes, outdir, results=None if table else res, per_class=pc)
        written += [f.path.with_suffix(s) for f in figs for s in (".png", ".pdf")]
        sections += ["## Figures", "", "Which figures exist for each factor, and why:", ""]
        sections += [f"- {line}" for line in lines] + [""]
        for f in figs:
            sections += [f"**{f.title}.** {f.caption}", "", f"![{f.path.stem}]({f.path.stem}.png)", ""]
    if "tex" in formats or "pdf" in formats:
        for stem, tex in tex_parts:
            atomic_write_text(outdir / f"{stem}.tex", tex)
            written.append(outdir / f"{stem}.tex")
        atomic_write_text(
            outdir / "report.tex",
            _tex_doc(
                name, [s for s, _ in tex_parts], [(f"{f.path.stem}.pdf", f"{f.title}. {f.caption}") for f in figs]
            ),
        )
        written.append(outdir / "report.tex")
    overfull: list[str] = []
    if "pdf" in formats:
        pdf, overfull = compile_pdf(outdir)
        written.append(pdf)
    if "md" in formats:
        atomic_write_text(outdir / "README.md", "\n".join(sections))
        written.append(outdir / "README.md")
    with atomic_path(outdir / "main_table.csv") as tmp:
        t.drop(columns=["is_baseline"]).to_csv(tmp, index=False)
    written.append(outdir / "main_table.csv")
    return {
        "written": [str(w) for w in written],
        "skipped": skipped,
        "rows": len(t),
        "overfull": overfull,
        "table_width_pt": widths,
        "labels": main_labels,
    }
