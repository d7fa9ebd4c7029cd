"""Comparison reports from a results folder: Markdown and LaTeX (booktabs) tables, seaborn
figures (PNG and PDF), "paper vs measured" columns, and seed-aware significance markers.

Rows of the main table are the sweep's varying axes (seeds pooled): mean +- std over seeds
with n, the best value of each column in bold, the delta to a baseline row, and, where both
rows have >= 2 seeds, Welch's t-test against the baseline (* p < 0.05, ** p < 0.01).
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any

from bench.config import is_experiment_key
from bench.errors import UserError
from bench.store import collect, read_manifest

__all__ = ["build_report", "main_table", "reference_table"]

HIGHER_BETTER = {"miou": True, "pixel_acc": True, "params_m": False, "gmacs": False, "fps_bs1": True}
LABELS = {"miou": "mIoU (%)", "pixel_acc": "PA (%)", "params_m": "Params (M)", "gmacs": "GMACs", "fps_bs1": "FPS"}


def _axes(df: Any, manifest: dict[str, Any]) -> list[str]:
    axes = [a for a in manifest.get("varying", []) if a in df.columns]
    if axes:
        return axes
    cfg = [c for c in df.columns if is_experiment_key(c) and c != "train.seed"]
    return [c for c in cfg if df[c].astype(str).nunique() > 1]


def _short(axis: str) -> str:
    return axis[len("model.") :] if axis.startswith("model.") else axis


def _value(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or str(v) in ("nan", "None"):
        return "-"
    return str(v)


def _label(row: Any, axes: list[str]) -> str:
    return ", ".join(f"{_short(a)}={_value(row[a])}" for a in axes) if axes else "all runs"


DETERMINISTIC = ("params_m", "gmacs")  # the same for every seed: no spread, no test
ALPHA = 0.05


def _seed_values(g: Any, col: str) -> dict[int, float]:
    import pandas as pd

    seeds = g["train.seed"] if "train.seed" in g else range(len(g))
    vals = pd.to_numeric(g[col], errors="coerce")
    return {int(s): float(v) for s, v in zip(seeds, vals, strict=True) if not pd.isna(v)}


def main_table(df: Any, axes: list[str], baseline: str | None = None) -> Any:
    """One row per cell of the varying axes (in the sweep's order): mean/sd/n per metric, the
    Δ mIoU against the baseline row with its Holm-corrected p (two-sided Welch, or paired where
    both rows ran the same seeds), and per column whether the best value is significantly better
    than the runner-up (the only case in which it is bold)."""
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
        row["cell"] = _label(row, axes)
        row["n"] = len(g)
        for col in HIGHER_BETTER:
            vals = pd.to_numeric(g[col], errors="coerce").dropna()
            row[col] = vals.mean() if len(vals) else math.nan
            row[f"{col}_std"] = vals.std(ddof=1) if len(vals) > 1 and col not in DETERMINISTIC else math.nan
            row[f"_{col}_seeds"] = _seed_values(g, col)
        groups.append(row)
    t = pd.DataFrame(groups)
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


def _fmt(v: float, std: float, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    s = f"{v:.{digits}f}"
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        s += f" ± {std:.{digits}f}"
    return s


def _stars(p: float) -> str:
    if p is None or math.isnan(p):
        return ""
    return "**" if p < 0.01 else "*" if p < 0.05 else ""


def _cells(t: Any, bold: tuple[str, str], fmt_std: str = " ± ") -> list[list[str]]:
    """Formatted rows: bold only a significantly best value, Δ with Holm-corrected stars."""
    rows = []
    digits = {"miou": 2, "pixel_acc": 2, "params_m": 3, "gmacs": 3, "fps_bs1": 1}
    for i, (_, r) in enumerate(t.iterrows(), 1):
        out = [str(i), r["cell"] + (" (baseline)" if r["is_baseline"] else ""), str(r["n"])]
        for col in HIGHER_BETTER:
            s = _fmt(r[col], r.get(f"{col}_std"), digits[col]).replace(" ± ", fmt_std)
            if r.get(f"best_{col}"):
                s = f"{bold[0]}{s}{bold[1]}"
            out.append(s)
        d = r["delta_miou"]
        out.append("" if r["is_baseline"] else f"{d:+.2f}{_stars(r['p_vs_baseline'])}")
        rows.append(out)
    return rows


def protocol_note(t: Any) -> str:
    """What the table's marks mean, for its caption."""
    tests = sorted({x for x in t.get("test_vs_baseline", []) if x})
    kind = " and ".join({"welch": "Welch's t-test", "paired": "paired t-test (same seeds)"}[x] for x in tests)
    n = int(t["p_vs_baseline"].notna().sum()) if "p_vs_baseline" in t else 0
    return (
        "Mean ± sample sd over the seeds (n in the seeds column; no ± with one seed; Params and GMACs are "
        "the same for every seed). Δ mIoU against the baseline row; * p < 0.05, ** p < 0.01, two-sided "
        + (f"{kind}, Holm-corrected over {n} comparisons" if n else "tests need >= 2 seeds per row: none made")
        + ". Bold: the best value of a column, only where it is significantly better than the runner-up "
        "(one-sided test, p < 0.05; for Params and GMACs, strictly smaller)."
    )


HEADER = ["#", "cell", "seeds", *LABELS.values(), "Δ mIoU"]


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _latex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        s = s.replace(a, b)
    return s


def _latex(header: list[str], rows: list[list[str]], caption: str) -> str:
    """A booktabs table (needs \\usepackage{booktabs}); ± as $\\pm$, Δ as $\\Delta$."""

    def cell(s: str) -> str:
        bold = s.startswith("**") and s.endswith("**") and len(s) > 4
        body = s[2:-2] if bold else s
        body = _latex_escape(body).replace("±", r"$\pm$").replace("Δ", r"$\Delta$")
        return r"\textbf{" + body + "}" if bold else body

    cols = "l" + "r" * (len(header) - 1)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{cols}}}", r"\toprule"]
    lines.append(" & ".join(cell(h) for h in header) + r" \\")
    lines.append(r"\midrule")
    lines += [" & ".join(cell(c) for c in r) + r" \\" for r in rows]
    cap = _latex_escape(caption).replace("±", r"$\pm$").replace("Δ", r"$\Delta$")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{cap}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def reference_table(name: str) -> Any:
    """A paper's published table (bench/references/<name>.csv)."""
    import pandas as pd

    try:
        path = resources.files("bench.references") / f"{name}.csv"
        with resources.as_file(path) as p:
            return pd.read_csv(p, comment="#")
    except (FileNotFoundError, ModuleNotFoundError):
        raise UserError(f"reference table '{name}' not found in bench/references/") from None


