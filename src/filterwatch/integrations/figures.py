"""Pictures of filter health: heatmaps with axes and colour bars (matplotlib), filter grids
and PC1 plots (drawn with torch: small, cheap, and written at every image snapshot).

Every picture has a fixed scale: a heatmap's colour range comes from the registry (the
measure's range, or its ``view`` when unbounded), with the unhealthy end red and the healthy
end green in every run; a filter grid has one scale per layer, so sparse and dead filters
look empty. matplotlib is used through its object API (``Figure`` and the Agg canvas): no
pyplot, no global state, safe in a training process.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import torch

from ..report import LayerReport, Report
from ..report.registry import Measure
from ..report.render import shorten

__all__ = ["filter_grid", "health_cmap", "heatmap_figure", "pc1_figure", "png_bytes", "shown_value",
           "svg_text", "view_range"]

_GREY = 0.85  # undefined values and separators


def view_range(m: Measure) -> tuple[float, float]:
    """The colour range of ``m`` in every picture (VE is shown as a share of ``log10 K``)."""
    if m.hi_log10_k:
        return 0.0, 1.0
    lo, hi = m.view or (m.lo, m.hi)
    return (0.0 if lo is None else lo), (1.0 if hi is None else hi)


def shown_value(layer: LayerReport, m: Measure) -> float | None:
    """The value pictures show: VE as a share of its maximum ``log10 K``, so that layers of
    different kernel sizes compare; every other measure as it is."""
    v = layer.value(m.key)
    if v is not None and m.hi_log10_k:
        k = math.prod(layer.kernel_size)
        return v / math.log10(k) if k > 1 else None
    return v


def _cell(report: Report, name: str, m: Measure) -> float:
    for layer in report.layers:
        if layer.name == name:
            v = shown_value(layer, m)
            return math.nan if v is None else v
    return math.nan


def heatmap_figure(history: Sequence[Report], m: Measure, max_steps: int = 60) -> Any:
    """A layer x snapshot heatmap of ``m``: layer names on the y axis, steps on the x axis,
    a colour bar, and the registry's fixed range (red = unhealthy, green = healthy).

    Example:
        >>> import torch, filterwatch
        >>> from filterwatch.report.registry import get
        >>> rep = filterwatch.analyze(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3)))
        >>> fig = heatmap_figure([rep, rep], get("sparsity"))
        >>> fig.axes[0].get_ylabel(), len(fig.axes)   # the heatmap and its colour bar
        ('layer', 2)
    """
    from matplotlib.figure import Figure

    reports = list(history)[-max_steps:]
    names = [layer.name for layer in reports[-1].layers] if reports else []
    data = torch.tensor([[_cell(r, n, m) for r in reports] for n in names], dtype=torch.float64)
    lo, hi = view_range(m)
    height = min(2.2 + 0.32 * len(names), 14.0)
    fig = Figure(figsize=(7.0, height), dpi=100)  # fixed margins: a layout engine costs ~40 ms
    fig.subplots_adjust(left=0.22, right=0.97, top=1 - 0.45 / height, bottom=0.55 / height)
    ax = fig.add_subplot()
    image = ax.imshow(data.numpy(), aspect="auto", cmap=health_cmap(m), vmin=lo, vmax=hi,
                      interpolation="nearest")
    ax.set_yticks(range(len(names)), [shorten(n, 24) for n in names], fontsize=10,
                  parse_math=False)  # a name is text, never mathtext ($...$)
    every = max(1, math.ceil(len(reports) / 8))
    ticks = list(range(0, len(reports), every))
    ax.set_xticks(ticks, [str(reports[i].step) for i in ticks], fontsize=10)
    ax.set_xlabel("step", fontsize=10)
    ax.set_ylabel("layer", fontsize=10)
    label = f"{m.label} / log10 K" if m.hi_log10_k else m.label
    ax.set_title(label + ("" if m.healthy is None else " (green: healthy band)"), fontsize=12)
    bar = fig.colorbar(image, ax=ax, shrink=0.95)
    bar.ax.tick_params(labelsize=9)
    if m.healthy is not None:
        for edge in m.healthy:
            if lo < edge < hi:
                bar.ax.axhline(edge, color="black", linewidth=1.0)
    return fig


def health_cmap(m: Measure, n: int = 256) -> Any:
    """Colours that mean the same in every run: green inside the measure's healthy band,
    yellow at its edge, red towards the unhealthy end(s) of the view range; without a band,
    red at the unhealthy end to green at the other. Undefined values are grey."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    ramp = colormaps["RdYlGn"]
    lo, hi = view_range(m)
    xs = [lo + (hi - lo) * (i + 0.5) / n for i in range(n)]
    if m.healthy is None:
        colours = [ramp((x - lo) / (hi - lo) if m.worse == "low" else (hi - x) / (hi - lo)) for x in xs]
    else:
        a, b = m.healthy

        def shade(x: float) -> Any:
            if a <= x <= b:
                return ramp(0.88)
            below = x < a
            span = (a - lo) if below else (hi - b)
            depth = ((a - x) if below else (x - b)) / span if span > 0 else 1.0
            return ramp(0.42 - 0.42 * min(depth * 4.0, 1.0))  # orange at the edge, soon red

        colours = [shade(x) for x in xs]
    return ListedColormap(colours).with_extremes(bad=(_GREY, _GREY, _GREY))


