"""FilterWatch with a real Lightning Trainer on CPU."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from filterwatch import FilterWatch, InputError, LayerSelection, analyze
from filterwatch.monitor import Monitor
from tests.lightning_helpers import TinyNet, loader, trainer

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:FilterWatch. the trainer has no logger")]


def _events(log_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "histograms": 0,
                                                        "tensors": 0})
    acc.Reload()
    return acc


def test_scalars_in_tensorboard_equal_analyze(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyNet()
    cb = FilterWatch(every_n_steps=3)
    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer(tmp_path, [cb], logger=logger).fit(model, loader())
    acc = _events(Path(logger.log_dir))
    tags = acc.Tags()["scalars"]
    for name in ("filterwatch/body.0/sparsity", "filterwatch/body.2/variance_entropy",
                 "filterwatch/body.2/drift", "filterwatch/body.2/relative_change",
                 "filterwatch_model/variance_entropy", "filterwatch/overhead_ms"):
        assert name in tags, name
    steps = [e.step for e in acc.Scalars("filterwatch/body.2/variance_entropy")]
    assert steps == [0, 3, 6, 8]  # every 3 steps from step 0, plus the final snapshot (8 steps)
    final = analyze(model, reference=cb.reference)
    for layer in final.layers:
        for measure in ("sparsity", "variance_entropy", "orthogonality", "drift", "relative_change"):
            logged = acc.Scalars(f"filterwatch/{layer.name}/{measure}")[-1]
            assert logged.step == 8
            assert logged.value == pytest.approx(layer.value(measure), rel=1e-6, abs=1e-7)
    # drift and relative change start at exactly 0: the reference is the fit-start weights
    assert acc.Scalars("filterwatch/body.2/relative_change")[0].value == pytest.approx(0.0)
    assert acc.Scalars("filterwatch/body.2/drift")[0].value == pytest.approx(0.0)


def test_images_histograms_layout_and_history_file(tmp_path: Path) -> None:
    model = TinyNet()
    logger = TensorBoardLogger(tmp_path, name="tb")
    cb = FilterWatch(every_n_steps=4, images_every=1)
    trainer(tmp_path, [cb], logger=logger).fit(model, loader())
    acc = _events(Path(logger.log_dir))
    images = acc.Tags()["images"]
    assert "filterwatch_filters/body.0" in images
    assert "filterwatch/heatmaps/variance_entropy" in images
    hists = acc.Tags()["histograms"]
    assert "filterwatch/body.2/filter_norms" in hists and "filterwatch/body.2/weights" in hists
    assert "filterwatch/pc1" in images  # current on the reference, every layer in one picture
    texts = acc.Tags()["tensors"]
    assert "alerts/filterwatch/text_summary" in texts  # "no alerts so far", not an empty tab
    history = (Path(logger.log_dir) / "filterwatch_history.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in history] == [0, 4, 8]
    assert "step 8" in cb.history_table() and "body.2" in cb.summary()


def test_every_logger_gets_the_scalars(tmp_path: Path) -> None:
    csv = CSVLogger(tmp_path, name="csv")
    trainer(tmp_path, [FilterWatch(every_n_steps=4)], logger=[csv]).fit(TinyNet(), loader())
    header = (Path(csv.log_dir) / "metrics.csv").read_text().splitlines()[0]
    assert "filterwatch/body.0/sparsity" in header and "filterwatch_model/drift" in header


def test_no_logger_warns_and_keeps_history(tmp_path: Path) -> None:
    cb = FilterWatch(every_n_steps=2)
    with pytest.warns(UserWarning, match="no logger"):
        trainer(tmp_path, [cb]).fit(TinyNet(), loader())
    assert [r.step for r in cb.history] == [0, 2, 4, 6, 8]
    assert (tmp_path / "filterwatch_history.jsonl").exists()


def test_model_without_conv_layers_warns_and_trains(tmp_path: Path) -> None:
    cb = FilterWatch(every_n_steps=2)
    tr = trainer(tmp_path, [cb])
    with pytest.warns(UserWarning, match="no conv layers"):
        tr.fit(TinyNet(conv=False), loader())
    assert tr.global_step == 8 and cb.disabled and cb.history == []


def test_failing_monitor_does_not_stop_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("monitor exploded")

    monkeypatch.setattr(Monitor, "measure", boom)
    cb = FilterWatch(every_n_steps=2)
    tr = trainer(tmp_path, [cb])
    with pytest.warns(UserWarning, match="disabled itself.*monitor exploded"):
        tr.fit(TinyNet(), loader())
    assert tr.global_step == 8 and cb.disabled
    strict = FilterWatch(every_n_steps=2, strict=True)
    with pytest.raises(RuntimeError, match="monitor exploded"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer(tmp_path, [strict]).fit(TinyNet(), loader())


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_resume_keeps_reference_and_continues_history(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyNet()
    start_weights = model.body[2].weight.detach().clone()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    cb = FilterWatch(every_n_steps=3)
    trainer(tmp_path, [cb, ckpt], enable_checkpointing=True).fit(model, loader())
    assert [r.step for r in cb.history] == [0, 3, 6, 8]
    resumed_cb = FilterWatch(every_n_steps=3)
    resumed = TinyNet()
    trainer(tmp_path, [resumed_cb, ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)], max_epochs=2,
            enable_checkpointing=True).fit(resumed, loader(),
                                                     ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    steps = [r.step for r in resumed_cb.history]
    assert steps == [0, 3, 6, 8, 9, 12, 15, 16]  # multiples of 3, and the two final snapshots
    assert len(set(steps)) == len(steps)
    assert torch.equal(resumed_cb.reference.snapshot["body.2"], start_weights)
    assert resumed_cb.reference.sources == ["weights at the start of monitoring"]


def test_alerts_fire_when_a_layer_is_killed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class Killer(TinyNet):
        def on_train_batch_start(self, batch: object, batch_idx: int) -> None:
            if self.global_step == 4:
                with torch.no_grad():
                    self.body[2].weight[:, :12] = 0.0

    logger = TensorBoardLogger(tmp_path, name="tb")
    cb = FilterWatch(every_n_steps=2)
    with caplog.at_level(logging.WARNING, logger="filterwatch.alerts"):
        trainer(tmp_path, [cb], logger=logger).fit(Killer(lr=0.0), loader())
    lines = [r.getMessage() for r in caplog.records if r.name == "filterwatch.alerts"]
    assert lines and all(line.startswith("filterwatch alert at step ") for line in lines)
    assert len(lines) == len(cb.alerts)  # once each
    kinds = {(a.layer, a.kind) for a in cb.alerts}
    assert ("body.2", "sparse") in kinds
    assert "alerts/filterwatch/text_summary" in _events(Path(logger.log_dir)).Tags()["tensors"]


def test_adaptive_schedule_respects_the_overhead_budget(tmp_path: Path) -> None:
    cb = FilterWatch()
    tr = trainer(tmp_path, [cb], max_epochs=3)
    tr.fit(TinyNet(), loader())
    assert cb.history[0].step == 0 and cb.history[-1].step == tr.global_step
    assert len(cb.history) >= 2


def test_arguments_are_checked_in_init() -> None:
    with pytest.raises(InputError, match="`every_n_steps` expected a positive integer"):
        FilterWatch(every_n_steps=0)
    with pytest.raises(InputError, match="`max_overhead` expected a share"):
        FilterWatch(max_overhead=5)
    with pytest.raises(InputError, match="`include` expected a list of globs"):
        LayerSelection(include="body.*")  # type: ignore[arg-type]
    assert FilterWatch(every_n_steps=5).state_key != FilterWatch(every_n_steps=6).state_key


def test_layout_regexes_match_exactly_the_logged_tags(tmp_path: Path) -> None:
    """Each custom-scalars chart draws exactly one measure: its regex matches that measure's
    tags of every layer (or the model's), and nothing else that was logged."""
    import re

    from filterwatch.integrations.tensorboard import layout_charts
    from filterwatch.report.registry import MEASURES

    logger = TensorBoardLogger(tmp_path, name="tb")
    watch = FilterWatch(every_n_steps=4, spectral=True)  # every measure is logged
    trainer(tmp_path, [watch], logger=logger).fit(TinyNet(), loader())
    tags = _events(Path(logger.log_dir)).Tags()["scalars"]
    by_label = {m.label: m for m in MEASURES}
    charts = layout_charts(True, [layer.name for layer in watch.history[-1].layers])
    for section, chart in charts.items():
        for title, (_, (regex,)) in chart.items():
            m = by_label[title.split(": ")[0]]
            want_prefix = "filterwatch_model/" if section == "filterwatch: model" else "filterwatch/"
            drawn = {t for t in tags if re.search(regex, t)}
            want = {t for t in tags if t.startswith(want_prefix) and t.endswith("/" + m.key)}
            assert drawn == want and drawn, (title, regex)
    charted = {m.key for m in MEASURES if m.chart is not None}
    logged = {t.rsplit("/", 1)[1] for t in tags if t.startswith("filterwatch/") and t.count("/") == 2}
    assert logged - {"overhead_ms", "gate_violations"} <= charted  # every logged series is charted
