"""Comparison reports from a results folder: tables (Markdown through pandas/tabulate, LaTeX
through pandas' Styler with booktabs, caption and label), seaborn figures (PNG and PDF), paper vs
measured tables, learning curves, and one report.pdf compiled by pdflatex.

A table has one column per varying factor (short values: `3,6,9,12`, `yes`/`no`), the seeds
column, the metrics (mean ± sample sd over seeds, ± only with n >= 2) and Δ mIoU against a
baseline row marked with its Holm-corrected significance. Everything that is the same for every
row (dataset, split, size, schedule, seeds, device, number format, counters) goes to the caption.
A LaTeX table wider than a landscape A4 page (2 cm margins) splits itself into parts that fit.

One module per job, in the order the data flows: tables (numbers and their strings), captions,
papers (published tables), latex (tables, document, pdflatex), plotting (what figures share),
tradeoff, effects, figures (every figure), build (the command: read, build, write).
"""

from bench.report.build import FORMATS, build_report, default_formats
from bench.report.latex import PAGE_WIDTH_PT, compile_pdf, latex_tables, split_columns, tex_escape
from bench.report.papers import reference_table
from bench.report.tables import display_frame, main_table, row_numbers

__all__ = [
    "FORMATS",
    "PAGE_WIDTH_PT",
    "build_report",
    "compile_pdf",
    "default_formats",
    "display_frame",
    "latex_tables",
    "main_table",
    "reference_table",
    "row_numbers",
    "split_columns",
    "tex_escape",
]
