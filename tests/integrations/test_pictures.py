"""Issue 14: pictures on fixed scales, terminal tables that fit, a self-contained HTML page."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from filterwatch import analyze
from filterwatch.integrations.figures import filter_grid
from filterwatch.integrations.raster import Picture, health_colours, heatmap_picture, pc1_picture
from filterwatch.report import to_table
from filterwatch.report.registry import get
from tests.conftest import small_cnn
from tests.golden_helpers import _run


def _pixel(picture: Picture, box: str, fx: float, fy: float) -> list[int]:
    x0, y0, x1, y1 = picture.boxes[box]
    return picture.rgb[int(y0 + fy * (y1 - y0)), int(x0 + fx * (x1 - x0))].tolist()


def _rgb8(colour: torch.Tensor) -> list[int]:
    return (colour * 255).round().to(torch.uint8).tolist()


def test_heatmap_colours_mean_the_same_in_every_run() -> None:
    """A value's colour depends on the value only: the same VE/H_T is the same colour whatever
    else is in the picture, healthy values are green, unhealthy ones red, undefined grey."""
    m = get("variance_entropy_norm")
    green, red, collapsed = health_colours(m, torch.tensor([0.6, 1.15, 0.1]))
    assert green[1] > green[0] and red[0] > red[1] and collapsed[0] > collapsed[1]
    assert health_colours(m, torch.tensor([5.0])).tolist() == health_colours(m, torch.tensor([1.2])).tolist()
    assert health_colours(m, torch.tensor([math.nan]))[0].tolist() == pytest.approx([0.85] * 3)
    rep = analyze(small_cnn())
    dense = heatmap_picture([rep, rep], get("sparsity"))
    sparse = analyze({"a.weight": torch.zeros(8, 4, 3, 3).index_fill_(0, torch.tensor([0]), 1.0)})
    assert sparse.layers[0].sparsity == pytest.approx(7 / 8)
    for picture, report in ((dense, rep), (heatmap_picture([sparse], get("sparsity")), sparse)):
        value = float(report.layers[0].sparsity)  # the first row, whatever the other rows hold
        want = _rgb8(health_colours(get("sparsity"), torch.tensor([value]))[0])
        assert _pixel(picture, "cells", 0.5, 0.5 / len(report.layers)) == want


def test_heatmap_has_layer_names_steps_and_a_colour_bar() -> None:
    rep = analyze(small_cnn())
    rep.step = 40
    picture = heatmap_picture([rep, rep], get("variance_entropy"))
    assert {"0", "2", "5", "step", "40", "VE / log10 K"} <= set(picture.texts)
    m = get("variance_entropy")
    top, bottom = _pixel(picture, "bar", 0.5, 0.01), _pixel(picture, "bar", 0.5, 0.99)
    assert top == _rgb8(health_colours(m, torch.tensor([1.0]))[0])  # the bar spans the range
    assert bottom == _rgb8(health_colours(m, torch.tensor([0.0]))[0])


def test_heatmap_of_a_hundred_layers_stays_readable() -> None:
    reports = [analyze({f"block{i}.weight": torch.randn(8, 4, 3, 3) for i in range(100)})] * 3
    picture = heatmap_picture(reports, get("sparsity"))
    assert picture.rgb.shape[0] < 700 and 30 <= sum(t.startswith("block") for t in picture.texts) < 100


def test_filter_grid_one_scale_per_layer_so_sparse_filters_look_empty() -> None:
    w = torch.randn(4, 2, 3, 3)
    w[1] = 0.0  # a dead filter
    w[2] *= 1e-3  # a nearly-zero one: faint on the layer's scale, not as vivid as the rest
    img = filter_grid(w, cell=1)
    cols = [1, 2, 3, 5, 6, 7]  # the two 3x3 slices, without the separator between them
    rows = [img[:, 1 + 4 * i: 4 + 4 * i][:, :, cols] for i in range(4)]
    assert torch.allclose(rows[1], torch.ones_like(rows[1]))  # white: empty
    assert (1 - rows[2]).abs().max() < 0.01 < (1 - rows[0]).abs().max()


def test_filter_grid_lays_out_depthwise_layers_as_a_square() -> None:
    img = filter_grid(torch.randn(32, 1, 3, 3), cell=1)
    assert img.shape[1] < 3 * img.shape[2]  # not one long column


def test_pc1_picture_has_axes_a_legend_and_both_on_one_scale() -> None:
    picture = pc1_picture([("conv$1$", [0, 10, 0], [10, 0, 0]), ("conv2", [5, 5, 0], [0, 5, 5])])
    assert {"conv$1$", "conv2", "PC1 bin", "share", "reference", "current"} <= set(picture.texts)
    assert "1.00" in picture.texts  # shares of the filters: the top of conv$1$'s axis is 1
    grey, orange, white = [191, 191, 191], [240, 112, 16], [255, 255, 255]
    assert _pixel(picture, "conv$1$", 1 / 6, 0.5) == grey  # the reference's bin 0 is full
    assert _pixel(picture, "conv$1$", 5 / 6, 0.5) == white  # its bin 2 is empty
    x0, y0, x1, _ = picture.boxes["conv$1$"]
    row = picture.rgb[y0 + 1, (x0 + x1) // 2 - 5:(x0 + x1) // 2 + 5].tolist()
    assert orange in row  # the current filters all in bin 1: the line at the top


def test_table_fits_the_terminal_and_cuts_names_in_the_middle() -> None:
    net = nn.Module()
    net.add_module("backbone_with_a_very_long_name_indeed", nn.Conv2d(3, 8, 3))
    report = analyze(net)
    text = to_table(report, width=60)
    assert max(len(line) for line in text.splitlines()) <= 60
    assert "…" in text and "left out to fit 60 columns" in text
    wide = to_table(report)
    assert "backbone_with_a_very_long_name_indeed" in wide


def test_scan_follows_columns(checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "64")
    code, out, _ = _run("scan", str(checkpoints["pt"]), "-q")
    assert code == 0 and max(len(line) for line in out.splitlines()) <= 64


def test_formats_are_the_same_everywhere() -> None:
    drift = get("drift")
    assert drift.format(-1e-9) == "0.000" and drift.format(4.759e-07) == "0.000"
    assert drift.format(0.95) == "0.950"


def test_nothing_named_worst_when_nothing_is_bad_and_untrained_models_are_named() -> None:
    trained = analyze({"a.weight": torch.randn(64, 1, 3, 3).sign() * torch.rand(64, 1, 1, 1) + 0.0})
    text = to_table(trained)
    assert "outside the healthy ranges:" in text
    random = to_table(analyze(small_cnn()))
    assert "looks untrained" in random


def test_every_cli_option_has_help() -> None:
    from filterwatch.cli.parser import _build_parser

    parser = _build_parser()
    subparsers = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    stack = [parser] + [p for sp in subparsers for p in sp.choices.values()]
    while stack:
        p = stack.pop()
        for action in p._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                stack.extend(action.choices.values())  # type: ignore[attr-defined]
            elif action.dest not in ("help", "version", "command", "ref_command"):
                assert action.help, f"{p.prog} {action.option_strings or action.dest}"


@pytest.mark.parametrize("command", ["scan", "check"])
def test_html_report_is_self_contained(checkpoints: dict[str, Path], tmp_path: Path, command: str) -> None:
    out = tmp_path / "report.html"
    code, _, err = _run(command, str(checkpoints["pt"]), "--format", "html", "-o", str(out), "-q")
    assert code == 0, err
    page = out.read_text()
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)  # nothing fetched
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert page.count("<svg") >= 4  # one chart per measure, inline
    assert "data:image/png;base64," in page  # filter grids of the worst layers, inline
    assert "Outside the healthy ranges" in page
    if command == "check":
        assert "PASSED" in page or "FAILED" in page


@pytest.mark.parametrize("affordable", [True, False])
def test_heatmaps_are_drawn_only_within_the_budget(tmp_path: Path, affordable: bool) -> None:
    """The costliest extra (the heatmaps) asks the schedule first; a skip says so once."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    from filterwatch.integrations.tensorboard import TensorBoardSink
    from filterwatch.monitor import Snapshot

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 8, 3))
    asked: list[float] = []
    writer = SummaryWriter(str(tmp_path))
    sink = TensorBoardSink(writer, images_every=1, affords=lambda s: asked.append(s) or affordable)
    history = [analyze(net) for _ in range(4)]
    for i, report in enumerate(history):
        report.step = i
        sink.write(Snapshot(report, history[: i + 1], final=i == 3))
    writer.close()
    acc = EventAccumulator(str(tmp_path), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    heatmaps = [t for t in acc.Tags()["images"] if t.startswith("filterwatch/heatmaps/")]
    assert len(asked) == 1  # the third snapshot asks; the final one draws them whatever the budget
    assert heatmaps and sink.heatmaps_skipped == (0 if affordable else 1)
    assert ("filterwatch/notes/text_summary" in acc.Tags()["tensors"]) is not affordable


def test_no_skip_note_when_the_skipped_snapshot_was_the_last(tmp_path: Path) -> None:
    """Training ended at a step whose heatmaps the budget skipped: finish() draws them there,
    so no note says they were skipped (the TensorBoard text tab showed that contradiction)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    from filterwatch.integrations.tensorboard import TensorBoardSink
    from filterwatch.monitor import Snapshot

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 8, 3))
    writer = SummaryWriter(str(tmp_path))
    sink = TensorBoardSink(writer, images_every=1, affords=lambda s: False)
    history = [analyze(net) for _ in range(3)]
    for i, report in enumerate(history):
        report.step = i
        sink.write(Snapshot(report, history[: i + 1]))
    sink.finish(history)
    writer.close()
    acc = EventAccumulator(str(tmp_path), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    heatmaps = [t for t in acc.Tags()["images"] if t.startswith("filterwatch/heatmaps/")]
    assert sink.heatmaps_skipped == 1 and heatmaps
    assert all(acc.Images(t)[-1].step == 2 for t in heatmaps)
    assert "filterwatch/notes/text_summary" not in acc.Tags()["tensors"]
