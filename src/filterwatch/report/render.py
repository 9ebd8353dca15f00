"""Render a :class:`~filterwatch.report.Report` as an aligned text table or as Markdown.

The measure columns, the summary row and the "worst" line come from the registry
(:data:`filterwatch.report.MEASURES`): a measure with ``column`` set is a column.
"""

from __future__ import annotations

import textwrap
from collections.abc import Collection
from typing import NamedTuple

from ..layers import format_kernel_size
from .registry import Measure, fill_hint, select
from .report import LayerReport, Report
from .text import md_cell, md_code, printable

__all__ = ["to_markdown", "to_table"]

# (header, alignment) of the columns that describe the layer rather than measure it
_LAYER_COLUMNS: tuple[tuple[str, str], ...] = (("layer", "<"), ("shape", "<"), ("k", "<"),
                                               ("filters", ">"))


def _has_reference(report: Report) -> bool:
    return bool(report.settings.get("reference"))


def report_measures(report: Report) -> tuple[Measure, ...]:
    """The measures a rendering of ``report`` shows: the reference's only with a reference,
    the spectral ones only when they were computed (``lipschitz`` only at an input size)."""
    wanted = {"always"} | ({"reference"} if _has_reference(report) else set())
    if report.settings.get("spectral"):
        wanted.add("spectral")
    return tuple(m for m in select() if m.column in wanted
                 and (m.key != "lipschitz" or report.settings.get("input_size")))


def _columns(report: Report) -> tuple[tuple[str, str], ...]:
    return (*_LAYER_COLUMNS, *((m.label, ">") for m in report_measures(report)))


def _row(layer: LayerReport, measures: tuple[Measure, ...]) -> list[str]:
    return [
        layer.name,
        "x".join(map(str, layer.shape)),
        format_kernel_size(layer.kernel_size),
        str(layer.n_filters),
        *(m.format(getattr(layer, m.key)) for m in measures),
    ]


def _summary_cell(report: Report, m: Measure, row: str) -> str:
    """The filter-weighted mean of what averages (``row="mean"``), the total of a count
    (``row="total"``); the other row's cell stays empty."""
    if not m.summary or m.integer != (row == "total"):
        return ""
    if m.integer:
        return m.format(sum(getattr(layer, m.key) or 0 for layer in report.layers))
    return m.format(report.summary.get("mean", {}).get(m.key))


def _summary_rows(report: Report) -> list[list[str]]:
    """``weighted mean`` (filter-weighted, of what averages) and ``total`` (of the counts)."""
    measures = report_measures(report)
    return [["weighted mean", "", "", str(report.summary.get("n_filters", "")),
             *(_summary_cell(report, m, "mean") for m in measures)],
            ["total", "", "", "", *(_summary_cell(report, m, "total") for m in measures)]]


def _notes(report: Report) -> list[str]:
    notes = []
    product = report.settings.get("lipschitz_bound_product")
    if product is not None:
        notes.append(f"Lipschitz bound of the conv stack: {product:.4g} (the product of the layer "
                     "bounds: valid with 1-Lipschitz activations and no skip connections)")
    left_out = report.settings.get("left_out_pointwise") or []
    if left_out:
        shown = ", ".join(left_out[:6]) + (f", ... ({len(left_out)} in all)" if len(left_out) > 6 else "")
        notes.append(f"left out: {len(left_out)} 1x1 layer(s) ({shown}): their VE is always 0; "
                     "--include-pointwise measures them")
    shared: dict[tuple[str, str], list[str]] = {}  # (measures, reason) -> layers
    for layer in report.layers:
        reasons: dict[str, list[str]] = {}
        for measure, reason in layer.undefined.items():
            reasons.setdefault(reason, []).append(measure)
        for reason, keys in reasons.items():
            shared.setdefault((", ".join(keys), reason), []).append(layer.name)
    for (what, reason), names in shared.items():  # one line for what many layers share
        who = names[0] if len(names) == 1 else (
            f"{len(names)} layers ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})")
        notes.append(f"{who}: {what} undefined: {reason}")
    return notes


class Outside(NamedTuple):
    """The layers outside one measure's healthy band on one side, worst first, and the hint
    that side calls for."""

    measure: Measure
    side: str  # "high" or "low"
    layers: list[tuple[str, float]]

    @property
    def hint(self) -> str:
        """That side's hint, filled in with the worst value."""
        m = self.measure
        hint = m.hint if self.side == m.worse else (m.other_side_hint or m.hint)
        return fill_hint(hint, self.layers[0][1])

    def line(self, shown: int = 3) -> str:
        """``sparsity in 2 layers: 0.976 at conv4, 0.865 at conv3`` (the worst ``shown``
        named, the rest counted; ``(low)`` where the measure's band has two sides)."""
        m, bad = self.measure, self.layers
        named = ", ".join(f"{m.format(v)} at {name}" for name, v in bad[:shown])
        more = f", and {len(bad) - shown} more" if len(bad) > shown else ""
        side = f" ({self.side})" if m.other_side_hint else ""
        return f"{m.label}{side} in {len(bad)} layer{'s' if len(bad) > 1 else ''}: {named}{more}"


def unhealthy(report: Report) -> list[Outside]:
    """Every judged measure's layers outside their healthy band (each layer's own, e.g.
    VE/H_T's random band), per side, worst first: the same layers the HTML table marks
    (drift is judged against its noise, VE normalised: like with like)."""
    out = []
    for m in report_measures(report):
        if m.healthy is None:
            continue
        sides: dict[str, list[tuple[str, float]]] = {"high": [], "low": []}
        for layer in report.layers:
            v = layer.value(m.key)
            if v is not None and not m.is_healthy(v, layer):
                band = m.healthy_for(layer)
                sides["low" if band is not None and v < band[0] else "high"].append((layer.name, v))
        for side, bad in sides.items():
            if bad:
                bad.sort(key=lambda lv: lv[1], reverse=side == "high")
                out.append(Outside(m, side, bad))
    return out


