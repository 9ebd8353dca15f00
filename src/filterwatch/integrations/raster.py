"""Pictures drawn straight into pixels (Pillow for the text, torch for the colours, the
standard library for the PNG): the TensorBoard heatmaps and the PC1 small multiples.

These are written while training runs, so they must cost milliseconds: a matplotlib figure
took about 60 ms each (and 0.34 s to import), which alone was most of ``FilterWatch()``'s
overhead on a short run. Every picture keeps a fixed scale: a heatmap's colours come from the
registry's range for its measure (:func:`health_colours`, red unhealthy, green healthy, grey
undefined) whatever else the run holds.
"""

from __future__ import annotations

import functools
import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..report import LayerReport, Report
from ..report.registry import Measure
from ..report.render import shorten

__all__ = ["Picture", "encode_png", "health_colours", "heatmap_picture", "layer_bands", "pc1_picture",
           "shown_value", "view_range"]

GREY = 0.85  # undefined values and separators
# ColorBrewer RdYlGn, 11 classes (red at 0, green at 1), linearly interpolated
_RDYLGN = torch.tensor([
    [165, 0, 38], [215, 48, 39], [244, 109, 67], [253, 174, 97], [254, 224, 139], [255, 255, 191],
    [217, 239, 139], [166, 217, 106], [102, 189, 99], [26, 152, 80], [0, 104, 55]],
    dtype=torch.float64) / 255.0
_ORANGE = (240, 112, 16)
_REFERENCE = (191, 191, 191)


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


def _ramp(t: torch.Tensor) -> torch.Tensor:
    """RdYlGn at ``t`` in [0, 1] (clamped; NaN as 0): ``(..., 3)`` in [0, 1]."""
    x = t.nan_to_num(0.0).clamp(0.0, 1.0) * (len(_RDYLGN) - 1)
    i = x.floor().clamp(max=len(_RDYLGN) - 2).long()
    frac = (x - i).unsqueeze(-1)
    return _RDYLGN[i] * (1 - frac) + _RDYLGN[i + 1] * frac


def health_colours(m: Measure, values: torch.Tensor, band: torch.Tensor | None = None) -> torch.Tensor:
    """The colour of each value of ``m``, ``(..., 3)`` in [0, 1]: the same value is the same
    colour in every picture of every run (for a layer of the same size, where the band is the
    layer's own). Values are clamped to the measure's view range; inside the healthy band
    (``band`` ``(..., 2)``: each value's own, e.g. a row per layer, else the registry's)
    green, orange at the band's edge and soon red away from it (above a layer's own band, its
    random band, red at once); without a band, red at the unhealthy end to green at the
    other; NaN grey.

    Example:
        >>> from filterwatch.report.registry import get
        >>> rgb = health_colours(get("sparsity"), torch.tensor([0.0, 1.0, float("nan")]))
        >>> bool(rgb[0, 1] > rgb[0, 0]), bool(rgb[1, 0] > rgb[1, 1]), rgb[2].tolist()
        (True, True, [0.85, 0.85, 0.85])
    """
    lo, hi = view_range(m)
    x = values.to(torch.float64).clamp(lo, hi)
    if m.healthy is None:
        t = (x - lo) / (hi - lo) if m.worse == "low" else (hi - x) / (hi - lo)
    else:
        edges = (torch.tensor(m.healthy, dtype=torch.float64) if band is None
                 else band.to(torch.float64).clamp(lo, hi))
        a, b = edges[..., 0].expand_as(x), edges[..., 1].expand_as(x)
        below_span, above_span = a - lo, hi - b
        below = torch.where(below_span > 0, (a - x) / below_span.clamp_min(1e-12), torch.ones_like(x))
        above = torch.where(above_span > 0, (x - b) / above_span.clamp_min(1e-12), torch.ones_like(x))
        if band is not None:  # a layer's random band: inside it is random-like, however deep
            above = torch.ones_like(x)
        depth = torch.where(x < a, below, above)
        inside = (x >= a) & ((x <= b) if band is None else ((x < b) | (b >= hi)))
        t = torch.where(inside, torch.full_like(x, 0.88), 0.42 - 0.42 * (depth * 4.0).clamp(max=1.0))
    rgb = _ramp(t)
    return torch.where(values.isnan().unsqueeze(-1), torch.full_like(rgb, GREY), rgb)


def layer_bands(m: Measure, layers: Sequence[LayerReport]) -> torch.Tensor | None:
    """``(len(layers), 1, 2)``: each layer's healthy band of ``m`` (``None`` where the band
    is the registry's for every layer)."""
    if m.healthy is None or not m.random_band:
        return None
    _, hi = view_range(m)
    edges = [m.healthy_for(layer) or m.healthy for layer in layers]
    return torch.tensor([[[a, min(b, hi)]] for a, b in edges], dtype=torch.float64)


