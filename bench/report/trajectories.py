"""Rankings over training: does a comparison keep its sign as the curves rise? For every compared
pair (a sweep's declared comparisons, else each row against the base row at the same budget), the
difference at every evaluation with its interval over seeds, the epoch from which its sign no longer
changes, and Kendall's tau between the ranking of the configurations at each evaluation and at the
last one; a figure and a table for the report.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.configure.naming import row_label
from bench.report.plotting import palette, save_figure
from bench.verdicts.budgets import kendall_tau, trajectory

__all__ = ["Side", "rankings_over_training"]


class Side:
    """One configuration: its label, its budget group and its runs' histories by seed."""

    def __init__(self, label: str, group: str, histories: dict[int, list]) -> None:
        self.label, self.group, self.histories = label, group, histories


def sides_from_table(df: Any, axes: list[str], hist: dict[str, list], group_keys: list[str]) -> list[Side]:
    """The configurations of a results table (rows grouped by the factors), grouped by `group_keys`
    (the budget's keys: only configurations trained alike are compared along their curves)."""
    done = df[df["status"] == "done"]
    keys = axes or ["status"]
    out = []
    for key, g in done.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        vals = dict(zip(keys, key, strict=True))
        runs = {int(s): hist[r] for s, r in zip(g["train.seed"], g["run_id"], strict=True) if r in hist}
        label_axes = [a for a in axes if a not in group_keys]
        group = row_label({k: g[k].iloc[0] for k in group_keys}, group_keys, empty="") if group_keys else ""
        out.append(Side(row_label({a: vals[a] for a in label_axes}, label_axes, empty="all"), group, runs))
    return out


def _mean_at(side: Side, epoch: float) -> float | None:
    vals = [100 * float(h["miou"]) for runs in side.histories.values() for h in runs
            if h.get("epoch") == epoch and isinstance(h.get("miou"), int | float)]  # fmt: skip
    return sum(vals) / len(vals) if len(vals) == len(side.histories) and vals else None


def rankings_over_training(pairs: list[tuple[Side, Side]], outdir: Path) -> tuple[list[str], Any] | None:
    """(Markdown lines, the figure's path stem) for the compared `pairs` (base, current); None where
    no pair has two evaluations in common."""
    import matplotlib.pyplot as plt

    rows, drawn = [], []
    for base, cur in pairs:
        tr = trajectory(base.histories, cur.histories)
        if tr is None or len(tr.epochs) < 2:
            continue
        changes = sum(1 for a, b in zip(tr.diff, tr.diff[1:], strict=False) if a * b < 0)
        name = f"{cur.label} vs {base.label}" + (f" ({cur.group})" if cur.group else "")
        rows.append(f"| {name} | {len(tr.seeds)} | {len(tr.epochs)} | {tr.diff[-1]:+.2f} "
                    f"[{tr.low[-1]:+.2f}, {tr.high[-1]:+.2f}] | {changes} | "
                    + (f"{tr.sign_fixed_from:g}" if tr.sign_fixed_from is not None else "-") + " |")  # fmt: skip
        drawn.append((name, tr))
    if not drawn:
        return None
    groups: dict[str, list[Side]] = {}
    for base, cur in pairs:
        for s in (base, cur):
            if all(s is not x for x in groups.setdefault(s.group, [])):
                groups[s.group].append(s)
    taus = {}
    for group, sides in groups.items():
        epochs = sorted(set.intersection(*({float(h["epoch"]) for runs in s.histories.values() for h in runs
                                             if h.get("miou") is not None} for s in sides)))  # fmt: skip
        means = {e: [_mean_at(s, e) for s in sides] for e in epochs}
        epochs = [e for e in epochs if all(m is not None for m in means[e])]
        if len(sides) >= 2 and len(epochs) >= 2:
            final = means[epochs[-1]]
            taus[group] = [(e, kendall_tau(means[e], final)) for e in epochs]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2 + 0.2 * ((len(drawn) + 1) // 2)))
    colours = palette(len(drawn))
    for (name, tr), c in zip(drawn, colours, strict=True):
        a1.plot(tr.epochs, tr.diff, color=c, lw=1.3, marker="o", ms=2.5, label=name)
        if all(math.isfinite(v) for v in tr.low):
            a1.fill_between(tr.epochs, tr.low, tr.high, color=c, alpha=0.15, lw=0)
    a1.axhline(0, color="0.4", lw=0.8)
    a1.set_xlabel("epoch")
    a1.set_ylabel("Δ val mIoU, current - base (points)")
    for (group, pts), c in zip(taus.items(), palette(max(len(taus), 1)), strict=False):
        a2.plot([e for e, _ in pts], [t for _, t in pts], color=c, marker="o", ms=2.5, label=group or "all")
    a2.axhline(1, color="0.6", lw=0.6, ls=":")
    a2.set_ylim(-1.05, 1.05)
    a2.set_xlabel("epoch")
    a2.set_ylabel("Kendall's τ with the final ranking")
    for ax in (a1, a2):
        ax.tick_params(labelsize=7)
    if len(taus) > 1:
        a2.legend(fontsize=6, frameon=False, loc="lower right")
    handles, labels = a1.get_legend_handles_labels()
    legend_rows = (len(handles) + 1) // 2
    fig.subplots_adjust(left=0.07, right=0.98, top=0.96, bottom=0.14 + 0.045 * legend_rows, wspace=0.22)
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=6.5, frameon=False)
    stem = outdir / "rankings_over_training"
    save_figure(fig, stem)
    tau_text = "; ".join(
        f"{g or 'all'}: " + ", ".join(f"{e:g}: {t:+.2f}" for e, t in pts) for g, pts in taus.items()
    )
    md = [
        "## Rankings over training",
        "",
        "Each compared pair's difference in val mIoU at every evaluation both sides recorded, paired by seed, "
        "with its 95% t interval over the seeds (left); Kendall's τ between the configurations' ranking by mean "
        "val mIoU at each evaluation and at the last (right). 'Sign fixed from': the first evaluation from which "
        "the mean difference keeps the sign it ends with; a late epoch there, or sign changes, say the ranking "
        "was still moving at this budget.",
        "",
        "| comparison | seeds | evaluations | final Δ [95% CI] | sign changes | sign fixed from epoch |",
        "|:--|--:|--:|--:|--:|--:|",
        *rows,
        "",
        f"Kendall's τ with the final ranking, by epoch: {tau_text}." if taus else "",
        "",
        "![rankings over training](rankings_over_training.png)",
        "",
    ]
    return md, stem
