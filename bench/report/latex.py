"""LaTeX output: escaping, booktabs tables through pandas' Styler that split themselves into parts
no wider than a landscape A4 page (2 cm margins), the report document, and pdflatex.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.files import atomic_path

# A4 landscape with 2 cm margins: \textwidth = 297 mm - 40 mm = 257 mm = 731 pt. Tables are set in
# \small; the estimate below is conservative (it is checked against pdflatex by the latex tier).
PAGE_WIDTH_PT = 731.0


TABCOLSEP_PT = 6.0


def tex_escape(s: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("_", r"\_"),
        ("%", r"\%"),
        ("&", r"\&"),
        ("#", r"\#"),
        ("$", r"\$"),
        ("{", r"\{"),
        ("}", r"\}"),
        ("^", r"\^{}"),
        ("~", r"\~{}"),
    ):
        s = s.replace(a, b)
    return s.replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace("×", r"$\times$").replace("≥", r"$\geq$")


def _visible(s: str) -> str:
    """What a LaTeX cell shows, for the width estimate."""
    s = s.replace(r"$\pm$", "±").replace(r"$\Delta$", "Δ").replace(r"$\times$", "×")
    s = re.sub(r"\\textbf\{(.*?)\}", r"\1", s).replace("\\bfseries ", "")
    s = re.sub(r"\\rotatebox\{\d+\}\{(.*?)\}", "MMMM", s)
    return re.sub(r"\\(.)", r"\1", s)


def _char_pt(c: str) -> float:
    """Approximate advance of a character of Computer Modern at \\small (9 pt), rounded up."""
    if c.isdigit():
        return 4.6
    if c in ".,+-*":
        return 3.3
    if c in "±×Δ":
        return 7.2
    if c == " ":
        return 3.1
    if c.isupper() or c in "mw%@":
        return 7.0
    return 4.5


def column_width_pt(header: str, values: list[str], bold: list[bool] | None = None) -> float:
    cells = [_visible(header), *(_visible(v) for v in values)]
    w = max(sum(_char_pt(c) for c in s) for s in cells) * 1.03  # + bold and kerning slack
    return w + 2 * TABCOLSEP_PT


def split_columns(widths: dict[str, float], ids: list[str], budget: float = PAGE_WIDTH_PT) -> list[list[str]]:
    """Columns into parts no wider than `budget`, each part opening with the `ids` columns (the
    row number and, where they fit beside the data, the factors). One part where all fit."""
    cols = [c for c in widths if c not in ids]
    id_w = sum(widths[c] for c in ids)
    if id_w > 0.6 * budget and len(ids) > 1:  # the factors leave no room: key the parts by '#' alone
        return [ids] + split_columns({c: widths[c] for c in widths if c == ids[0] or c not in ids}, ids[:1], budget)
    parts: list[list[str]] = []
    cur: list[str] = []
    for c in cols:
        if cur and id_w + sum(widths[x] for x in cur) + widths[c] > budget:
            parts.append(cur)
            cur = []
        cur.append(c)
    if cur or not parts:
        parts.append(cur)
    return [ids + p for p in parts]


def latex_tables(
    disp: Any, bold: Any | None, caption: str, label: str, ids: list[str], left: int, budget: float = PAGE_WIDTH_PT
) -> tuple[str, list[str], float]:
    """One booktabs table through pandas' Styler (caption, label, \\small, numbers right-aligned),
    or several when it would be wider than `budget`: each part repeats the id columns, the first
    carries the caption, the others say which table they continue. Returns (latex, labels, widest)."""
    widths = {c: column_width_pt(c, disp[c].tolist()) for c in disp.columns}
    parts = split_columns(widths, ids, budget)
    out, labels = [], []
    for k, cols in enumerate(parts):
        lab = label if len(parts) == 1 else f"{label}-{chr(ord('a') + k)}"
        labels.append(lab)
        cap = caption if k == 0 else f"continued from Table~\\ref{{{labels[0]}}} (part {k + 1} of {len(parts)})."
        sub = disp[cols]
        sty = sub.style.hide(axis="index")
        if bold is not None:
            mask = bold[cols]
            sty = sty.apply(lambda _, m=mask: m.map(lambda b: "font-weight: bold;" if b else ""), axis=None)
        sty = sty.set_table_styles([{"selector": "small", "props": ":;"}], overwrite=False)
        lefts = set(disp.columns[:left])
        fmt = "".join("l" if c in lefts else "r" for c in cols)
        out.append(
            sty.to_latex(
                hrules=True,
                caption=cap,
                label=lab,
                position="htbp",
                position_float="centering",
                column_format=fmt,
                convert_css=True,
            )
        )
    widest = max(sum(widths[c] for c in cols) for cols in parts)
    return "\n".join(out), labels, widest


def tex_document(name: str, tables: list[str], figures: list[tuple[str, str]]) -> str:
    """The report as one LaTeX document: A4 landscape, 2 cm margins, every table and figure."""
    lines = [
        r"\documentclass[a4paper]{article}",
        r"\usepackage[a4paper,landscape,margin=2cm]{geometry}",
        r"\usepackage[T1]{fontenc}",
        r"\usepackage{booktabs,graphicx}",
        r"\usepackage[font=small]{caption}",
        r"\begin{document}",
        rf"\section*{{{tex_escape(name)}: ablation report}}",
        r"Generated by \texttt{aspp-bench report}; the Markdown version is README.md beside this file.",
    ]
    lines += [rf"\input{{{stem}}}" for stem in tables]
    for fname, caption in figures:
        lines += [
            r"\begin{figure}[p]",
            r"\centering",
            rf"\includegraphics[width=\linewidth,height=0.82\textheight,keepaspectratio]{{{fname}}}",
            rf"\caption{{{tex_escape(caption)}}}",
            r"\end{figure}",
        ]
    lines.append(r"\end{document}")
    return "\n".join(lines) + "\n"


def pdflatex() -> str:
    """pdflatex's path, or the UserError that says how to install it."""
    exe = shutil.which("pdflatex")
    if exe is None:
        raise UserError(
            "--format pdf needs pdflatex, which is not installed; install it (Debian: apt-get install "
            "texlive-latex-base texlive-latex-recommended) or leave pdf out of --format"
        )
    return exe


def compile_pdf(outdir: Path, stem: str = "report") -> tuple[Path, list[str]]:
    """pdflatex on outdir/stem.tex in a scratch copy; report.pdf is replaced atomically. Returns
    the PDF and the overfull-box lines of the log (empty when everything fits)."""
    exe = pdflatex()
    with tempfile.TemporaryDirectory(prefix="aspp-report-") as tmp:
        for f in outdir.iterdir():
            if f.suffix in (".tex", ".pdf", ".png") and f.is_file():
                shutil.copy2(f, tmp)
        for _ in range(2):  # twice, so that \ref between table parts resolves
            r = subprocess.run(
                [exe, "-interaction=nonstopmode", "-halt-on-error", f"{stem}.tex"],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if r.returncode != 0:
                tail = "\n".join(r.stdout.splitlines()[-15:])
                raise UserError(f"{outdir / (stem + '.tex')}: pdflatex failed (exit {r.returncode}):\n{tail}")
        log = (Path(tmp) / f"{stem}.log").read_text(errors="replace")
        overfull = [ln for ln in log.splitlines() if ln.startswith("Overfull")]
        pdf = outdir / f"{stem}.pdf"
        with atomic_path(pdf) as dst:
            shutil.copy2(Path(tmp) / f"{stem}.pdf", dst)
    return pdf, overfull
