"""Filter grids (drawn with torch: small, cheap, written at every image snapshot) and the
matplotlib export helpers of the HTML report (its charts: not drawn while training).

A filter grid has one scale per layer, so sparse and dead filters look empty. matplotlib is
used through its object API (``Figure`` and the Agg canvas): no pyplot, no global state. The
pictures drawn while training (heatmaps, PC1) are in :mod:`filterwatch.integrations.raster`.
"""

from __future__ import annotations

import io
import math
from typing import Any

import torch

from .raster import GREY

__all__ = ["filter_grid", "png_bytes", "svg_text"]


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
    rgb[v.isnan()] = GREY
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
