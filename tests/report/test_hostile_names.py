"""Layer names are text, never markup: mathtext (`$...$`) in the pictures, backticks and raw
HTML in Markdown, newlines in the terminal table, pipes in the TensorBoard alert table."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import torch

from filterwatch import analyze
from filterwatch.gate import evaluate, rules_from_mapping
from filterwatch.gate.render import render_verdict
from filterwatch.report import to_markdown, to_table

MATH = "a$\\nosuchcommand^$b"
HOSTILE = "x`|y<img src=http://t/x.png>![b](http://t)\nPASSED: all good"


def _outside_code(text: str) -> str:
    """What Markdown renders as markup: the text without its code spans."""
    return re.sub(r"(`+) .*? \1|`[^`]*`", "", text)


def _state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {f"{MATH}.weight": torch.randn(16, 8, 3, 3), f"{HOSTILE}.weight": torch.randn(16, 8, 3, 3)}


def test_mathtext_in_a_name_draws_as_text(tmp_path: Path) -> None:
    from filterwatch.integrations.raster import heatmap_picture
    from filterwatch.report.registry import get

    report = analyze(_state())
    report.step = 0
    picture = heatmap_picture([report, report], get("sparsity"))
    assert picture.png().startswith(b"\x89PNG")
    assert "a$\\nosuchcommand^$b" in picture.texts  # as written, one line
    assert any(t.startswith("x`|y<img") and "\n" not in t for t in picture.texts)
    from safetensors.torch import save_file

    ckpt = tmp_path / "m.safetensors"
    save_file(_state(), str(ckpt))
    done = subprocess.run([sys.executable, "-m", "filterwatch", "check", str(ckpt), "--format", "html",
                           "--output", str(tmp_path / "r.html")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r.html").stat().st_size > 1000


def test_markdown_keeps_names_in_their_code_span_and_renders_no_html() -> None:
    state = _state()
    state[f"{HOSTILE}.weight"][:12] = 0.0  # a violation, so the name reaches the gate's table
    report = analyze(state)
    verdict = evaluate(report, rules_from_mapping({}))
    for text in (to_markdown(report), render_verdict(verdict, report, rules_from_mapping({}), "markdown")):
        rendered = _outside_code(text)  # escaped (\\<, \\!, \\]) is shown, not rendered
        assert not re.search(r"(?<!\\)<img|(?<!\\)!(?<!\\)\[|(?<!\\)\]\(http", rendered), rendered
        assert "`` x`\\|y" in text  # fenced by two backticks: the name's own cannot close it
        assert not any(line.startswith("PASSED") for line in text.splitlines())


def test_the_terminal_table_prints_a_name_on_one_line() -> None:
    text = to_table(analyze(_state()))
    assert not any(line.startswith("PASSED") for line in text.splitlines())
    assert "\\x0aPASSED" in text


def test_the_tensorboard_alert_table_escapes_names(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    from filterwatch.integrations.tensorboard import TensorBoardSink
    from filterwatch.monitor import Alert, Snapshot

    writer = SummaryWriter(str(tmp_path))
    sink = TensorBoardSink(writer, images_every=1000, histograms=False)
    report = analyze(_state())
    report.step = 3
    alert = Alert(3, HOSTILE, "sparse", 0.8, 0.0, f"{HOSTILE}: became | sparse `x`")
    sink.write(Snapshot(report, [report], alerts=[alert]))
    writer.close()
    acc = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    acc.Reload()
    table = acc.Tensors("alerts/filterwatch/text_summary")[0].tensor_proto.string_val[0].decode()
    row = table.splitlines()[-1]
    assert row.count(" | ") == 3  # four cells, no more
    assert not re.search(r"(?<!\\)<img", _outside_code(row))
