"""FilterWatchCallback and FilterGateCallback with a real Hugging Face Trainer on CPU."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from filterwatch import analyze
from filterwatch.callbacks.huggingface import (
    FilterGateCallback,
    FilterWatchCallback,
    GateStoppingReason,
)
from tests.hf_helpers import DWCONV, Sabotage, tiny_convnext, trainer

pytestmark = pytest.mark.slow


def _tb_dir(cb: FilterWatchCallback) -> Path:
    assert cb.log_dir is not None
    return cb.log_dir


def _events(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "histograms": 0,
                                                       "tensors": 0})
    acc.Reload()
    return acc


def _watch_entries(log_history: list[dict]) -> list[dict]:  # type: ignore[type-arg]
    return [e for e in log_history if any(k.startswith("filterwatch/") for k in e)
            and "filterwatch/gate_violations" not in e]


def test_scalars_reach_the_trainer_log_path_and_equal_analyze(tmp_path: Path) -> None:
    cb = FilterWatchCallback(every_n_steps=2, images_every=1)
    tr = trainer(tmp_path, [cb])
    tr.train()
    assert [r.step for r in cb.history] == [0, 2, 4, 6]
    entries = _watch_entries(tr.state.log_history)
    assert [e["step"] for e in entries] == [0, 2, 4, 6]  # once each: the final one is step 6's
    final = analyze(tr.model, reference=cb.reference)
    assert [layer.name for layer in final.layers] == [layer.name for layer in cb.history[-1].layers]
    for layer in final.layers:
        for measure in ("sparsity", "variance_entropy", "orthogonality", "drift", "relative_change"):
            want = layer.value(measure)
            if want is not None:
                got = entries[-1][f"filterwatch/{layer.name}/{measure}"]
                assert got == pytest.approx(want, rel=1e-6, abs=1e-7), (layer.name, measure)
    assert entries[0][f"filterwatch/{DWCONV}/relative_change"] == pytest.approx(0.0)
    # TensorBoard: the Trainer's run directory holds its own scalars and ours, once each
    acc = _events(_tb_dir(cb))
    tags = acc.Tags()
    assert "train/loss" in tags["scalars"]
    tag = f"filterwatch/{DWCONV}/variance_entropy"
    assert [e.step for e in acc.Scalars(tag)] == [0, 2, 4, 6]
    assert not any(t.startswith("train/filterwatch") for t in tags["scalars"])  # not twice
    assert f"filterwatch/{DWCONV}/weights" in tags["histograms"]
    assert f"filterwatch_filters/{DWCONV}" in tags["images"]
    counts = Counter((t, e.step) for t in tags["scalars"] if t.startswith("filterwatch")
                     for e in acc.Scalars(t))
    assert max(counts.values()) == 1
    history = (_tb_dir(cb) / "filterwatch_history.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in history] == [0, 2, 4, 6]


def test_other_reporting_callbacks_get_the_scalars_but_not_the_console(tmp_path: Path) -> None:
    from transformers import TrainerCallback

    class Recorder(TrainerCallback):
        def __init__(self) -> None:
            self.logs: list[dict] = []  # type: ignore[type-arg]

        def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
            self.logs.append(dict(logs))

    recorder = Recorder()
    tr = trainer(tmp_path, [FilterWatchCallback(every_n_steps=3), recorder], report_to=[],
                 disable_tqdm=False)
    tr.train()
    ours = [e for e in recorder.logs if f"filterwatch/{DWCONV}/sparsity" in e]
    assert len(ours) == 3  # steps 0, 3, 6: an integration such as W&B or MLflow sees these


def test_resume_keeps_the_reference_and_the_history(tmp_path: Path) -> None:
    first = FilterWatchCallback(every_n_steps=2)
    trainer(tmp_path, [first], save_strategy="steps", save_steps=3).train()
    start = {k: v.clone() for k, v in first.reference.snapshot.items()}  # type: ignore[union-attr]
    assert (tmp_path / "checkpoint-3" / "filterwatch_watch.safetensors").is_file()

    second = FilterWatchCallback(every_n_steps=2)
    tr = trainer(tmp_path, [second], model=tiny_convnext(seed=1), save_strategy="steps", save_steps=3)
    tr.train(resume_from_checkpoint=str(tmp_path / "checkpoint-3"))
    # the reference is the first run's fit-start weights, not the resumed (or re-initialised) ones
    for name, weights in start.items():
        assert torch.equal(second.reference.snapshot[name], weights)  # type: ignore[union-attr]
    steps = [r.step for r in second.history]
    assert steps == [0, 2, 3, 4, 6] and len(set(steps)) == len(steps)
    # the resumed run continues its own history file (in the first run's directory: the
    # checkpoint names it), without the lines the first run wrote after the checkpoint
    assert second.history_path == first.history_path is not None
    lines = second.history_path.read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [0, 2, 3, 4, 6]


def test_resume_with_callbacks_recreated_by_the_trainer(tmp_path: Path) -> None:
    trainer(tmp_path, [FilterWatchCallback(every_n_steps=2, select={"include": ["*dwconv"]})],
            save_strategy="steps", save_steps=3).train()
    tr = trainer(tmp_path, [FilterWatchCallback()], save_strategy="steps", save_steps=3,
                 restore_callback_states_from_checkpoint=True)
    tr.train(resume_from_checkpoint=str(tmp_path / "checkpoint-3"))
    (cb,) = [c for c in tr.callback_handler.callbacks if isinstance(c, FilterWatchCallback)]
    assert cb.schedule.every_n_steps == 2  # the saved arguments, not the new instance's
    assert [r.step for r in cb.history] == [0, 2, 3, 4, 6]
    assert all(layer.name.endswith("dwconv") for layer in cb.history[-1].layers)


def test_a_corrupt_state_file_warns_and_the_run_goes_on(tmp_path: Path) -> None:
    trainer(tmp_path, [FilterWatchCallback(every_n_steps=2)], save_strategy="steps",
            save_steps=3).train()
    (tmp_path / "checkpoint-3" / "filterwatch_watch.safetensors").write_bytes(b"not safetensors")
    cb = FilterWatchCallback(every_n_steps=2)
    with pytest.warns(UserWarning, match="could not restore the filterwatch state"):
        trainer(tmp_path, [cb]).train(resume_from_checkpoint=str(tmp_path / "checkpoint-3"))
    assert [r.step for r in cb.history] == [3, 4, 6]  # a new reference from the resumed weights


@pytest.mark.parametrize("value, rules, patience", [(0.0, {"max-dead-channel-share": 0}, 1),
                                                    (float("nan"), {}, 5)])
def test_gate_stops_a_run_whose_layer_dies_or_goes_nan(tmp_path: Path, value: float,
                                                       rules: dict, patience: int) -> None:  # type: ignore[type-arg]
    watch = FilterWatchCallback(every_n_steps=1)
    gate = FilterGateCallback(rules, every_n_steps=1, patience=patience)
    tr = trainer(tmp_path, [Sabotage(3, value), watch, gate], max_steps=20)
    tr.train()
    assert tr.state.global_step == 3 and gate.stopped_step == 3
    assert gate.stopping_reason is GateStoppingReason.RULES_FAILED
    message = gate.stopping_reason_message or ""
    assert ("dead_channel_share" if value == 0 else "nonfinite") in message
    assert gate.monitor is watch.monitor  # one Monitor, one analysis per step
    assert [r.step for r in watch.history] == [0, 1, 2, 3]


def test_gate_alone_with_patience_and_warn_mode(tmp_path: Path) -> None:
    gate = FilterGateCallback({"max-dead-channel-share": 0}, every_n_steps=1, patience=2)
    tr = trainer(tmp_path, [Sabotage(2, persist=True), gate], max_steps=10, report_to=[])
    with pytest.warns(UserWarning, match="gate failed 1/2 consecutive checks"):
        tr.train()
    assert gate.stopped_step == 3 and tr.state.global_step == 3  # two failing checks in a row
    warn = FilterGateCallback({"max-dead-channel-share": 0}, every_n_steps=1, mode="warn")
    with pytest.warns(UserWarning, match="mode='warn'"):
        trainer(tmp_path / "w", [Sabotage(2), warn], max_steps=5, report_to=[]).train()
    assert warn.stopped_step is None and warn.stopping_reason is GateStoppingReason.NOT_STOPPED


def test_a_failing_monitor_never_stops_training(tmp_path: Path) -> None:
    cb = FilterWatchCallback(every_n_steps=1)
    tr = trainer(tmp_path, [cb], report_to=[])

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    cb.monitor.measure = broken  # type: ignore[method-assign]
    with pytest.warns(UserWarning, match="disabled itself after an error in on_train_begin: RuntimeError"):
        tr.train()
    assert tr.state.global_step == 6 and cb.disabled


def test_a_model_without_conv_layers_is_explained_and_trains(tmp_path: Path) -> None:
    class Mlp(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 2))

        def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
            logits = self.body(pixel_values)
            return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}

    watch, gate = FilterWatchCallback(), FilterGateCallback(every_n_steps=1)
    with pytest.warns(UserWarning, match="no conv layers"):
        tr = trainer(tmp_path, [watch, gate], model=Mlp(), report_to=[])
        tr.train()
    assert tr.state.global_step == 6 and watch.disabled and watch.history == []


def test_arguments_are_checked_and_stored_as_json() -> None:
    from filterwatch import InputError

    with pytest.raises(InputError, match="images_every"):
        FilterWatchCallback(images_every=0)
    with pytest.raises(InputError, match="patience"):
        FilterGateCallback(patience=0)
    with pytest.raises(InputError, match="select"):
        FilterWatchCallback(select={"bogus": 1})
    state = FilterWatchCallback(every_n_epochs=2, alert_rules={"collapse_ratio": 0.3}).state()
    assert json.loads(json.dumps(state))["args"]["alert_rules"]["collapse_ratio"] == 0.3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FilterWatchCallback(**state["args"])  # the Trainer re-creates callbacks from these


def _count_checks(gate: FilterGateCallback) -> list[int]:
    """The steps at which ``gate`` checks, filled in as the run goes."""
    checks: list[int] = []
    original = gate.check

    def counting(host, step):  # type: ignore[no-untyped-def]
        checks.append(step)
        return original(host, step)

    gate.check = counting  # type: ignore[method-assign]
    return checks


def test_epoch_schedules_of_both_callbacks(tmp_path: Path) -> None:
    watch = FilterWatchCallback(every_n_epochs=1)
    gate = FilterGateCallback({"max-dead-channel-share": 0}, every_n_epochs=1)
    checks = _count_checks(gate)
    tr = trainer(tmp_path, [watch, gate], max_steps=-1, num_train_epochs=2, report_to=[])
    tr.train()
    assert tr.state.global_step == 12  # 96 samples, batches of 16: 6 steps per epoch
    assert [r.step for r in watch.history] == [0, 6, 12]  # start, each epoch's end (the last)
    assert checks == [6, 12] and gate.stopped_step is None


def test_the_gates_default_checks_within_a_tenth_of_the_run(tmp_path: Path) -> None:
    """No interval given: every epoch, and at most 10 % of the run apart (here 24 steps: 2)."""
    gate = FilterGateCallback({"max-dead-channel-share": 0})
    checks = _count_checks(gate)
    tr = trainer(tmp_path, [gate], max_steps=-1, num_train_epochs=4, report_to=[])
    tr.train()
    assert tr.state.global_step == 24 and gate.schedule.floor_gap == 2
    assert checks == list(range(2, 25, 2))


def test_the_gate_listed_first_still_leaves_the_snapshots_to_the_watch(tmp_path: Path) -> None:
    """Whatever the order of the callbacks: one analysis per step, and the watch logs it once
    with its TensorBoard extras; the gate's checks are the watch's snapshots, so every output
    has the gate's steps too (the history file had them, the loggers did not)."""
    watch = FilterWatchCallback(every_n_steps=2, images_every=1)
    gate = FilterGateCallback({"max-dead-channel-share": 0}, every_n_steps=1)
    tr = trainer(tmp_path, [gate, watch])
    tr.train()
    assert gate.monitor is watch.monitor
    every = list(range(7))
    assert [e["step"] for e in _watch_entries(tr.state.log_history)] == every
    acc = _events(_tb_dir(watch))
    assert [e.step for e in acc.Images(f"filterwatch_filters/{DWCONV}")] == every
    assert [r.step for r in watch.history] == every
    history = (_tb_dir(watch) / "filterwatch_history.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in history] == every


def test_the_checkpoint_folder_of_a_hyperparameter_trial_is_found(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from filterwatch.callbacks._hf_state import checkpoint_folder

    args, state = SimpleNamespace(output_dir=str(tmp_path)), SimpleNamespace(global_step=7)
    assert checkpoint_folder(args, state) == tmp_path / "checkpoint-7"  # not saved yet: the default
    (tmp_path / "run-3" / "checkpoint-7").mkdir(parents=True)
    assert checkpoint_folder(args, state) == tmp_path / "run-3" / "checkpoint-7"
    (tmp_path / "checkpoint-7").mkdir()
    assert checkpoint_folder(args, state) == tmp_path / "checkpoint-7"


def test_a_final_snapshot_at_the_gates_step_replaces_it(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """The gate stops at a step the watch was not due at: its check there is the watch's
    snapshot (with its extras, in every output), and the end of training takes no second one
    of that step: no step twice. The alert that fired then is printed once, by the watch."""
    import logging

    watch = FilterWatchCallback(every_n_steps=2, images_every=1)
    gate = FilterGateCallback({"max-dead-channel-share": 0}, every_n_steps=1)
    tr = trainer(tmp_path, [Sabotage(3), watch, gate], max_steps=10)
    with caplog.at_level(logging.WARNING, logger="filterwatch.alerts"):
        tr.train()
    lines = [r.getMessage() for r in caplog.records if r.name == "filterwatch.alerts"]
    assert lines and all(line.startswith("filterwatch alert at step 3:") for line in lines)
    assert len(lines) == len(watch.alerts) == len({(a.layer, a.kind) for a in watch.alerts})
    assert gate.stopped_step == 3
    assert [r.step for r in watch.history] == [0, 1, 2, 3]
    history = (_tb_dir(watch) / "filterwatch_history.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in history] == [0, 1, 2, 3]
    assert [e["step"] for e in _watch_entries(tr.state.log_history)] == [0, 1, 2, 3]
    acc = _events(_tb_dir(watch))
    assert [e.step for e in acc.Images(f"filterwatch_filters/{DWCONV}")] == [0, 1, 2, 3]
    texts = {e.step: e.tensor_proto.string_val[0].decode()
             for e in acc.Tensors("alerts/filterwatch/text_summary")}
    assert "dead" in texts[3]  # the gate's alert, in the alerts panel at the final snapshot


def test_one_snapshot_per_optimizer_step_under_gradient_accumulation(tmp_path: Path) -> None:
    watch = FilterWatchCallback(every_n_steps=2)
    tr = trainer(tmp_path, [watch], max_steps=4, gradient_accumulation_steps=3, report_to=[])
    tr.train()
    assert [r.step for r in watch.history] == [0, 2, 4]
    assert [e["step"] for e in _watch_entries(tr.state.log_history)] == [0, 2, 4]
