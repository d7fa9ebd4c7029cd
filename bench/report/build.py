"""`aspp-bench report`: read a results folder (or a collected table), build the tables, figures and
captions, and write README.md, the .tex files, report.pdf and main_table.csv, each atomically.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.configure.naming import factor_names, row_label, value_text
from bench.errors import UserError
from bench.files import atomic_path, atomic_write_text, make_new_folder, remove_new_paths
from bench.report import figures
from bench.report.captions import protocol_caption, protocol_note
from bench.report.decisions import budget_labels, decisions
from bench.report.latex import compile_pdf, latex_tables, pdflatex, tex_document, tex_escape
from bench.report.papers import paper_vs_measured, reference_table
from bench.report.receptive import receptive_table
from bench.report.tables import display_frame, factor_axes, main_table, markdown, per_class
from bench.report.trajectories import Side, rankings_over_training, sides_from_table
from bench.results.table import collect, load_table, read_manifest
from bench.sweep import expand, load_sweep, varying_keys
from bench.verdicts.waves import comparisons, every_wave_cells

FORMATS = ("md", "tex", "png", "pdf")


def sweep_manifest(path: str | Path) -> dict[str, Any]:
    """What a results folder's sweep.json says, from the sweep file itself (for a collected table)."""
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


@dataclass
class _Part:
    """One part of the report: its Markdown lines and, where it is a table, its .tex body."""

    md: list[str]
    stem: str | None = None
    tex: str | None = None
    width: float | None = None


@dataclass(frozen=True)
class _Names:
    """What every part of one report is captioned and labelled with."""

    report: str
    slug: str
    protocol: str
    factors: dict[str, str]
    axes: list[str]


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
    res = Path(results)
    from_table = res.is_file() and res.suffix in (".parquet", ".csv")
    if not res.is_dir() and not from_table:
        raise UserError(f"{res}: results folder not found (or give a table collected with 'aspp-bench collect')")
    formats = _formats(formats)
    if "pdf" in formats:
        pdflatex()  # before anything is read or written
    df, skipped, manifest = _read(res, sweep, from_table)
    axes = factor_axes(df, manifest)
    spec = load_sweep(sweep) if sweep else None
    budget_keys = [a for a in axes if spec is not None and spec.decide is not None
                   and any(a in b for b in spec.decide.budgets)]  # fmt: skip
    t = main_table(df, axes, baseline, groups=budget_keys or None)
    t.attrs["groups"] = budget_keys
    outdir = Path(out)
    top = make_new_folder(outdir)  # what this call made, and so may remove again if it fails
    try:
        return _build(res, outdir, df, skipped, manifest, axes, t, formats, notes, sweep, from_table)
    except BaseException:
        remove_new_paths(top)  # a report that could not be written leaves no new folder behind
        raise


