"""What every report figure shares: the Figure record, colours and markers, factor levels, compact
row labels, label placement without overlaps, and saving as PNG and PDF atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.configure.naming import value_text
from bench.files import atomic_path

MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "p", "h", "<", ">"]


@dataclass
class Figure:
    path: Path  # outdir/stem; written as stem.png and stem.pdf
    title: str
    caption: str  # what it shows, n, and what the bars are


def seed_counts(t: Any) -> str:
    """The seeds per configuration of a main table, for a caption: '3' or '7, 10'."""
    return ", ".join(sorted({str(v) for v in t["n"]}, key=int))


def palette(n: int) -> list[Any]:
    import seaborn as sns

    return sns.color_palette("tab10" if n <= 10 else "tab20" if n <= 20 else "husl", n)


def factor_levels(t: Any, axis: str) -> list[str]:
    return list(dict.fromkeys(value_text(v) for v in t[axis]))


def save_figure(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

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


def constant_value(df: Any, col: str) -> str | None:
    if col not in df.columns:
        return None
    vals = {value_text(v) for v in df[col].dropna()}
    return vals.pop() if len(vals) == 1 else None


def compact_label(r: Any, axes: list[str]) -> str:
    return " · ".join(value_text(r[a]) for a in axes if value_text(r[a]) != "-") or "all runs"
