"""``watch``: forward hooks for plain PyTorch training loops (no Lightning needed).

Each conv layer's hook reads the *effective* kernel at forward time (``weight_norm``,
``spectral_norm`` and parametrizations already applied; for a conv class with its own
``forward``, such as a weight-standardised conv, the weight its convolution op receives), and
only layers that actually run are seen, once per call. Every handle is removed when the
``with`` block ends, also on an exception, and no reference to the model is kept afterwards.
Snapshots follow the one :class:`~filterwatch.monitor.Schedule`, counting forward calls of the
model as steps; a final one is taken when the block ends. As with the callback, a measuring
error warns and stops the watching (``strict=True`` raises it): it never escapes from the
user's ``model(x)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import InputError
from ..integrations.tensorboard import TensorBoardSink
from ..layers import (
    ConvLayer,
    LayerSelection,
    discover_layers,
    has_own_forward,
    layer_from_module,
    strip_wrapper_prefix,
)
from ..monitor import AlertRules, Host, Sink, WatchCore, check_count, turned_off_on_error
from ..reference import Reference

__all__ = ["Watcher", "watch"]


_CONV_OPS = frozenset({
    torch.nn.functional.conv1d, torch.nn.functional.conv2d, torch.nn.functional.conv3d,
    torch.nn.functional.conv_transpose1d, torch.nn.functional.conv_transpose2d,
    torch.nn.functional.conv_transpose3d, torch.conv1d, torch.conv2d, torch.conv3d,
})


class _ConvWeightSpy(TorchFunctionMode):
    """Records the weight the first convolution op receives (the kernel a conv with its own
    ``forward``, e.g. weight standardisation, really convolves with)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight: torch.Tensor | None = None

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if self.weight is None and func in _CONV_OPS:
            w = args[1] if len(args) > 1 else kwargs.get("weight")
            if isinstance(w, torch.Tensor):
                self.weight = w.detach()
        return func(*args, **kwargs)


class _Loop(Host):
    """A forward call of the model in a plain loop: the layers the hooks captured."""

    def __init__(self, event: str, source: str, layers: list[ConvLayer]) -> None:
        super().__init__(event, source)
        self._layers = layers

    def layers(self, selection: LayerSelection) -> list[ConvLayer]:
        return self._layers  # chosen by the selection when the hooks were placed