def _paper_vs_measured(t: Any, ref: Any, axes: list[str]) -> tuple[list[str], list[list[str]]] | None:
    """Join measured cells to the paper's rows on the columns both name (e.g. model.arch, model.rates)."""
    keys = [c for c in ref.columns if c in t.columns and is_experiment_key(c)]  # the join is on config only
    if not keys or "miou" not in ref.columns:
        return None
    header = [*keys, "paper mIoU (%)", "measured mIoU (%)", "difference"]
    rows = []
    for _, pr in ref.iterrows():
        sel = t
        for k in keys:
            sel = sel[sel[k].astype(str) == str(pr[k])]
        if sel.empty:
            rows.append([*(str(pr[k]) for k in keys), f"{pr['miou']:.2f}", "-", "-"])
            continue
        m = sel.iloc[0]
        rows.append([*(str(pr[k]) for k in keys), f"{pr['miou']:.2f}", _fmt(m["miou"], m["miou_std"], 2),
                     f"{m['miou'] - pr['miou']:+.2f}"])  # fmt: skip
    return header, rows


def _per_class(df: Any, axes: list[str]) -> Any:
    done = df[df["status"] == "done"]
    cols = [c for c in done.columns if c.startswith("iou.")]
    if not cols:
        return None
    cells = done.apply(lambda r: _label(r, axes), axis=1)
    g = done.assign(cell=cells).groupby("cell", sort=False)[cols].mean() * 100
    g.columns = [c[4:] for c in cols]
    return g


