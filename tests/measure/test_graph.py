"""Issue 27: the captured snapshot, tested on the CPU through the same packing and decoding
as a CUDA graph (``eager_capture``): replay equals the eager engine, replays read the current
weights, a changed layer set captures again, a failed capture falls back with one warning,
and the captured work reads nothing on the host (meta tensors)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from filterwatch.functional.drift import drift_basis
from filterwatch.layers import discover_layers
from filterwatch.measure import MeasureOptions
from filterwatch.measure.graph import GraphWork, SnapshotGraph, _program, eager_capture, graphs_wanted
from filterwatch.reference import Reference

_MEASURES = ("sparsity", "variance_entropy", "variance_entropy_norm", "variance_entropy_clean",
             "orthogonality", "weight_norm", "filter_l1_mean", "filter_l2_mean", "dead_channels",
             "nonfinite", "drift", "relative_change")


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 32, 3), nn.Conv2d(32, 32, 3, groups=32),
                        nn.Conv2d(32, 16, 5), nn.Conv1d(4, 8, 3), nn.Conv2d(16, 1, 3))
    with torch.no_grad():
        net[1].weight[:4] = 0.0  # dead channels and sparse filters
    return net


def _options(net: nn.Module, graph: SnapshotGraph | None) -> MeasureOptions:
    ref = Reference.build(net, snapshot=True)
    options = MeasureOptions(reference=ref, cuda_graph=graph is not None)
    options._graph = graph
    return options


def _move(net: nn.Module, amount: float = 0.05) -> None:
    with torch.no_grad():
        for p in net.parameters():
            p.add_(amount * torch.randn_like(p))


def _same(a: object, b: object) -> None:
    for la, lb in zip(a.layers, b.layers, strict=True):  # type: ignore[attr-defined]
        for key in _MEASURES:
            va, vb = getattr(la, key), getattr(lb, key)
            assert (va is None) == (vb is None), (la.name, key, va, vb)
            if isinstance(va, float):
                assert va == pytest.approx(vb, rel=1e-6, abs=1e-6), (la.name, key)
            else:
                assert va == vb, (la.name, key)
        assert la.undefined == lb.undefined


def test_replay_equals_eager_and_reads_the_current_weights() -> None:
    net = _net()
    graph = SnapshotGraph(eager_capture, devices=("cpu",))
    fast, slow = _options(net, graph), _options(net, None)
    layers = discover_layers(net)
    for _ in range(3):  # in place, as an optimizer updates them: one capture, then replays
        _move(net)
        _same(fast.run(layers), slow.run(layers))
    assert graph.captures == 1 and graph.off is None
    report = fast.run(layers)
    assert all(r.drift is not None and r.relative_change is not None for r in report.layers)


def test_a_changed_layer_set_is_captured_again() -> None:
    net = _net()
    graph = SnapshotGraph(eager_capture, devices=("cpu",))
    fast, slow = _options(net, graph), _options(net, None)
    fast.run(discover_layers(net))
    with torch.no_grad():  # a new tensor (as .to(), resharding or channels_last make)
        net[1].weight = nn.Parameter(net[1].weight.detach().clone().to(memory_format=torch.channels_last))
    layers = discover_layers(net)
    _same(fast.run(layers), slow.run(layers))
    assert graph.captures == 2


def test_a_failed_capture_warns_once_and_the_eager_path_measures() -> None:
    def broken(fn: object) -> object:
        raise RuntimeError("operation not permitted when stream is capturing")

    net = _net()
    graph = SnapshotGraph(broken, devices=("cpu",))  # type: ignore[arg-type]
    fast, slow = _options(net, graph), _options(net, None)
    layers = discover_layers(net)
    with pytest.warns(UserWarning, match="capture failed .*RuntimeError"):
        _same(fast.run(layers), slow.run(layers))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _same(fast.run(layers), slow.run(layers))  # off for the run: no second warning
    assert graph.off is not None and graph.captures == 0


def test_kernels_made_afresh_at_every_snapshot_turn_graphs_off() -> None:
    net = _net()
    graph = SnapshotGraph(eager_capture, devices=("cpu",))
    fast = _options(net, graph)
    with pytest.warns(UserWarning, match="new tensors at every snapshot"):
        for _ in range(3):
            for m in net:
                m.weight = nn.Parameter(m.weight.detach().clone())
            fast.run(discover_layers(net))
    assert graph.off is not None and graph.captures == 2


def test_nonfinite_layers_fall_back_to_drift_and_say_why() -> None:
    net = _net()
    graph = SnapshotGraph(eager_capture, devices=("cpu",))
    fast, slow = _options(net, graph), _options(net, None)
    with torch.no_grad():
        net[3].weight[0, 0, 0, 0] = math.nan
    layers = discover_layers(net)
    a, b = fast.run(layers), slow.run(layers)
    _same(a, b)
    assert a.layers[3].drift is None and "non-finite" in a.layers[3].undefined["drift"]


def test_the_captured_work_reads_nothing_on_the_host() -> None:
    """Meta tensors have no values: any host read (``.item()``, a mask's size, ``bincount``)
    raises, so this runs only if the work is capturable as a graph."""
    shapes = [(16, 8, 3, 3), (16, 8, 3, 3), (32, 1, 3, 3), (8, 4, 5, 5)]
    real = [torch.randn(s) for s in shapes]
    bases = tuple(drift_basis(w) for w in real[:3])
    meta = [w.to("meta") for w in real]
    work = GraphWork(batches=(((0, 1, 2), True), ((3,), True)),
                     drift=(((0, 1, 2), tuple(b._replace(mean=b.mean.to("meta"), basis=b.basis.to("meta"))
                                              for b in bases)),),
                     change=((0, real[0].to("meta")),), eps=0.01, orthogonality=True, float64=False)
    _program(work, meta)  # the warm-up before capture: layouts, plans and frames are made here
    with _NoHostData():
        outs = _program(work, meta)
    assert outs and all(t.device.type == "meta" for t in outs)


class _NoHostData(TorchDispatchMode):
    """Raises when an operation takes a CPU tensor while the work runs on the meta device: a
    copy from the host, which a CUDA graph cannot capture (what it made beforehand, such as
    cached layouts and frames, lives on the device already)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        leaves = [a for a in tree_leaves((args, kwargs or {})) if isinstance(a, torch.Tensor)]
        if any(t.device.type == "cpu" for t in leaves):
            raise AssertionError(f"{func} takes host data in the captured work")
        return func(*args, **(kwargs or {}))


def test_the_flag_is_off_by_default_and_changes_nothing_on_a_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FILTERWATCH_CUDA_GRAPH", raising=False)
    assert not graphs_wanted()
    monkeypatch.setenv("FILTERWATCH_CUDA_GRAPH", "1")
    assert graphs_wanted()
    net = _net()
    options = _options(net, None)
    options.cuda_graph = True  # its graph takes CUDA tensors only: a CPU model is measured eagerly
    layers = discover_layers(net)
    _same(options.run(layers), _options(net, None).run(layers))
    assert options._graph is not None and options._graph.captures == 0