class Watcher(WatchCore):
    """What ``watch`` yields: the history, alerts and reference of the run so far
    (``disabled`` says why watching stopped, "" while it runs)."""

    _interval_names = ("every_n_calls", "every_n_epochs")

    def __init__(self, model: nn.Module, **arguments: Any) -> None:
        super().__init__(**arguments)
        self.calls = 0
        self._source = type(model).__name__
        self._capturing = False
        self._captured: dict[str, ConvLayer] = {}
        self._order: dict[str, int] = {}  # conv name -> depth among all of the model's convs
        self.names: set[str] = set()  # the watched convs' names
        self._tree: dict[str, int] = {}  # conv name -> id of its module, when hooks were placed
        self._handles: list[Any] = []  # on the convs
        self._spies: dict[str, _ConvWeightSpy] = {}
        self._effective: dict[str, torch.Tensor] = {}  # last kernel seen of own-forward convs

    @property
    def name(self) -> str:
        return "filterwatch.watch"

    # hooks -------------------------------------------------------------------------------
    def place(self, model: nn.Module, hooks: bool = True) -> list[ConvLayer]:
        """(Re)place the hooks on the model's conv modules as they are now (``hooks=False``:
        only take note of them); the watched ones."""
        self.remove()
        everything = discover_layers(model, select=LayerSelection.everything())
        self._order = {layer.name: layer.depth for layer in everything}
        chosen = [layer for layer in everything
                  if self.selection.accepts(layer.name, layer.kernel_size)]
        self.names = {layer.name for layer in chosen}
        self._tree = _conv_tree(model)
        for name, module in model.named_modules() if hooks else ():
            short = strip_wrapper_prefix(name)
            if isinstance(module, nn.modules.conv._ConvNd) and short in self.names:
                if has_own_forward(module):
                    self._handles.append(module.register_forward_pre_hook(self._spy_pre(short)))
                self._handles.append(module.register_forward_hook(self._conv_hook(short), always_call=True))
        return chosen

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _root_pre(self, module: nn.Module, args: Any) -> None:
        if self.calls == 0:
            self.schedule.begin(0)
        self.calls += 1
        self.schedule.decide(self.calls - 1)
        self._capturing = not self.disabled and self.schedule.due(self.calls - 1)
        self._captured = {}
        if self._capturing:
            self._follow_surgery(module)

    def _follow_surgery(self, model: nn.Module, hooks: bool = True) -> None:
        """A conv replaced or added since the hooks were placed (surgery, pruning tools): move
        the hooks to the model's convs as they are now, and say which changed."""
        tree = _conv_tree(model)
        if tree == self._tree:
            return
        changed = sorted(n for n in tree.keys() | self._tree.keys() if tree.get(n) != self._tree.get(n))
        self.place(model, hooks)
        Host().warn(f"{self.name}: conv modules were replaced, added or removed during training "
                    f"({', '.join(changed[:6])}{' ...' if len(changed) > 6 else ''}); the hooks "
                    "follow the model as it is now")

    def _spy_pre(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any) -> None:
            if not self.disabled and name not in self._spies:
                spy = self._spies[name] = _ConvWeightSpy()
                spy.__enter__()  # type: ignore[no-untyped-call]
        return hook

    def _conv_hook(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            spy = self._spies.pop(name, None)
            if spy is not None:
                spy.__exit__(None, None, None)  # type: ignore[no-untyped-call]
                if spy.weight is not None:
                    self._effective[name] = spy.weight
            if self._capturing and name not in self._captured:  # a conv run twice: once
                self._captured[name] = self._layer(name, module)
        return hook

    def _layer(self, name: str, module: nn.Module) -> ConvLayer:
        weight = self._effective.get(name) if has_own_forward(module) else None
        if weight is None:
            param = module.weight  # effective: parametrizations applied
            assert isinstance(param, torch.Tensor)
            weight = param
        return layer_from_module(name, module, weight.detach(), self._order[name], len(self._order))

    def _root_post(self, module: nn.Module, args: Any, output: Any) -> None:
        if not self._capturing or not self._captured:
            return
        self._capturing = False
        self._take(_Loop("the forward call", self._source, list(self._captured.values())),
                   self.calls - 1)
        self._captured = {}

    @turned_off_on_error
    def _take(self, host: Host, step: int) -> None:
        self.snapshot(host, step)

    def _final(self, model: nn.Module) -> None:
        """The snapshot of the weights as the block leaves them (unless the last call's)."""
        if self.calls == 0:
            compiled = hasattr(model, "_orig_mod")
            Host().warn(
                "filterwatch.watch saw no forward call of the model in its block"
                + ("; the model is compiled (torch.compile) and its graph bypasses the hooks: "
                   "call watch() on the module before compiling it" if compiled else
                   "; hint: call model(x) inside the `with` block")
                + ". The weights as they are now are measured once.")
        self._follow_surgery(model, hooks=False)  # the block has ended: no hooks any more
        layers = [self._layer(short, module) for name, module in model.named_modules()
                  if (short := strip_wrapper_prefix(name)) in self.names
                  and isinstance(module, nn.modules.conv._ConvNd)]
        self.end(_Loop("the end of the block", self._source, layers), max(self.calls - 1, 0))


@contextmanager
def watch(
    model: nn.Module,
    *,
    every_n_calls: int | None = None,
    max_overhead: float = 0.01,
    total_calls: int | None = None,
    writer: Any = None,
    reference: Reference | str | Path | None = None,
    select: LayerSelection | None = None,
    orthogonality_every: int = 1,
    alert_rules: AlertRules | None = None,
    images_every: int = 10,
    strict: bool = False,
    spectral: bool = False,
    spectral_every: int = 1,
    history_file: str | None = "filterwatch_history.jsonl",
) -> Iterator[Watcher]:
    """Watch a model's conv filters during a hand-written training loop.

    A snapshot is taken during forward calls 1, n+1, 2n+1, ... of ``model`` (``n`` =
    ``every_n_calls``); by default they are placed adaptively within ``max_overhead`` of the
    time, and, where ``total_calls`` says how many forward calls the loop makes, at most 10 %
    of them apart (the floor, as FilterWatch's). The first one is the drift reference unless
    ``reference`` is given. With a
    ``SummaryWriter``, scalars, histograms, images and alerts go to TensorBoard. When the
    block ends, a final snapshot of the weights as they are then is taken. With a writer, every
    snapshot is also appended to ``history_file`` in its log folder (JSON Lines, as the
    callbacks write it; a file another run left there is kept and a free name taken). A measuring error
    warns and stops the watching (``strict=True`` raises it instead). ``spectral`` adds the
    spectral measures on every ``spectral_every``-th snapshot (see FilterWatch).

    Example:
        >>> import torch, filterwatch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.Conv2d(8, 8, 3))
        >>> with filterwatch.watch(net, every_n_calls=2) as w:
        ...     for _ in range(4):
        ...         _ = net(torch.randn(2, 1, 8, 8))
        >>> [r.step for r in w.history], net._forward_hooks == {}
        ([0, 2, 3], True)
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"`model` expected an nn.Module, got {type(model).__name__}")
    watcher = Watcher(model, every_n_steps=every_n_calls, max_overhead=max_overhead, select=select,
                      reference=reference, orthogonality_every=orthogonality_every,
                      alert_rules=alert_rules, images_every=images_every, strict=strict,
                      spectral=spectral, spectral_every=spectral_every, history_file=history_file)

    def sinks() -> list[Sink]:
        return [] if writer is None else [TensorBoardSink(writer, images_every=images_every,
                                                          affords=watcher.schedule.affords)]

    total = None if total_calls is None else check_count("total_calls", total_calls)
    handles = []
    finished = False
    try:
        chosen = watcher.place(model)
        watcher.start(_Loop("watch", type(model).__name__, chosen), 0, horizon=(total, None),
                      sinks=sinks, log_dir=None if writer is None else Path(writer.log_dir),
                      snapshot=False)  # the first forward call takes the start snapshot
        if watcher.disabled:  # no conv layers (it said so): stay idle
            watcher.remove()
            yield watcher
            return
        handles.append(model.register_forward_pre_hook(watcher._root_pre))
        handles.append(model.register_forward_hook(watcher._root_post))
        yield watcher
        finished = True
    finally:
        watcher.remove()
        for handle in handles:
            handle.remove()
        for spy in watcher._spies.values():  # a forward that raised inside a conv
            spy.__exit__(None, None, None)  # type: ignore[no-untyped-call]
        watcher._spies = {}
        if finished:
            watcher._final(model)
        watcher._captured = {}
        watcher._effective = {}
        if writer is not None:
            writer.flush()


def _conv_tree(model: nn.Module) -> dict[str, int]:
    """Each conv module's name and identity: what changes when surgery replaces one."""
    return {strip_wrapper_prefix(name): id(module) for name, module in model.named_modules()
            if isinstance(module, nn.modules.conv._ConvNd)}
