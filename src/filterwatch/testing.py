"""pytest helpers: ``assert_filters_healthy`` for a model-quality test in your own suite."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .gate import GateConfig, evaluate, load_rules, rules_from_mapping
from .gate.rules import RENAMED_RULES
from .measure import analyze
from .reference import Matching, Reference
from .report import Report

__all__ = ["assert_filters_healthy"]


def assert_filters_healthy(
    model_or_path: nn.Module | Mapping[str, torch.Tensor] | str | Path,
    *,
    config: GateConfig | str | Path | None = None,
    reference: Reference | str | Path | None = None,
    matching: Matching | None = None,
    **rules: Any,
) -> Report:
    """Fail the test (``AssertionError``) when a gate rule fails; return the report otherwise.

    Rules are the ``[tool.filterwatch.gate]`` keys in snake_case (``max_sparsity=0.3``,
    ``min_variance_entropy=0.1``, ``allow_nonfinite=False``...) and override ``config``
    (a GateConfig or TOML path; default: the defaults, not the project's pyproject).
    A ``reference`` whose layers do not match the model's raises
    :class:`~filterwatch.errors.InputError` unless ``matching`` allows it.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3))
        >>> _ = assert_filters_healthy(net, max_sparsity=0.5)
        >>> with torch.no_grad():
        ...     _ = net[0].weight.fill_(float("nan"))
        >>> assert_filters_healthy(net)
        Traceback (most recent call last):
        ...
        AssertionError: filterwatch: 1 violation(s) in Sequential:
          - 0: nonfinite = 216 violates allow-nonfinite 0; hint: NaN/Inf weights: ...
    """
    base = config if isinstance(config, GateConfig) else (
        GateConfig() if config is None else load_rules(config))
    if rules:
        table = {k.replace("_", "-"): v for k, v in rules.items()}
        extra = rules_from_mapping(table, source="assert_filters_healthy")
        given = {RENAMED_RULES.get(k, k).replace("-", "_") for k in table}
        base = replace(base, rules=replace(base.rules, **{
            k: getattr(extra.rules, k) for k in given if k not in ("kernel_sizes", "include", "exclude")
        }), kernel_sizes=extra.kernel_sizes or base.kernel_sizes,
            include=extra.include or base.include, exclude=extra.exclude or base.exclude)
    ref = Reference.load(reference) if isinstance(reference, str | Path) else reference
    report = analyze(model_or_path, select=base.select, reference=ref, matching=matching,
                     spectral=base.needs_spectral)  # as `filterwatch check` does
    verdict = evaluate(report, base)
    if not verdict.passed:
        lines = [f"filterwatch: {len(verdict.violations)} violation(s) in {report.source}:"]
        lines += [f"  - {v.message}" for v in verdict.violations]
        raise AssertionError("\n".join(lines))
    return report
