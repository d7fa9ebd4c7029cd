"""The report's figures (seaborn/matplotlib, PNG and PDF), each readable without the table.

- accuracy vs cost (GMACs, latency): points coloured by the first factor and shaped by the
  second, with a legend; row numbers placed so that no two labels overlap (checked against the
  rendered boxes); error bars in both directions where both spreads are known; the Pareto front.
- factor effects: a dot-and-interval plot of the level means only for a factor fully crossed with
  the others; for a zip or partially crossed design, the matched pairs (configurations equal in
  every other factor) as differences with their 95% intervals; otherwise nothing, and why.
- per-class IoU heatmap, rows named by the main table's row and the factor values.
- learning curves: train loss and val mIoU per epoch, mean and sd over the seeds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.labels import factor_names, show
from bench.report import row_numbers

__all__ = ["Figure", "crossed", "make_all", "matched_pairs", "place_labels"]

MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "p", "h", "<", ">"]


@dataclass
class Figure:
    path: Path  # outdir/stem; written as stem.png and stem.pdf
    title: str
    caption: str  # what it shows, n, and what the bars are


def _palette(n: int) -> list[Any]:
    import seaborn as sns

    return sns.color_palette("tab10" if n <= 10 else "tab20" if n <= 20 else "husl", n)


def _levels(t: Any, axis: str) -> list[str]:
    return list(dict.fromkeys(show(v) for v in t[axis]))


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    from bench.store import atomic_path

    for ext in ("png", "pdf"):
        with atomic_path(path.with_suffix(f".{ext}")) as tmp:
            fig.savefig(tmp, dpi=150, format=ext, bbox_inches="tight", pad_inches=0.05)  # nothing cut off
    plt.close(fig)


def place_labels(ax: Any, xs: list[float], ys: list[float], texts: list[str], *, fontsize: float = 7) -> list[Any]:
    """Annotate each point with its text where the text's box overlaps no other label, no other
    point's marker and stays inside the axes: candidates at growing distances around the point,
    with a leader line when the label had to move away. The figure's layout must be final (the
    boxes are measured in display coordinates)."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    pts = ax.transData.transform(list(zip(xs, ys, strict=True)))
    frame = ax.get_window_extent(renderer)
    r_px = 5 * fig.dpi / 72  # half a marker

    def marker_box(i: int) -> tuple[float, float, float, float]:
        x, y = pts[i]
        return (x - r_px, y - r_px, x + r_px, y + r_px)

    def hit(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    placed: list[tuple[float, float, float, float]] = []
    out = []
    directions = [(1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)]
    for i, text in enumerate(texts):
        best = None
        for radius in (4, 8, 13, 19, 26, 34, 44, 56, 70):
            for dx, dy in directions:
                off = (dx * radius, dy * radius)
                ha = "left" if dx > 0 else "right" if dx < 0 else "center"
                va = "bottom" if dy > 0 else "top" if dy < 0 else "center"
                ann = ax.annotate(
                    text, (xs[i], ys[i]), textcoords="offset points", xytext=off, fontsize=fontsize, ha=ha, va=va
                )
                bb = ann.get_window_extent(renderer)
                box = (bb.x0 - 1, bb.y0 - 1, bb.x1 + 1, bb.y1 + 1)
                inside = box[0] >= frame.x0 and box[2] <= frame.x1 and box[1] >= frame.y0 and box[3] <= frame.y1
                clear = inside and not any(hit(box, p) for p in placed)
                clear = clear and not any(hit(box, marker_box(j)) for j in range(len(texts)) if j != i)
                if clear:
                    best = (ann, box, radius)
                    break
                ann.remove()
            if best:
                break
        if best is None:  # nowhere free: the farthest candidate, drawn with a leader line
            ann = ax.annotate(text, (xs[i], ys[i]), textcoords="offset points", xytext=(70, 70), fontsize=fontsize)
            bb = ann.get_window_extent(renderer)
            best = (ann, (bb.x0, bb.y0, bb.x1, bb.y1), 70)
        ann, box, radius = best
        if radius > 8:
            ann.arrow_patch = None
            ann.remove()
            ann = ax.annotate(
                text,
                (xs[i], ys[i]),
                textcoords="offset points",
                xytext=ann.xyann,
                fontsize=fontsize,
                ha=ann.get_ha(),
                va=ann.get_va(),
                arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.5", "shrinkA": 0, "shrinkB": 3},
            )
        placed.append(box)
        out.append(ann)
    return out


def _pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices on the front: lower cost, higher accuracy."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _const(df: Any, col: str) -> str | None:
    if col not in df.columns:
        return None
    vals = {show(v) for v in df[col].dropna()}
    return vals.pop() if len(vals) == 1 else None


def tradeoff(t: Any, df: Any, axes: list[str], cost: str, outdir: Path) -> Figure | None:
    """mIoU against GMACs or latency: colour = first factor, marker = second, labels = rows."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    names = factor_names(axes)
    if cost == "gmacs":
        x = t["gmacs"].astype(float)
        xerr = None
        size = _const(df, "data.size")
        xlabel = "GMACs per image" + (f" at {size.replace(',', 'x')}" if size else "") + " (multiply-accumulates / 1e9)"
    else:
        x = t["latency_ms_p50"].astype(float)
        if x.isna().all() and "fps_bs1" in t:
            x = 1000 / t["fps_bs1"].astype(float)
        iqr = t["latency_ms_iqr"].astype(float) if "latency_ms_iqr" in t else None
        xerr = None if iqr is None or iqr.isna().all() else (iqr.fillna(0) / 2)
        device = _const(df, "env.device_name") or "mixed devices"
        dtype = _const(df, "env.dtype") or "mixed dtypes"
        threads = _const(df, "env.threads")
        xlabel = f"latency per image, batch 1, {device}" + (f", {threads} thread(s)" if threads else "")
        xlabel += f", {dtype} (ms, median)"
    y = t["miou"].astype(float)
    if x.isna().all():
        return None
    yerr = t["miou_std"].astype(float)
    hue = axes[0] if axes else None
    style = axes[1] if len(axes) > 1 else None
    hue_levels = _levels(t, hue) if hue else ["all"]
    style_levels = _levels(t, style) if style else ["all"]
    colours = dict(zip(hue_levels, _palette(len(hue_levels)), strict=True))
    markers = {lv: MARKERS[i % len(MARKERS)] for i, lv in enumerate(style_levels)}
    fig = plt.figure(figsize=(8.5, 4.8))
    ax = fig.add_axes((0.09, 0.12, 0.6, 0.8))
    for i, (_, r) in enumerate(t.iterrows()):
        c = colours[show(r[hue])] if hue else "C0"
        m = markers[show(r[style])] if style else "o"
        if not (math.isfinite(x.iloc[i]) and math.isfinite(y.iloc[i])):
            continue
        ax.errorbar(
            x.iloc[i],
            y.iloc[i],
            yerr=None if math.isnan(yerr.iloc[i]) else yerr.iloc[i],
            xerr=None if xerr is None else xerr.iloc[i],
            fmt="none",
            ecolor=c,
            alpha=0.6,
            lw=1,
            capsize=2,
        )
        ax.scatter([x.iloc[i]], [y.iloc[i]], color=c, marker=m, s=46, edgecolor="black", linewidth=0.4, zorder=3)
    ok = [i for i in range(len(t)) if math.isfinite(x.iloc[i]) and math.isfinite(y.iloc[i])]
    pts = [(float(x.iloc[i]), float(y.iloc[i])) for i in ok]
    front = [ok[k] for k in _pareto(pts)]
    fx = [float(x.iloc[i]) for i in front]
    fy = [float(y.iloc[i]) for i in front]
    ax.step(fx, fy, where="post", ls="--", color="0.35", lw=0.9, zorder=1)
    ax.set_xlabel(xlabel, fontsize=8)
    seeds_bar = bool((t["n"] >= 2).any())
    ax.set_ylabel("val mIoU (%)" + ("; bars: ± sd over seeds" if seeds_bar else ""), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.margins(x=0.12, y=0.12)
    handles = []
    if hue:
        handles.append(Line2D([], [], ls="", label=names[hue]))
        handles += [
            Line2D([], [], ls="", marker="o", color=colours[lv], mec="black", mew=0.4, label=lv) for lv in hue_levels
        ]
    if style:
        handles.append(Line2D([], [], ls="", label=names[style]))
        handles += [
            Line2D([], [], ls="", marker=markers[lv], color="0.6", mec="black", mew=0.4, label=lv)
            for lv in style_levels
        ]
    handles.append(Line2D([], [], ls="--", color="0.35", label="Pareto front"))
    leg = ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False)
    for text in leg.get_texts():
        if text.get_text() in (names.get(hue), names.get(style)):
            text.set_fontweight("bold")
    place_labels(ax, [x.iloc[i] for i in ok], [y.iloc[i] for i in ok], [str(t["row"].iloc[i]) for i in ok])
    name = f"miou_vs_{cost}"
    what = "GMACs" if cost == "gmacs" else "latency"
    n = ", ".join(sorted({str(v) for v in t["n"]}))
    bars = (
        "vertical bars ± sd over seeds where a configuration has >= 2; "
        if seeds_bar
        else "no vertical bars (one seed per configuration); "
    )
    bars += (
        "horizontal bars ± half the interquartile range of the latency samples (median over seeds)"
        if xerr is not None
        else "no horizontal bars (GMACs are exact)"
        if cost == "gmacs"
        else ""
    )
    caption = (
        f"mIoU against {what} for the {len(ok)} configurations (n = {n} seed(s) each); colour: "
        f"{names[hue] if hue else '-'}, marker: {names[style] if style else '-'}; numbers are the rows of "
        f"Table 1; dashed: the Pareto front (no configuration both cheaper and more accurate); {bars}."
    )
    _save(fig, outdir / name)
    return Figure(outdir / name, f"Accuracy against {what}", caption)


def crossed(t: Any, axis: str, axes: list[str]) -> bool:
    """True when every level of `axis` appears with every combination of the other factors that
    occurs: the marginal means are then comparisons at equal conditions (a full factorial)."""
    others = [a for a in axes if a != axis]
    levels = {show(v) for v in t[axis]}
    if len(levels) < 2:
        return False
    combos = {tuple(show(r[a]) for a in others) for _, r in t.iterrows()}
    cells = {tuple(show(r[a]) for a in [axis, *others]) for _, r in t.iterrows()}
    return len(cells) == len(levels) * len(combos)


def matched_pairs(t: Any, axis: str, axes: list[str]) -> list[tuple[int, int]]:
    """(first row, other row) index pairs equal in every factor but `axis`: within each group of
    configurations that agree on all other factors, the first (in table order) against each other."""
    others = [a for a in axes if a != axis]
    groups: dict[tuple[str, ...], list[int]] = {}
    for i in range(len(t)):
        groups.setdefault(tuple(show(t.iloc[i][a]) for a in others), []).append(i)
    pairs = []
    for rows in groups.values():
        for j in rows[1:]:
            if show(t.iloc[j][axis]) != show(t.iloc[rows[0]][axis]):
                pairs.append((rows[0], j))
    return sorted(pairs)


def effect(t: Any, df: Any, axis: str, axes: list[str], outdir: Path) -> tuple[Figure | None, str]:
    """The figure for one factor and the line the report's README says about it."""
    import matplotlib.pyplot as plt
    import numpy as np

    from bench import stats

    names = factor_names(axes)
    nm = names[axis]
    stem = f"effect_{axis.replace('.', '_')}"
    seeds = t.attrs.get("seed_values", {}).get("miou")
    if crossed(t, axis, axes) or len(axes) == 1:
        levels = _levels(t, axis)
        if len(levels) < 2:
            return None, f"{nm}: one level only, no effect to show"
        fig, ax = plt.subplots(figsize=(6, 3.6))
        means, lows, highs, ns = [], [], [], []
        for lv in levels:
            rows = t[[show(v) == lv for v in t[axis]]]
            runs = [float(v) for i in rows.index for v in (seeds[i].values() if seeds else [rows.loc[i, "miou"]])]
            vals = np.array(runs)
            m = float(vals.mean())
            if len(vals) >= 2:
                import scipy.stats as st

                half = st.t.ppf(0.975, len(vals) - 1) * vals.std(ddof=1) / math.sqrt(len(vals))
            else:
                half = math.nan
            means.append(m)
            lows.append(m - half)
            highs.append(m + half)
            ns.append(len(vals))
            ax.scatter(np.full(len(vals), levels.index(lv)), vals, color="0.6", s=10, zorder=2)
        xs = np.arange(len(levels))
        err = np.array(
            [[m - lo for m, lo in zip(means, lows, strict=True)], [hi - m for m, hi in zip(means, highs, strict=True)]]
        )
        ax.errorbar(xs, means, yerr=np.nan_to_num(err), fmt="o", color="C0", capsize=3, zorder=3)
        ax.set_xticks(xs, levels, fontsize=7, rotation=15)
        ax.set_xlabel(nm)
        ax.set_ylabel("val mIoU (%)")
        ax.set_title(f"{nm}: mean over the runs at each level, other factors balanced", fontsize=8)
        fig.tight_layout()
        _save(fig, outdir / stem)
        cap = (
            f"Main effect of {nm} (fully crossed with the other factors, so each level mean averages the same "
            f"conditions): dots are the level means over runs (n = {', '.join(map(str, ns))}), bars 95% t "
            f"intervals over those runs where n >= 2, grey points the individual runs."
        )
        return Figure(outdir / stem, f"Effect of {nm}", cap), f"{nm}: fully crossed, level means ({stem}.png)"
    pairs = matched_pairs(t, axis, axes)
    if not pairs:
        return None, (
            f"{nm}: no figure; the design is not crossed and no two configurations differ in {nm} alone, "
            f"so any difference between its levels is confounded with other factors"
        )
    others = [a for a in axes if a != axis]
    vary = [a for a in others if len({show(t.iloc[k][a]) for p in pairs for k in p}) > 1]
    labels, ds, los, his = [], [], [], []
    steps = {(show(t.iloc[i][axis]), show(t.iloc[j][axis])) for i, j in pairs}
    for i, j in pairs:
        a, b = t.iloc[i], t.iloc[j]
        ctx = " · ".join(show(a[o]) for o in vary if show(a[o]) != "-")
        step = f"  {show(a[axis])} → {show(b[axis])}" if len(steps) > 1 else ""
        labels.append(f"#{a['row']}→#{b['row']}{step}" + (f"  ({ctx})" if ctx else ""))
        sa, sb = (seeds[i], seeds[j]) if seeds else ({}, {})
        if len(sa) >= 2 and len(sb) >= 2:
            c = stats.compare(sa, sb, alternative="two-sided")
            ds.append(c.diff)
            los.append(c.ci_low)
            his.append(c.ci_high)
        else:
            ds.append(float(b["miou"] - a["miou"]))
            los.append(math.nan)
            his.append(math.nan)
    longest = max(len(s) for s in labels)
    fig, ax = plt.subplots(figsize=(4.0 + 0.065 * longest, 1.3 + 0.3 * len(pairs)))  # the axes keep ~4 in
    ys = np.arange(len(pairs))[::-1]
    err = np.array([[d - lo for d, lo in zip(ds, los, strict=True)], [hi - d for d, hi in zip(ds, his, strict=True)]])
    ax.errorbar(ds, ys, xerr=np.nan_to_num(err), fmt="o", color="C0", capsize=3)
    ax.axvline(0, color="0.4", lw=0.8, ls="--")
    ax.set_yticks(ys, labels, fontsize=7)
    only = next(iter(steps)) if len(steps) == 1 else None
    ax.set_xlabel(
        f"Δ val mIoU (points): {nm} "
        + (f"{only[0]} → {only[1]}" if only else "changed (see labels)")
        + ", all else equal",
        fontsize=8,
    )
    ax.set_title(
        f"Effect of {nm} on matched pairs" + (f" (context: {', '.join(names[o] for o in vary)})" if vary else ""),
        fontsize=8,
    )
    ax.tick_params(axis="x", labelsize=7)
    ax.margins(x=0.15)
    fig.tight_layout()
    _save(fig, outdir / stem)
    with_ci = sum(1 for lo in los if not math.isnan(lo))
    cap = (
        f"Effect of {nm} on matched pairs: each line compares two rows of Table 1 that differ in {nm} only "
        f"(the design is not fully crossed, so {nm} has no main effect to average). Dot: difference of the "
        f"means; bars: 95% interval of the difference ({'paired or Welch t, ' if with_ci else ''}"
        f"{with_ci} of {len(pairs)} pairs have >= 2 seeds on both sides; the others show the difference "
        f"alone)."
    )
    return Figure(outdir / stem, f"Effect of {nm} (matched pairs)", cap), (
        f"{nm}: not crossed, {len(pairs)} matched pair(s) ({stem}.png)"
    )


def _compact(r: Any, axes: list[str]) -> str:
    return " · ".join(show(r[a]) for a in axes if show(r[a]) != "-") or "all runs"


def heatmap(t: Any, pc: Any, axes: list[str], outdir: Path) -> Figure:
    import matplotlib.pyplot as plt
    import seaborn as sns

    by_row = t.set_index("row")
    labels = [f"#{i} {_compact(by_row.loc[i], axes)}" for i in pc.index]
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
    _save(fig, outdir / "per_class_iou")
    n = ", ".join(sorted({str(v) for v in t["n"]}))
    return Figure(
        outdir / "per_class_iou",
        "Per-class IoU",
        f"IoU (%) per class (columns) and configuration (rows: row of Table 1 and its factor values), "
        f"mean over n = {n} seed(s).",
    )


def _histories(df: Any, results: Path | None) -> dict[str, list[dict[str, Any]]]:
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

    hist = _histories(df, results)
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
    colours = _palette(len(t))
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
        lab = f"#{row} {_compact(by_row.loc[row], axes)}"
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
    _save(fig, outdir / "learning_curves")
    n = ", ".join(sorted({str(v) for v in t["n"]}))
    cap = (
        f"Training of every configuration ({n_runs} runs, n = {n} seed(s) per configuration): train loss per "
        f"epoch (mean over the epoch's batches) and val mIoU at each evaluation (train.eval_every; the last "
        f"epoch always); lines are means over the seeds, bands ± sd where n >= 2."
    )
    return Figure(outdir / "learning_curves", "Learning curves", cap), "learning curves: learning_curves.png"


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
    for axis in axes:
        f, line = effect(t, df, axis, axes, outdir)
        lines.append(line)
        if f:
            figs.append(f)
    return figs, lines
