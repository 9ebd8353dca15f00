"""Render a :class:`~filterwatch.report.Report` as an aligned text table or as Markdown."""

from __future__ import annotations

from .layers import format_kernel_size
from .report import MEASURES, LayerReport, Report

__all__ = ["to_markdown", "to_table"]

_NA = "-"
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("layer", "<"),
    ("shape", "<"),
    ("k", "<"),
    ("filters", ">"),
    ("sparsity", ">"),
    ("VE", ">"),
    ("VE/H_T", ">"),
    ("VE clean", ">"),
    ("orth", ">"),
    ("dead", ">"),
    ("nonfinite", ">"),
)


def _fmt(value: float | int | None, digits: int = 3) -> str:
    if value is None:
        return _NA
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _has_reference(report: Report) -> bool:
    return bool(report.settings.get("reference"))


def _columns(report: Report) -> tuple[tuple[str, str], ...]:
    if _has_reference(report):
        return (*_COLUMNS, ("drift", ">"), ("noise", ">"), ("rel change", ">"))
    return _COLUMNS


def _row(layer: LayerReport, drift: bool = False) -> list[str]:
    extra = [_fmt(layer.drift), _fmt(layer.drift_noise), _fmt(layer.relative_change)] if drift else []
    return [
        layer.name,
        "x".join(map(str, layer.shape)),
        format_kernel_size(layer.kernel_size),
        str(layer.n_filters),
        _fmt(layer.sparsity),
        _fmt(layer.variance_entropy),
        _fmt(layer.variance_entropy_norm),
        _fmt(layer.variance_entropy_clean),
        _fmt(layer.orthogonality),
        _fmt(layer.dead_channels),
        _fmt(layer.nonfinite),
        *extra,
    ]


def _summary_row(report: Report) -> list[str]:
    mean = report.summary.get("mean", {})
    extra = ([_fmt(mean.get("drift")), "", _fmt(mean.get("relative_change"))]
             if _has_reference(report) else [])
    return [
        "(filter-weighted mean)",
        "",
        "",
        str(report.summary.get("n_filters", "")),
        *(_fmt(mean.get(m.key)) for m in MEASURES[:5]),
        _fmt(sum(layer.dead_channels or 0 for layer in report.layers)),
        _fmt(sum(layer.nonfinite or 0 for layer in report.layers)),
        *extra,
    ]


def _notes(report: Report) -> list[str]:
    notes = []
    for layer in report.layers:
        reasons: dict[str, list[str]] = {}
        for measure, reason in layer.undefined.items():
            reasons.setdefault(reason, []).append(measure)
        for reason, measures in reasons.items():
            notes.append(f"{layer.name}: {', '.join(measures)} undefined: {reason}")
    return notes


def _worst_line(report: Report) -> str:
    parts = []
    keys = MEASURES[:5] + (MEASURES[7:8] if _has_reference(report) else ())
    for m in keys:
        worst = report.summary.get("worst", {}).get(m.key) or []
        if worst:
            parts.append(f"{m.label} {worst[0]['layer']} ({_fmt(worst[0]['value'])})")
    return "worst: " + "; ".join(parts) if parts else "worst: -"


def to_table(report: Report) -> str:
    """An aligned plain-text table, one row per layer, then the summary and notes.

    Example:
        >>> import torch, filterwatch
        >>> rep = filterwatch.analyze(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3)))
        >>> to_table(rep).split()[:5]
        ['layer', 'shape', 'k', 'filters', 'sparsity']
    """
    columns = _columns(report)
    drift = _has_reference(report)
    rows = [[c for c, _ in columns], *(_row(layer, drift) for layer in report.layers),
            _summary_row(report)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    lines = []
    for i, row in enumerate(rows):
        cells = [
            cell.ljust(w) if (align == "<" or i == 0) else cell.rjust(w)
            for cell, w, (_, align) in zip(row, widths, columns, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
        if i == 0 or i == len(rows) - 2:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(_worst_line(report))
    lines.extend(_notes(report))
    return "\n".join(lines) + "\n"


def to_markdown(report: Report) -> str:
    """A GitHub-flavoured Markdown table (for CI job summaries and PR comments)."""
    columns = _columns(report)
    header = [c for c, _ in columns]
    lines = [
        f"### filterwatch: {report.source or 'model'}",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---:" if a == ">" else "---" for _, a in columns) + " |",
    ]
    for layer in report.layers:
        cells = _row(layer, _has_reference(report))
        cells[0] = f"`{cells[0]}`"
        lines.append("| " + " | ".join(cells) + " |")
    summary = _summary_row(report)
    summary[0] = "**" + summary[0] + "**"
    lines.append("| " + " | ".join(summary) + " |")
    lines += ["", _worst_line(report)]
    notes = _notes(report)
    if notes:
        lines += ["", *(f"- {n}" for n in notes)]
    return "\n".join(lines) + "\n"