@dataclass
class Picture:
    """An RGB picture ``(H, W, 3)`` uint8 and where its parts are (for tests and readers):
    ``boxes`` maps a part (``"cells"``, ``"bar"``, a PC1 panel's name) to ``(x0, y0, x1, y1)``."""

    rgb: torch.Tensor
    boxes: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)

    def png(self) -> bytes:
        return encode_png(self.rgb)


def encode_png(rgb: torch.Tensor) -> bytes:
    """A ``(H, W, 3)`` uint8 image as PNG bytes: no filter, zlib level 1 (fast, and small for
    flat-coloured pictures); the standard library only."""
    h, w = int(rgb.shape[0]), int(rgb.shape[1])
    rows = torch.cat([torch.zeros(h, 1, dtype=torch.uint8), rgb.reshape(h, w * 3)], dim=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows.contiguous().numpy().tobytes(), 1)) + chunk(b"IEND", b""))


@functools.lru_cache(maxsize=8)
def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _label(text: str, width: int) -> str:
    """A name as one line of plain text (control characters shown as ``?``)."""
    return shorten("".join(c if c.isprintable() else "?" for c in text), width)


class _Canvas:
    """A white Pillow image with the few drawing steps these pictures need."""

    def __init__(self, width: int, height: int) -> None:
        from PIL import Image, ImageDraw

        self.image = Image.new("RGB", (width, height), "white")
        self.draw = ImageDraw.Draw(self.image)
        self.texts: list[str] = []

    def text(self, xy: tuple[float, float], text: str, size: int = 11, anchor: str = "la",
             fill: tuple[int, int, int] = (34, 34, 34)) -> None:
        self.draw.text(xy, text, fill=fill, font=_font(size), anchor=anchor)
        self.texts.append(text)

    def width_of(self, text: str, size: int = 11) -> int:
        return math.ceil(self.draw.textlength(text, font=_font(size)))

    def paste(self, rgb: torch.Tensor, box: tuple[int, int, int, int]) -> None:
        """``rgb`` ``(h, w, 3)`` in [0, 1] scaled (nearest) onto ``box``."""
        from PIL import Image

        pixels = (rgb * 255).round().to(torch.uint8).contiguous()
        small = Image.frombytes("RGB", (int(pixels.shape[1]), int(pixels.shape[0])), pixels.numpy().tobytes())
        x0, y0, x1, y1 = box
        self.image.paste(small.resize((x1 - x0, y1 - y0), Image.Resampling.NEAREST), (x0, y0))

    def picture(self, boxes: dict[str, tuple[int, int, int, int]]) -> Picture:
        w, h = self.image.size
        rgb = torch.frombuffer(bytearray(self.image.tobytes()), dtype=torch.uint8).reshape(h, w, 3)
        return Picture(rgb, boxes, self.texts)


def _cell(report: Report, name: str, m: Measure) -> float:
    for layer in report.layers:
        if layer.name == name:
            v = shown_value(layer, m)
            return math.nan if v is None else v
    return math.nan


