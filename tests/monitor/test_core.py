"""The framework-free core that every trainer adapter builds on: WatchCore, GateCore, the
sinks, driven here by a plain Host (no trainer at all)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from filterwatch.layers import ConvLayer, LayerSelection, discover_layers
from filterwatch.monitor import GateCore, HistoryFile, Host, ScalarLogger, Sink, Snapshot, WatchCore


class _Plain(Host):
    """A plain loop's host: the model's layers, warnings collected."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__("test", type(model).__name__)
        self.model = model
        self.warnings: list[str] = []
        self.scalars: list[tuple[int, dict[str, float]]] = []

    def layers(self, selection: LayerSelection) -> list[ConvLayer]:
        return discover_layers(self.model, select=selection)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def log_scalars(self, scalars: dict[str, float], step: int) -> None:
        self.scalars.append((step, scalars))


class _Full(Sink):
    """A sink whose disk is full."""

    what = "a full disk"

    def write(self, snapshot: Snapshot) -> None:
        raise OSError(28, "No space left on device")


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))


def test_a_watch_runs_on_any_host_and_every_sink_gets_every_snapshot(tmp_path: Path) -> None:
    net = _net()
    host = _Plain(net)
    seen: list[int] = []
    watch = WatchCore(every_n_steps=2)
    watch.start(host, 0, sinks=lambda: [ScalarLogger(lambda s, step: seen.append(step))],
                log_dir=tmp_path)
    for step in range(1, 6):
        watch.step_end(host, step)
    watch.end(host, 6)
    assert [r.step for r in watch.history] == [0, 2, 4, 6] == seen
    assert watch.history_path is not None
    lines = [json.loads(x) for x in watch.history_path.read_text().splitlines()]
    assert [line["step"] for line in lines] == [0, 2, 4, 6]
    assert {line["source"] for line in lines} == {"Sequential"} and not host.warnings


def test_a_failing_sink_is_replaced_by_its_fallback_and_training_goes_on(tmp_path: Path) -> None:
    host = _Plain(_net())
    seen: list[int] = []
    full = _Full()
    full.fallback = ScalarLogger(lambda s, step: seen.append(step))
    watch = WatchCore(every_n_steps=1, history_file=None)
    watch.start(host, 0, sinks=lambda: [full])
    watch.step_end(host, 1)
    assert seen == [0, 1] and full not in watch.sinks and not watch.disabled
    assert len(host.warnings) == 1 and "could not write a full disk" in host.warnings[0]


def test_a_sink_that_breaks_is_dropped_and_alerts_go_on() -> None:
    class Drawing(Sink):
        what = "pictures"

        def write(self, snapshot: Snapshot) -> None:
            raise ValueError("mathtext: unknown symbol")

    net = _net()
    host = _Plain(net)
    watch = WatchCore(every_n_steps=1, history_file=None)
    watch.start(host, 0, sinks=lambda: [Drawing()])
    with torch.no_grad():
        net[0].weight[0, 0, 0, 0] = float("nan")
    watch.step_end(host, 1)
    assert not watch.disabled and watch.sinks == []
    assert any(a.kind == "nonfinite" for a in watch.alerts)
    assert len(host.warnings) == 1 and "ValueError: mathtext" in host.warnings[0]


def test_an_error_turns_the_watch_off_once_unless_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    from filterwatch.monitor import Monitor

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(Monitor, "measure", broken)
    host = _Plain(_net())
    watch = WatchCore(every_n_steps=1, history_file=None)
    watch.start(host, 0)
    watch.step_end(host, 1)
    assert watch.disabled == "RuntimeError: boom" and len(host.warnings) == 1
    assert "disabled itself after an error in test" in host.warnings[0]
    with pytest.raises(RuntimeError, match="boom"):
        WatchCore(every_n_steps=1, strict=True, history_file=None).start(host, 0)


def test_the_history_file_never_truncates_an_earlier_runs(tmp_path: Path) -> None:
    (tmp_path / "filterwatch_history.jsonl").write_text("the user's\n")
    sink = HistoryFile.open(tmp_path, "filterwatch_history.jsonl")
    assert sink.path.name == "filterwatch_history-2.jsonl"
    assert (tmp_path / "filterwatch_history.jsonl").read_text() == "the user's\n"


