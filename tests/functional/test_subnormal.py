"""Subnormal but finite weights: scaled before any division or product (drift divides each
filter by its own peak; the stats rescale a tiny layer by a power of two beyond float32)."""

from __future__ import annotations

import math

import pytest
import torch

import filterwatch
from filterwatch import Reference
from filterwatch.functional import drift, drift_basis
from filterwatch.gate import evaluate, rules_from_mapping


def _net(seed: int = 0) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(16, 32, 3))


def test_one_subnormal_filter_in_a_healthy_layer_keeps_drift_defined() -> None:
    net = _net()
    basis = drift_basis(net[0].weight.detach())
    w = net[0].weight.detach().clone()
    w[0, 0] *= 1e-39 / float(w[0, 0].abs().max())  # peak 1e-39: 1 / peak overflows float32
    result = drift(w, basis)
    assert math.isfinite(result.value) and result.value < 0.01  # the same filters, one rescaled
    report = filterwatch.analyze({"0.weight": w}, reference=Reference.build(net.state_dict()))
    assert report.layers[0].drift is not None and math.isfinite(report.layers[0].drift)


@pytest.mark.parametrize("peak", [1e-41, 1e-30, 1e-20])
def test_a_tiny_but_finite_layer_is_measured_not_called_diverged(peak: float) -> None:
    net = _net()
    with torch.no_grad():
        net[0].weight.mul_(peak / net[0].weight.abs().max())
    layer = filterwatch.analyze(net).layers[0]
    assert layer.nonfinite == 0
    assert layer.variance_entropy_norm == pytest.approx(filterwatch.analyze(_net()).layers[0]
                                                        .variance_entropy_norm, abs=0.02)
    assert evaluate(filterwatch.analyze(net), rules_from_mapping({})).passed


def test_the_input_is_never_modified_by_the_rescaling() -> None:
    w = _net()[0].weight.detach().clone()
    w[0, 0] *= 1e-39 / float(w[0, 0].abs().max())
    before = w.clone()
    drift(w, drift_basis(_net(1)[0].weight.detach()))
    assert torch.equal(w, before)
