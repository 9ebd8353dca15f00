"""watch(): forward hooks in a plain PyTorch loop."""

from __future__ import annotations

import gc
import itertools
import warnings
import weakref
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.nn.utils import parametrizations
from torch.utils.tensorboard import SummaryWriter

from filterwatch import InputError, analyze, watch


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
        _train(model, 8)  # calls 1..8; snapshots during calls 1, 4, 7, and at the end
    writer.close()
    assert _hook_count(model) == before
    assert [r.step for r in w.history] == [0, 3, 6, 7]
    assert w.history[0].layer("2").drift == pytest.approx(0.0)
    acc = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("filterwatch/2/nonfinite")] == [0, 3, 6, 7]
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
    with pytest.warns(UserWarning, match="found no conv layers to watch"), \
            watch(nn.Linear(2, 2)) as idle:
        nn.Linear(2, 2)(torch.randn(1, 2))
    assert idle.history == [] and idle.disabled
    from filterwatch import InputError

    with pytest.raises(InputError, match="`every_n_calls` expected a positive integer"), \
            watch(_net(), every_n_calls=0):
        pass


# issue 13, items 10 and 16 ---------------------------------------------------------------
class _StdConv(nn.Conv2d):
    """Weight standardisation (as timm's StdConv2d): convolves with a kernel that is not the
    parameter."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / (w.std(dim=(1, 2, 3), keepdim=True) + 1e-5)
        return nn.functional.conv2d(x, w, self.bias, self.stride, self.padding)


def test_a_weight_standardised_conv_is_measured_on_the_kernel_it_convolves_with() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(_StdConv(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))
    with torch.no_grad():
        model[0].weight.add_(torch.linspace(0, 3, 8).reshape(8, 1, 1, 1))  # per-filter offsets
    with watch(model, every_n_calls=1) as w:
        model(torch.randn(1, 1, 8, 8))
    w_std = model[0].weight.detach()
    mean, std = w_std.mean(dim=(1, 2, 3), keepdim=True), w_std.std(dim=(1, 2, 3), keepdim=True)
    w_std = (w_std - mean) / (std + 1e-5)
    want = analyze({"0.weight": w_std}).layer("0")
    with pytest.warns(UserWarning, match="measured the parameter"):
        raw = analyze(model).layer("0")
    got = w.history[0].layer("0")
    assert got.weight_norm == pytest.approx(want.weight_norm, rel=1e-6)
    assert got.weight_norm != pytest.approx(raw.weight_norm, rel=1e-3)
    assert got.variance_entropy == pytest.approx(want.variance_entropy, abs=1e-9)


def test_final_snapshot_when_the_block_ends() -> None:
    model = _net()
    with watch(model, every_n_calls=10) as w:
        _train(model, 25)  # snapshots during calls 1, 11, 21, then the final one
    assert [r.step for r in w.history] == [0, 10, 20, 24]
    want = analyze(model, reference=w.reference)
    assert w.history[-1].layer("2").variance_entropy == pytest.approx(
        want.layer("2").variance_entropy, abs=1e-12)


def test_a_conv_that_runs_twice_per_forward_is_listed_once() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(self.conv(x))

    model = Twice()
    with watch(model, every_n_calls=1) as w:
        model(torch.randn(1, 4, 8, 8))
    assert [layer.name for layer in w.history[0].layers] == ["conv"]


def test_a_block_where_the_model_never_runs_warns_and_measures_once() -> None:
    model = _net()
    model(torch.randn(1, 1, 8, 8))
    with pytest.warns(UserWarning, match="saw no forward call"), watch(model) as w:
        pass
    assert [r.step for r in w.history] == [0]


def test_a_model_compiled_before_watch_is_named_in_the_warning() -> None:
    model = _net()
    model(torch.randn(1, 1, 8, 8))
    compiled = torch.compile(model, backend="eager")
    compiled(torch.randn(1, 1, 8, 8))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with watch(compiled, every_n_calls=1) as w:
            compiled(torch.randn(1, 1, 8, 8))
    if w.calls == 0:  # the compiled graph bypassed the hooks: said, and measured once
        assert any("torch.compile" in str(c.message) for c in caught)
    assert len(w.history) >= 1


def test_a_measuring_error_never_escapes_from_the_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    from filterwatch.monitor import Monitor

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("measuring failed")

    monkeypatch.setattr(Monitor, "measure", broken)
    model = _net()
    with pytest.warns(UserWarning, match="watch disabled itself after an error in the forward call"), \
            watch(model, every_n_calls=1) as w:
        out = model(torch.randn(2, 1, 8, 8))  # the user's forward still returns
        model(torch.randn(2, 1, 8, 8))
    assert out.shape == (2, 2) and "measuring failed" in w.disabled
    with pytest.raises(RuntimeError, match="measuring failed"), watch(model, every_n_calls=1, strict=True):
        model(torch.randn(2, 1, 8, 8))


def test_analyze_says_which_kernel_it_measured_for_an_own_forward_conv() -> None:
    model = nn.Sequential(_StdConv(1, 8, 3), nn.Conv2d(8, 8, 3))
    with pytest.warns(UserWarning, match="measured the parameter"):
        report = analyze(model)
    assert report.settings["measured_parameter_not_op_weight"] == ["0"]


def test_alerts_are_printed_as_one_line_like_the_callbacks(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    model = _net()
    model(torch.randn(1, 1, 8, 8))
    with caplog.at_level(logging.WARNING, logger="filterwatch.alerts"):
        with watch(model, every_n_calls=1) as w:
            model(torch.randn(2, 1, 8, 8))
            with torch.no_grad():
                model[2].weight.zero_()  # the layer dies between two calls
            model(torch.randn(2, 1, 8, 8))
    lines = [r.getMessage() for r in caplog.records if r.name == "filterwatch.alerts"]
    assert w.alerts and len(lines) == len(w.alerts)
    assert lines[0].startswith("filterwatch alert at step 1: 2: ")


def test_total_calls_sets_the_floor_of_the_adaptive_default() -> None:
    """watch() at its defaults with the loop's length: snapshots at most 10 % of it apart."""
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Conv2d(8, 8, 3))
    with watch(net, total_calls=100) as w:
        for _ in range(100):
            net(torch.randn(2, 1, 8, 8))
    steps = [r.step for r in w.history]
    assert w.schedule.floor_gap == 10 and steps[0] == 0 and steps[-1] == 99
    assert all(b - a <= 10 for a, b in itertools.pairwise(steps))
    with pytest.raises(InputError, match="`total_calls` expected an integer >= 1, got 0"):
        with watch(net, total_calls=0):
            pass


