"""Reports to TensorBoard: scalars, a custom-scalars layout, histograms, images, alert text.

Works on any ``torch.utils.tensorboard.SummaryWriter`` (Lightning's ``TensorBoardLogger``
exposes one as ``logger.experiment``). Images are built with torch alone (no matplotlib).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch

from ..functional.drift import _histograms, peak_scale
from ..layers import ConvLayer
from ..monitor import Alert
from ..reference import Reference
from ..report import Report
from ..report.registry import select

__all__ = ["HEATMAP_MEASURES", "TensorBoardSink", "filter_grid", "heatmap"]

HEATMAP_MEASURES = tuple(m.key for m in select(heatmap=True))
# a 5-stop perceptual ramp (viridis) interpolated linearly
_RAMP = torch.tensor([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]],
                     dtype=torch.float32) / 255.0


def _colour(values: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` values in [0, 1] (NaN = missing, grey) -> ``(3, H, W)`` RGB."""
    x = values.clamp(0, 1).nan_to_num(0.0) * (len(_RAMP) - 1)
    lo = x.floor().long().clamp(max=len(_RAMP) - 2)
    frac = (x - lo).unsqueeze(-1)
    rgb = _RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac
    rgb[values.isnan()] = 0.5
    return rgb.permute(2, 0, 1)


def _upscale(img: torch.Tensor, cell: int) -> torch.Tensor:
    return img.repeat_interleave(cell, dim=1).repeat_interleave(cell, dim=2)


def heatmap(rows: Sequence[Sequence[float | None]], cell: int = 8) -> torch.Tensor:
    """A layer x step heatmap ``(3, H, W)``: rows are layers, columns snapshots, colours
    scaled between the table's min and max (missing values grey).

    Example:
        >>> heatmap([[0.0, 0.5], [1.0, None]], cell=2).shape
        torch.Size([3, 4, 4])
    """
    data = torch.tensor([[math.nan if v is None else float(v) for v in row] for row in rows],
                        dtype=torch.float32)
    finite = data[~data.isnan()]
    if finite.numel():
        lo, hi = float(finite.min()), float(finite.max())
        data = (data - lo) / (hi - lo) if hi > lo else torch.where(data.isnan(), data, 0.5)
    return _upscale(_colour(data), cell)


