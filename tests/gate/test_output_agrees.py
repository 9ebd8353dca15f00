"""Output that agrees with itself: one name per quantity, checks that ran counted apart from
skipped ones, means only of what averages, the verdict's columns kept at narrow widths, long
lines wrapped, Markdown notes in paragraphs of their own, each hint once in HTML."""

from __future__ import annotations

import torch

from filterwatch import analyze
from filterwatch.gate import evaluate, rules_from_mapping
from filterwatch.gate.render import render_verdict, verdict_dict
from filterwatch.report import to_markdown, to_table


def _report():  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    state = {"features.conv_a.weight": torch.randn(128, 16, 3, 3),
             "features.conv_b.weight": torch.randn(128, 128, 3, 3)}
    state["features.conv_b.weight"][:115] = 0.0  # 115 of 128 channels dead
    state["features.conv_a.weight"][:, :, :, :] = state["features.conv_a.weight"][:1]  # collapsed
    return analyze(state)


def test_a_share_and_a_count_carry_different_names_everywhere() -> None:
    report = _report()
    config = rules_from_mapping({})
    verdict = evaluate(report, config)
    dead = next(v for v in verdict.violations if v.rule == "max-dead-channel-share")
    assert dead.measure == "dead_channel_share" and "(115 of 128 output channels)" in dead.message
    table = render_verdict(verdict, report, config, "table", 200)
    assert "dead_channel_share = 0.8984" in table and "dead_channels = 0.8" not in table
    assert verdict_dict(verdict, report, config)["violations"][0]["statement"] in table


def test_skipped_checks_are_not_counted_as_checks() -> None:
    report = _report()
    verdict = evaluate(report, rules_from_mapping({}))
    assert verdict.skipped > 0 and verdict.ran + verdict.skipped == len(verdict.checks)
    headline = render_verdict(verdict, report, rules_from_mapping({}), "table", 200).splitlines()[-1]
    assert f"{verdict.ran} checks ran; {verdict.skipped} skipped" in headline


def test_the_summary_averages_only_what_averages() -> None:
    text = to_table(_report())
    mean = next(line for line in text.splitlines() if line.startswith("weighted mean"))
    total = next(line for line in text.splitlines() if line.startswith("total"))
    assert "115" not in mean and total.split()[-2:] == ["115", "0"]


def test_a_narrow_table_keeps_the_columns_of_the_verdict_and_wraps_its_lines() -> None:
    report = _report()
    config = rules_from_mapping({})
    text = render_verdict(evaluate(report, config), report, config, "table", 80)
    assert all(len(line) <= 80 for line in text.splitlines())
    header = text.splitlines()[0].split()
    assert "VE" in header and "dead" in header and "sparsity" in header


def test_markdown_notes_are_paragraphs_of_their_own() -> None:
    lines = to_markdown(_report()).splitlines()
    worst = next(i for i, line in enumerate(lines) if line.startswith("outside the healthy ranges"))
    assert lines[worst - 1] == "" and (worst + 1 == len(lines) or lines[worst + 1] == "")


def test_the_html_report_prints_each_hint_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    from safetensors.torch import save_file

    torch.manual_seed(0)
    state = {"c.weight": torch.randn(128, 16, 3, 3)}
    state["c.weight"][:100] = 0.0
    save_file(state, str(tmp_path / "m.safetensors"))
    out = tmp_path / "r.html"
    subprocess.run([sys.executable, "-m", "filterwatch", "check", str(tmp_path / "m.safetensors"),
                    "--format", "html", "--output", str(out)], capture_output=True, text=True)
    html = out.read_text()
    hint = "whole output channels are zero: pruned, or killed by L1 or dead ReLUs"
    assert html.count(hint) <= 2  # once in the verdict table, at most once in the healthy-range list
    section = html.split("<table")[1].split("</table>")[0]
    assert section.count(hint) == 1
