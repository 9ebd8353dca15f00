"""A self-contained HTML report: one file, no network (inline SVG charts, inline PNG filter
grids, inline CSS, no script), so it opens from a CI artifact or offline.

It shows, top to bottom: the verdict and its violations with hints (for ``check``), what is
outside the healthy ranges, one chart per measure across all layers with the healthy band
shaded, drift against its noise floor, filter grids of the worst layers, and the full table.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from typing import Any

import torch

from ..report import Report
from ..report.registry import Measure, get, select
from ..report.render import report_measures, shorten, unhealthy
from .figures import filter_grid, png_bytes, svg_text
from .raster import shown_value, view_range

__all__ = ["to_html", "worst_layers"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
.pass{background:#e7f5e9;border-left:6px solid #2e7d32;padding:8px 12px}
.fail{background:#fdecea;border-left:6px solid #c62828;padding:8px 12px}
.note{background:#fff8e1;border-left:6px solid #f9a825;padding:8px 12px;margin:6px 0}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:3px 7px}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
td.bad{background:#fdecea;color:#b71c1c;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:12px} .charts svg{max-width:100%;height:auto}
.grids{display:flex;flex-wrap:wrap;gap:18px} .grids figure{margin:0}
figcaption{font-size:12px;color:#555}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _chart(report: Report, m: Measure) -> str:
    """A bar per layer on the measure's fixed range, the healthy band shaded green."""
    from matplotlib.figure import Figure

    names = [layer.name for layer in report.layers]
    values = [shown_value(layer, m) for layer in report.layers]
    lo, hi = view_range(m)
    fig = Figure(figsize=(max(4.0, min(0.28 * len(names) + 1.5, 11.5)), 2.8), dpi=100,
                 layout="constrained")
    ax = fig.add_subplot()
    if m.healthy is not None:
        ax.axhspan(max(m.healthy[0], lo), min(m.healthy[1], hi) if m.healthy[1] > m.healthy[0]
                   else m.healthy[0] + (hi - lo) * 0.01, color="#c8e6c9", zorder=0,
                   label="healthy")
    colours = ["#9e9e9e" if v is None else ("#c62828" if not m.is_healthy(v, layer) else "#1565c0")
               for v, layer in zip(values, report.layers, strict=True)]
    ax.bar(range(len(names)), [0.0 if v is None else min(max(v, lo), hi) for v in values],
           color=colours, zorder=2)
    ax.set_ylim(lo, hi)
    ax.set_xticks(range(len(names)), [shorten(n, 18) for n in names], rotation=60, ha="right",
                  fontsize=7, parse_math=False)
    label = f"{m.label} / log10 K" if m.hi_log10_k else m.label
    judged = ("red: inside the layer's own random band; small layers VE cannot judge" if m.random_band
              else f"{'low' if m.worse == 'low' else 'high'} is unhealthy")
    ax.set_title(f"{label} ({judged})", fontsize=9)
    return svg_text(fig)


def _drift_chart(report: Report) -> str | None:
    """Drift and its noise floor per layer, on a log axis: a layer whose bar stands well
    above its noise mark has really shifted; one at its mark only shows sampling noise."""
    from matplotlib.figure import Figure

    rows = [(layer.name, layer.drift, layer.drift_noise) for layer in report.layers
            if layer.drift is not None and layer.drift_noise]
    if not rows:
        return None
    fig = Figure(figsize=(max(4.0, min(0.28 * len(rows) + 1.5, 11.5)), 3.0), dpi=100,
                 layout="constrained")
    ax = fig.add_subplot()
    x = range(len(rows))
    ratio = get("drift_ratio")
    colours = ["#c62828" if not ratio.is_healthy(d / n) else "#1565c0" for _, d, n in rows]
    ax.bar(x, [max(d, 1e-4) for _, d, _ in rows], color=colours, label="drift", zorder=2)
    ax.scatter(x, [n for _, _, n in rows], marker="_", s=300, color="black", zorder=3,
               label="noise floor (sampling alone)")
    ax.set_yscale("log")
    top = max(max(d for _, d, _ in rows), max(n for _, _, n in rows))
    ax.set_ylim(1e-4, top * 30)  # room above the bars for the legend
    ax.set_xticks(list(x), [shorten(name, 18) for name, _, _ in rows], rotation=60, ha="right",
                  fontsize=7, parse_math=False)
    ax.legend(fontsize=7, loc="upper right", ncol=2)
    ax.set_title("drift against its noise floor (red: more than 3x the noise)", fontsize=9)
    return svg_text(fig)


