"""The main table: one row per configuration (the varying factors, in the sweep's order) with the
mean, sample sd and n of every metric over the seeds, the Δ mIoU against a baseline row with its
Holm-corrected test, bold only where a best value is significantly better than the runner-up;
the strings a reader sees (Markdown, or LaTeX cells) and the per-class table.
"""

from __future__ import annotations

import math
from typing import Any

from bench.configure.config import is_experiment_key
from bench.configure.identity import NOT_IDENTITY
from bench.configure.naming import factor_names, is_missing, row_label, value_text
from bench.errors import UserError
from bench.report.latex import tex_escape
from bench.results.convergence import configuration_convergence
from bench.verdicts import stats

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


def factor_axes(df: Any, manifest: dict[str, Any]) -> list[str]:
    """The varying factors: the sweep's varying keys where the results say which sweep they came
    from; for a bare table, every experiment key that differs between its rows (a factor in the
    table must be a column, never hidden)."""
    axes = [a for a in manifest.get("varying", []) if a in df.columns and a != "train.seed"]
    if axes:
        return axes
    done = df[df["status"] == "done"] if "status" in df.columns else df

    skip = ("train.seed", "data.root", *NOT_IDENTITY)
    cfg = [c for c in done.columns if is_experiment_key(c) and c not in skip]
    return [c for c in cfg if done[c].astype(str).nunique() > 1]


def _seed_values(g: Any, col: str) -> dict[int, float]:
    import pandas as pd

    seeds = g["train.seed"] if "train.seed" in g else range(len(g))
    vals = pd.to_numeric(g[col], errors="coerce")
    return {int(s): float(v) for s, v in zip(seeds, vals, strict=True) if not pd.isna(v)}


def main_table(df: Any, axes: list[str], baseline: str | None = None, groups: list[str] | None = None) -> Any:
    """One row per configuration (the varying factors, in the sweep's order): mean/sd/n per
    metric, the Δ mIoU against the baseline row with its Holm-corrected p (two-sided Welch, or
    paired where both rows ran the same seeds), and per column whether the best value is
    significantly better than the runner-up (the only case in which it is bold). `groups`: factors
    (a sweep's budget keys) whose rows are compared only among themselves: each group has its own
    base row (its first, or the one `baseline` names) and its own best values."""
    import pandas as pd

    done = df[df["status"] == "done"].copy()
    if "_order" in done.columns:
        done = done.sort_values("_order", kind="stable")
    if done.empty:
        raise UserError("no finished runs to report")
    done["miou"] = done["miou"] * 100
    done["pixel_acc"] = done["pixel_acc"] * 100
    keys = axes or ["status"]
    rows_ = []
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
        busy = g["busy"].fillna(False).astype(bool) if "busy" in g else None
        row["busy_runs"] = int(busy.sum()) if busy is not None else 0  # latencies measured on a busy machine
        if "conv_status" in g:  # has the validation curve flattened at this budget
            conv = configuration_convergence(list(g["conv_status"]), list(g["conv_tail_gain"]),
                                             list(g["conv_headroom"]))  # fmt: skip
            row["curve"], row["curve_status"] = conv["text"], conv["status"]
            row["curve_tail_gain"] = 100 * conv["tail_gain"] if conv["tail_gain"] is not None else math.nan
        rows_.append(row)
    t = pd.DataFrame(rows_)
    t.insert(0, "row", range(1, len(t) + 1))
    keys_of = [tuple(str(r[g]) for g in groups or []) for _, r in t.iterrows()]
    members = {k: [i for i, kk in enumerate(keys_of) if kk == k] for k in dict.fromkeys(keys_of)}
    base_of: dict[tuple, int] = {}
    for k, idx in members.items():
        base_of[k] = idx[0]
        if baseline:
            matches = [i for i in idx if all(part.strip() in t["cell"][i] for part in baseline.split(","))]
            if not matches and len(members) == 1:
                raise UserError(f"--baseline {baseline!r} matches no row; rows are: {'; '.join(t['cell'])}")
            base_of[k] = matches[0] if matches else idx[0]
    bases = [base_of[k] for k in keys_of]
    t["delta_miou"] = [t["miou"][i] - t["miou"][b] for i, b in enumerate(bases)]
    raw, tests = [], []
    for i, r in t.iterrows():
        base = t.iloc[bases[i]]
        if i == bases[i] or len(r["_miou_seeds"]) < 2 or len(base["_miou_seeds"]) < 2:
            raw.append(math.nan)
            tests.append("")
            continue
        c = stats.compare(base["_miou_seeds"], r["_miou_seeds"], alternative="two-sided")
        raw.append(c.p)
        tests.append(c.test)
    t["p_vs_baseline_raw"] = raw
    t["p_vs_baseline"] = stats.holm(raw)  # Holm over the rows compared with the baseline
    t["test_vs_baseline"] = tests
    _intervals(t, bases)
    t["is_baseline"] = [i == bases[i] for i in range(len(t))]
    for col, hb in HIGHER_BETTER.items():
        marks = [False] * len(t)
        for idx in members.values():
            if col == "fps_bs1" and any(t["busy_runs"][i] for i in idx):
                continue  # a speed measured on a busy machine is not a finding: never bolded
            sub = t.iloc[idx].reset_index(drop=True)
            for j, m in zip(idx, _significant_best(sub, col, hb), strict=True):
                marks[j] = m
        t[f"best_{col}"] = marks
    t.attrs["seed_values"] = {c: t[f"_{c}_seeds"].tolist() for c in ("miou",)}
    return t.drop(columns=[c for c in t.columns if c.startswith("_") and c.endswith("_seeds")])


