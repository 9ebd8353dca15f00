"""Baseline mode: fail every measure that got worse than in an earlier report."""

from __future__ import annotations

from ..errors import InputError
from ..report import Report
from ..report.registry import get, select
from .evaluate import Verdict, Violation, gated_value
from .rules import GateRules

__all__ = ["compare_to_baseline"]


_GROWTH = get("weight_growth")


def compare_to_baseline(report: Report, baseline: Report, tolerance: float,
                        verdict: Verdict | None = None,
                        max_weight_growth: float | None = GateRules().max_weight_growth) -> Verdict:
    """Fail every measure that is worse than in ``baseline`` by more than ``tolerance``
    (absolute), for layers present in both (e.g. the last released model's report), and
    every layer whose weights grew beyond ``max_weight_growth`` times the baseline's norm (a
    blow-up, said first: the other measures' hints are its symptoms). Which measures count,
    and which direction is worse, come from the registry."""
    verdict = verdict or Verdict()
    before = {layer.name: layer for layer in baseline.layers}
    _check_same_architecture(report, baseline, before)
    now_names = {layer.name for layer in report.layers}
    for name in (n for n in before if n not in now_names):  # pruned away, renamed, truncated
        verdict.add(name, "baseline", Violation(
            name, "layer", None, 0.0, "baseline: the baseline's layer is gone from this model",
            "baseline", "a layer of the baseline is missing: pruned away, renamed, or a "
            "truncated checkpoint; regenerate the baseline if the change is intended"))
    for layer in report.layers:
        old = before.get(layer.name)
        if old is None:
            verdict.add(layer.name, "baseline", None, skip="layer not in the baseline")
            continue
        if max_weight_growth is not None and layer.weight_norm and old.weight_norm:
            growth = layer.weight_norm / old.weight_norm
            if growth > max_weight_growth:
                verdict.add(layer.name, "baseline", Violation(
                    layer.name, _GROWTH.key, growth, max_weight_growth,
                    f"baseline: {_GROWTH.gate_rule.replace('_', '-')}", "baseline", _GROWTH.hint))
        for m in select(baseline=True):
            now, then = gated_value(layer, m), gated_value(old, m)
            if now is None or then is None:
                continue
            delta = now - then if m.worse == "high" else then - now
            if delta > tolerance:
                limit = then + tolerance if m.worse == "high" else then - tolerance
                verdict.add(layer.name, "baseline", Violation(
                    layer.name, m.gated_quantity, now, limit, "baseline", "baseline",
                    m.hint + " (a regression from the baseline)", baseline=then))
        verdict.add(layer.name, "baseline", None)
    return verdict


def _check_same_architecture(report: Report, baseline: Report, before: dict) -> None:  # type: ignore[type-arg]
    """Refuse a baseline of another network: layers compared by name must have one shape."""
    common = [layer for layer in report.layers if layer.name in before]
    if report.layers and not common:
        raise InputError(
            f"`--baseline` expected a report of the same network, got {baseline.source or 'one'} "
            f"that shares no layer name with {report.source or 'the model'}; hint: pass the "
            "report of an earlier version of this model")
    for layer in common:
        old = before[layer.name]
        if list(old.shape) != list(layer.shape):
            raise InputError(
                f"`--baseline` expected the same layer shapes, got layer `{layer.name}` of shape "
                f"{list(layer.shape)} vs {list(old.shape)} in the baseline; hint: the baseline "
                "is of another architecture: regenerate it from this model")
