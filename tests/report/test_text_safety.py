"""Issue 13, item 17: names and messages never break the format they are written in."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import torch
from torch import nn

from filterwatch import analyze
from filterwatch.gate import evaluate, render_verdict, rules_from_mapping
from filterwatch.report import to_markdown, to_table
from tests.golden_helpers import _run

_NASTY = "conv\x1b[2J\x00|x"


def _report() -> object:
    net = nn.Module()
    conv = nn.Conv2d(3, 8, 3)
    with torch.no_grad():
        conv.weight[:6] = 0
    net.add_module(_NASTY, conv)
    return analyze(net)


def test_the_terminal_table_shows_control_characters_instead_of_running_them() -> None:
    text = to_table(_report())  # type: ignore[arg-type]
    assert "\x1b" not in text and "\x00" not in text
    assert "conv\\x1b[2J\\x00|x" in text


def test_a_pipe_in_a_name_does_not_split_the_markdown_cell() -> None:
    text = to_markdown(_report())  # type: ignore[arg-type]
    row = next(line for line in text.splitlines() if line.startswith("| `conv"))
    header = next(line for line in text.splitlines() if line.startswith("| layer"))
    assert row.count(" | ") == header.count(" | ")  # as many cells as the header
    assert "\\|x" in row and "\x1b" not in text


def test_junit_xml_stays_well_formed() -> None:
    report = _report()
    config = rules_from_mapping({"max-sparsity": 0.1})
    verdict = evaluate(report, config)  # type: ignore[arg-type]
    assert not verdict.passed
    xml = render_verdict(verdict, report, config, "junit")  # type: ignore[arg-type]
    suite = ET.fromstring(xml.split("\n", 1)[1])  # parses: no control characters left
    case = suite.find("testcase")
    assert case is not None and "\\x1b" in case.get("classname", "")


def test_a_pickled_module_names_what_it_needs(tmp_path: Path) -> None:
    torch.save(nn.Conv2d(1, 2, 3), tmp_path / "module.pt")
    code, _, err = _run("scan", str(tmp_path / "module.pt"))
    assert code == 2
    assert "needs `torch.nn.modules.conv.Conv2d` to unpickle" in err
    assert "\x1b" not in err and err.count("\n") == 1
