"""The report's receptive-field table and figure: per configuration (the rows of Table 1) the
theoretical field of the centre output pixel, its coverage and holes, whether global pooling makes
it the whole image, and the trained networks' effective field (mean over seeds), beside mIoU and
small-object mIoU; the figure relates the effective field to them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bench.configure.naming import factor_names, is_missing, value_text
from bench.report.plotting import Figure, compact_label, palette, place_labels, save_figure
from bench.report.tables import row_numbers

__all__ = ["receptive_figure", "receptive_table", "sweep_fields_figure", "sweep_fields_table"]


def _means(df: Any, axes: list[str]) -> pd.DataFrame | None:
    """Per configuration (keyed like Table 1's rows): the mean of every rf/erf column over its seeds."""
    done = df[df["status"] == "done"]
    cols = [c for c in ("rf_local_height", "rf_local_width", "rf_coverage", "rf_context_height", "rf_context_width",
                        "rf_context_coverage", "erf_r50", "erf_r90", "erf_r99", "erf_ratio", "miou", "size_miou.small")
            if c in done.columns]  # fmt: skip
    if "rf_local_height" not in cols or done["rf_local_height"].isna().all():
        return None
    keys = axes or ["status"]
    num = done[keys].copy()
    for c in cols:
        num[c] = pd.to_numeric(done[c], errors="coerce")
    for c in ("rf_global", "rf_clipped"):
        num[c] = done[c].fillna(False).astype(bool) if c in done.columns else False
    g = num.groupby(keys, sort=False, dropna=False).agg(
        {**{c: "mean" for c in cols}, "rf_global": "any", "rf_clipped": "any"}
    )
    g["n"] = num.groupby(keys, sort=False, dropna=False).size()
    g["n_fields"] = num["rf_local_height"].notna().groupby([num[k] for k in keys], sort=False, dropna=False).sum()
    if "erf_r90" in num:  # the figure pairs each effective field with the accuracy of the same runs
        has = num["erf_r90"].notna()
        by = [num[k] for k in keys]
        g["n_erf"] = has.groupby(by, sort=False, dropna=False).sum()
        for c in ("miou", "size_miou.small"):
            if c in num:
                g[f"{c}@erf"] = num[c].where(has).groupby(by, sort=False, dropna=False).mean()
    return g


def receptive_table(df: Any, t: Any, axes: list[str], names: dict[str, str]) -> pd.DataFrame | None:
    """The display table (strings), a row per configuration in Table 1's order; None where no run
    recorded its receptive field."""
    g = _means(df, axes)
    if g is None:
        return None
    rows = row_numbers(t, axes)
    out = []
    for key, r in g.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, str] = {"#": str(rows[key])}
        for a, v in zip(axes, key[: len(axes)], strict=True):  # no factor: the one row is keyed by status
            row[names[a]] = value_text(v)
        row["runs"] = f"{int(r['n_fields'])} of {int(r['n'])}"  # the runs that recorded their fields
        if not r["n_fields"]:
            small = r.get("size_miou.small")
            extra = {} if small is None or is_missing(small) else {"small mIoU (%)": f"{100 * small:.2f}"}
            out.append({**row, "field (px)": "-", "mIoU (%)": f"{100 * r['miou']:.2f}", **extra})
            continue
        field = f"{r['rf_local_height']:.0f} x {r['rf_local_width']:.0f}" + (" (clipped)" if r["rf_clipped"] else "")
        row["field (px)"] = field
        row["global pooling"] = "yes" if r["rf_global"] else "no"
        row["coverage"] = f"{r['rf_coverage']:.3f}" + (" holes" if r["rf_coverage"] < 1 else "")
        if "rf_context_height" in r and not is_missing(r["rf_context_height"]):
            row["context field (feature px)"] = f"{r['rf_context_height']:.0f} x {r['rf_context_width']:.0f}"
            cov = r["rf_context_coverage"]
            row["context coverage"] = f"{cov:.3f}" + (" holes" if cov < 1 else "")
        elif "rf_context_height" in r:
            row["context field (feature px)"], row["context coverage"] = "-", "-"
        for c, head in (("erf_r50", "ERF r50"), ("erf_r90", "ERF r90"), ("erf_r99", "ERF r99")):
            row[head] = "-" if c not in r or is_missing(r[c]) else f"{r[c]:.1f}"
        row["ERF / field"] = "-" if "erf_ratio" not in r or is_missing(r["erf_ratio"]) else f"{r['erf_ratio']:.2f}"
        row["mIoU (%)"] = f"{100 * r['miou']:.2f}"
        if "size_miou.small" in r and not is_missing(r["size_miou.small"]):
            row["small mIoU (%)"] = f"{100 * r['size_miou.small']:.2f}"
        out.append(row)
    table = pd.DataFrame(out).fillna("-")
    return table.sort_values("#", key=lambda s: s.astype(int), kind="stable").reset_index(drop=True)