def _build(res: Path, outdir: Path, df: Any, skipped: list, manifest: dict, axes: list[str], t: Any,
           formats: tuple[str, ...], notes: str | None, sweep: str | Path | None, from_table: bool
           ) -> dict[str, Any]:  # fmt: skip
    """The report's files into `outdir` (build_report's second half)."""
    name = manifest.get("name", res.name)
    nm = _Names(name, _slug(name), protocol_caption(df, axes), factor_names(axes), axes)
    main, main_labels = _main_part(t, df, res, nm, notes)
    pc = per_class(df, t, axes)
    parts = [main, *_decision_parts(df, sweep, nm), *_paper_parts(t, manifest, nm), *_per_class_parts(t, pc, nm),
             *_receptive_parts(df, t, nm)]  # fmt: skip
    if skipped:
        parts.append(_Part(["## Skipped run folders", ""] + [f"- `{p}`: {why}" for p, why in skipped] + [""]))
    written: list[Path] = []
    figs: list[figures.Figure] = []
    if "png" in formats or "pdf" in formats:
        figs, lines = figures.make_all(t, df, axes, outdir, results=None if from_table else res, per_class=pc)
        written += [f.path.with_suffix(s) for f in figs for s in (".png", ".pdf")]
        ranking = None if from_table else _ranking_part(df, axes, res, sweep, outdir)
        if ranking is not None:
            part, stem = ranking
            parts.append(part)
            written += [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
        parts.append(_figures_part(figs, lines))
    tables = [p for p in parts if p.stem]
    if "tex" in formats or "pdf" in formats:
        written += _write_tex(outdir, name, tables, figs)
    overfull: list[str] = []
    if "pdf" in formats:
        pdf, overfull = compile_pdf(outdir)
        written.append(pdf)
    if "md" in formats:
        atomic_write_text(outdir / "README.md", "\n".join(line for p in parts for line in p.md))
        written.append(outdir / "README.md")
    with atomic_path(outdir / "main_table.csv") as tmp:
        t.drop(columns=["is_baseline"]).to_csv(tmp, index=False)
    written.append(outdir / "main_table.csv")
    return {
        "written": [str(w) for w in written],
        "skipped": skipped,
        "rows": len(t),
        "overfull": overfull,
        "table_width_pt": {p.stem: p.width for p in tables},
        "labels": main_labels,
    }


def _formats(formats: tuple[str, ...] | None) -> tuple[str, ...]:
    formats = tuple(formats) if formats else default_formats()
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise UserError(
            f"--format {','.join(formats)}: {', '.join(bad)} is not a format; allowed are {', '.join(FORMATS)}"
        )
    return formats


def _read(res: Path, sweep: str | Path | None, from_table: bool) -> tuple[pd.DataFrame, list, dict[str, Any]]:
    """The runs (in the sweep's cell order), the folders skipped, and the sweep's manifest."""
    if from_table:  # a collected table, e.g. a committed baseline: rows read through their identity
        df, skipped = load_table(res), []
        df["run_id"] = df["_identity"]  # the runs' identities, whatever the table's ids were
    else:
        df, skipped = collect(res)
    if df.empty:
        raise UserError(f"{res}: no finished runs (skipped {len(skipped)} folder(s))")
    manifest = sweep_manifest(sweep) if sweep else read_manifest(res)
    if from_table and not manifest:
        manifest = {"name": res.stem}
    order = {rid: i for i, rid in enumerate(manifest.get("cells", {}))}
    df["_order"] = [order.get(r, len(order)) for r in df["run_id"]]
    return df.sort_values("_order", kind="stable"), skipped, manifest


def _main_part(t: pd.DataFrame, df: pd.DataFrame, res: Path, nm: _Names, notes: str | None) -> tuple[_Part, Any]:
    """The heading, the protocol and Table 1; returns the part and Table 1's LaTeX labels."""
    axes, names = nm.axes, nm.factors
    note = protocol_note(t)
    md_disp, md_bold = display_frame(t, axes)
    md = [
        f"# {nm.report}: ablation report",
        "",
        f"{len(df)} runs ({int((df['status'] == 'done').sum())} done) from `{res}`; "
        f"factors: {', '.join(f'{names[a]} (`{a}`)' for a in axes) or 'none'}.",
        "",
        f"**Protocol.** {nm.protocol}",
        "",
        f"**Table 1.** {note}",
        "",
        markdown(md_disp, md_bold, left=1 + len(axes)),
        "",
    ]
    if notes:
        md[1:1] = ["", notes.strip()]
    tex_disp, tex_bold = display_frame(t, axes, tex=True)
    ids = ["\\#"] + [tex_escape(names[a]) for a in axes]
    tex_disp = tex_disp.rename(columns={"#": "\\#"})
    tex_bold = tex_bold.rename(columns={"#": "\\#"})
    cap = tex_escape(f"{nm.report}. {nm.protocol} {note}")
    tex, labels, width = latex_tables(tex_disp, tex_bold, cap, f"tab:{nm.slug}-main", ids, left=len(ids))
    return _Part(md, "main", tex, width), labels


def _ranking_part(df: pd.DataFrame, axes: list[str], res: Path, sweep: str | Path | None, outdir: Path
                  ) -> tuple[_Part, Path] | None:  # fmt: skip
    """Rankings over training: the sweep's declared comparisons where it has a decide: section, else
    each row against the first at the same budget (train.epochs), along the recorded curves."""
    hist = figures.histories(df, res)
    if not hist:
        return None
    spec = load_sweep(sweep) if sweep else None
    if spec is not None and spec.decide is not None:
        done = set(df.loc[df["status"] == "done", "run_id"])
        cells = every_wave_cells(spec, source=str(sweep))
        miou = {r: 0.0 for r in done}
        blabels = budget_labels(spec)

        def side(c: Any) -> Side:
            runs = {s: hist[cell.run_id] for s, cell in c.cells.items() if cell.run_id in hist and cell.run_id in done}
            keys = [k for k in c.varying if all(k not in b for b in spec.decide.budgets)]
            return Side(row_label({k: c.varying[k] for k in keys}, keys, empty="all"),
                        blabels[c.budget] if c.budget is not None else "", runs)  # fmt: skip

        pairs = [(side(c.base), side(c.current)) for c in comparisons(spec, cells, miou, source=str(sweep))]
    else:
        group = ["train.epochs"] if "train.epochs" in axes else []
        sides = sides_from_table(df, axes, hist, group)
        pairs = [(b, c) for i, b in enumerate(sides) for c in sides[i + 1:]
                 if b.group == c.group and all(x.group != b.group for x in sides[:i])]  # fmt: skip
    made = rankings_over_training(pairs, outdir)
    if made is None:
        return None
    md, stem = made
    return _Part(md), stem


def _decision_parts(df: pd.DataFrame, sweep: str | Path | None, nm: _Names) -> list[_Part]:
    """The declared comparisons' verdicts, where the sweep file is given and has a decide: section."""
    made = decisions(load_sweep(sweep), df, source=str(sweep)) if sweep else None
    if made is None:
        return []
    table, caption, extra = made
    md = ["## Decisions", "", caption, "", markdown(table, left=3), "", *extra]
    tdisp = table.map(tex_escape).rename(columns=tex_escape)
    trends = " ".join(line.removeprefix("- ").replace("**", "") for line in extra if line)
    cap = tex_escape(f"{nm.report}: {caption} {trends} {nm.protocol}".replace("  ", " "))
    ids = list(tdisp.columns[: 3 if "budget" in table.columns else 2])  # repeated in each part of a split table
    body, _, w = latex_tables(tdisp, None, cap, f"tab:{nm.slug}-decisions", ids, left=len(ids) + 1)
    return [_Part(md, "decisions", body, w)]


def _paper_parts(t: pd.DataFrame, manifest: dict[str, Any], nm: _Names) -> list[_Part]:
    """A paper-vs-measured table for each reference table the sweep names that the rows match."""
    refs = manifest.get("reference") or []
    parts = []
    for ref_name in [refs] if isinstance(refs, str) else refs:
        pvm = paper_vs_measured(t, reference_table(ref_name))
        if pvm is None:
            continue
        left = pvm.shape[1] - 3
        md = [
            f"## Paper vs measured ({ref_name})",
            "",
            "Measured: mean ± sd over seeds of the row `#` of Table 1.",
            "",
            markdown(pvm, left=left),
            "",
        ]
        tdisp = pvm.map(tex_escape).rename(columns=tex_escape)
        cap = tex_escape(
            f"{nm.report}: the paper's {ref_name} against the measured mean ± sd (row # of Table 1). {nm.protocol}"
        )
        body, _, w = latex_tables(
            tdisp, None, cap, f"tab:{nm.slug}-{_slug(ref_name)}", list(tdisp.columns[:left]), left=left
        )
        parts.append(_Part(md, f"paper_vs_{ref_name}", body, w))
    return parts


def _per_class_parts(t: pd.DataFrame, pc: pd.DataFrame | None, nm: _Names) -> list[_Part]:
    """Per-class IoU, mean over seeds, a row per configuration (none where no run has classes)."""
    if pc is None:
        return []
    axes, names = nm.axes, nm.factors
    pcd = pd.DataFrame({"#": [str(i) for i in pc.index]})
    for a in axes:
        pcd[names[a]] = [value_text(v) for v in t.set_index("row").loc[pc.index, a]]
    for c in pc.columns:
        pcd[c] = [f"{v:.1f}" for v in pc[c]]
    md = [
        "## Per-class IoU (%)",
        "",
        "Mean over the seeds of each configuration.",
        "",
        markdown(pcd, left=1 + len(axes)),
        "",
    ]
    tdisp = pcd.map(tex_escape).rename(columns=tex_escape)
    cap = tex_escape(f"{nm.report}: per-class IoU (%), mean over seeds; # is the row of Table 1. {nm.protocol}")
    ids = ["\\#"] + [tex_escape(names[a]) for a in axes]
    body, _, w = latex_tables(tdisp, None, cap, f"tab:{nm.slug}-per-class", ids, left=1 + len(axes))
    return [_Part(md, "per_class", body, w)]


def _receptive_parts(df: pd.DataFrame, t: pd.DataFrame, nm: _Names) -> list[_Part]:
    """The receptive-field table, where the runs recorded their fields."""
    rt = receptive_table(df, t, nm.axes, nm.factors)
    if rt is None:
        return []
    caption = (
        "Theoretical field of the centre output pixel at the profile size (px; global pooling, e.g. ASPP's image "
        "branch, makes it the whole image and is left out of the field shown), its coverage (the fraction of the "
        "field's box that reaches the output; below 1: holes, gridding); the context module's own field and coverage "
        "in the pixels of the feature map it reads (no global pooling); and the effective field of the trained "
        "networks: radii (px) holding 50/90/99% of the mean absolute input gradient over 16 validation images, "
        "mean over seeds; ERF / field: the 90% disc's diameter over the field's larger side. Runs: those of the "
        "configuration that recorded their fields (profile.receptive; runs from before it record none)."
    )
    left = 1 + len(nm.axes)
    md = ["## Receptive fields", "", caption, "", markdown(rt, left=left), ""]
    tdisp = rt.map(tex_escape).rename(columns=tex_escape)
    cap = tex_escape(f"{nm.report}: {caption} {nm.protocol}")
    body, _, w = latex_tables(tdisp, None, cap, f"tab:{nm.slug}-receptive", list(tdisp.columns[:left]), left=left)
    return [_Part(md, "receptive", body, w)]


def _figures_part(figs: list[figures.Figure], lines: list[str]) -> _Part:
    md = ["## Figures", "", "Which figures exist for each factor, and why:", ""]
    md += [f"- {line}" for line in lines] + [""]
    for f in figs:
        md += [f"**{f.title}.** {f.caption}", "", f"![{f.path.stem}]({f.path.stem}.png)", ""]
    return _Part(md)


def _write_tex(outdir: Path, name: str, tables: list[_Part], figs: list[figures.Figure]) -> list[Path]:
    """Each table's .tex, and report.tex that inputs them and the figures."""
    written = []
    for part in tables:
        atomic_write_text(outdir / f"{part.stem}.tex", part.tex)
        written.append(outdir / f"{part.stem}.tex")
    figure_list = [(f"{f.path.stem}.pdf", f"{f.title}. {f.caption}") for f in figs]
    atomic_write_text(outdir / "report.tex", tex_document(name, [p.stem for p in tables], figure_list))
    return [*written, outdir / "report.tex"]