def test_with_a_writer_the_history_file_is_written_and_never_truncated(tmp_path: Path) -> None:
    """As the callbacks do: every snapshot, one JSON report per line, next to the events; an
    earlier run's file in the same folder is kept."""
    from torch.utils.tensorboard import SummaryWriter

    from filterwatch.report import Report

    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Conv2d(8, 8, 3))
    earlier = tmp_path / "filterwatch_history.jsonl"
    earlier.write_text("an earlier run's line\n")
    writer = SummaryWriter(str(tmp_path))
    with watch(net, every_n_calls=2, writer=writer) as w:
        for _ in range(4):
            net(torch.randn(2, 1, 8, 8))
    writer.close()
    assert earlier.read_text() == "an earlier run's line\n"
    lines = (tmp_path / "filterwatch_history-2.jsonl").read_text().splitlines()
    assert [Report.from_json(line).step for line in lines] == [r.step for r in w.history] == [0, 2, 3]


def test_a_conv_replaced_or_added_mid_run_is_watched_from_then_on() -> None:
    """Surgery and pruning tools replace convs (``net[2] = nn.Conv2d(...)``): the hooks follow
    the model as it is, with a warning that names what changed, and a replacement's NaN alerts."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(),
                        nn.Flatten(), nn.LazyLinear(2))
    net(torch.randn(1, 1, 8, 8))
    with pytest.warns(UserWarning, match=r"conv modules were replaced.*\b2\b"), \
            watch(net, every_n_calls=1) as w:
        net(torch.randn(2, 1, 8, 8))
        net[2] = nn.Conv2d(8, 8, 3)
        with torch.no_grad():
            net[2].weight[0] = float("nan")
        net(torch.randn(2, 1, 8, 8))
    assert [layer.name for layer in w.history[-1].layers] == ["0", "2"]
    assert w.history[1].layer("2").nonfinite == 72
    assert any(a.kind == "nonfinite" and a.layer == "2" for a in w.alerts)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
