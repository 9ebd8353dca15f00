"""Render a gate verdict: table, JSON, Markdown (CI job summaries) and JUnit XML."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from typing import Any, Literal

from ..report import Report, to_markdown, to_table
from ..report.text import md_cell, md_code, printable
from .evaluate import Verdict
from .rules import GateConfig

__all__ = ["VERDICT_FORMATS", "VerdictFormat", "render_verdict", "verdict_dict"]

VerdictFormat = Literal["table", "json", "markdown", "junit"]
VERDICT_FORMATS: tuple[VerdictFormat, ...] = ("table", "json", "markdown", "junit")


def _headline(verdict: Verdict) -> str:
    n_layers = len({layer for layer, _ in verdict.checks})
    ran = verdict.ran
    also = f"; {verdict.skipped} skipped" if verdict.skipped else ""
    if verdict.warnings:
        also += f"; {len(verdict.warnings)} warning(s) (degenerate but working: not failed)"
    if verdict.passed:
        return f"PASSED: {ran} checks on {n_layers} layers, no violation{also}"
    return (f"FAILED: {len(verdict.violations)} violation(s) in "
            f"{len({v.layer for v in verdict.violations})} of {n_layers} layers; {ran} checks ran{also}")


def verdict_dict(verdict: Verdict, report: Report, config: GateConfig) -> dict[str, Any]:
    return {
        "passed": verdict.passed,
        "summary": _headline(verdict),
        "config": config.source,
        "violations": [v.to_dict() for v in verdict.violations],
        "warnings": [v.to_dict() for v in verdict.warnings],
        "checks": [{"layer": layer, "group": group, "status": status}
                   for (layer, group), status in verdict.checks.items()],
        "report": report.to_dict(),
    }


def _table(verdict: Verdict, report: Report, config: GateConfig, width: int | None = None) -> str:
    about = {v.measure for v in (*verdict.violations, *verdict.warnings)}  # columns they are about
    lines = [to_table(report, width, keep=about).rstrip("\n"), "", f"gate rules: {config.source}"]
    for tag, v in [("FAIL", v) for v in verdict.violations] + [("WARN", v) for v in verdict.warnings]:
        text = f"{tag} {printable(v.message, keep='')}"
        lines += (textwrap.wrap(text, width, initial_indent="  ", subsequent_indent="       ")
                  if width else ["  " + text])
    lines.append(_headline(verdict))
    return "\n".join(lines) + "\n"


def _markdown(verdict: Verdict, report: Report, config: GateConfig) -> str:
    icon = ":white_check_mark:" if verdict.passed else ":x:"
    lines = [f"## filterwatch gate {icon} {_headline(verdict)}", "",
             f"Rules: {md_code(config.source)}", ""]
    for title, found in (("", verdict.violations), ("Warnings (degenerate but working: not failed)",
                                                    verdict.warnings)):
        if not found:
            continue
        if title:
            lines += [f"### {title}", ""]
        lines += ["| layer | measure | value | limit | rule | hint |", "|---|---|---:|---:|---|---|"]
        lines += [f"| {md_code(v.layer)} | {md_cell(v.measure)} | "
                  f"{'n/a' if v.value is None else format(v.value, '.4g')} | {v.limit:.4g} | "
                  f"{md_cell(v.rule)} | {md_cell(v.filled_hint)} |" for v in found]
        lines.append("")
    return "\n".join(lines) + "\n" + to_markdown(report)


def _junit(verdict: Verdict, report: Report, config: GateConfig) -> str:
    failures = sum(1 for s in verdict.checks.values() if s == "fail")
    skipped = sum(1 for s in verdict.checks.values() if s.startswith("skip"))
    suite = ET.Element("testsuite", name="filterwatch", tests=str(len(verdict.checks)),
                       failures=str(failures), errors="0", skipped=str(skipped))
    by_key: dict[tuple[str, str], list[str]] = {}
    for v in (*verdict.violations, *verdict.warnings):  # XML forbids control characters
        by_key.setdefault((v.layer, v.group), []).append(printable(v.message, keep=""))
    for (layer, group), status in verdict.checks.items():
        case = ET.SubElement(suite, "testcase", classname=f"filterwatch.{printable(layer, keep='')}",
                             name=group)
        if status == "fail":
            messages = by_key[(layer, group)]
            node = ET.SubElement(case, "failure", message=messages[0], type="filterwatch.gate")
            node.text = "\n".join(messages)
        elif status == "warn":  # JUnit has no warning: a pass that says why in its output
            ET.SubElement(case, "system-out").text = "\n".join(f"WARN {m}" for m in by_key[(layer, group)])
        elif status.startswith("skip"):
            ET.SubElement(case, "skipped", message=printable(status[len("skip: "):], keep=""))
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def render_verdict(verdict: Verdict, report: Report, config: GateConfig, fmt: VerdictFormat,
                   width: int | None = None) -> str:
    """``fmt`` is one of table, json, markdown, junit (``width``: of the table)."""
    if fmt == "json":
        return json.dumps(verdict_dict(verdict, report, config), indent=2, allow_nan=False) + "\n"
    if fmt == "markdown":
        return _markdown(verdict, report, config)
    if fmt == "junit":
        return _junit(verdict, report, config)
    return _table(verdict, report, config, width)
