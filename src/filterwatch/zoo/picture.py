"""The shift matrix as a picture, like the paper's figure: the matrix with its values, and a
boxplot of its off-diagonal values (matplotlib, object API: no pyplot, no global state)."""

from __future__ import annotations

import html
from typing import Any

from .shift import Shift

__all__ = ["shift_figure", "shift_html", "shift_png"]


def shift_figure(shift: Shift) -> Any:
    """A matplotlib Figure: the matrix (nats, one colour scale from 0) and the boxplot.

    Example:
        >>> s = Shift("task", "3x3", ["a", "b"], [10, 12], [[0.0, 0.3], [0.3, 0.0]], [1.0])
        >>> [ax.get_title() for ax in shift_figure(s).axes[:2]]
        ['3x3 filter shift by task (nats)', 'off-diagonal values']
    """
    from matplotlib.figure import Figure

    n = len(shift.groups)
    size = min(3.0 + 0.45 * n, 12.0)
    fig = Figure(figsize=(size + 2.6, size * 0.85), layout="constrained")
    ax, box = fig.subplots(1, 2, width_ratios=[size, 2.0])
    top = max((max(row) for row in shift.matrix), default=0.0) or 1.0
    image = ax.imshow(shift.matrix, cmap="magma", vmin=0.0, vmax=top)
    labels = [f"{g} ({k:,})" for g, k in zip(shift.groups, shift.n_filters, strict=True)]
    ax.set_xticks(range(n), shift.groups, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center",
                  fontsize=8, parse_math=False)
    ax.set_yticks(range(n), labels, fontsize=8, parse_math=False)
    if n <= 12:
        for i, row in enumerate(shift.matrix):
            for j, v in enumerate(row):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if v < top / 2 else "black")
    ax.set_title(f"{shift.kernel_size} filter shift by {shift.by} (nats)", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8)
    off = [v for i, row in enumerate(shift.matrix) for j, v in enumerate(row) if i != j]
    box.boxplot(off or [0.0], widths=0.5)
    box.set_xticks([1], [shift.by], parse_math=False)
    box.set_ylabel("symmetric KL (nats)", fontsize=8)
    box.set_title("off-diagonal values", fontsize=10)
    return fig


def shift_png(shift: Shift) -> bytes:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = shift_figure(shift)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def shift_html(shift: Shift) -> str:
    """A self-contained page: the picture (inline SVG) and the matrix as a table."""
    import io

    from matplotlib.backends.backend_svg import FigureCanvasSVG

    fig = shift_figure(shift)
    FigureCanvasSVG(fig)
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    e = html.escape
    head = "".join(f"<th>{e(g)}</th>" for g in shift.groups)
    rows = "".join(f"<tr><th>{e(g)}</th><td>{k:,}</td>" + "".join(f"<td>{v:.4f}</td>" for v in row) + "</tr>"
                   for g, k, row in zip(shift.groups, shift.n_filters, shift.matrix, strict=True))
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>filterwatch zoo shift by "
            f"{e(shift.by)}</title><style>body{{font-family:system-ui,sans-serif;margin:24px}}"
            f"table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ddd;padding:3px 7px;"
            f"text-align:right}}</style></head><body>"
            f"<h1>{e(shift.kernel_size)} filter shift by {e(shift.by)}</h1>"
            f"{svg}<table><tr><th>{e(shift.by)}</th><th>filters</th>{head}</tr>{rows}</table>"
            "<p>Symmetric KL (nats) between the groups' filter distributions on one PCA basis of all "
            "filters, weighted by the explained variance; 0: the same.</p></body></html>\n")
