"""Reports to TensorBoard: scalars, a custom-scalars layout, histograms, pictures, alerts.

Works on any ``torch.utils.tensorboard.SummaryWriter`` (Lightning's ``TensorBoardLogger``
exposes one as ``logger.experiment``). Heatmaps (with layer names, steps and a colour bar on
fixed scales), PC1 plots and filter grids are drawn straight into pixels in a few
milliseconds (:mod:`filterwatch.integrations.raster`, :func:`~filterwatch.integrations.figures.filter_grid`),
on the image snapshots only.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch

from ..measure import KernelRead
from ..monitor import LAYER_TAG, MODEL_TAG, Alert, Sink, Snapshot
from ..reference import Reference
from ..report import Report
from ..report.registry import get, select
from ..report.text import md_cell, md_code
from .figures import filter_grid
from .histograms import Histogram, histogram_terms, histogram_value, histograms
from .raster import Picture, encode_png, heatmap_picture, pc1_picture

__all__ = ["HEATMAP_MEASURES", "TensorBoardSink", "layout_charts"]

HEATMAP_MEASURES = tuple(m.key for m in select(heatmap=True))
_HEATMAP_MIN = 3  # snapshots before a heatmap says more than the scalars
_HEATMAP_GUESS_S = 0.005  # seconds per heatmap before one was timed (2-4 ms measured)


class _Extras(NamedTuple):
    """What TensorBoard gets of one layer at one snapshot, taken from the snapshot's read."""

    norms: torch.Tensor | None  # histogram terms, on the kernel's device (see histograms.py)
    weights: torch.Tensor | None
    pc1: list[float] | None
    grid: torch.Tensor | None