def _pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices on the front: lower cost, higher accuracy."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _figures(t: Any, df: Any, axes: list[str], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    made = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        for ext in ("png", "pdf"):
            p = out / f"{name}.{ext}"
            fig.savefig(p, dpi=150)
            made.append(p)
        plt.close(fig)

    for cost, label in (("gmacs", "GMACs (multiply-accumulates x 1e9)"), ("latency_ms", "CPU latency, batch 1 (ms)")):
        x = t["gmacs"] if cost == "gmacs" else 1000 / t["fps_bs1"]
        if x.isna().all():
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        sns.scatterplot(x=x, y=t["miou"], s=60, ax=ax, color="#4c72b0")
        ax.errorbar(x, t["miou"], yerr=t["miou_std"].fillna(0), fmt="none", ecolor="gray", alpha=0.6)
        for i, (xi, yi) in enumerate(zip(x, t["miou"], strict=True), 1):  # numbers = the table's '#' column
            ax.annotate(str(i), (xi, yi), textcoords="offset points", xytext=(4, 3), fontsize=7)
        pts = list(zip(x.tolist(), t["miou"].tolist(), strict=True))
        front = _pareto(pts)
        fx, fy = zip(*[pts[i] for i in front], strict=True)
        ax.plot(fx, fy, "--", color="black", lw=1, marker="o", mfc="none", ms=11, label="Pareto front")
        ax.set_xlabel(label)
        ax.set_ylabel("mIoU (%) (numbers: rows of the main table)")
        ax.legend(fontsize=7, loc="best")
        save(fig, f"miou_vs_{cost}")

    pc = _per_class(df, axes)
    if pc is not None:
        longest = max(len(str(i)) for i in pc.index)
        fig, ax = plt.subplots(figsize=(max(6, 0.6 * pc.shape[1]) + 0.07 * longest, max(3, 0.35 * pc.shape[0] + 1)))
        sns.heatmap(pc, annot=True, fmt=".0f", cmap="viridis", vmin=0, vmax=100, ax=ax, cbar_kws={"label": "IoU (%)"})
        ax.set_xlabel("class")
        ax.set_ylabel("")
        save(fig, "per_class_iou")

    done = df[df["status"] == "done"].copy()
    done["miou"] = done["miou"] * 100
    for axis in axes:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        sns.barplot(data=done, x=axis, y="miou", errorbar="sd", ax=ax, color="#4c72b0")
        sns.stripplot(data=done, x=axis, y="miou", ax=ax, color="black", size=3)
        ax.set_ylabel("mIoU (%): mean ± sd of all runs\nwith this value (other axes pooled)")
        ax.tick_params(axis="x", rotation=20)
        save(fig, f"miou_by_{axis.replace('.', '_')}")
    return made


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


def build_report(results: str | Path, out: str | Path, *, formats: tuple[str, ...] = ("md", "tex", "png"),
                 baseline: str | None = None, notes: str | None = None,
                 sweep: str | Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Write reports/X/README.md, *.tex and figures; returns what was written."""
    res = Path(results)
    table = res.is_file() and res.suffix in (".parquet", ".csv")
    if not res.is_dir() and not table:
        raise UserError(f"{res}: results folder not found (or give a table collected with 'aspp-bench collect')")
    bad = [f for f in formats if f not in ("md", "tex", "png")]
    if bad:
        raise UserError(f"--format {','.join(formats)}: allowed are md, tex, png")
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
    written: list[Path] = []
    md_rows = _cells(t, ("**", "**"))
    devices = df["env.device_name"].dropna() if "env.device_name" in df.columns else []
    device = devices.iloc[0] if len(devices) else "?"
    sections = [f"# {name}: ablation report", "",
                f"{len(df)} runs ({int((df['status'] == 'done').sum())} done) from `{res}`; "
                f"axes: {', '.join(axes) or 'none'}. " + protocol_note(t) + " GMACs: torch.utils.flop_counter / 2. "
                f"FPS: batch 1, median latency on {device}.",
                "", _markdown(HEADER, md_rows), ""]  # fmt: skip
    if notes:
        sections[1:1] = ["", notes.strip()]
    tex_parts = [("main", _latex(HEADER, _cells(t, ("**", "**")), f"{name}. " + protocol_note(t)))]
    refs = manifest.get("reference") or []
    for ref_name in [refs] if isinstance(refs, str) else refs:
        pvm = _paper_vs_measured(t, reference_table(ref_name), axes)
        if pvm:
            sections += [f"## Paper vs measured ({ref_name})", "", _markdown(*pvm), ""]
            tex_parts.append((f"paper_vs_{ref_name}", _latex(*pvm, f"{name}: paper ({ref_name}) vs measured")))
    pc = _per_class(df, axes)
    if pc is not None:
        header = ["cell", *pc.columns]
        rows = [[idx, *(f"{v:.1f}" for v in r)] for idx, r in pc.iterrows()]
        sections += ["## Per-class IoU (%)", "", _markdown(header, rows), ""]
        tex_parts.append(("per_class", _latex(header, rows, f"{name}: per-class IoU (%)")))
    if skipped:
        sections += ["## Skipped run folders", ""] + [f"- `{p}`: {why}" for p, why in skipped] + [""]
    if "png" in formats:
        figs = _figures(t, df, axes, outdir)
        written += figs
        pngs = [f for f in figs if f.suffix == ".png"]
        sections += ["## Figures", ""] + [f"![{f.stem}]({f.name})" for f in pngs] + [""]
    if "md" in formats:
        (outdir / "README.md").write_text("\n".join(sections))
        written.append(outdir / "README.md")
    if "tex" in formats:
        for stem, tex in tex_parts:
            (outdir / f"{stem}.tex").write_text(tex)
            written.append(outdir / f"{stem}.tex")
    t.drop(columns=["is_baseline"]).to_csv(outdir / "main_table.csv", index=False)
    written.append(outdir / "main_table.csv")
    return {"written": [str(w) for w in written], "skipped": skipped, "rows": len(t)}