def receptive_figure(df: Any, t: Any, axes: list[str], outdir: Path) -> Figure | None:
    """mIoU (and small-object mIoU, where the dataset has size buckets) against the effective
    field's 90%-mass radius, a point per configuration numbered by its Table 1 row."""
    import matplotlib.pyplot as plt

    g = _means(df, axes)
    if g is None or "erf_r90" not in g or g["erf_r90"].isna().all():
        return None
    rows = row_numbers(t, axes)
    panels = [("miou", "val mIoU (%)")]
    if "size_miou.small" in g and g["size_miou.small"].notna().any():
        panels.append(("size_miou.small", "val mIoU of small objects (%)"))
    fig, axs = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.0), squeeze=False)
    colours = palette(len(g))
    for ax, (col, label) in zip(axs[0], panels, strict=True):
        xs, ys, texts = [], [], []
        for (key, r), c in zip(g.iterrows(), colours, strict=True):
            key = key if isinstance(key, tuple) else (key,)
            y = r.get(f"{col}@erf")
            if is_missing(r["erf_r90"]) or y is None or is_missing(y):
                continue
            ax.scatter(r["erf_r90"], 100 * y, color=c, s=30, zorder=3)
            xs.append(float(r["erf_r90"]))
            ys.append(100 * float(y))
            texts.append(f"#{rows[key]}")
        ax.set_xlabel("effective field: radius holding 90% of the gradient mass (px)")
        ax.set_ylabel(label)
        ax.tick_params(labelsize=7)
        fig.tight_layout()
        place_labels(ax, xs, ys, texts)
    save_figure(fig, outdir / "receptive_field")
    labels = "; ".join(
        f"#{rows[k if isinstance(k, tuple) else (k,)]} {compact_label(_row(k, axes), axes)} "
        + (f"({int(r['n_erf'])} of {int(r['n'])} runs)" if r["n_erf"] else f"(none of {int(r['n'])} runs: not drawn)")
        for k, r in g.iterrows()
    )
    return Figure(
        outdir / "receptive_field",
        "Effective receptive field and accuracy",
        "Each point: the mean over the runs of a configuration that recorded an effective field (counted "
        "below) of the radius around the centre output pixel that holds 90% of the mean absolute input gradient "
        "over 16 validation images, against the val mIoU"
        + (" and small-object mIoU" if len(panels) > 1 else "")
        + f" of the same runs. Points: {labels}.",
    )


def _row(key: Any, axes: list[str]) -> dict[str, Any]:
    key = key if isinstance(key, tuple) else (key,)
    return dict(zip(axes or ["status"], key, strict=False))


def sweep_fields_table(rows: list[dict[str, Any]], axes: list[str], names: dict[str, str]) -> pd.DataFrame:
    """The theoretical fields of a sweep's configurations (no training) as a reader sees them: one
    row per configuration, a column per factor."""
    out = []
    for i, r in enumerate(rows, 1):
        row = {"#": str(i), **{names[a]: value_text(r[a]) for a in axes}}
        row["field (px)"] = f"{r['rf_local_height']} x {r['rf_local_width']}" + (" (clipped)" if r["rf_clipped"]
                                                                                   else "")  # fmt: skip
        row["global pooling"] = "yes" if r["rf_global"] else "no"
        if r.get("rf_context_height") is not None:
            row["context input"] = r["rf_context_input"]
            row["context field (px)"] = f"{r['rf_context_height']} x {r['rf_context_width']}"
            row["context coverage"] = f"{r['rf_context_coverage']:.3f}" + (" holes" if r["rf_context_holes"] else "")
        else:
            row["context input"] = row["context field (px)"] = row["context coverage"] = "-"
        out.append(row)
    return pd.DataFrame(out)


def sweep_fields_figure(rows: list[dict[str, Any]], axes: list[str], outdir: Path, title: str) -> Figure | None:
    """The context module's field per configuration as a grid: one factor down, one across (where
    the sweep has two), coloured by coverage, annotated with the field's extent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    have = [r for r in rows if r.get("rf_context_height") is not None]
    if not have or not axes:
        return None
    down, across = axes[0], (axes[1] if len(axes) > 1 else None)
    frame = pd.DataFrame({
        "down": [value_text(r[down]) for r in have],
        "across": [value_text(r[across]) if across else "all" for r in have],
        "coverage": [float(r["rf_context_coverage"]) for r in have],
        "text": [f"{r['rf_context_height']} px\n{r['rf_context_coverage']:.3f}" for r in have],
    })  # fmt: skip
    order_down = list(dict.fromkeys(frame["down"]))
    order_across = list(dict.fromkeys(frame["across"]))
    cov = frame.pivot(index="down", columns="across", values="coverage").reindex(index=order_down,
                                                                                 columns=order_across)  # fmt: skip
    text = frame.pivot(index="down", columns="across", values="text").reindex(index=order_down, columns=order_across)
    fig, ax = plt.subplots(figsize=(1.5 * len(order_across) + 2.6, 0.5 * len(order_down) + 1.6))
    sns.heatmap(cov, annot=text.fillna(""), fmt="", cmap="viridis", vmin=0, vmax=1, ax=ax, annot_kws={"fontsize": 6.5},
                cbar_kws={"label": "coverage of the context's field"}, linewidths=0.5)  # fmt: skip
    names = factor_names([k for k in (down, across) if k])
    ax.set_ylabel(names[down])
    ax.set_xlabel(names[across] if across else "")
    ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    save_figure(fig, outdir / "context_fields")
    return Figure(
        outdir / "context_fields",
        "Context fields without training",
        "The context module's own theoretical field per configuration, in pixels of the feature map it reads: "
        "its extent (px, top) and coverage (bottom; the fraction of the field's box that reaches the output, "
        "colour): below 1 the rates leave holes (gridding). Global pooling left out.",
    )