def filter_grid(weight: torch.Tensor, max_filters: int = 32, max_inputs: int = 8,
                cell: int = 6) -> torch.Tensor:
    """A grid ``(3, H, W)``: one row per output filter (the first ``max_filters``), its first
    ``max_inputs`` kernel slices side by side, each output filter normalised to its own peak
    (zero is mid-grey). 1D kernels show as 1-pixel-high strips; 3D kernels by their middle
    depth slice.

    Example:
        >>> filter_grid(torch.randn(4, 2, 3, 3), cell=1).shape
        torch.Size([3, 17, 9])
    """
    w = weight.detach().to("cpu", torch.float32)[:max_filters, :max_inputs]
    if w.ndim == 3:
        w = w.unsqueeze(2)
    while w.ndim > 4:
        w = w.select(2, w.shape[2] // 2)
    c_out, c_in, kh, kw = w.shape
    scaled = peak_scale(w.reshape(c_out, -1)).reshape(c_out, c_in, kh, kw)
    canvas = torch.full((c_out * (kh + 1) + 1, c_in * (kw + 1) + 1), math.nan)
    for i in range(c_out):
        for j in range(c_in):
            canvas[1 + i * (kh + 1): 1 + i * (kh + 1) + kh, 1 + j * (kw + 1): 1 + j * (kw + 1) + kw] = (
                scaled[i, j] + 1) / 2
    img = _colour(canvas)
    img[:, canvas.isnan()] = 1.0  # white separators
    return _upscale(img, cell)


class TensorBoardSink:
    """Writes snapshots to a ``SummaryWriter``; scalars optional (Lightning logs them itself)."""

    def __init__(self, writer: Any, *, scalars: bool = True, images_every: int = 10,
                 histograms: bool = True, max_image_layers: int = 16,
                 filter_images: bool = True) -> None:
        self.writer = writer
        self.filter_images = filter_images
        self.write_scalars = scalars
        self.images_every = images_every
        self.histograms = histograms
        self.max_image_layers = max_image_layers
        self._layout_done = False
        self._count = 0

    def purge_after(self, step: int) -> None:
        """After a resume from a checkpoint taken at ``step``: tell TensorBoard to drop what
        the crashed run wrote for later steps (a SessionLog START at ``step + 1``), so the
        resumed run's values are the only ones at those steps."""
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog

        event = Event(step=step + 1, wall_time=time.time(),
                      session_log=SessionLog(status=SessionLog.START))
        self.writer._get_file_writer().add_event(event)
        self.writer.flush()

    def layout(self) -> None:
        """One custom-scalars chart per measure, all layers on it."""
        charts = {m.key: ["Multiline", [rf"filterwatch/(?!model/).*/{m.key}$"]]
                  for m in select() if m.chart is not None}
        model = {m.key: ["Multiline", [f"filterwatch/model/{m.key}"]] for m in select(chart="both")}
        self.writer.add_custom_scalars({"filterwatch: layers": charts, "filterwatch: model": model})
        self._layout_done = True

    def write(self, report: Report, layers: Sequence[ConvLayer], history: Sequence[Report],
              new_alerts: Sequence[Alert], reference: Reference | None, *, scalars: dict[str, float],
              final: bool = False) -> None:
        step = int(report.step or 0)
        if not self._layout_done:
            self.layout()
        if self.write_scalars:
            for tag, value in scalars.items():
                self.writer.add_scalar(tag, value, step)
        if self.histograms:
            self._histograms(layers, reference, step)
        if final or self._count % self.images_every == 0:
            self._images(layers, history, step)
        if new_alerts:
            self._alerts(new_alerts, step)
        self._count += 1
        self.writer.flush()

    def _histograms(self, layers: Sequence[ConvLayer], ref: Reference | None, step: int) -> None:
        for layer in layers:
            if layer.unavailable:
                continue
            w = layer.kernel().detach().to("cpu", torch.float64)
            if not bool(torch.isfinite(w).all()):
                continue
            filters = w.reshape(-1, layer.kernel_numel)
            self.writer.add_histogram(f"filterwatch/{layer.name}/filter_norms",
                                      torch.linalg.vector_norm(filters, dim=1), step)
            self.writer.add_histogram(f"filterwatch/{layer.name}/weights", w.reshape(-1), step)
            group = None if ref is None else ref.groups.get(ref.key_for(layer))
            if group is not None and group.kernel_size == layer.kernel_size:
                self._coefficients(layer.name, filters, group.basis, step)

    def _coefficients(self, name: str, filters: torch.Tensor, basis: Any, step: int) -> None:
        """First principal coefficient, current vs reference, on the reference's bins."""
        coef = (peak_scale(filters) - basis.mean) @ basis.basis.T
        bins = int(basis.hist.shape[1])
        edges = torch.linspace(basis.lo, basis.hi, bins + 1, dtype=torch.float64)
        current = _histograms(coef[:, :1], basis.lo, basis.hi, bins)[0]
        for tag, counts in (("current", current), ("reference", basis.hist[0])):
            total = float(counts.sum())
            centres = (edges[:-1] + edges[1:]) / 2
            self.writer.add_histogram_raw(
                f"filterwatch_drift/{name}/pc1_{tag}", min=basis.lo, max=basis.hi, num=total,
                sum=float((counts * centres).sum()), sum_squares=float((counts * centres**2).sum()),
                bucket_limits=edges[1:].tolist(), bucket_counts=counts.tolist(), global_step=step,
            )

    def _images(self, layers: Sequence[ConvLayer], history: Sequence[Report], step: int) -> None:
        for layer in layers[: self.max_image_layers] if self.filter_images else []:
            if not layer.unavailable:
                self.writer.add_image(f"filterwatch_filters/{layer.name}", filter_grid(layer.kernel()), step)
        names = [layer.name for layer in history[-1].layers] if history else []
        for m in HEATMAP_MEASURES:
            rows = [[_value(r, name, m) for r in history] for name in names]
            if any(v is not None for row in rows for v in row):
                self.writer.add_image(f"filterwatch_heatmap/{m}", heatmap(rows), step)

    def _alerts(self, alerts: Sequence[Alert], step: int) -> None:
        lines = ["| step | layer | alert | value |", "|---:|---|---|---:|"]
        lines += [f"| {a.step} | `{a.layer}` | {a.message} | {a.value:.3f} |" for a in alerts]
        self.writer.add_text("filterwatch/alerts", "\n".join(lines), step)


def _value(report: Report, name: str, measure: str) -> float | None:
    for layer in report.layers:
        if layer.name == name:
            return layer.value(measure)
    return None
