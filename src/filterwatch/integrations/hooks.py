"""``watch``: forward hooks for plain PyTorch training loops (no Lightning needed).

Each conv layer's hook reads the *effective* kernel at forward time (``weight_norm``,
``spectral_norm`` and parametrizations already applied) and only layers that actually run are
seen. Every handle is removed when the ``with`` block ends, also on an exception, and no
reference to the model is kept afterwards. Snapshots follow the one
:class:`~filterwatch.monitor.Schedule`, counting forward calls of the model as steps.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError, NoConvLayersError
from ..layers import (
    ConvLayer,
    LayerSelection,
    check_selection,
    discover_layers,
    layer_from_module,
    strip_wrapper_prefix,
)
from ..monitor import AlertRules, Monitor, MonitorViews, Schedule
from ..reference import Reference
from ..report import Report
from .tensorboard import TensorBoardSink

__all__ = ["Watcher", "watch"]


class Watcher(MonitorViews):
    """What ``watch`` yields: the history, alerts and reference of the run so far."""

    def __init__(self, monitor: Monitor, schedule: Schedule, sink: TensorBoardSink | None,
                 order: dict[str, int]) -> None:
        self.monitor = monitor
        self.schedule = schedule
        self.calls = 0
        self._sink = sink
        self._capturing = False
        self._captured: list[ConvLayer] = []
        self._order = order

    @property
    def overhead_s(self) -> float:
        """Seconds spent in snapshots so far."""
        return self.schedule.overhead_s

    # hooks -------------------------------------------------------------------------------
    def _root_pre(self, module: nn.Module, args: Any) -> None:
        if self.calls == 0:
            self.schedule.begin(0)
        self.calls += 1
        self._capturing = self.schedule.due(self.calls - 1)
        self._captured = []

    def _conv_hook(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if self._capturing:
                weight = module.weight  # effective: parametrizations applied
                assert isinstance(weight, torch.Tensor)
                self._captured.append(layer_from_module(
                    name, module, weight.detach(), self._order[name], len(self._order)))
        return hook

    def _root_post(self, module: nn.Module, args: Any, output: Any) -> None:
        if not self._capturing or not self._captured:
            return
        self._capturing = False
        self.snapshot(self._captured, self.calls - 1)
        self._captured = []

    def snapshot(self, layers: Sequence[ConvLayer], step: int, final: bool = False) -> Report:
        """Measure ``layers`` now, as the snapshot of ``step``; log it and place the next one."""
        start = time.perf_counter()
        collect = None if self._sink is None else self._sink.collector(final)
        report, new_alerts = self.monitor.measure(layers, step, final=final, on_kernel=collect)
        metrics = self.monitor.scalars(report)
        metrics["filterwatch/overhead_ms"] = (time.perf_counter() - start) * 1000.0
        if self._sink is not None:
            self._sink.write(report, self.history, new_alerts, self.reference,
                             scalars=metrics, final=final)
        self.schedule.record(step, time.perf_counter() - start)
        return report


@contextmanager
def watch(
    model: nn.Module,
    *,
    every_n_calls: int | None = 100,
    max_overhead: float = 0.01,
    writer: Any = None,
    reference: Reference | str | Path | None = None,
    select: LayerSelection | None = None,
    orthogonality_every: int = 1,
    alert_rules: AlertRules | None = None,
    images_every: int = 10,
) -> Iterator[Watcher]:
    """Watch a model's conv filters during a hand-written training loop.

    A snapshot is taken during forward calls 1, n+1, 2n+1, ... of ``model`` (``n`` =
    ``every_n_calls``; ``None`` places them adaptively within ``max_overhead`` of the time);
    the first one is the drift reference unless ``reference`` is given. With a
    ``SummaryWriter``, scalars, histograms, images and alerts go to TensorBoard.

    Example:
        >>> import torch, filterwatch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.Conv2d(8, 8, 3))
        >>> with filterwatch.watch(net, every_n_calls=2) as w:
        ...     for _ in range(4):
        ...         _ = net(torch.randn(2, 1, 8, 8))
        >>> [r.step for r in w.history], net._forward_hooks == {}
        ([0, 2], True)
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"`model` expected an nn.Module, got {type(model).__name__}")
    schedule = Schedule(every_n_calls, None, max_overhead=max_overhead,
                        names=("every_n_calls", "every_n_epochs"))
    selection = check_selection(select)
    everything = discover_layers(model, select=LayerSelection.everything())
    chosen = {layer.name for layer in everything if selection.accepts(layer.name, layer.kernel_size)}
    if not chosen:
        raise NoConvLayersError(
            f"`model` expected conv layers to watch, got none in {type(model).__name__} "
            "(with this selection)"
        )
    monitor = Monitor(reference=reference, orthogonality_every=orthogonality_every,
                      alert_rules=alert_rules)
    sink = None if writer is None else TensorBoardSink(writer, images_every=images_every)
    watcher = Watcher(monitor, schedule, sink, {layer.name: layer.depth for layer in everything})
    handles = []
    try:
        handles.append(model.register_forward_pre_hook(watcher._root_pre))
        for name, module in model.named_modules():
            short = strip_wrapper_prefix(name)
            if isinstance(module, nn.modules.conv._ConvNd) and short in chosen:
                handles.append(module.register_forward_hook(watcher._conv_hook(short)))
        handles.append(model.register_forward_hook(watcher._root_post))
        yield watcher
    finally:
        for handle in handles:
            handle.remove()
        watcher._captured = []
        if writer is not None:
            writer.flush()
