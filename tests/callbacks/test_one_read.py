"""One read per snapshot, one Monitor per run, bounded state (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lightning.pytorch.loggers import TensorBoardLogger

import filterwatch.reference.reference as reference_module
from filterwatch import FilterGate, FilterWatch
from filterwatch.layers import ConvLayer
from tests.lightning_helpers import TinyNet, loader, trainer

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:FilterWatch. the trainer has no logger:UserWarning")]

N_LAYERS = 2  # TinyNet's conv layers


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    original = ConvLayer.kernel

    def counting(self: ConvLayer):  # type: ignore[no-untyped-def]
        if self.kind != "tensor":  # the model's kernels, not copies already in hand
            reads.append(self.name)
        return original(self)

    monkeypatch.setattr(ConvLayer, "kernel", counting)
    return reads


def test_each_kernel_is_read_once_per_snapshot_with_tensorboard_and_a_gate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = _count_reads(monkeypatch)
    watch = FilterWatch(every_n_steps=2, images_every=1)
    gate = FilterGate({"max-sparsity": 0.9}, every_n_steps=3)
    tr = trainer(tmp_path, [watch, gate], logger=TensorBoardLogger(tmp_path, name="tb"), max_epochs=2)
    tr.fit(TinyNet(), loader())
    assert gate.monitor is watch.monitor  # one Monitor: one reference, one analysis per step
    steps = [r.step for r in watch.history]
    assert steps == sorted(set(range(0, 17, 2)) | {3, 9, 15})  # the gate's own steps join in
    assert len(reads) == N_LAYERS * len(steps)  # histograms, images, drift: all from that read
    assert "monitor" not in gate.state_dict()  # the shared Monitor is stored once


def test_gate_listed_first_leaves_the_snapshots_to_the_watch(tmp_path: Path) -> None:
    """Whatever the order of the callbacks: the watch logs each of its snapshots once, with
    its TensorBoard extras, from the one analysis of that step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    watch = FilterWatch(every_n_steps=2, images_every=1)
    gate = FilterGate({"max-sparsity": 0.9}, every_n_steps=2)
    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer(tmp_path, [gate, watch], logger=logger, max_epochs=1).fit(TinyNet(), loader())
    assert gate.monitor is watch.monitor
    acc = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    steps = [r.step for r in watch.history]
    assert [e.step for e in acc.Images("filterwatch_filters/body.0")] == steps
    assert [e.step for e in acc.Scalars("filterwatch/body.0/sparsity")] == steps


def test_gate_alone_still_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = _count_reads(monkeypatch)
    gate = FilterGate({"max-sparsity": 0.9}, every_n_steps=4)
    trainer(tmp_path, [gate], max_epochs=1).fit(TinyNet(), loader())
    assert gate.last_verdict is not None and gate.last_verdict.passed
    assert [r.step for r in gate.monitor.history] == [4, 8]
    assert len(reads) == N_LAYERS * 3  # the fit-start reference, then two checks
    assert "monitor" in gate.state_dict()


def test_drift_noise_is_computed_once_per_layer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = reference_module.drift_noise_floor

    def counting(basis, n):  # type: ignore[no-untyped-def]
        calls.append(n)
        return original(basis, n)

    monkeypatch.setattr(reference_module, "drift_noise_floor", counting)
    watch = FilterWatch(every_n_steps=1, history_file=None)
    trainer(tmp_path, [watch], max_epochs=1).fit(TinyNet(), loader())
    assert len(watch.history) == 9 and len(calls) == N_LAYERS


def test_checkpoint_keeps_the_last_reports_and_the_file_keeps_all(tmp_path: Path) -> None:
    watch = FilterWatch(every_n_steps=1, keep_reports=3)
    trainer(tmp_path, [watch], logger=TensorBoardLogger(tmp_path, name="tb"), max_epochs=1).fit(
        TinyNet(), loader())
    assert [r.step for r in watch.history] == [6, 7, 8]
    state = watch.state_dict()["monitor"]
    assert len(state["history"]) == 3
    assert len(state["reference"]["tensors"]) == 4 * N_LAYERS + N_LAYERS  # bases + one snapshot each
    path = watch.history_path
    assert path is not None and path.name == "filterwatch_history.jsonl"
    lines = path.read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(9))
