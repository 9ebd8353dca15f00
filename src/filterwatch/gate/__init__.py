"""The quality gate: rules from ``[tool.filterwatch.gate]``, their evaluation on a Report,
baseline comparison, and the verdict's renderers (table, JSON, Markdown, JUnit)."""

from .baseline import compare_to_baseline
from .evaluate import GATED, Verdict, Violation, evaluate
from .render import VERDICT_FORMATS, VerdictFormat, render_verdict, verdict_dict
from .rules import GateConfig, GateRules, LayerOverride, load_rules, rules_from_mapping

__all__ = ["GATED", "VERDICT_FORMATS", "GateConfig", "GateRules", "LayerOverride", "Verdict",
           "VerdictFormat", "Violation", "compare_to_baseline", "evaluate", "load_rules",
           "render_verdict", "rules_from_mapping", "verdict_dict"]
