"""Issue 27 on a GPU (`make gpu-check`; skipped everywhere else): a snapshot captured as one
CUDA graph and replayed equals the eager snapshot to 1e-6, follows the weights as an
optimizer changes them in place, is captured again when the layer set changes, falls back to
the eager path when capture fails, and adds one host wait per snapshot."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import torch
from torch import nn

from filterwatch.layers import discover_layers
from filterwatch.measure import MeasureOptions
from filterwatch.measure.graph import SnapshotGraph
from filterwatch.reference import Reference
from tests.measure.test_graph import _same

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 64, 3), nn.Conv2d(64, 128, 3), nn.Conv2d(128, 128, 3, groups=128),
                        nn.Conv2d(128, 256, 3), nn.Conv2d(256, 64, 5), nn.Conv2d(64, 512, 3)).cuda()
    with torch.no_grad():
        net[1].weight[:8] = 0.0
    return net


def _pair(net: nn.Module) -> tuple[MeasureOptions, MeasureOptions]:
    ref = Reference.build(net, snapshot=True)
    return MeasureOptions(reference=ref, cuda_graph=True), MeasureOptions(reference=ref)


def test_replay_equals_eager_and_follows_the_optimizer() -> None:
    net = _net()
    fast, slow = _pair(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    layers = discover_layers(net)
    for _ in range(4):
        opt.zero_grad()
        net(torch.randn(2, 3, 32, 32, device="cuda")).square().mean().backward()
        opt.step()
        _same(fast.run(layers), slow.run(layers))
    graph = fast._graph
    assert graph is not None and graph.off is None and graph.captures == 1


def test_a_changed_model_is_captured_again() -> None:
    net = _net()
    fast, slow = _pair(net)
    fast.run(discover_layers(net))
    net = net.to(memory_format=torch.channels_last)
    layers = discover_layers(net)
    _same(fast.run(layers), slow.run(layers))
    assert fast._graph is not None and fast._graph.captures == 2


def test_a_failed_capture_falls_back_with_one_warning() -> None:
    def broken(fn: Any) -> Any:
        raise RuntimeError("capture refused")

    net = _net()
    fast, slow = _pair(net)
    fast._graph = SnapshotGraph(broken)
    layers = discover_layers(net)
    with pytest.warns(UserWarning, match="capture failed"):
        _same(fast.run(layers), slow.run(layers))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _same(fast.run(layers), slow.run(layers))


def test_nonfinite_weights_are_reported_as_eagerly() -> None:
    net = _net()
    fast, slow = _pair(net)
    layers = discover_layers(net)
    fast.run(layers)
    with torch.no_grad():
        net[3].weight[0, 0, 0, 0] = math.nan
    a, b = fast.run(layers), slow.run(layers)
    _same(a, b)
    assert a.layers[3].undefined == b.layers[3].undefined
