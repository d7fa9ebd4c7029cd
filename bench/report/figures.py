"""The report's figures (seaborn/matplotlib, PNG and PDF), each readable without the table: the
trade-offs, the factor effects, the per-class IoU heatmap (rows named by the main table's row
and the factor values) and the learning curves (train loss and val mIoU per epoch, mean and sd
over the seeds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.report.effects import effect
from bench.report.plotting import Figure, compact_label, palette, save_figure, seed_counts
from bench.report.receptive import receptive_figure
from bench.report.tables import row_numbers
from bench.report.tradeoff import tradeoff


def heatmap(t: Any, pc: Any, axes: list[str], outdir: Path) -> Figure:
    import matplotlib.pyplot as plt
    import seaborn as sns

    by_row = t.set_index("row")
    labels = [f"#{i} {compact_label(by_row.loc[i], axes)}" for i in pc.index]
    data = pc.copy()
    data.index = labels
    longest = max(len(s) for s in labels)
    fig, ax = plt.subplots(figsize=(0.55 * pc.shape[1] + 0.055 * longest + 1.6, 0.3 * pc.shape[0] + 1.6))
    sns.heatmap(
        data,
        annot=True,
        fmt=".0f",
        cmap="viridis",
        vmin=0,
        vmax=100,
        ax=ax,
        annot_kws={"fontsize": 7},
        cbar_kws={"label": "IoU (%)"},
    )
    ax.set_xlabel("class")
    ax.set_ylabel("")
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    save_figure(fig, outdir / "per_class_iou")
    n = seed_counts(t)
    return Figure(
        outdir / "per_class_iou",
        "Per-class IoU",
        f"IoU (%) per class (columns) and configuration (rows: row of Table 1 and its factor values), "
        f"mean over n = {n} seed(s).",
    )


def histories(df: Any, results: Path | None) -> dict[str, list[dict[str, Any]]]:
    if results is None or "folder" not in df.columns:
        return {}
    out = {}
    for _, r in df[df["status"] == "done"].iterrows():
        try:
            res = json.loads((results / str(r["folder"]) / "result.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        hist = (res.get("train") or {}).get("history") or []
        if hist:
            out[r["run_id"]] = hist
    return out


def learning_curves(t: Any, df: Any, axes: list[str], outdir: Path, results: Path | None) -> tuple[Figure | None, str]:
    import matplotlib.pyplot as plt
    import pandas as pd

    hist = histories(df, results)
    if not hist:
        why = (
            "the report was made from a collected table, which holds no training history; give the results folder"
            if results is None
            else "no run has a training history"
        )
        return None, f"learning curves: not drawn, {why}"
    keys = axes or ["status"]
    done = df[df["status"] == "done"]
    row_of = row_numbers(t, axes)
    colours = palette(len(t))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    by_row = t.set_index("row")
    n_runs = 0
    for key, g in done.groupby(keys, sort=False, dropna=False):
        row = row_of[key if isinstance(key, tuple) else (key,)]
        frames = [pd.DataFrame(hist[r]).assign(run=r) for r in g["run_id"] if r in hist]
        if not frames:
            continue
        n_runs += len(frames)
        h = pd.concat(frames)
        c = colours[row - 1]
        lab = f"#{row} {compact_label(by_row.loc[row], axes)}"
        for ax, col, scale in ((a1, "loss", 1.0), (a2, "miou", 100.0)):
            if col not in h.columns:
                continue
            s = h.dropna(subset=[col]).groupby("epoch")[col].agg(["mean", "std", "count"])
            if s.empty:
                continue
            m, sd = s["mean"] * scale, s["std"].fillna(0) * scale
            ax.plot(
                s.index, m, color=c, lw=1.2, marker="o" if len(s) < 4 else None, ms=3, label=lab if ax is a1 else None
            )
            if (s["count"] > 1).any():
                ax.fill_between(s.index, m - sd, m + sd, color=c, alpha=0.15, lw=0)
    a1.set_xlabel("epoch")
    a1.set_ylabel("train loss (mean over the epoch)")
    a2.set_xlabel("epoch")
    a2.set_ylabel("val mIoU (%) at each evaluation")
    evals = {len([e for e in h if e.get("miou") is not None]) for h in hist.values()}
    if evals == {1}:
        a2.text(
            0.03,
            0.97,
            "evaluated at the last epoch only:\nset train.eval_every for a val curve",
            transform=a2.transAxes,
            va="top",
            fontsize=7,
            color="0.3",
        )
    for ax in (a1, a2):
        ax.tick_params(labelsize=7)
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = a1.get_legend_handles_labels()
    fig.subplots_adjust(left=0.06, right=0.7, bottom=0.13, top=0.95, wspace=0.25)
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(0.71, 0.96), fontsize=6.5, frameon=False)
    save_figure(fig, outdir / "learning_curves")
    n = seed_counts(t)
    cap = (
        f"Training of every configuration ({n_runs} runs, n = {n} seed(s) per configuration): train loss per "
        f"epoch (mean over the epoch's batches) and val mIoU at each evaluation (train.eval_every; the last "
        f"epoch always); lines are means over the seeds, bands ± sd where n >= 2."
    )
    return Figure(outdir / "learning_curves", "Learning curves", cap), "learning curves: learning_curves.png"


def intervals(t: Any, axes: list[str], outdir: Path) -> Figure | None:
    """Per configuration: every seed's mIoU, the mean with its 95% bootstrap interval, and the
    probability of improvement over the base row with its stratified bootstrap interval (rliable's
    interval plots: intervals, never bars)."""
    import matplotlib.pyplot as plt

    seeds = t.attrs.get("seed_values", {}).get("miou")
    if not seeds or max(len(s) for s in seeds) < 2:
        return None
    labels = [f"#{r['row']} {compact_label(r, axes)}" for _, r in t.iterrows()]
    colours = palette(len(t))
    ys = list(range(len(t)))[::-1]
    height = 0.42 * len(t) + 1.3
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.5, height), sharey=True, gridspec_kw={"width_ratios": [3, 2]})
    for y, (_, r), vals, c in zip(ys, t.iterrows(), seeds, colours, strict=True):
        a1.scatter(list(vals.values()), [y - 0.22] * len(vals), s=14, color=c, alpha=0.7, lw=0)  # seeds, below
        a1.errorbar(r["miou"], y, xerr=_err(r["miou"], r["miou_ci_low"], r["miou_ci_high"]), fmt="D", ms=5,
                    color=c, capsize=3, lw=1.4)  # fmt: skip
        if r["is_baseline"]:
            a2.text(0.5, y, "base", ha="center", va="center", fontsize=7, color="0.35", backgroundcolor="white")
        elif r["p_improvement"] == r["p_improvement"]:
            err = _err(r["p_improvement"], r["p_improvement_low"], r["p_improvement_high"])
            a2.errorbar(r["p_improvement"], y, xerr=err, fmt="o", ms=5, color=c, capsize=3, lw=1.4)
    a1.set_yticks(ys, labels, fontsize=7)
    a1.set_ylim(-0.6, len(t) - 0.4)
    a1.set_xlabel("val mIoU (%): seeds (dots), mean and 95% bootstrap CI")
    a2.axvline(0.5, color="0.4", lw=0.8, ls="--")
    a2.set_xlim(-0.02, 1.02)
    a2.set_xlabel("P(row > base) with 95% stratified bootstrap CI")
    for ax in (a1, a2):
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    save_figure(fig, outdir / "miou_intervals")
    n = seed_counts(t)
    return Figure(
        outdir / "miou_intervals",
        "mIoU intervals and probability of improvement",
        f"Left: each seed's val mIoU (dots) and the mean with its 95% percentile bootstrap interval over the "
        f"seeds (n = {n} per configuration). Right: the probability that a run of the configuration beats a "
        f"run of the base row (all pairs of seeds, ties half), with its 95% bootstrap interval, resampled "
        f"within each configuration (pairs together where both ran the same seeds); 0.5 is no difference.",
    )


def _err(mid: float, low: float, high: float) -> Any:
    """Errorbar extents (none where there is no interval)."""
    if low != low or high != high:
        return None
    return [[max(mid - low, 0.0)], [max(high - mid, 0.0)]]


def erf_heatmap(erf: dict[str, Any], theory: Any, path: str | Path, *, title: str) -> Path:
    """The effective receptive field(s) as heat maps (mean |gradient| of the centre output pixel,
    each normalised to its maximum), with the discs holding 50/90/99% of the mass and the
    theoretical field's box (global pooling left out). Returns the PNG written (a PDF beside it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Rectangle

    fig, axes = plt.subplots(1, len(erf), figsize=(4.2 * len(erf) + 0.6, 4.2), squeeze=False)
    for ax, (name, e) in zip(axes[0], erf.items(), strict=True):
        heat = e.heat.numpy()
        im = ax.imshow(heat / max(float(heat.max()), 1e-30), cmap="magma", vmin=0, vmax=1, interpolation="nearest")
        cy, cx = e.centre
        for r, style in ((e.r50, ":"), (e.r90, "--"), (e.r99, "-")):
            ax.add_patch(Circle((cx, cy), r, fill=False, color="cyan", lw=1.0, ls=style))
        f = theory.local
        ax.add_patch(Rectangle((cx - (f.width - 1) / 2, cy - (f.height - 1) / 2), f.width, f.height, fill=False,
                               color="white", lw=0.8))  # fmt: skip
        ax.set_title(f"{name}: r50 {e.r50:.1f}, r90 {e.r90:.1f}, r99 {e.r99:.1f} px", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=list(axes[0]), fraction=0.03, label="mean |gradient| / max")
    fig.suptitle(title + "\ndiscs: 50% (dotted), 90% (dashed), 99% (solid) of the gradient mass; "
                 "box: theoretical field without global pooling", fontsize=8)  # fmt: skip
    out = Path(path).with_suffix("")
    save_figure(fig, out)
    return out.with_suffix(".png")


def make_all(
    t: Any, df: Any, axes: list[str], outdir: Path, *, results: Path | None = None, per_class: Any = None
) -> tuple[list[Figure], list[str]]:
    """Every figure of a report, and the lines that say which factor figures exist and why not."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    figs: list[Figure] = []
    lines: list[str] = []
    for cost in ("gmacs", "latency_ms"):
        f = tradeoff(t, df, axes, cost, outdir)
        if f:
            figs.append(f)
    f, line = learning_curves(t, df, axes, outdir, results)
    lines.append(line)
    if f:
        figs.append(f)
    if per_class is not None:
        figs.append(heatmap(t, per_class, axes, outdir))
    f = receptive_figure(df, t, axes, outdir)
    lines.append("receptive field: receptive_field.png" if f else "receptive field: not drawn, no run recorded one")
    if f:
        figs.append(f)
    f = intervals(t, axes, outdir)
    lines.append("intervals: miou_intervals.png" if f else "intervals: not drawn, every configuration has one seed")
    if f:
        figs.append(f)
    for axis in axes:
        f, line = effect(t, df, axis, axes, outdir)
        lines.append(line)
        if f:
            figs.append(f)
    return figs, lines
