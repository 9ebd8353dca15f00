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
        >>> s = s._replace(noise=[[0.0, 0.5], [0.5, 0.0]])  # 0.3 is within its noise: hatched
        >>> len(shift_figure(s).axes[0].patches)
        2
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
    from matplotlib.patches import Rectangle

    for i, row in enumerate(shift.matrix):
        for j, v in enumerate(row):
            noise = None if shift.noise is None or i == j else shift.noise[i][j]
            if noise is not None and v <= noise:  # within its noise floor: hatched grey
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="#bdbdbd", alpha=0.85,
                                       hatch="///", edgecolor="#757575", linewidth=0))
            if n <= 12:
                text = f"{v:.2f}" if noise is None else f"{v:.2f}\n({noise:.2f})"
                dark = v < top / 2 and not (noise is not None and v <= noise)
                ax.text(j, i, text, ha="center", va="center", fontsize=7 if noise is not None else 8,
                        color="white" if dark else "black")
    title = f"{shift.kernel_size} filter shift by {shift.by} (nats)"
    if shift.noise is not None:
        title += "\n(in brackets: noise floor; hatched: within it)"
    ax.set_title(title, fontsize=10)
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
    rows = "".join(f"<tr><th>{e(g)}</th><td>{k:,}</td>" + "".join(
        f"<td>{e(shift.cell_text(i, j, 4))}</td>" for j in range(len(shift.groups))) + "</tr>"
        for i, (g, k) in enumerate(zip(shift.groups, shift.n_filters, strict=True)))
    notes = "".join(f"<p>{e(line)}</p>" for line in shift.explanation()[1:])
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>filterwatch zoo shift by "
            f"{e(shift.by)}</title><style>body{{font-family:system-ui,sans-serif;margin:24px}}"
            f"table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ddd;padding:3px 7px;"
            f"text-align:right}}</style></head><body>"
            f"<h1>{e(shift.kernel_size)} filter shift by {e(shift.by)}</h1>"
            f"{svg}<table><tr><th>{e(shift.by)}</th><th>filters</th>{head}</tr>{rows}</table>"
            "<p>Symmetric KL (nats) between the groups' filter distributions on one PCA basis of all "
            f"filters, weighted by the explained variance; 0: the same.</p>{notes}</body></html>\n")
