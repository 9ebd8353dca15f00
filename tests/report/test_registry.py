"""The registry of measures is the one place each measure is declared; everything else that
lists measures is derived from it."""

from __future__ import annotations

import dataclasses
import math

import pytest

from filterwatch.gate import GATED, GateRules
from filterwatch.integrations.tensorboard import HEATMAP_MEASURES
from filterwatch.monitor import SCALAR_MEASURES
from filterwatch.monitor.alerts import _CHECKS
from filterwatch.report import MEASURES, LayerReport
from filterwatch.report.registry import get, select

REPORT_FIELDS = {f.name for f in dataclasses.fields(LayerReport)}


def test_every_measure_is_a_report_field_and_declared_once() -> None:
    keys = [m.key for m in MEASURES]
    assert len(keys) == len(set(keys))
    assert set(keys) <= REPORT_FIELDS


def test_gate_rules_are_exactly_the_gated_measures() -> None:
    # the two that modify other rules: which layers raw drift judges, when a rule only warns
    rule_fields = {f.name for f in dataclasses.fields(GateRules)}
    rule_fields -= {"drift_min_filters", "dwarfed_sparse_rms"}
    assert {m.gate_rule for m in GATED} == rule_fields
    for m in GATED:
        assert m.gate_group and m.hint, m.key


def test_derived_lists_come_from_the_registry() -> None:
    assert SCALAR_MEASURES == tuple(m.key for m in MEASURES if m.scalar)
    assert HEATMAP_MEASURES == tuple(m.key for m in MEASURES if m.heatmap)
    assert {measure for measure, _ in _CHECKS.values()} <= {m.key for m in MEASURES}
    assert all(m.hint for m in select(baseline=True))


def test_bounds_and_format() -> None:
    assert get("variance_entropy").bounds(9) == (0.0, pytest.approx(math.log10(9)))
    assert get("sparsity").bounds() == (0.0, 1.0)
    assert get("dead_channels").format(3.0) == "3"
    assert get("drift").format(None) == "-"
    assert get("orthogonality").format(0.96712) == "0.967"
    with pytest.raises(KeyError, match="`key` expected one of sparsity"):
        get("sparsitty")
