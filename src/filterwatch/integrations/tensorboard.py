"""Reports to TensorBoard: scalars, a custom-scalars layout, histograms, images, alert text.

Works on any ``torch.utils.tensorboard.SummaryWriter`` (Lightning's ``TensorBoardLogger``
exposes one as ``logger.experiment``). Images are built with torch alone (no matplotlib).
"""

from __future__ import annotations

import math
import struct
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch

from ..functional.drift import peak_scale
from ..measure import KernelRead
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
                cell: int = 4) -> torch.Tensor:
    """A grid ``(3, H, W)``: one row per output filter (the first ``max_filters``), its first
    ``max_inputs`` kernel slices side by side, each output filter normalised to its own peak
    (zero is mid-grey). 1D kernels show as 1-pixel-high strips; 3D kernels by their middle
    depth slice. Only the small corner that is drawn leaves the weight's device.

    Example:
        >>> filter_grid(torch.randn(4, 2, 3, 3), cell=1).shape
        torch.Size([3, 17, 9])
    """
    w = weight.detach()[:max_filters, :max_inputs].to("cpu", torch.float32)
    if w.ndim == 3:
        w = w.unsqueeze(2)
    while w.ndim > 4:
        w = w.select(2, w.shape[2] // 2)
    c_out, c_in, kh, kw = w.shape
    scaled = (peak_scale(w.reshape(c_out, -1)).reshape(c_out, c_in, kh, kw) + 1) / 2
    # each slice padded by one NaN row and column (the white separators), then tiled
    padded = torch.full((c_out, c_in, kh + 1, kw + 1), math.nan)
    padded[:, :, 1:, 1:] = scaled
    canvas = torch.full((c_out * (kh + 1) + 1, c_in * (kw + 1) + 1), math.nan)
    canvas[:-1, :-1] = padded.permute(0, 2, 1, 3).reshape(c_out * (kh + 1), c_in * (kw + 1))
    img = _colour(canvas)
    img[:, canvas.isnan()] = 1.0  # white separators
    return _upscale(img, cell)


class _Histogram(NamedTuple):
    """A histogram computed where the values live; only these few numbers reach the host."""

    lo: float
    hi: float
    num: float
    total: float
    total_sq: float
    counts: list[float]


_HIST_BINS = 30


def _histogram(values: torch.Tensor) -> _Histogram | None:
    """Counts in ``_HIST_BINS`` bins between the min and max, computed on the values' device
    (``None`` for non-finite values, whose histogram would say nothing)."""
    v = values.detach().reshape(-1).to(torch.float32)
    if v.numel() == 0:
        return None
    lo_t, hi_t = torch.aminmax(v)
    lo, hi, total, total_sq = torch.stack([lo_t, hi_t, v.sum(), v.square().sum()]).double().tolist()
    if not all(math.isfinite(x) for x in (lo, hi, total, total_sq)):
        return None
    if hi - lo > 1e-30 * max(abs(lo), abs(hi), 1e-30) and math.isfinite(hi - lo):
        counts = torch.histc(v, bins=_HIST_BINS, min=lo, max=hi).tolist()
    else:  # one value (or a range float32 cannot split): a single bucket
        counts = [float(v.numel())] + [0.0] * (_HIST_BINS - 1)
    return _Histogram(lo, hi, float(v.numel()), total, total_sq, counts)


class _Extras(NamedTuple):
    """What TensorBoard gets of one layer at one snapshot, taken from the snapshot's read."""

    norms: _Histogram | None
    weights: _Histogram | None
    pc1: list[float] | None
    grid: torch.Tensor | None


class TensorBoardSink:
    """Writes snapshots to a ``SummaryWriter``; scalars optional (Lightning logs them itself).

    Per-kernel extras (histograms of filter norms and weights, the first principal
    coefficient against the reference's, filter images) are taken while the snapshot holds
    each kernel: pass :meth:`collector` as the snapshot's ``on_kernel``, then :meth:`write`.
    They are computed on the kernel's device and only a few numbers reach the host; the sink
    never reads a kernel itself.
    """

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
        self._pending: dict[str, _Extras] = {}
        self._reference_pc1_done: set[str] = set()

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
        charts = {m.key: ["Multiline", [rf"^filterwatch/.+/{m.key}$"]]
                  for m in select() if m.chart is not None}
        model = {m.key: ["Multiline", [rf"^filterwatch_model/{m.key}$"]] for m in select(chart="both")}
        self.writer.add_custom_scalars({"filterwatch: layers": charts, "filterwatch: model": model})
        self._layout_done = True

    def _images_due(self, final: bool) -> bool:
        return final or self._count % self.images_every == 0

    def collector(self, final: bool = False) -> Callable[[KernelRead], None]:
        """The ``on_kernel`` hook of the next snapshot: keeps this sink's extras of each kernel."""
        self._pending = {}
        images = self.filter_images and self._images_due(final)

        def collect(read: KernelRead) -> None:
            w = read.weight
            hist = self.histograms  # non-finite weights give no histogram (see _histogram)
            grid = None
            if images and read.position < self.max_image_layers:
                grid = filter_grid(w)
            norms = weights = pc1 = None
            if hist:
                norms = _histogram(torch.linalg.vector_norm(w.reshape(-1, read.layer.kernel_numel), dim=1))
                weights = _histogram(w)
                pc1 = None if read.drift_counts is None else read.drift_counts[0].tolist()
            self._pending[read.layer.name] = _Extras(norms, weights, pc1, grid)

        return collect

    def write(self, report: Report, history: Sequence[Report], new_alerts: Sequence[Alert],
              reference: Reference | None, *, scalars: dict[str, float], final: bool = False) -> None:
        """Everything of one snapshot in one TensorBoard event (one ``Summary`` of many values:
        a write per value costs about 0.1 ms each, and a snapshot has hundreds)."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        step = int(report.step or 0)
        if not self._layout_done:
            self.layout()
        values: list[Any] = []
        if self.write_scalars:
            values += [Summary.Value(tag=tag, simple_value=float(v)) for tag, v in scalars.items()]
        for name, extras in self._pending.items():
            values += self._layer_extras(name, extras, reference, report)
        self._pending = {}
        if self._images_due(final) and len(history) > 1:  # one column says nothing yet
            values += self._heatmaps(history)
        if values:
            self.writer._get_file_writer().add_summary(Summary(value=values), step)
        if new_alerts:
            self._alerts(new_alerts, step)
        self._count += 1
        if final:  # otherwise the writer's own thread writes it out (a flush waits ~7 ms for it)
            self.writer.flush()

    def _layer_extras(self, name: str, extras: _Extras, reference: Reference | None,
                      report: Report) -> list[Any]:
        values = []
        for tag, h in (("filter_norms", extras.norms), ("weights", extras.weights)):
            if h is not None:
                edges = torch.linspace(h.lo, h.hi if h.hi > h.lo else h.lo + 1.0, _HIST_BINS + 1)
                values.append(_histogram_value(f"filterwatch/{name}/{tag}", h.lo, h.hi, h.num, h.total,
                                               h.total_sq, edges[1:].tolist(), h.counts))
        if extras.pc1 is not None and reference is not None:
            group = _group_of(reference, name)
            if group is not None:
                values.append(self._pc1(name, "current", extras.pc1, group.basis))
                if name not in self._reference_pc1_done:  # constant: logged once
                    values.append(self._pc1(name, "reference", group.basis.hist[0].tolist(), group.basis))
                    self._reference_pc1_done.add(name)
        if extras.grid is not None:
            values.append(_image_value(f"filterwatch_filters/{name}", extras.grid))
        return values

    @staticmethod
    def _pc1(name: str, tag: str, counts: list[float], basis: Any) -> Any:
        """First principal coefficient on the reference's bins."""
        edges = torch.linspace(basis.lo, basis.hi, len(counts) + 1, dtype=torch.float64)
        c = torch.tensor(counts, dtype=torch.float64)
        centres = (edges[:-1] + edges[1:]) / 2
        return _histogram_value(f"filterwatch_drift/{name}/pc1_{tag}", basis.lo, basis.hi,
                                float(c.sum()), float((c * centres).sum()),
                                float((c * centres**2).sum()), edges[1:].tolist(), counts)

    @staticmethod
    def _heatmaps(history: Sequence[Report]) -> list[Any]:
        names = [layer.name for layer in history[-1].layers] if history else []
        values = []
        for m in HEATMAP_MEASURES:
            rows = [[_value(r, name, m) for r in history] for name in names]
            if any(v is not None for row in rows for v in row):
                values.append(_image_value(f"filterwatch_heatmap/{m}", heatmap(rows)))
        return values

    def _alerts(self, alerts: Sequence[Alert], step: int) -> None:
        lines = ["| step | layer | alert | value |", "|---:|---|---|---:|"]
        lines += [f"| {a.step} | `{a.layer}` | {a.message} | {a.value:.3f} |" for a in alerts]
        self.writer.add_text("filterwatch/alerts", "\n".join(lines), step)


def _histogram_value(tag: str, lo: float, hi: float, num: float, total: float, total_sq: float,
                     limits: list[float], counts: list[float]) -> Any:
    from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary

    histo = HistogramProto(min=lo, max=hi, num=num, sum=total, sum_squares=total_sq,
                           bucket_limit=limits, bucket=counts)
    return Summary.Value(tag=tag, histo=histo)


def _png(rgb: torch.Tensor) -> bytes:
    """A ``(H, W, 3)`` uint8 image as PNG bytes: no filter, zlib level 1 (fast, and small for
    these flat-coloured pictures); the standard library only, no imaging package."""
    h, w = int(rgb.shape[0]), int(rgb.shape[1])
    rows = torch.cat([torch.zeros(h, 1, dtype=torch.uint8), rgb.reshape(h, w * 3)], dim=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows.numpy().tobytes(), 1)) + chunk(b"IEND", b""))


def _image_value(tag: str, image: torch.Tensor) -> Any:
    """A ``(3, H, W)`` image in [0, 1] as a summary value, its PNG encoded here (see
    :func:`_png`; a few times faster than ``add_image``'s, no imaging package)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    rgb = (image.detach().to("cpu", torch.float32).clamp(0, 1) * 255).round().to(torch.uint8)
    hwc = rgb.permute(1, 2, 0).contiguous()
    png = Summary.Image(height=int(hwc.shape[0]), width=int(hwc.shape[1]), colorspace=3,
                        encoded_image_string=_png(hwc))
    return Summary.Value(tag=tag, image=png)


def _group_of(reference: Reference, name: str) -> Any:
    """The reference group a per-layer reference keeps for ``name`` (None otherwise)."""
    return reference.groups.get(name) if reference.grouping == "layer" else None


def _value(report: Report, name: str, measure: str) -> float | None:
    for layer in report.layers:
        if layer.name == name:
            return layer.value(measure)
    return None