def heatmap_picture(history: Sequence[Report], m: Measure, max_steps: int = 60,
                    width: int = 700) -> Picture:
    """A layer x snapshot heatmap of ``m``: layer names down the left, steps along the bottom,
    a colour bar with the healthy band's edges, on the registry's fixed range (red =
    unhealthy, green = healthy, grey = undefined). A few milliseconds for a hundred layers.

    Example:
        >>> import torch, filterwatch
        >>> from filterwatch.report.registry import get
        >>> rep = filterwatch.analyze(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3)))
        >>> pic = heatmap_picture([rep, rep], get("sparsity"))
        >>> pic.rgb.shape[2], sorted(pic.boxes), pic.png()[:4]
        (3, ['bar', 'cells'], b'\\x89PNG')
    """
    reports = list(history)[-max_steps:]
    names = [layer.name for layer in reports[-1].layers] if reports else []
    data = torch.tensor([[_cell(r, n, m) for r in reports] for n in names], dtype=torch.float64)
    lo, hi = view_range(m)
    rows = max(len(names), 1)
    row_h = 20 if rows <= 24 else max(4, 540 // rows)
    top, bottom = 30, 40
    height = top + rows * row_h + bottom
    probe = _Canvas(1, 1)
    labels = [_label(n, 24) for n in names]
    left = 8 + max((probe.width_of(t) for t in labels), default=20)
    right = 70
    canvas = _Canvas(width, height)
    cells = (left, top, width - right, top + rows * row_h)
    title = f"{m.label} / log10 K" if m.hi_log10_k else m.label
    band_note = " (green: healthy band; red at the top: inside each layer's random band)" \
        if m.random_band else " (green: healthy band)"
    canvas.text((width / 2, 8), title + ("" if m.healthy is None else band_note), size=13, anchor="mt")
    if data.numel():
        band = layer_bands(m, reports[-1].layers)  # the rows are the last report's layers
        canvas.paste(health_colours(m, data, band), cells)
    canvas.draw.rectangle((cells[0] - 1, cells[1] - 1, cells[2], cells[3]), outline=(80, 80, 80))
    every = max(1, math.ceil(14 / row_h))  # a name per row while they fit
    for i in range(0, len(labels), every):
        canvas.text((left - 5, top + (i + 0.5) * row_h), labels[i], anchor="rm")
    col_w = (cells[2] - cells[0]) / max(len(reports), 1)
    for j in range(0, len(reports), max(1, math.ceil(len(reports) / 8))):
        x = cells[0] + (j + 0.5) * col_w
        canvas.draw.line((x, cells[3], x, cells[3] + 3), fill=(80, 80, 80))
        canvas.text((x, cells[3] + 5), "-" if reports[j].step is None else str(reports[j].step), anchor="mt")
    canvas.text(((cells[0] + cells[2]) / 2, height - 4), "step", anchor="mb")
    bar = (width - right + 14, top, width - right + 28, cells[3])
    levels = torch.linspace(hi, lo, max(bar[3] - bar[1], 2), dtype=torch.float64).unsqueeze(1)
    canvas.paste(health_colours(m, levels), bar)
    canvas.draw.rectangle((bar[0] - 1, bar[1] - 1, bar[2], bar[3]), outline=(80, 80, 80))

    def level_y(v: float) -> float:
        return bar[1] + (hi - v) / (hi - lo) * (bar[3] - bar[1])

    marks = [lo, hi] + [e for e in (m.healthy or ()) if lo < e < hi]
    for v in marks:
        y = level_y(v)
        if v not in (lo, hi):
            canvas.draw.line((bar[0], y, bar[2], y), fill=(0, 0, 0), width=1)
        canvas.text((bar[2] + 4, y), f"{v:g}", size=10, anchor="lm")
    return canvas.picture({"cells": cells, "bar": bar})


def pc1_picture(layers: Sequence[tuple[str, Sequence[float], Sequence[float]]], columns: int = 4) -> Picture:
    """Small multiples, one per layer: the histogram of the first principal coefficient of the
    current filters (orange line) over the reference's (grey bars), on the reference's bins,
    each as a share of the filters on one axis per panel, with a legend.

    Example:
        >>> pic = pc1_picture([("conv1", [0, 2, 1], [1, 1, 1])])
        >>> sorted(pic.boxes), "reference" in pic.texts
        (['conv1'], True)
    """
    n = max(len(layers), 1)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    pw, ph, head = 230, 140, 44
    canvas = _Canvas(cols * pw, head + rows * ph)
    canvas.text((8, 6), "first principal coefficient: current vs reference", size=12)
    canvas.draw.rectangle((10, 27, 24, 37), fill=_REFERENCE)
    canvas.text((28, 32), "reference", size=10, anchor="lm")
    canvas.draw.line((100, 32, 114, 32), fill=_ORANGE, width=2)
    canvas.text((118, 32), "current", size=10, anchor="lm")
    boxes = {}
    for idx, (name, current, reference) in enumerate(layers):
        cur = torch.tensor(list(current), dtype=torch.float64)
        ref = torch.tensor(list(reference), dtype=torch.float64)
        cur, ref = cur / cur.sum().clamp_min(1.0), ref / ref.sum().clamp_min(1.0)
        top_share = max([1e-9, *cur.tolist(), *ref.tolist()])
        x0 = (idx % cols) * pw + 36
        y0 = head + (idx // cols) * ph + 18
        box = (x0, y0, x0 + pw - 48, y0 + ph - 46)
        boxes[name] = box
        canvas.text((x0 + (box[2] - x0) / 2, y0 - 4), _label(name, 32), size=10, anchor="mb")
        bins = max(len(ref), 1)
        bw = (box[2] - box[0]) / bins

        def y_of(share: float, box: tuple[int, int, int, int] = box, top: float = top_share) -> float:
            return box[3] - share / top * (box[3] - box[1])

        for i, share in enumerate(ref.tolist()):
            if share > 0:
                canvas.draw.rectangle((box[0] + i * bw, y_of(share), box[0] + (i + 1) * bw, box[3]),
                                      fill=_REFERENCE)
        points = []
        for i, share in enumerate(cur.tolist()[:bins]):
            points += [(box[0] + i * bw, y_of(share)), (box[0] + (i + 1) * bw, y_of(share))]
        if points:
            canvas.draw.line(points, fill=_ORANGE, width=2)
        canvas.draw.rectangle((box[0] - 1, box[1] - 1, box[2], box[3]), outline=(80, 80, 80))
        canvas.text((box[0] - 3, box[1]), f"{top_share:.2f}", size=9, anchor="rt")
        canvas.text((box[0] - 3, box[3]), "0", size=9, anchor="rb")
        canvas.text(((box[0] + box[2]) / 2, box[3] + 4), "PC1 bin", size=9, anchor="mt")
        canvas.text((box[0] - 26, (box[1] + box[3]) / 2), "share", size=9, anchor="lm")
    return canvas.picture(boxes)
