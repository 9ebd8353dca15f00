"""watch(): forward hooks in a plain PyTorch loop."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.nn.utils import parametrizations
from torch.utils.tensorboard import SummaryWriter

from filterwatch import NoConvLayersError, analyze, watch


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten(),
                         nn.LazyLinear(2))


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _train(model: nn.Module, steps: int) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(4, 1, 8, 8)).sum().backward()
        opt.step()


def test_snapshots_on_schedule_and_equal_to_analyze(tmp_path: Path) -> None:
    model = _net()
    model(torch.randn(1, 1, 8, 8))  # materialise the lazy head
    before = _hook_count(model)
    writer = SummaryWriter(tmp_path)
    with watch(model, every_n_calls=3, writer=writer) as w:
        _train(model, 8)  # calls 1..8; snapshots during calls 1, 4, 7
    writer.close()
    assert _hook_count(model) == before
    assert [r.step for r in w.history] == [0, 3, 6]
    assert w.history[0].layer("2").drift == pytest.approx(0.0)
    acc = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("filterwatch/2/sparsity")] == [0, 3, 6]
    assert "filterwatch_filters/0" in acc.Tags()["images"]


def test_values_match_analyze_of_the_weights_at_that_call() -> None:
    model = _net()
    with watch(model, every_n_calls=1) as w:
        _train(model, 2)
        with torch.no_grad():
            model(torch.randn(1, 1, 8, 8))
    last = w.history[-1]
    want = analyze(model, reference=w.reference)
    for layer in want.layers:
        got = last.layer(layer.name)
        assert got.variance_entropy == pytest.approx(layer.variance_entropy, abs=1e-12)
        assert got.relative_change == pytest.approx(layer.relative_change, abs=1e-12)
        assert got.depth == layer.depth


def test_hooks_removed_on_exception() -> None:
    model = _net()
    model(torch.randn(1, 1, 8, 8))
    before = _hook_count(model)
    with pytest.raises(ValueError, match="boom"), watch(model, every_n_calls=1):
        model(torch.randn(1, 1, 8, 8))
        raise ValueError("boom")
    assert _hook_count(model) == before


def test_no_reference_to_the_model_is_kept() -> None:
    model = _net()
    ref = weakref.ref(model)
    with watch(model, every_n_calls=1) as w:
        model(torch.randn(1, 1, 8, 8))
    del model
    gc.collect()
    assert ref() is None
    assert len(w.history) == 1


def test_effective_kernel_with_parametrization_and_only_layers_that_run() -> None:
    class TwoPaths(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = parametrizations.weight_norm(nn.Conv2d(1, 8, 3))
            self.unused = nn.Conv2d(1, 8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    model = TwoPaths()
    with torch.no_grad():
        model.used.parametrizations.weight.original0.mul_(3.0)  # the g of weight_norm
    with watch(model, every_n_calls=1) as w:
        model(torch.randn(1, 1, 8, 8))
    report = w.history[0]
    assert [layer.name for layer in report.layers] == ["used"]
    effective = model.used.weight.detach()
    assert report.layer("used").weight_norm == pytest.approx(float(effective.double().norm()))


def test_no_conv_layers_and_bad_args() -> None:
    with pytest.raises(NoConvLayersError, match="expected conv layers to watch"), \
            watch(nn.Linear(2, 2)):
        pass
    from filterwatch import InputError

    with pytest.raises(InputError, match="`every_n_calls` expected a positive integer"), \
            watch(_net(), every_n_calls=0):
        pass