def worst_layers(report: Report, n: int = 6) -> list[str]:
    """The ``n`` layers with the most measures outside their healthy band (then the most
    sparse), unhealthy ones first."""
    judged = [m for m in select() if m.healthy is not None]

    def badness(layer: Any) -> tuple[int, float]:
        bad = sum(not m.is_healthy(layer.value(m.key), layer) for m in judged)
        return bad, layer.sparsity or 0.0

    ranked = sorted(report.layers, key=badness, reverse=True)
    return [layer.name for layer in ranked[:n]]


def _grid_png(weight: torch.Tensor) -> str:
    from matplotlib.figure import Figure

    img = filter_grid(weight, cell=1).permute(1, 2, 0).numpy()
    h, w = img.shape[0], img.shape[1]
    scale = max(1.0, 260.0 / max(h, w))
    fig = Figure(figsize=(w * scale / 100 + 0.1, h * scale / 100 + 0.1), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(img, interpolation="nearest")
    ax.axis("off")
    return base64.b64encode(png_bytes(fig)).decode("ascii")


def _table(report: Report) -> str:
    ms = list(report_measures(report))
    head = "".join(f"<th>{_e(m.label)}</th>" for m in ms)
    rows = []
    for layer in report.layers:
        cells = "".join(
            f'<td class="num{"" if m.is_healthy(layer.value(m.key), layer) else " bad"}">'
            f"{_e(m.format(layer.value(m.key)))}</td>" for m in ms)
        rows.append(f"<tr><td><code>{_e(layer.name)}</code></td><td>{_e('x'.join(map(str, layer.shape)))}"
                    f"</td>{cells}</tr>")
    return f"<table><tr><th>layer</th><th>shape</th>{head}</tr>{''.join(rows)}</table>"


def to_html(report: Report, verdict: Mapping[str, Any] | None = None,
            kernels: Mapping[str, torch.Tensor] | None = None) -> str:
    """The report (and a gate verdict, as ``verdict_dict`` gives it) as one HTML page;
    ``kernels`` (layer name -> weight) adds filter grids of those layers."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>filterwatch: "
             f"{_e(report.source)}</title><style>{_CSS}</style></head><body>",
             f"<h1>filterwatch report: {_e(report.source or 'model')}</h1>",
             f"<p>{len(report.layers)} layers, {report.summary.get('n_filters', 0)} filters; "
             f"filterwatch {_e(report.filterwatch_version)}, {_e(report.created)}"
             + (f"; reference: {_e(report.settings['reference'])}" if report.settings.get("reference")
                else "") + "</p>"]
    if verdict is not None:
        ok = bool(verdict.get("passed"))
        parts.append(f"<div class='{'pass' if ok else 'fail'}'><b>{_e(verdict.get('summary', ''))}</b>"
                     f"<br>rules: {_e(verdict.get('config', ''))}</div>")
        for key, title in (("violations", "Violations"),
                           ("warnings", "Warnings (degenerate but working: not failed)")):
            if not verdict.get(key):
                continue
            rows = "".join(f"<tr><td><code>{_e(v['layer'])}</code></td><td>{_e(v['measure'])}</td>"
                           f"<td>{_e(v['statement'])}</td><td>{_e(v['hint'])}</td></tr>"
                           for v in verdict[key])
            parts.append(f"<h2>{title}</h2><table><tr><th>layer</th><th>measure</th>"
                         f"<th>what</th><th>hint</th></tr>{rows}</table>")
    for note in report.summary.get("notes", []):
        parts.append(f"<div class='note'>{_e(note)}</div>")
    outside = unhealthy(report)
    items = "".join(f"<li>{_e(o.line(shown=len(o.layers)))}: {_e(o.hint)}</li>" for o in outside)
    parts.append("<h2>Outside the healthy ranges</h2>"
                 + (f"<ul>{items}</ul>" if outside else "<p>nothing</p>"))
    charts = [_chart(report, m) for m in select() if m.column == "always" and not m.integer]
    drift = _drift_chart(report)
    parts.append("<h2>Measures across layers</h2><div class='charts'>" + "".join(charts) + "</div>")
    if drift is not None:
        parts.append("<h2>Drift against its noise</h2><div class='charts'>" + drift + "</div>")
    if kernels:
        grids = "".join(f"<figure><img alt='filters of {_e(name)}' src='data:image/png;base64,"
                        f"{_grid_png(w)}'><figcaption><code>{_e(name)}</code></figcaption></figure>"
                        for name, w in kernels.items())
        parts.append("<h2>Filters of the worst layers</h2><p>one colour scale per layer: white is 0, "
                     "so sparse and dead filters look empty</p><div class='grids'>" + grids + "</div>")
    parts.append("<h2>All layers</h2>" + _table(report) + "</body></html>\n")
    return "\n".join(parts)