def test_a_resumed_history_keeps_the_lines_up_to_the_checkpoint(tmp_path: Path) -> None:
    other = tmp_path / "h.jsonl"  # another run's file, under the default name
    other.write_text("another run's\n")
    path = tmp_path / "h-2.jsonl"
    path.write_text("".join(json.dumps({"step": s}) + "\n" for s in (0, 2, 4, 6)))
    sink = HistoryFile.open(tmp_path, "h.jsonl", resumed_at=4, own=path)
    assert sink.path == path
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [0, 2, 4]
    assert other.read_text() == "another run's\n"


def test_runs_starting_together_each_get_a_file_of_their_own(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(lambda _: HistoryFile.open(tmp_path, "h.jsonl").path, range(8)))
    assert len(set(paths)) == 8 and all(p.is_file() for p in paths)


def test_a_checkpoint_names_the_runs_history_file(tmp_path: Path) -> None:
    host = _Plain(_net())
    (tmp_path / "filterwatch_history.jsonl").write_text("an earlier run's\n")
    first = WatchCore(every_n_steps=1)
    first.start(host, 0, log_dir=tmp_path)
    first.step_end(host, 1)
    state = first.run_state()
    assert state["history_path"].endswith("filterwatch_history-2.jsonl")
    resumed = WatchCore(every_n_steps=1)
    resumed.load_run_state(state)
    resumed.start(host, 1, log_dir=tmp_path)
    resumed.step_end(host, 2)
    assert resumed.history_path == first.history_path
    steps = [json.loads(x)["step"] for x in first.history_path.read_text().splitlines()]  # type: ignore[union-attr]
    assert steps == [0, 1, 2]
    assert (tmp_path / "filterwatch_history.jsonl").read_text() == "an earlier run's\n"


def test_a_report_that_replaces_the_last_replaces_its_line(tmp_path: Path) -> None:
    from filterwatch import analyze

    sink = HistoryFile.open(tmp_path, "h.jsonl")
    first, again = analyze(_net()), analyze(_net(), orthogonality=False)
    first.step = again.step = 0
    sink.write(Snapshot(first, [first]))
    sink.write(Snapshot(again, [again], final=True, replaces_last=True))
    lines = [json.loads(x) for x in sink.path.read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["layers"][0]["orthogonality"] is None


def test_a_gate_sharing_a_watch_checks_its_snapshots_and_stops_on_nan() -> None:
    net = _net()
    host = _Plain(net)
    watch = WatchCore(every_n_steps=4, history_file=None)
    gate = GateCore({"allow-nonfinite": False}, every_n_steps=1)
    watch.start(host, 0)
    assert gate.start(host, 0, peers=[object(), watch]) is False
    assert gate.shared_with is watch and gate.monitor is watch.monitor
    assert gate.step_end(host, 1) is False
    with torch.no_grad():
        net[2].weight[0, 0, 0, 0] = float("nan")
    assert gate.step_end(host, 2) is True  # NaN stops at once, without patience
    watch.step_end(host, 2)  # the watch already has this step: no second snapshot
    assert [r.step for r in watch.history] == [0, 1, 2]  # the gate's checks were its snapshots
    assert gate.stopped_step == 2 and host.scalars[-1] == (2, {"filterwatch/gate_violations": 1.0})
    assert any(a.kind == "nonfinite" for a in watch.alerts)


def test_a_gate_alone_keeps_its_own_monitor_and_patience() -> None:
    net = _net()
    host = _Plain(net)
    gate = GateCore({"max-sparsity": 0.0, "min-variance-entropy": False}, every_n_steps=1,
                    patience=2)
    gate.start(host, 0)
    with torch.no_grad():
        net[0].weight[:4] = 0.0
    assert gate.owns_monitor and gate.step_end(host, 1) is False
    assert "gate failed 1/2 consecutive checks" in host.warnings[-1]
    assert gate.step_end(host, 2) is True and gate.stopped_step == 2


def test_importing_the_loop_adapter_loads_no_trainer_framework() -> None:
    code = ("import sys, filterwatch.callbacks.hooks, filterwatch.integrations.hooks as old; "
            "print(old is filterwatch.callbacks.hooks, "
            "[m for m in ('lightning', 'transformers') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True []"


def test_the_old_hugging_face_path_is_the_new_module() -> None:
    pytest.importorskip("transformers")
    import filterwatch.integrations.huggingface as old
    from filterwatch.integrations.huggingface import FilterWatchCallback

    import filterwatch.callbacks.huggingface as new

    assert old is new and FilterWatchCallback is new.FilterWatchCallback
    assert new.__spec__ is not None and new.__spec__.name == "filterwatch.callbacks.huggingface"