def _intervals(t: Any, bases: list[int]) -> None:
    """Each row's bootstrap interval of its mean mIoU, and its probability of improvement over its
    baseline row (`bases[i]`), P(row > baseline) over seeds with its stratified bootstrap interval
    (rliable's practice: intervals, not single numbers)."""
    lo, hi, poi, poi_lo, poi_hi = [], [], [], [], []
    for i, seeds in enumerate(t["_miou_seeds"]):
        base = t.iloc[bases[i]]["_miou_seeds"]
        a, b = stats.mean_interval(list(seeds.values())) if seeds else (math.nan, math.nan)
        lo.append(a)
        hi.append(b)
        imp = stats.probability_of_improvement(base, seeds) if i != bases[i] and seeds and base else None
        poi.append(imp.p if imp else math.nan)
        poi_lo.append(imp.low if imp else math.nan)
        poi_hi.append(imp.high if imp else math.nan)
    t["miou_ci_low"], t["miou_ci_high"] = lo, hi
    t["p_improvement"], t["p_improvement_low"], t["p_improvement_high"] = poi, poi_lo, poi_hi


def _significant_best(t: Any, col: str, higher_better: bool) -> list[bool]:
    """Which row (if any) is the best of `col` and better than the runner-up beyond doubt: for a
    deterministic column a strictly better value; for a measured one, a one-sided test of best vs
    runner-up at p < 0.05 with >= 2 seeds on each side. Otherwise no row is marked."""
    import numpy as np

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


def num(v: float, std: float, digits: int, pm: str) -> str:
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
            out[esc(names[a])] = esc(value_text(r[a]))
            mark[esc(names[a])] = False
        out["seeds"] = str(r["n"])
        mark["seeds"] = False
        if isinstance(r.get("curve"), str):
            out["curve"] = r["curve"]
            mark["curve"] = False
        for col in HIGHER_BETTER:
            head = TEX_LABELS[col] if tex else LABELS[col]
            out[head] = num(r[col], r.get(f"{col}_std"), DIGITS[col], pm)
            if col == "fps_bs1" and r.get("busy_runs") and out[head] != "-":
                out[head] += r"$^\dagger$" if tex else " †"  # measured busy: see the caption
            mark[head] = bool(r.get(f"best_{col}"))
        if has_aux:  # training-only cost, its own column
            head = "aux GMACs"
            out[head] = "-" if is_missing(r["gmacs_aux"]) else f"{r['gmacs_aux']:.3f}"
            mark[head] = False
        d = r["delta_miou"]
        head = r"$\Delta$ mIoU" if tex else "Δ mIoU"
        out[head] = "base" if r["is_baseline"] else f"{d:+.2f}{_stars(r['p_vs_baseline'])}"
        mark[head] = False
        head = r"P($>$base)" if tex else "P(>base)"
        poi = stats.poi_text(r["p_improvement"], r["p_improvement_low"], r["p_improvement_high"], "--" if tex else "–")
        out[head] = "base" if r["is_baseline"] else poi
        mark[head] = False
        rows.append(out)
        bold.append(mark)
    return pd.DataFrame(rows), pd.DataFrame(bold)


def markdown(df: Any, bold: Any | None = None, left: int = 1) -> str:
    """Markdown through pandas (tabulate): the first `left` columns (row number, factors) left-aligned,
    the numbers right-aligned."""
    d = df.copy()
    if bold is not None:
        for c in d.columns:
            d[c] = [f"**{v}**" if b else v for v, b in zip(d[c], bold[c], strict=True)]
    align = ["left" if k < left else "right" for k in range(len(df.columns))]
    return d.to_markdown(index=False, disable_numparse=True, colalign=align)


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
