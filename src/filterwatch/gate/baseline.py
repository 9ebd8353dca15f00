"""Baseline mode: fail every measure that got worse than in an earlier report."""

from __future__ import annotations

from ..report import Report
from ..report.registry import select
from .evaluate import Verdict, Violation

__all__ = ["compare_to_baseline"]


def compare_to_baseline(report: Report, baseline: Report, tolerance: float,
                        verdict: Verdict | None = None) -> Verdict:
    """Fail every measure that is worse than in ``baseline`` by more than ``tolerance``
    (absolute), for layers present in both (e.g. the last released model's report). Which
    measures count, and which direction is worse, come from the registry."""
    verdict = verdict or Verdict()
    before = {layer.name: layer for layer in baseline.layers}
    for layer in report.layers:
        old = before.get(layer.name)
        if old is None:
            verdict.add(layer.name, "baseline", None, skip="layer not in the baseline")
            continue
        for m in select(baseline=True):
            now, then = layer.value(m.key), old.value(m.key)
            if now is None or then is None:
                continue
            delta = now - then if m.worse == "high" else then - now
            if delta > tolerance:
                limit = then + tolerance if m.worse == "high" else then - tolerance
                verdict.add(layer.name, "baseline", Violation(
                    layer.name, m.key, now, limit, f"baseline {then:.4g} ± tolerance", "baseline",
                    m.hint + " (a regression from the baseline)"))
        verdict.add(layer.name, "baseline", None)
    return verdict
