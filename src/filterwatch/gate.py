"""The gate: a Report and rules in, a verdict with reasons out (pure functions, no I/O)."""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field
from typing import Any

from .gate_rules import GateConfig, GateRules
from .layers import parse_kernel_size
from .report import LayerReport, Report

__all__ = ["GROUPS", "HINTS", "Verdict", "Violation", "compare_to_baseline", "evaluate"]

HINTS = {
    "sparsity": "sparse filters often come from too strong weight decay or dead ReLUs upstream",
    "variance_entropy": "the filters collapsed to a few patterns; check the learning rate, "
                        "normalisation and regularisation strength",
    "variance_entropy_norm": "random-like filters: the layer may not have trained (frozen, no "
                             "gradient, or a learning rate so high it scrambles the weights)",
    "orthogonality": "output filters are near-parallel (redundant channels); consider pruning "
                     "or an orthogonality regulariser",
    "dead_channels": "whole output channels are zero: pruned, or killed by L1 or dead ReLUs",
    "nonfinite": "NaN/Inf weights: training diverged; lower the learning rate, clip gradients, "
                 "check fp16 loss scaling",
    "drift": "the filters moved far from the reference distribution: catastrophic forgetting "
             "or a broken fine-tune",
}
# rule group (one JUnit testcase per layer and group) -> (measure, rule attribute, direction)
GROUPS: dict[str, list[tuple[str, str, str]]] = {
    "nonfinite": [("nonfinite", "allow_nonfinite", "flag")],
    "sparsity": [("sparsity", "max_sparsity", "max")],
    "variance_entropy": [("variance_entropy", "min_variance_entropy", "min"),
                         ("variance_entropy_norm", "max_variance_entropy_norm", "max")],
    "orthogonality": [("orthogonality", "min_orthogonality", "min")],
    "dead_channels": [("dead_channels", "max_dead_channels", "max")],
    "drift": [("drift", "max_drift", "max")],
}


@dataclass(frozen=True)
class Violation:
    """One failed rule: which layer, which measure, its value, the limit and a hint."""

    layer: str
    measure: str
    value: float
    limit: float
    rule: str
    group: str
    hint: str

    @property
    def message(self) -> str:
        return (f"{self.layer}: {self.measure} = {self.value:.4g} violates {self.rule} "
                f"{self.limit:.4g}; hint: {self.hint}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "message": self.message}


@dataclass
class Verdict:
    """The outcome: ``passed``, every violation, and which (layer, group) pairs were checked
    (``"pass"``, ``"fail"`` or ``"skip: reason"``)."""

    violations: list[Violation] = field(default_factory=list)
    checks: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.violations

    def add(self, layer: str, group: str, violation: Violation | None, skip: str = "") -> None:
        """Record one check: a failure wins over a pass, a pass over a skip."""
        key = (layer, group)
        if violation is not None:
            self.violations.append(violation)
            self.checks[key] = "fail"
        elif self.checks.get(key) != "fail":
            if not skip:
                self.checks[key] = "pass"
            elif key not in self.checks:
                self.checks[key] = f"skip: {skip}"


def _dead_share(layer: LayerReport) -> float | None:
    if layer.dead_channels is None or not layer.shape:
        return None
    return layer.dead_channels / layer.shape[0]


def _check(layer: LayerReport, rules: GateRules, group: str, verdict: Verdict) -> None:
    for measure, attr, direction in GROUPS[group]:
        limit = getattr(rules, attr)
        if direction == "flag":
            n = layer.nonfinite or 0
            bad = n > 0 and not limit
            verdict.add(layer.name, group, Violation(layer.name, measure, float(n), 0.0, "allow-nonfinite",
                                                     group, HINTS[measure]) if bad else None)
            continue
        rule = attr.replace("_", "-")
        if limit is None:
            verdict.add(layer.name, group, None, skip=f"{rule} is off")
            continue
        if measure == "drift" and layer.n_filters < rules.drift_min_filters:
            verdict.add(layer.name, group, None,
                        skip=f"{layer.n_filters} filters < drift-min-filters {rules.drift_min_filters}")
            continue
        value = _dead_share(layer) if measure == "dead_channels" else layer.value(measure)
        if value is None:
            missing = "no reference given" if measure == "drift" else f"{measure} not measured"
            verdict.add(layer.name, group, None, skip=layer.undefined.get(measure, missing))
            continue
        bad = value > limit if direction == "max" else value < limit
        verdict.add(layer.name, group, Violation(layer.name, measure, value, limit, rule, group,
                                                 HINTS[measure]) if bad else None)


def _checked(layer: LayerReport, config: GateConfig) -> bool:
    if config.kernel_sizes is not None:
        sizes = [parse_kernel_size(k) for k in config.kernel_sizes]
        if tuple(layer.kernel_size) not in sizes:
            return False
    if config.include and not any(fnmatch.fnmatchcase(layer.name, p) for p in config.include):
        return False
    return not any(fnmatch.fnmatchcase(layer.name, p) for p in config.exclude)


def evaluate(report: Report, config: GateConfig | None = None) -> Verdict:
    """Check every selected layer of ``report`` against the rules.

    Example:
        >>> import torch, filterwatch
        >>> from filterwatch.gate_rules import rules_from_mapping
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3))
        >>> with torch.no_grad():
        ...     net[0].weight[:6] = 0
        >>> verdict = evaluate(filterwatch.analyze(net), rules_from_mapping({"max-sparsity": 0.5}))
        >>> verdict.passed, verdict.violations[0].rule
        (False, 'max-sparsity')
    """
    config = config or GateConfig()
    verdict = Verdict()
    for layer in report.layers:
        if not _checked(layer, config):
            continue
        rules = config.for_layer(layer.name)
        for group in GROUPS:
            _check(layer, rules, group, verdict)
    return verdict


_BASELINE = (("sparsity", "max"), ("variance_entropy", "min"), ("variance_entropy_clean", "min"),
             ("orthogonality", "min"), ("nonfinite", "max"), ("drift", "max"))


def compare_to_baseline(report: Report, baseline: Report, tolerance: float,
                        verdict: Verdict | None = None) -> Verdict:
    """Fail every measure that is worse than in ``baseline`` by more than ``tolerance``
    (absolute), for layers present in both (e.g. the last released model's report)."""
    verdict = verdict or Verdict()
    before = {layer.name: layer for layer in baseline.layers}
    for layer in report.layers:
        old = before.get(layer.name)
        if old is None:
            verdict.add(layer.name, "baseline", None, skip="layer not in the baseline")
            continue
        for measure, worse in _BASELINE:
            now, then = layer.value(measure), old.value(measure)
            if now is None or then is None:
                continue
            delta = now - then if worse == "max" else then - now
            if delta > tolerance:
                limit = then + tolerance if worse == "max" else then - tolerance
                verdict.add(layer.name, "baseline", Violation(
                    layer.name, measure, now, limit, f"baseline {then:.4g} ± tolerance", "baseline",
                    HINTS.get(measure, HINTS["variance_entropy"]) + " (a regression from the baseline)"))
        verdict.add(layer.name, "baseline", None)
    return verdict
