"""The gate: a Report and rules in, a verdict with reasons out (pure functions, no I/O).

Which measures are gated, in which rule group, in which direction and with which hint all
come from the registry (:data:`filterwatch.report.MEASURES`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ..report import LayerReport, Report
from ..report.registry import Measure, fill_hint, select
from .rules import GateConfig, GateRules

__all__ = ["GATED", "Verdict", "Violation", "evaluate"]

GATED: tuple[Measure, ...] = tuple(m for m in select() if m.gate is not None)


@dataclass(frozen=True)
class Violation:
    """One failed rule: which layer, which measure, its value, the limit and a hint."""

    layer: str
    measure: str
    value: float | None  # None: the layer could not be measured at all
    limit: float
    rule: str
    group: str
    hint: str
    baseline: float | None = None  # the baseline's value, for a regression from it
    count: int | None = None  # a share rule: how many output channels ...
    total: int | None = None  # ... of how many
    severity: Literal["fail", "warn"] = "fail"  # warn: degenerate, but such layers work

    @property
    def statement(self) -> str:
        """What failed, without the hint."""
        if self.value is None:
            return f"{self.layer}: not measured ({self.rule})"
        if self.baseline is not None:
            return (f"{self.layer}: {self.measure} = {self.value:.4g}, worse than the baseline's "
                    f"{self.baseline:.4g} beyond the tolerance (limit {self.limit:.4g})")
        of = "" if self.count is None else f" ({self.count} of {self.total} output channels)"
        return f"{self.layer}: {self.measure} = {self.value:.4g}{of} violates {self.rule} {self.limit:.4g}"

    @property
    def filled_hint(self) -> str:
        """The hint with ``{value}`` in it filled in."""
        return fill_hint(self.hint, self.value)

    @property
    def message(self) -> str:
        """What failed, and the hint."""
        return f"{self.statement}; hint: {self.filled_hint}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hint": self.filled_hint, "statement": self.statement,
                "message": self.message}


@dataclass
class Verdict:
    """The outcome: ``passed``, every violation, the warnings (degenerate but working: they
    do not fail the gate), and which (layer, group) pairs were checked (``"pass"``,
    ``"warn"``, ``"fail"`` or ``"skip: reason"``)."""

    violations: list[Violation] = field(default_factory=list)
    checks: dict[tuple[str, str], str] = field(default_factory=dict)
    warnings: list[Violation] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.violations

    @property
    def ran(self) -> int:
        """Checks that ran (passed or failed); the skipped ones are not counted as checks."""
        return sum(1 for status in self.checks.values() if not status.startswith("skip"))

    @property
    def skipped(self) -> int:
        return len(self.checks) - self.ran

    def add(self, layer: str, group: str, violation: Violation | None, skip: str = "") -> None:
        """Record one check: a failure wins over a warning, a warning over a pass, a pass over
        a skip."""
        key = (layer, group)
        if violation is not None and violation.severity == "warn":
            self.warnings.append(violation)
            if self.checks.get(key) != "fail":
                self.checks[key] = "warn"
        elif violation is not None:
            self.violations.append(violation)
            self.checks[key] = "fail"
        elif self.checks.get(key) not in ("fail", "warn"):
            if not skip:
                self.checks[key] = "pass"
            elif key not in self.checks:
                self.checks[key] = f"skip: {skip}"


def gated_value(layer: LayerReport, m: Measure) -> float | None:
    """What a rule on ``m`` compares: a share of the output channels for a share rule (dead
    channels), else the value."""
    if m.gate == "share":
        count = layer.value(m.key)
        return None if count is None or not layer.shape else count / layer.shape[0]
    return layer.value(m.key)


def dwarfed(layer: LayerReport, rules: GateRules) -> bool:
    """Whether most of the layer's filters count as sparse only because a few very large
    weights dwarf them: sparsity beyond ``max_sparsity`` (0.5 where that rule is off) while
    the sparse filters hold real weights (``sparse_rms_ratio >= dwarfed_sparse_rms``; zeroed
    or decayed filters are near 0). Its sparsity and VE then describe those few, and a layer
    like it works (a voice-activity model's 98 %-sparse layer)."""
    r, share = layer.sparse_rms_ratio, layer.sparsity
    most = rules.max_sparsity if rules.max_sparsity is not None else 0.5
    return (rules.dwarfed_sparse_rms is not None and r is not None and share is not None
            and share > most and r >= rules.dwarfed_sparse_rms)


# rules that a dwarfed layer breaks only as a warning
_WARN_WHEN_DWARFED = ("sparsity", "variance_entropy")
_LOG10_9 = math.log10(9.0)


def limit_for(layer: LayerReport, m: Measure, limit: float) -> float:
    """The rule's limit for this layer: a VE limit is for 3x3 kernels and scales with VE's
    range, ``log10 K / log10 9``; every other limit is as given.

    Example:
        >>> from filterwatch.report.registry import get
        >>> lr = LayerReport("c", [8, 8, 3], [3], 1, "Conv1d", 64, 0, 0.0)
        >>> round(limit_for(lr, get("variance_entropy"), 0.1), 4)
        0.05
    """
    k = math.prod(layer.kernel_size) if layer.kernel_size else 9
    return limit * math.log10(k) / _LOG10_9 if m.hi_log10_k and k > 1 else limit


def _check(layer: LayerReport, rules: GateRules, m: Measure, verdict: Verdict) -> None:
    limit = getattr(rules, m.gate_rule)
    rule = m.gate_rule.replace("_", "-")
    if m.gate == "flag":
        n = layer.nonfinite or 0
        bad = n > 0 and not limit
        verdict.add(layer.name, m.gate_group,
                    Violation(layer.name, m.key, float(n), 0.0, rule, m.gate_group, m.hint) if bad else None)
        return
    if limit is None:
        verdict.add(layer.name, m.gate_group, None, skip=f"{rule} is off")
        return
    if m.size_limited and layer.n_filters < rules.drift_min_filters:
        verdict.add(layer.name, m.gate_group, None,
                    skip=f"{layer.n_filters} filters < drift-min-filters {rules.drift_min_filters}")
        return
    value = gated_value(layer, m)
    if value is None and m.fails_when_undefined and m.key in layer.undefined:
        verdict.add(layer.name, m.gate_group, Violation(
            layer.name, m.key, None, limit, f"{rule} ({layer.undefined[m.key]})", m.gate_group, m.hint))
        return
    if value is None:
        missing = "no reference given" if m.needs_reference else f"{m.key} not measured"
        verdict.add(layer.name, m.gate_group, None, skip=layer.undefined.get(m.key, missing))
        return
    limit = limit_for(layer, m, limit)
    bad = value > limit if m.worse == "high" else value < limit
    count = {"count": int(layer.value(m.key) or 0), "total": layer.shape[0]} if m.gate == "share" else {}
    hint = m.hint
    warn = bad and m.key in _WARN_WHEN_DWARFED and dwarfed(layer, rules)
    if warn:
        hint = (f"degenerate but such layers work: the sparse filters hold real weights (RMS "
                f"{layer.sparse_rms_ratio:.2f} of the layer's) that a few very large ones dwarf; "
                "the value describes those few")
    verdict.add(layer.name, m.gate_group, Violation(
        layer.name, m.gated_quantity, value, limit, rule, m.gate_group, hint, **count,
        severity="warn" if warn else "fail") if bad else None)


def evaluate(report: Report, config: GateConfig | None = None) -> Verdict:
    """Check every selected layer of ``report`` against the rules.

    Example:
        >>> import torch, filterwatch
        >>> from filterwatch.gate import rules_from_mapping
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3))
        >>> with torch.no_grad():
        ...     net[0].weight[:6] = 0
        >>> verdict = evaluate(filterwatch.analyze(net), rules_from_mapping({"max-sparsity": 0.5}))
        >>> verdict.passed, verdict.violations[0].rule
        (False, 'max-sparsity')
    """
    config = config or GateConfig()
    selection = config.select
    verdict = Verdict()
    for layer in report.layers:
        if not selection.accepts(layer.name, layer.kernel_size):
            continue
        if layer.nonfinite is None:  # the kernel could not be read: no value is not a pass
            why = layer.undefined.get("nonfinite") or layer.undefined.get("sparsity") or "unreadable"
            verdict.add(layer.name, "measurable", Violation(
                layer.name, "nonfinite", None, 0.0, why, "measurable",
                "a layer with no measurable value is not a pass: check that the checkpoint holds "
                "real weights (not meta or lazy ones)"))
            continue
        rules = config.for_layer(layer.name)
        for m in GATED:
            _check(layer, rules, m, verdict)
    _check_reference_used(report, config, verdict)
    return verdict


def _check_reference_used(report: Report, config: GateConfig, verdict: Verdict) -> None:
    """A reference that compares none of the layers a drift rule would check is not a pass:
    a file whose groups are empty (or that names every layer as skipped) would hide any drift."""
    if report.settings.get("reference") is None:
        return
    checked = [layer for layer in report.layers if config.select.accepts(layer.name, layer.kernel_size)
               and config.for_layer(layer.name).max_drift is not None
               and layer.n_filters >= config.for_layer(layer.name).drift_min_filters]
    if not checked or any(layer.drift is not None for layer in checked):
        return
    reasons = sorted({layer.undefined.get("drift", "no drift") for layer in checked})
    verdict.add("(model)", "drift", Violation(
        "(model)", "drift", None, config.rules.max_drift or 0.0,
        f"max-drift: the reference compares none of the {len(checked)} layer(s) it should "
        f"({'; '.join(reasons)[:200]})", "drift",
        "a reference with no usable group hides any drift: build it again with "
        "`filterwatch reference build` from the model it should describe"))