class TensorBoardSink(Sink):
    """Writes snapshots to a ``SummaryWriter``: the scalars (``scalars=False`` leaves them to
    another sink) and the extras, in one event per snapshot.

    Per-kernel extras (histograms of filter norms and weights, the first principal
    coefficient against the reference's, filter images) are taken while the snapshot holds
    each kernel: pass :meth:`collector` as the snapshot's ``on_kernel``, then :meth:`write`.
    They are computed on the kernel's device and only a few numbers reach the host, all the
    layers' histograms in one transfer; the sink never reads a kernel itself.

    ``affords(seconds)`` (the schedule's :meth:`~filterwatch.monitor.Schedule.affords`) decides
    whether the heatmaps, the costliest extra, fit the overhead budget now; without it they
    are drawn whenever due. ``fallback`` takes its place when its disk
    fails (see :class:`~filterwatch.monitor.Sink`).
    """

    what = "TensorBoard extras"

    def __init__(self, writer: Any, *, scalars: bool = True, images_every: int = 10,
                 histograms: bool = True, max_image_layers: int | None = None,
                 filter_images: bool = True, affords: Callable[[float], bool] | None = None,
                 fallback: Sink | None = None) -> None:
        self.writer = writer
        self.fallback = fallback
        self.filter_images = filter_images
        self.write_scalars = scalars
        self.images_every = images_every
        self.histograms = histograms
        self.max_image_layers = max_image_layers
        self._layout_done = False
        self._count = 0
        self._pending: dict[str, _Extras] = {}
        self._alerts_seen = False
        self.affords = affords
        self.heatmap_s = _HEATMAP_GUESS_S * len(HEATMAP_MEASURES)  # the last drawing's cost
        self.pc1_s = _HEATMAP_GUESS_S  # the last PC1 picture's cost
        self.heatmaps_skipped = 0
        self._heatmaps_written = False  # by the last write
        self._skip_note: tuple[int, str] | None = None  # written with the next snapshot

    def resume(self, step: int) -> None:
        """After a resume from a checkpoint taken at ``step``: tell TensorBoard to drop what
        the crashed run wrote for later steps (a SessionLog START at ``step + 1``), so the
        resumed run's values are the only ones at those steps."""
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog

        event = Event(step=step + 1, wall_time=time.time(),
                      session_log=SessionLog(status=SessionLog.START))
        self.writer._get_file_writer().add_event(event)
        self.writer.flush()

    def layout(self, spectral: bool = False, layers: Sequence[str] = ()) -> None:
        """The custom-scalars layout (see :func:`layout_charts`)."""
        self.writer.add_custom_scalars(layout_charts(spectral, layers))
        self._layout_done = True

    def _images_due(self, final: bool) -> bool:
        return final or self._count % self.images_every == 0

    def collector(self, final: bool = False) -> Callable[[KernelRead], None] | None:
        """The ``on_kernel`` hook of the next snapshot: keeps this sink's extras of each kernel."""
        self._pending = {}
        images = self.filter_images and self._images_due(final)

        def collect(read: KernelRead) -> None:
            w = read.weight
            hist = self.histograms  # non-finite weights give no histogram (see _histogram)
            grid = None
            if images and (self.max_image_layers is None or read.position < self.max_image_layers):
                grid = filter_grid(w)
            norms = weights = None
            if hist:
                rows = w.reshape(-1, read.layer.kernel_numel)
                norms = histogram_terms(torch.linalg.vector_norm(rows, dim=1))
                weights = histogram_terms(w)
            pc1 = None
            if images and read.drift_counts is not None:
                pc1 = read.drift_counts[0].tolist()
            self._pending[read.layer.name] = _Extras(norms, weights, pc1, grid)

        return collect

    def write(self, snapshot: Snapshot) -> None:
        """Everything of one snapshot in one TensorBoard event (one ``Summary`` of many values:
        a write per value costs about 0.1 ms each, and a snapshot has hundreds); the
        schedule's notes go to ``filterwatch/notes``. The final snapshot always has the
        heatmaps, whatever the budget."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        report, history, final = snapshot.report, snapshot.history, snapshot.final
        new_alerts, reference, notes = snapshot.alerts, snapshot.reference, snapshot.notes
        step = snapshot.step
        self._write_skip_note()
        if not self._layout_done:
            self.layout(bool(report.settings.get("spectral")), [layer.name for layer in report.layers])
        values: list[Any] = []
        if self.write_scalars:
            values += [Summary.Value(tag=tag, simple_value=float(v)) for tag, v in snapshot.scalars.items()]
        pc1: list[tuple[str, list[float], list[float]]] = []
        found = histograms([t for e in self._pending.values() for t in (e.norms, e.weights)])
        pairs = zip(self._pending.items(), found[::2], found[1::2], strict=True)
        for (name, extras), norms, weights in pairs:
            values += self._layer_extras(name, extras, norms, weights)
            group = None if extras.pc1 is None or reference is None else _group_of(reference, name)
            if group is not None and extras.pc1 is not None:
                pc1.append((name, extras.pc1, group.basis.hist[0].tolist()))
        self._pending = {}
        if pc1 and (final or self.affords is None or self.affords(self.pc1_s)):
            start = time.perf_counter()  # current on the reference, one picture of every layer
            values.append(_picture_value(PC1_TAG, pc1_picture(pc1)))
            self.pc1_s = time.perf_counter() - start
        self._heatmaps_written = False
        if final or (self._images_due(final) and len(history) >= _HEATMAP_MIN):  # a trend needs columns
            values += self._budgeted_heatmaps(history, step, final)
        if values:
            self.writer._get_file_writer().add_summary(Summary(value=values), step)
        for note in notes:
            self.writer.add_text("filterwatch/notes", note, step)
        if new_alerts:
            self._alerts(new_alerts, step)
        elif not self._alerts_seen and (self._count == 0 or final):
            self.writer.add_text(ALERTS_TAG, "no alerts" + (" in this run" if final else " so far"),
                                 step)
        self._count += 1
        if final:  # otherwise the writer's own thread writes it out (a flush waits ~7 ms for it)
            self.writer.flush()

    @staticmethod
    def _layer_extras(name: str, extras: _Extras, norms: Histogram | None, weights: Histogram | None
                      ) -> list[Any]:
        values = []
        for tag, h in (("filter_norms", norms), ("weights", weights)):
            if h is not None:
                values.append(histogram_value(f"filterwatch/{name}/{tag}", h))
        if extras.grid is not None:
            values.append(_image_value(f"filterwatch_filters/{name}", extras.grid))
        return values

    def _budgeted_heatmaps(self, history: Sequence[Report], step: int, final: bool) -> list[Any]:
        """The heatmaps if the budget affords their last cost (the final ones always);
        otherwise a note, once. The note waits for the next snapshot: when the skipped one was
        the last, :meth:`finish` draws them at that step and the note would be wrong."""
        if not final and self.affords is not None and not self.affords(self.heatmap_s):
            if not self.heatmaps_skipped:
                self._skip_note = (step, (
                    f"heatmaps skipped at step {step}: drawing them "
                    f"(~{self.heatmap_s * 1000:.0f} ms) would exceed the overhead budget of this "
                    "short run; the final snapshot has them. Give every_n_steps (or a larger "
                    "max_overhead) to have them at every images_every-th snapshot"))
            self.heatmaps_skipped += 1
            return []
        start = time.perf_counter()
        values = self._heatmaps(history)
        self.heatmap_s = time.perf_counter() - start
        self._heatmaps_written = bool(values)
        return values

    def finish(self, history: Sequence[Report]) -> None:
        """Training ended at the step of the last snapshot (no final one is taken then): the
        heatmaps of the whole run, unless that snapshot drew them."""
        if history and not self._alerts_seen:  # the run's last word on alerts
            self.writer.add_text(ALERTS_TAG, "no alerts in this run", int(history[-1].step or 0))
        if self._heatmaps_written or not history:
            self._write_skip_note()
            self.writer.flush()
            return
        from tensorboard.compat.proto.summary_pb2 import Summary

        if self._skip_note is not None and self._skip_note[0] == int(history[-1].step or 0):
            self._skip_note = None  # skipped at this very step, and drawn there now
        self._write_skip_note()
        values = self._heatmaps(history)
        if values:
            self.writer._get_file_writer().add_summary(Summary(value=values), int(history[-1].step or 0))
        self._heatmaps_written = True
        self.writer.flush()

    def _write_skip_note(self) -> None:
        if self._skip_note is not None:
            step, note = self._skip_note
            self._skip_note = None
            self.writer.add_text("filterwatch/notes", note, step)

    @staticmethod
    def _heatmaps(history: Sequence[Report]) -> list[Any]:
        values = []
        for key in HEATMAP_MEASURES:
            m = get(key)
            if any(layer.value(key) is not None for r in history for layer in r.layers):
                values.append(_picture_value(HEATMAP_TAG.format(measure=key), heatmap_picture(history, m)))
        return values

    def _alerts(self, alerts: Sequence[Alert], step: int) -> None:
        self._alerts_seen = True
        lines = ["| step | layer | alert | value |", "|---:|---|---|---:|"]
        lines += [f"| {a.step} | {md_code(a.layer)} | {md_cell(a.message)} | {a.value:.3f} |"
                  for a in alerts]
        self.writer.add_text(ALERTS_TAG, "\n".join(lines), step)


def _image_value(tag: str, image: torch.Tensor) -> Any:
    """A ``(3, H, W)`` image in [0, 1] as a summary value, its PNG encoded here (see
    :func:`~filterwatch.integrations.raster.encode_png`; a few times faster than ``add_image``'s)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    rgb = (image.detach().to("cpu", torch.float32).clamp(0, 1) * 255).round().to(torch.uint8)
    hwc = rgb.permute(1, 2, 0).contiguous()
    png = Summary.Image(height=int(hwc.shape[0]), width=int(hwc.shape[1]), colorspace=3,
                        encoded_image_string=encode_png(hwc))
    return Summary.Value(tag=tag, image=png)


def _picture_value(tag: str, picture: Picture) -> Any:
    """A drawn picture as a summary value."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    h, w = int(picture.rgb.shape[0]), int(picture.rgb.shape[1])
    return Summary.Value(tag=tag, image=Summary.Image(height=h, width=w, colorspace=3,
                                                      encoded_image_string=picture.png()))


GROUP = 6  # layers per chart: few enough lines that each can be told apart
HEATMAP_TAG = "filterwatch/heatmaps/{measure}"  # the "filterwatch" image group sorts first
# the Text tab sorts by tag: "alerts/..." comes before the "args" a Trainer dumps there
ALERTS_TAG = "alerts/filterwatch"
PC1_TAG = "filterwatch/pc1"


def layout_charts(spectral: bool = True, layers: Sequence[str] = ()) -> dict[str, dict[str, list[Any]]]:
    """The custom-scalars layout: per measure a category ``filterwatch: <label>`` with one chart
    per group of at most :data:`GROUP` consecutive layers (titled by the layers it holds, so a
    line can be told from its neighbours; one chart of every layer without ``layers``), and
    the filter-weighted model means in ``filterwatch: model``. Anchored regexes, so
    ``variance_entropy`` does not also draw ``variance_entropy_norm``. Drift is shown against
    its noise floor (``drift_ratio``: 1 = what sampling alone gives). The spectral measures'
    charts only when they are computed (``spectral``).

    Example:
        >>> charts = layout_charts(False, ["a", "b"])
        >>> charts["filterwatch: sparsity"]["sparsity: a, b"]
        ['Multiline', ['^filterwatch/(?:a|b)/sparsity$']]
    """
    shown = [m for m in select() if (spectral or not m.spectral) and m.chart is not None]
    groups = [list(layers[i:i + GROUP]) for i in range(0, len(layers), GROUP)]
    out: dict[str, dict[str, list[Any]]] = {}
    for m in shown:
        if not groups:
            out[f"filterwatch: {m.label}"] = {m.label: ["Multiline", [_tag_regex(LAYER_TAG, ".+", m.key)]]}
            continue
        out[f"filterwatch: {m.label}"] = {
            f"{m.label}: {_title(group)}": ["Multiline", [_tag_regex(
                LAYER_TAG, "(?:" + "|".join(re.escape(n) for n in group) + ")", m.key)]]
            for group in groups}
    out["filterwatch: model"] = {m.label: ["Multiline", [_tag_regex(MODEL_TAG, None, m.key)]]
                                 for m in shown if m.chart == "both"}
    return out


def _title(group: Sequence[str]) -> str:
    return ", ".join(group) if len(", ".join(group)) <= 60 else f"{group[0]} … {group[-1]}"


def _tag_regex(template: str, layer: str | None, measure: str) -> str:
    fields = {"measure": re.escape(measure)} | ({} if layer is None else {"layer": layer})
    return "^" + template.format(**fields) + "$"


def _group_of(reference: Reference, name: str) -> Any:
    """The reference group a per-layer reference keeps for ``name`` (None otherwise)."""
    return reference.groups.get(name) if reference.grouping == "layer" else None
