"""The gate's defaults are the calibration table's (benchmarks/calibration.py): every healthy
model passes, every must-fail damage fails, and each default is the limit the table derives."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from filterwatch import analyze
from filterwatch.testing import assert_filters_healthy
from tests import calibration_models as cm


def _benchmark() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "calibration.py"
    spec = importlib.util.spec_from_file_location("calibration_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_defaults_are_the_calibration_tables() -> None:
    bench = _benchmark()
    result = bench.run()
    assert bench.problems(result) == []
    derived = result["derived"]
    assert derived["max_dead_channel_share"]["must_fail_least"] == pytest.approx(0.5)
    assert derived["max_sparsity"]["must_fail_least"] >= 0.75
    assert "| `max-dead-channel-share` | 0.030 | 0.500 | 0.25 | 0.25 |" in bench.markdown(result)


def test_assert_filters_healthy_at_its_defaults() -> None:
    """Issue 22: 115 of 128 channels dead passed `assert_filters_healthy()`; now it fails."""
    model = cm.trained("bn_sgd")
    assert_filters_healthy(model.state)
    half = cm.damaged(model, cm.DAMAGES[1])  # 50 % of the output channels zeroed
    with pytest.raises(AssertionError, match=r"dead_channel_share = 0\.5 \(64 of 128 output channels\)"):
        assert_filters_healthy(half)
    assert analyze(half).layer("7").dead_channels == 64
