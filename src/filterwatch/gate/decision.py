"""The training-time gate's decision, framework-free: shared by the Lightning ``FilterGate``
and the Hugging Face ``FilterGateCallback`` (which only differ in how they stop a run)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from ..errors import InputError
from .evaluate import Violation
from .rules import GateConfig, load_rules, rules_from_mapping

__all__ = ["GATE_TAG", "GateMode", "GateStoppingReason", "check_gate_args", "gate_config",
           "stopping_decision"]

GateMode = Literal["stop", "warn"]
GATE_TAG = "filterwatch/gate_violations"  # what a training-time gate logs at each check


class GateStoppingReason(Enum):
    """Why the gate stopped the run (``NOT_STOPPED`` while it has not)."""

    NOT_STOPPED = 0
    RULES_FAILED = 1


def check_gate_args(mode: object, patience: object) -> None:
    if mode not in ("stop", "warn"):
        raise InputError(f"`mode` expected 'stop' or 'warn', got {mode!r}")
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise InputError(f"`patience` expected a positive integer, got {patience!r}")


def gate_config(rules: GateConfig | Mapping[str, Any] | str | Path | None, who: str) -> GateConfig:
    """A GateConfig as given, from a ``[tool.filterwatch.gate]``-style mapping (kebab-case
    keys), from a TOML path, or ``None`` for ``./pyproject.toml`` (or the defaults)."""
    if isinstance(rules, GateConfig):
        return rules
    if isinstance(rules, Mapping):
        return rules_from_mapping(rules, source=f"{who}(rules=...)")
    return load_rules(rules)


def stopping_decision(violations: Sequence[Violation], failures: int,
                      patience: int) -> tuple[bool, str | None]:
    """``(should_stop, reason)`` from one check's violations and the streak of failing checks
    (``failures``, this one included). NaN/Inf never heal: they stop at once, without patience.

    Example:
        >>> stopping_decision([], 0, 2)
        (False, None)
    """
    if not violations:
        return False, None
    head = "; ".join(v.message for v in violations[:3])
    more = f" (and {len(violations) - 3} more)" if len(violations) > 3 else ""
    if any(v.measure == "nonfinite" for v in violations):
        return True, f"filter gate failed: {head}{more}"
    if failures < patience:
        return False, f"gate failed {failures}/{patience} consecutive checks: {head}{more}"
    return True, f"filter gate failed {failures} consecutive check(s): {head}{more}"
