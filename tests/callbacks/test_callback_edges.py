"""Issue 13, items 7, 13, 14: NaN weights at fit start, 1-filter convs and zero-initialised
convs never crash a run, and never send inf/NaN to a logger."""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from filterwatch import FilterGate, FilterWatch, Reference, analyze
from filterwatch.callbacks import GateStoppingReason
from tests.lightning_helpers import TinyNet, loader, trainer

pytestmark = pytest.mark.filterwarnings("ignore:FilterWatch. the trainer has no logger")


class _Recorder:
    """A minimal Lightning logger that keeps every metric it is given."""

    def __init__(self) -> None:
        self.metrics: list[dict[str, float]] = []

    def __getattr__(self, name: str) -> Any:
        from lightning.pytorch.loggers import CSVLogger

        return getattr(CSVLogger, name, None)


class _NaNFromStart(TinyNet):
    def __init__(self) -> None:
        super().__init__(lr=0.0)
        with torch.no_grad():
            self.body[2].weight[0, 0, 0, 0] = float("nan")


class _Odd(TinyNet):
    """A 1-filter conv and a zero-initialised conv beside ordinary ones."""

    def __init__(self) -> None:
        super().__init__(lr=0.05)
        self.body = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(16, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 2))
        with torch.no_grad():
            self.body[2].weight.zero_()


@pytest.mark.slow
def test_gate_stops_at_fit_start_on_nan_weights_instead_of_crashing(tmp_path: Path) -> None:
    gate = FilterGate(every_n_steps=2, patience=3)
    tr = trainer(tmp_path, [gate], max_epochs=1)
    tr.fit(_NaNFromStart(), loader())
    assert gate.stopping_reason is GateStoppingReason.RULES_FAILED
    assert gate.stopped_step == 0 and "nonfinite" in (gate.stopping_reason_message or "")


@pytest.mark.slow
def test_watch_warns_on_nan_weights_at_fit_start_and_keeps_measuring(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    watch = FilterWatch(every_n_steps=2)
    with caplog.at_level(logging.WARNING, logger="filterwatch.alerts"):
        trainer(tmp_path, [watch], max_epochs=1).fit(_NaNFromStart(), loader())
    assert any("non-finite" in r.getMessage() for r in caplog.records)
    assert not watch.disabled and len(watch.history) >= 4


def test_reference_build_skips_a_one_filter_layer_and_measures_the_rest() -> None:
    net = _Odd()
    ref = Reference.build(net.body)
    assert "5" in ref.skipped and "at least 2 filters" in ref.skipped["5"]
    report = analyze(net.body, reference=ref)
    assert report.layer("0").drift is not None
    assert report.layer("5").drift is None and "at least 2 filters" in report.layer("5").undefined["drift"]


def test_zero_initialised_layer_gets_null_drift_and_change_with_a_reason() -> None:
    net = _Odd()
    ref = Reference.build(net.body, snapshot=True)
    with torch.no_grad():
        net.body[2].weight.normal_()  # the layer learns
    layer = analyze(net.body, reference=ref).layer("2")
    assert layer.drift is None and "do not vary" in layer.undefined["drift"]
    assert layer.relative_change is None and "all zero" in layer.undefined["relative_change"]


@pytest.mark.slow
def test_odd_layers_do_not_disable_the_watch_and_no_logger_gets_inf_or_nan(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import CSVLogger

    logged: list[dict[str, float]] = []

    class Spy(CSVLogger):
        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            logged.append(dict(metrics))
            super().log_metrics(metrics, step)

    watch = FilterWatch(every_n_steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer(tmp_path, [watch], logger=Spy(tmp_path), max_epochs=1).fit(_Odd(), loader())
    assert not watch.disabled and len(watch.history) >= 4
    values = [v for m in logged for v in m.values()]
    assert values and all(math.isfinite(v) for v in values)
    last = watch.history[-1].layer("body.2")
    assert last.drift is None and last.relative_change is None and last.undefined["relative_change"]


def test_a_layer_named_model_is_not_overwritten_by_the_summary() -> None:
    from filterwatch.monitor import Monitor

    net = nn.Module()
    net.model = nn.Conv2d(3, 8, 3)  # type: ignore[assignment]
    net.other = nn.Conv2d(8, 8, 3)  # type: ignore[assignment]
    report = analyze(net)
    scalars = Monitor.scalars(report)
    layer_value = report.layer("model").variance_entropy
    assert scalars["filterwatch/model/variance_entropy"] == pytest.approx(layer_value)
    assert scalars["filterwatch_model/variance_entropy"] == pytest.approx(
        report.summary["mean"]["variance_entropy"])
    layer_tags = [k for k in scalars if k.startswith("filterwatch/")]
    assert len(layer_tags) == len(set(layer_tags))
