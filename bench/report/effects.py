"""Factor effects: a dot-and-interval plot of the level means only for a factor fully crossed with
the others; for a zip or partially crossed design, the matched pairs (configurations equal in
every other factor) as differences with their 95% intervals; otherwise nothing, and why.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.configure.naming import factor_names, value_text
from bench.report.plotting import Figure, factor_levels, save_figure
from bench.verdicts import stats


def crossed(t: Any, axis: str, axes: list[str]) -> bool:
    """True when every level of `axis` appears with every combination of the other factors that
    occurs: the marginal means are then comparisons at equal conditions (a full factorial)."""
    others = [a for a in axes if a != axis]
    levels = {value_text(v) for v in t[axis]}
    if len(levels) < 2:
        return False
    combos = {tuple(value_text(r[a]) for a in others) for _, r in t.iterrows()}
    cells = {tuple(value_text(r[a]) for a in [axis, *others]) for _, r in t.iterrows()}
    return len(cells) == len(levels) * len(combos)


def matched_pairs(t: Any, axis: str, axes: list[str]) -> list[tuple[int, int]]:
    """(first row, other row) index pairs equal in every factor but `axis`: within each group of
    configurations that agree on all other factors, the first (in table order) against each other."""
    others = [a for a in axes if a != axis]
    groups: dict[tuple[str, ...], list[int]] = {}
    for i in range(len(t)):
        groups.setdefault(tuple(value_text(t.iloc[i][a]) for a in others), []).append(i)
    pairs = []
    for rows in groups.values():
        for j in rows[1:]:
            if value_text(t.iloc[j][axis]) != value_text(t.iloc[rows[0]][axis]):
                pairs.append((rows[0], j))
    return sorted(pairs)


def effect(t: Any, df: Any, axis: str, axes: list[str], outdir: Path) -> tuple[Figure | None, str]:
    """The figure for one factor and the line the report's README says about it."""
    nm = factor_names(axes)[axis]
    if crossed(t, axis, axes) or len(axes) == 1:
        levels = factor_levels(t, axis)
        if len(levels) < 2:
            return None, f"{nm}: one level only, no effect to show"
        return _level_means(t, axis, levels, nm, outdir)
    pairs = matched_pairs(t, axis, axes)
    if not pairs:
        return None, (
            f"{nm}: no figure; the design is not crossed and no two configurations differ in {nm} alone, "
            f"so any difference between its levels is confounded with other factors"
        )
    return _pair_differences(t, axis, axes, pairs, outdir)


def _stem(axis: str) -> str:
    return f"effect_{axis.replace('.', '_')}"


def _level_means(t: Any, axis: str, levels: list[str], nm: str, outdir: Path) -> tuple[Figure, str]:
    """A fully crossed factor: each level's mean over its runs with a 95% t interval, runs as dots."""
    import matplotlib.pyplot as plt
    import numpy as np

    stem = _stem(axis)
    seeds = t.attrs.get("seed_values", {}).get("miou")
    fig, ax = plt.subplots(figsize=(6, 3.6))
    means, lows, highs, ns = [], [], [], []
    for lv in levels:
        rows = t[[value_text(v) == lv for v in t[axis]]]
        runs = [float(v) for i in rows.index for v in (seeds[i].values() if seeds else [rows.loc[i, "miou"]])]
        vals = np.array(runs)
        m, lo, hi = stats.t_interval(vals)
        means.append(m)
        lows.append(lo)
        highs.append(hi)
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
    save_figure(fig, outdir / stem)
    cap = (
        f"Main effect of {nm} (fully crossed with the other factors, so each level mean averages the same "
        f"conditions): dots are the level means over runs (n = {', '.join(map(str, ns))}), bars 95% t "
        f"intervals over those runs where n >= 2, grey points the individual runs."
    )
    return Figure(outdir / stem, f"Effect of {nm}", cap), f"{nm}: fully crossed, level means ({stem}.png)"


def _pair_differences(
    t: Any, axis: str, axes: list[str], pairs: list[tuple[int, int]], outdir: Path
) -> tuple[Figure, str]:
    """A factor not crossed: each matched pair's difference with its 95% interval (where both sides
    have >= 2 seeds), the other factors that vary between pairs in the labels."""
    import matplotlib.pyplot as plt
    import numpy as np

    names = factor_names(axes)
    nm = names[axis]
    stem = _stem(axis)
    seeds = t.attrs.get("seed_values", {}).get("miou")
    others = [a for a in axes if a != axis]
    vary = [a for a in others if len({value_text(t.iloc[k][a]) for p in pairs for k in p}) > 1]
    labels, ds, los, his = [], [], [], []
    steps = {(value_text(t.iloc[i][axis]), value_text(t.iloc[j][axis])) for i, j in pairs}
    for i, j in pairs:
        a, b = t.iloc[i], t.iloc[j]
        ctx = " · ".join(value_text(a[o]) for o in vary if value_text(a[o]) != "-")
        step = f"  {value_text(a[axis])} → {value_text(b[axis])}" if len(steps) > 1 else ""
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
    save_figure(fig, outdir / stem)
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
