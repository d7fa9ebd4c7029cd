"""`aspp-bench report`: read a results folder (or a collected table), build the tables, figures and
captions, and write README.md, the .tex files, report.pdf and main_table.csv, each atomically.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.files import atomic_path, atomic_write_text
from bench.labels import factor_names, show
from bench.regress import load_table
from bench.report import figures
from bench.report.captions import protocol_caption, protocol_note
from bench.report.latex import compile_pdf, latex_tables, pdflatex, tex_document, tex_escape
from bench.report.papers import paper_vs_measured, reference_table
from bench.report.tables import display_frame, factor_axes, main_table, markdown, per_class
from bench.results import collect, read_manifest
from bench.sweep import expand, load_sweep, varying_keys

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
        pdflatex()  # before anything is read or written
    if table:  # a collected table, e.g. a committed baseline: rows read through their identity
        df, skipped = load_table(res), []
        df["run_id"] = df["_identity"]  # the runs' identities, whatever the table's ids were
    else:
        df, skipped = collect(res)
    if df.empty:
        raise UserError(f"{res}: no finished runs (skipped {len(skipped)} folder(s))")
    manifest = sweep_manifest(sweep) if sweep else read_manifest(res)
    if table and not manifest:
        manifest = {"name": res.stem}
    order = {rid: i for i, rid in enumerate(manifest.get("cells", {}))}
    df["_order"] = [order.get(r, len(order)) for r in df["run_id"]]
    df = df.sort_values("_order", kind="stable")
    axes = factor_axes(df, manifest)
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
        markdown(md_disp, md_bold, left=1 + len(axes)),
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
        pvm = paper_vs_measured(t, reference_table(ref_name))
        if pvm is not None:
            sections += [
                f"## Paper vs measured ({ref_name})",
                "",
                "Measured: mean ± sd over seeds of the row `#` of Table 1.",
                "",
                markdown(pvm, left=pvm.shape[1] - 3),
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
            markdown(pcd, left=1 + len(axes)),
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
            tex_document(
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
