"""Accuracy against cost (GMACs, latency): points coloured by the first factor and shaped by the
second, a legend, row numbers placed so that no two labels overlap, error bars in both
directions where both spreads are known, and the Pareto front.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.configure.naming import factor_names, value_text
from bench.report.plotting import (
    MARKERS,
    Figure,
    constant_value,
    factor_levels,
    palette,
    place_labels,
    save_figure,
    seed_counts,
)


def _pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices on the front: lower cost, higher accuracy."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def tradeoff(t: Any, df: Any, axes: list[str], cost: str, outdir: Path) -> Figure | None:
    """mIoU against GMACs or latency: colour = first factor, marker = second, labels = rows."""
    import matplotlib.pyplot as plt

    names = factor_names(axes)
    x, xerr, xlabel = _cost_axis(t, df, cost)
    y = t["miou"].astype(float)
    if x.isna().all():
        return None
    yerr = t["miou_std"].astype(float)
    hue = axes[0] if axes else None
    style = axes[1] if len(axes) > 1 else None
    hue_levels = factor_levels(t, hue) if hue else ["all"]
    style_levels = factor_levels(t, style) if style else ["all"]
    colours = dict(zip(hue_levels, palette(len(hue_levels)), strict=True))
    markers = {lv: MARKERS[i % len(MARKERS)] for i, lv in enumerate(style_levels)}
    fig = plt.figure(figsize=(8.5, 4.8))
    ax = fig.add_axes((0.09, 0.12, 0.6, 0.8))
    for i, (_, r) in enumerate(t.iterrows()):
        c = colours[value_text(r[hue])] if hue else "C0"
        m = markers[value_text(r[style])] if style else "o"
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
        hollow = cost != "gmacs" and bool(r.get("busy_runs"))  # a busy latency is drawn, not presented as a finding
        ax.scatter([x.iloc[i]], [y.iloc[i]], marker=m, s=46, zorder=3, linewidth=0.9 if hollow else 0.4,
                   facecolor="none" if hollow else c, edgecolor=c if hollow else "black")  # fmt: skip
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
    busy = cost != "gmacs" and "busy_runs" in t and bool(t["busy_runs"].fillna(0).astype(int).sum())
    _legend(ax, names, (hue, hue_levels, colours), (style, style_levels, markers), busy=busy)
    place_labels(ax, [x.iloc[i] for i in ok], [y.iloc[i] for i in ok], [str(t["row"].iloc[i]) for i in ok])
    name = f"miou_vs_{cost}"
    what = "GMACs" if cost == "gmacs" else "latency"
    save_figure(fig, outdir / name)
    caption = _caption(t, what, len(ok), names, hue, style, seeds_bar, xerr is not None, cost)
    if busy:
        n_busy = int((t["busy_runs"].fillna(0).astype(int) > 0).sum())
        caption += (f" Hollow markers ({n_busy} of {len(t)} configurations): latencies measured while the "
                    "machine was busier than its cores; their position and the front through them are not a "
                    "speed result.")  # fmt: skip
    return Figure(outdir / name, f"Accuracy against {what}", caption)


def _cost_axis(t: Any, df: Any, cost: str) -> tuple[Any, Any, str]:
    """The cost per row (GMACs, or the median latency with half its IQR as the bar) and its label,
    which names the input size or the device, threads and number format it was measured at."""
    if cost == "gmacs":
        size = constant_value(df, "data.size")
        label = "GMACs per image" + (f" at {size.replace(',', 'x')}" if size else "") + " (multiply-accumulates / 1e9)"
        return t["gmacs"].astype(float), None, label
    x = t["latency_ms_p50"].astype(float)
    if x.isna().all() and "fps_bs1" in t:
        x = 1000 / t["fps_bs1"].astype(float)
    iqr = t["latency_ms_iqr"].astype(float) if "latency_ms_iqr" in t else None
    xerr = None if iqr is None or iqr.isna().all() else (iqr.fillna(0) / 2)
    device = constant_value(df, "env.device_name") or "mixed devices"
    dtype = constant_value(df, "env.dtype") or "mixed dtypes"
    threads = constant_value(df, "env.threads")
    label = f"latency per image, batch 1, {device}" + (f", {threads} thread(s)" if threads else "")
    return x, xerr, label + f", {dtype} (ms, median)"


def _legend(ax: Any, names: dict[str, str], hue: tuple, style: tuple, *, busy: bool = False) -> None:
    """Colour levels under the first factor's name, marker levels under the second's, the front."""
    from matplotlib.lines import Line2D

    (hue, hue_levels, colours), (style, style_levels, markers) = hue, style
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
    if busy:
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="0.3", label="hollow: latency measured busy"))
    leg = ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False)
    for text in leg.get_texts():
        if text.get_text() in (names.get(hue), names.get(style)):
            text.set_fontweight("bold")


def _caption(
    t: Any,
    what: str,
    shown: int,
    names: dict[str, str],
    hue: Any,
    style: Any,
    seeds_bar: bool,
    has_xerr: bool,
    cost: str,
) -> str:
    n = seed_counts(t)
    bars = (
        "vertical bars ± sd over seeds where a configuration has >= 2; "
        if seeds_bar
        else "no vertical bars (one seed per configuration); "
    )
    bars += (
        "horizontal bars ± half the interquartile range of the latency samples (median over seeds)"
        if has_xerr
        else "no horizontal bars (GMACs are exact)"
        if cost == "gmacs"
        else ""
    )
    return (
        f"mIoU against {what} for the {shown} configurations (n = {n} seed(s) each); colour: "
        f"{names[hue] if hue else '-'}, marker: {names[style] if style else '-'}; numbers are the rows of "
        f"Table 1; dashed: the Pareto front (no configuration both cheaper and more accurate); {bars}."
    )
