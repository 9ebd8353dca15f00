"""Render a :class:`~filterwatch.report.Report` as an aligned text table or as Markdown.

The measure columns, the summary row and the "worst" line come from the registry
(:data:`filterwatch.report.MEASURES`): a measure with ``column`` set is a column.
"""

from __future__ import annotations

from ..layers import format_kernel_size
from .registry import Measure, select
from .report import LayerReport, Report
from .text import md_cell, printable

__all__ = ["to_markdown", "to_table"]

# (header, alignment) of the columns that describe the layer rather than measure it
_LAYER_COLUMNS: tuple[tuple[str, str], ...] = (("layer", "<"), ("shape", "<"), ("k", "<"),
                                               ("filters", ">"))


def _has_reference(report: Report) -> bool:
    return bool(report.settings.get("reference"))


def _measures(report: Report) -> tuple[Measure, ...]:
    wanted = ("always", "reference") if _has_reference(report) else ("always",)
    return tuple(m for m in select() if m.column in wanted)


def _columns(report: Report) -> tuple[tuple[str, str], ...]:
    return (*_LAYER_COLUMNS, *((m.label, ">") for m in _measures(report)))


def _row(layer: LayerReport, measures: tuple[Measure, ...]) -> list[str]:
    return [
        layer.name,
        "x".join(map(str, layer.shape)),
        format_kernel_size(layer.kernel_size),
        str(layer.n_filters),
        *(m.format(getattr(layer, m.key)) for m in measures),
    ]


def _summary_cell(report: Report, m: Measure) -> str:
    """Counts add up over layers; other summarised measures show their filter-weighted mean."""
    if m.integer:
        return m.format(sum(getattr(layer, m.key) or 0 for layer in report.layers))
    if m.summary:
        return m.format(report.summary.get("mean", {}).get(m.key))
    return ""


def _summary_row(report: Report) -> list[str]:
    return ["(filter-weighted mean)", "", "", str(report.summary.get("n_filters", "")),
            *(_summary_cell(report, m) for m in _measures(report))]


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
    for m in _measures(report):
        worst = report.summary.get("worst", {}).get(m.key) or []
        if worst and not m.integer:
            parts.append(f"{m.label} {worst[0]['layer']} ({m.format(worst[0]['value'])})")
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
    measures = _measures(report)
    rows = [[c for c, _ in columns], *(_row(layer, measures) for layer in report.layers),
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
    return printable("\n".join(lines) + "\n")  # names may hold ANSI escapes: never run them


def to_markdown(report: Report) -> str:
    """A GitHub-flavoured Markdown table (for CI job summaries and PR comments)."""
    columns = _columns(report)
    measures = _measures(report)
    lines = [
        f"### filterwatch: {md_cell(report.source or 'model')}",
        "",
        "| " + " | ".join(c for c, _ in columns) + " |",
        "| " + " | ".join("---:" if a == ">" else "---" for _, a in columns) + " |",
    ]
    for layer in report.layers:
        cells = [md_cell(c) for c in _row(layer, measures)]
        cells[0] = f"`{cells[0]}`"
        lines.append("| " + " | ".join(cells) + " |")
    summary = _summary_row(report)
    summary[0] = "**" + summary[0] + "**"
    lines.append("| " + " | ".join(summary) + " |")
    lines += ["", md_cell(_worst_line(report))]
    notes = _notes(report)
    if notes:
        lines += ["", *(f"- {md_cell(n)}" for n in notes)]
    return "\n".join(lines) + "\n"
