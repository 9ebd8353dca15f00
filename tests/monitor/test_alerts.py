"""Training-time alerts: a layer that blew up relative to its first snapshot."""

from __future__ import annotations

import pytest
import torch

from filterwatch import InputError, analyze
from filterwatch.monitor import AlertRules, AlertTracker
from tests.trained import trained_state


def _tracker_after(factor: float, rules: AlertRules | None = None) -> list[str]:
    tracker = AlertTracker(rules or AlertRules())
    start = trained_state()
    tracker.update(analyze(start))
    grown = {k: v * factor if k == "2.weight" else v for k, v in start.items()}
    return [a.message for a in tracker.update(analyze(grown)) if a.kind == "blew_up"]


def test_weights_ten_times_larger_alert_with_a_hint() -> None:
    (message,) = _tracker_after(10.0)
    assert message.startswith("2: weight norm grew 10x")
    assert "learning rate too high" in message and "loss scale" in message
    assert _tracker_after(9.0) == []  # below the factor: quiet
    assert _tracker_after(4.0, AlertRules(weight_growth=3.0))  # the factor is the user's


def test_an_alert_fires_once_until_it_clears() -> None:
    tracker = AlertTracker()
    start = trained_state()
    tracker.update(analyze(start))
    big = {k: v * 20 if k == "2.weight" else v for k, v in start.items()}
    assert [a.kind for a in tracker.update(analyze(big))].count("blew_up") == 1
    assert [a.kind for a in tracker.update(analyze(big))].count("blew_up") == 0


@pytest.mark.parametrize("value", [1.0, 0.5, True])
def test_weight_growth_must_be_a_factor_above_one(value: object) -> None:
    with pytest.raises(InputError, match="`weight_growth` expected a number > 1"):
        AlertRules(weight_growth=value)  # type: ignore[arg-type]


def test_no_blow_up_alert_on_healthy_training() -> None:
    """From init to trained (the calibration set), weight norms grow, but not 10x."""
    from tests.calibration_models import trained

    for name in ("plain", "bn_sgd", "depthwise"):
        model = trained(name)
        tracker = AlertTracker()
        tracker.update(analyze(model.init))
        assert tracker.update(analyze(model.state)) == [], name
    torch.manual_seed(0)