def pc1_figure(layers: Sequence[tuple[str, Sequence[float], Sequence[float]]], columns: int = 4) -> Any:
    """Small multiples, one per layer: the histogram of the first principal coefficient of the
    current filters (orange line) on the reference's (grey area), on the reference's bins,
    each normalised to a share of the filters, with axes and one legend.

    Example:
        >>> fig = pc1_figure([("conv1", [0, 2, 1], [1, 1, 1])])
        >>> fig.axes[0].get_title(), fig.axes[0].get_xlabel()
        ('conv1', 'PC1 bin')
    """
    from matplotlib.figure import Figure

    n = max(len(layers), 1)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.1 * cols, 2.0 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    for ax, (name, current, reference) in zip(axes.flat, layers, strict=False):
        cur = torch.tensor(list(current), dtype=torch.float64)
        ref = torch.tensor(list(reference), dtype=torch.float64)
        x = list(range(len(ref)))
        ax.fill_between(x, (ref / ref.sum().clamp_min(1.0)).tolist(), step="mid", color="0.75",
                        label="reference")
        ax.step(x, (cur / cur.sum().clamp_min(1.0)).tolist(), where="mid", color="#f07010",
                linewidth=1.6, label="current")
        ax.set_title(shorten(name, 32), fontsize=9, parse_math=False)
        ax.set_xlabel("PC1 bin", fontsize=8)
        ax.set_ylabel("share of filters", fontsize=8)
        ax.tick_params(labelsize=7)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper right", ncols=2, fontsize=8)
    fig.suptitle("first principal coefficient: current vs reference", fontsize=10)
    return fig


def png_bytes(fig: Any, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (Agg canvas, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def svg_text(fig: Any) -> str:
    """The figure as an inline SVG element (for self-contained HTML)."""
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    FigureCanvasSVG(fig)
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _diverging(v: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` values in [-1, 1] (NaN = separator) -> ``(3, H, W)``: 0 is white, positive
    red, negative blue, so an all-zero filter is blank."""
    a = v.abs().clamp(max=1.0).nan_to_num(0.0)
    red = torch.tensor([0.70, 0.09, 0.17])
    blue = torch.tensor([0.13, 0.40, 0.67])
    colour = torch.where((v >= 0).unsqueeze(-1), red, blue)
    rgb = 1.0 - a.unsqueeze(-1) * (1.0 - colour)
    rgb[v.isnan()] = _GREY
    return rgb.permute(2, 0, 1)


def filter_grid(weight: torch.Tensor, max_filters: int = 32, max_inputs: int = 8,
                cell: int = 4) -> torch.Tensor:
    """A picture ``(3, H, W)`` of a layer's filters on one scale for the whole layer (its
    peak): white is zero, so sparse and dead filters look empty. Rows are output filters
    (the first ``max_filters``), columns their first ``max_inputs`` kernel slices; a layer
    with one input channel per filter (depthwise, or a first layer on grey images) is laid
    out as a square of filters instead of one long column. 1D kernels show as strips, 3D
    kernels by their middle depth slice. Only the small corner drawn leaves the device.

    Example:
        >>> filter_grid(torch.randn(4, 2, 3, 3), cell=1).shape
        torch.Size([3, 17, 9])
        >>> filter_grid(torch.randn(16, 1, 3, 3), cell=1).shape   # a 4 x 4 square
        torch.Size([3, 17, 17])
    """
    w = weight.detach()[:max_filters, :max_inputs].to("cpu", torch.float32)
    if w.ndim == 3:
        w = w.unsqueeze(2)
    while w.ndim > 4:
        w = w.select(2, w.shape[2] // 2)
    peak = float(w.abs().max()) if w.numel() else 0.0
    w = w / peak if peak > 0 and math.isfinite(peak) else torch.zeros_like(w)
    c_out, c_in, kh, kw = w.shape
    if c_in == 1 and c_out > 1:  # one slice per filter: a square of them
        cols = math.ceil(math.sqrt(c_out))
        rows = math.ceil(c_out / cols)
        tiles = torch.full((rows * cols, kh, kw), math.nan)
        tiles[:c_out] = w[:, 0]
        w = tiles.reshape(rows, cols, kh, kw)
        c_out, c_in = rows, cols
    padded = torch.full((c_out, c_in, kh + 1, kw + 1), math.nan)
    padded[:, :, 1:, 1:] = w
    canvas = torch.full((c_out * (kh + 1) + 1, c_in * (kw + 1) + 1), math.nan)
    canvas[:-1, :-1] = padded.permute(0, 2, 1, 3).reshape(c_out * (kh + 1), c_in * (kw + 1))
    img = _diverging(canvas)
    return img.repeat_interleave(cell, dim=1).repeat_interleave(cell, dim=2)
