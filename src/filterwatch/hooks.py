"""``watch``: forward hooks for plain PyTorch training loops (no Lightning needed).

Each conv layer's hook reads the *effective* kernel at forward time (``weight_norm``,
``spectral_norm`` and parametrizations already applied) and only layers that actually run are
seen. Every handle is removed when the ``with`` block ends, also on an exception, and no
reference to the model is kept afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .alerts import AlertRules
from .errors import InputError, NoConvLayersError
from .layers import ConvLayer, LayerSelection, discover_layers, layer_from_module, strip_wrapper_prefix
from .monitor import Monitor, MonitorViews
from .reference import Reference
from .report import Report
from .tensorboard import TensorBoardSink

__all__ = ["Watcher", "watch"]


class Watcher(MonitorViews):
    """What ``watch`` yields: the history, alerts and reference of the run so far."""

    def __init__(self, monitor: Monitor, every_n_calls: int, sink: TensorBoardSink | None) -> None:
        self.monitor = monitor
        self.every_n_calls = every_n_calls
        self.calls = 0
        self.overhead_s = 0.0
        self._sink = sink
        self._capturing = False
        self._captured: list[ConvLayer] = []
        self._order: dict[str, int] = {}

    # hooks -------------------------------------------------------------------------------
    def _root_pre(self, module: nn.Module, args: Any) -> None:
        self.calls += 1
        self._capturing = (self.calls - 1) % self.every_n_calls == 0
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
        start = time.perf_counter()
        report, new_alerts = self.monitor.measure(layers, step, final=final)
        metrics = self.monitor.scalars(report)
        metrics["filterwatch/overhead_ms"] = (time.perf_counter() - start) * 1000.0
        if self._sink is not None:
            self._sink.write(report, layers, self.history, new_alerts, self.reference,
                             scalars=metrics, final=final)
        self.overhead_s += time.perf_counter() - start
        return report


@contextmanager
def watch(
    model: nn.Module,
    *,
    every_n_calls: int = 100,
    writer: Any = None,
    reference: Reference | str | Path | None = None,
    kernel_sizes: Sequence[str | int | Sequence[int]] | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    include_pointwise: bool = False,
    orthogonality_every: int = 1,
    alert_rules: AlertRules | None = None,
    images_every: int = 10,
) -> Iterator[Watcher]:
    """Watch a model's conv filters during a hand-written training loop.

    A snapshot is taken during forward calls 1, n+1, 2n+1, ... of ``model`` (``n`` =
    ``every_n_calls``); the first one is the drift reference unless ``reference`` is given.
    With a ``SummaryWriter``, scalars, histograms, images and alerts go to TensorBoard.

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
    if not isinstance(every_n_calls, int) or every_n_calls < 1:
        raise InputError(f"`every_n_calls` expected a positive integer, got {every_n_calls!r}")
    selection = LayerSelection(kernel_sizes, include, exclude, include_pointwise)
    everything = discover_layers(model, include_pointwise=True)
    chosen = {layer.name for layer in selection.filter(everything)}
    if not chosen:
        raise NoConvLayersError(
            f"`model` expected conv layers to watch, got none in {type(model).__name__} "
            "(with this selection)"
        )
    monitor = Monitor(reference=reference, orthogonality_every=orthogonality_every,
                      alert_rules=alert_rules)
    sink = None if writer is None else TensorBoardSink(writer, images_every=images_every)
    watcher = Watcher(monitor, every_n_calls, sink)
    watcher._order = {layer.name: layer.depth for layer in everything}
    handles = []
    try:
        handles.append(model.register_forward_pre_hook(watcher._root_pre))
        for name, module in model.named_modules():
            if isinstance(module, nn.modules.conv._ConvNd) and _clean(name) in chosen:
                handles.append(module.register_forward_hook(watcher._conv_hook(_clean(name))))
        handles.append(model.register_forward_hook(watcher._root_post))
        yield watcher
    finally:
        for handle in handles:
            handle.remove()
        watcher._captured = []
        if writer is not None:
            writer.flush()


def _clean(name: str) -> str:
    return strip_wrapper_prefix(name)