def _worst_line(report: Report) -> str:
    parts = [o.line() for o in unhealthy(report)]
    if not parts:
        return "outside the healthy ranges: nothing"
    return "outside the healthy ranges: " + "; ".join(parts)


# the columns given up first when a table must fit a narrow terminal
_DROP_ORDER = ("shape", "VE clean", "srank", "erank", "Lip @size", "σ_max", "orth", "VE", "noise",
               "rel change", "drift", "k")
_MIN_NAME = 12


def shorten(text: str, width: int) -> str:
    """``text`` cut in the middle to ``width`` characters (``features…conv2``).

    Example:
        >>> shorten("backbone.layer4.1.conv2", 14)
        'backbon….conv2'
    """
    if len(text) <= width:
        return text
    keep = max(width - 1, 2)
    head = (keep + 1) // 2
    return text[:head] + "…" + text[len(text) - (keep - head):]


def _fit(rows: list[list[str]], columns: list[tuple[str, str]], width: int | None,
         kept: Collection[str] = ()) -> tuple[list[list[str]], list[tuple[str, str]], list[str]]:
    """Drop columns (least telling first, never those in ``kept``) and shorten names until
    the table fits ``width``."""
    dropped: list[str] = []

    def total() -> int:
        return sum(max(len(r[i]) for r in rows) for i in range(len(columns))) + 2 * (len(columns) - 1)

    if width is None:
        return rows, columns, dropped
    name_width = max(len(r[0]) for r in rows)
    for label in (None, *(c for c in _DROP_ORDER if c not in kept)):
        if label is not None:
            if label not in [c for c, _ in columns]:
                continue
            i = [c for c, _ in columns].index(label)
            rows = [r[:i] + r[i + 1:] for r in rows]
            columns = columns[:i] + columns[i + 1:]
            dropped.append(label)
        excess = total() - width
        if excess <= 0:
            break
        if name_width - excess >= _MIN_NAME:
            name_width -= excess
            rows = [[shorten(r[0], name_width), *r[1:]] for r in rows]
            break
    return rows, columns, dropped


def to_table(report: Report, width: int | None = None, keep: Collection[str] = ()) -> str:
    """An aligned plain-text table, one row per layer, then the summary and notes; at most
    ``width`` characters wide when given (long names are cut in the middle, then the least
    telling columns are left out, and a note says which; never the columns of the measures
    in ``keep``, such as those a gate verdict is about).

    Example:
        >>> import torch, filterwatch
        >>> rep = filterwatch.analyze(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3)))
        >>> to_table(rep).split()[:5]
        ['layer', 'shape', 'k', 'filters', 'sparsity']
        >>> max(len(line) for line in to_table(rep, width=60).splitlines()[:4]) <= 60
        True
    """
    columns = list(_columns(report))
    measures = report_measures(report)
    rows = [[c for c, _ in columns], *(_row(layer, measures) for layer in report.layers),
            *_summary_rows(report)]
    rows = [[printable(r[0], keep=""), *r[1:]] for r in rows]  # a name's newline is no new line
    kept = {m.label for m in measures if m.key in keep or m.gated_quantity in keep}
    rows, columns, dropped = _fit(rows, columns, width, kept)
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    lines = []
    for i, row in enumerate(rows):
        cells = [
            cell.ljust(w) if (align == "<" or i == 0) else cell.rjust(w)
            for cell, w, (_, align) in zip(row, widths, columns, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
        if i == 0 or i == len(rows) - 3:
            lines.append("  ".join("-" * w for w in widths))
    notes = [printable(n, keep="") for n in (_worst_line(report), *report.summary.get("notes", []))]
    if dropped:
        notes.append(f"(left out to fit {width} columns: {', '.join(dropped)}; "
                     "widen the terminal or use --format json)")
    notes.extend(printable(n, keep="") for n in _notes(report))
    for note in notes:
        lines.extend(textwrap.wrap(note, width, subsequent_indent="  ") if width else [note])
    return printable("\n".join(lines) + "\n")  # names may hold ANSI escapes: never run them


def to_markdown(report: Report) -> str:
    """A GitHub-flavoured Markdown table (for CI job summaries and PR comments)."""
    columns = _columns(report)
    measures = report_measures(report)
    lines = [
        f"### filterwatch: {md_cell(report.source or 'model')}",
        "",
        "| " + " | ".join(c for c, _ in columns) + " |",
        "| " + " | ".join("---:" if a == ">" else "---" for _, a in columns) + " |",
    ]
    for layer in report.layers:
        row = _row(layer, measures)
        cells = [md_code(row[0]), *(md_cell(c) for c in row[1:])]
        lines.append("| " + " | ".join(cells) + " |")
    for summary in _summary_rows(report):
        summary[0] = "**" + summary[0] + "**"
        lines.append("| " + " | ".join(summary) + " |")
    for paragraph in [md_cell(_worst_line(report)),  # each its own paragraph
                      *(f"**{md_cell(n)}**" for n in report.summary.get("notes", []))]:
        lines += ["", paragraph]
    notes = _notes(report)
    if notes:
        lines += ["", *(f"- {md_cell(n)}" for n in notes)]
    return "\n".join(lines) + "\n"
