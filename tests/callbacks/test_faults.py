"""Fault tolerance: crash and resume, NaN mid-training, model surgery, unwritable logs."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from filterwatch import FilterGate, FilterWatch, Reference
from filterwatch.callbacks import GateStoppingReason
from tests.lightning_helpers import TinyNet, loader, trainer

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:FilterWatch. the trainer has no logger")]
SCRIPT = Path(__file__).parents[1] / "crash_script.py"


def _script(tmp_path: Path, *args: str) -> int:
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=600)
    return done.returncode


def test_sigkill_then_resume_continues_history_without_gaps_or_duplicates(tmp_path: Path) -> None:
    assert _script(tmp_path, "--kill-at", "12") == -9  # SIGKILL: no cleanup ran
    assert not (tmp_path / "result.json").exists()
    assert _script(tmp_path, "--resume") == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["history_steps"] == list(range(0, 25, 2))  # no gap, no duplicate
    torch.manual_seed(0)
    start = TinyNet()
    ref = Reference.load(tmp_path / "reference.safetensors")
    assert torch.equal(ref.snapshot["body.2"], start.body[2].weight.detach())  # fit-start weights
    acc = EventAccumulator(str(tmp_path / "tb" / "version_0"), size_guidance={"scalars": 0})
    acc.Reload()  # the crashed run's step 12 (after the last checkpoint at 10) is purged
    steps = [e.step for e in acc.Scalars("filterwatch/body.2/sparsity")]
    assert steps == list(range(0, 25, 2))


class _NaNAt(TinyNet):
    def on_train_batch_start(self, batch: object, batch_idx: int) -> None:
        if self.global_step == 5:
            with torch.no_grad():
                self.body[2].weight[0, 0, 0, 0] = float("nan")


def test_nan_mid_training_is_flagged_and_the_gate_stops(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    watch = FilterWatch(every_n_steps=2)
    gate = FilterGate(every_n_steps=2)  # default rules: allow-nonfinite = false
    with caplog.at_level(logging.WARNING, logger="filterwatch.alerts"):
        trainer(tmp_path, [watch, gate], max_epochs=3).fit(_NaNAt(lr=0.0), loader())
    assert any("non-finite" in r.getMessage() for r in caplog.records)
    # the NaN set before step 6 spreads through the SGD update (lr * NaN = NaN) to every layer
    (alert,) = [a for a in watch.alerts if a.kind == "nonfinite" and a.layer == "body.2"]
    assert alert.step == 6  # the next snapshot after the fault
    assert gate.stopping_reason is GateStoppingReason.RULES_FAILED and gate.stopped_step == 6
    assert "nonfinite" in (gate.stopping_reason_message or "")


def test_a_final_snapshot_at_the_gates_step_replaces_it(tmp_path: Path) -> None:
    """The gate stops at a step the watch was not due at (the watch every 4 steps, the gate
    every step): its check there is the watch's snapshot, and the end of training takes no
    second one of that step, in the history or in the history file."""
    watch = FilterWatch(every_n_steps=4)
    gate = FilterGate(every_n_steps=1)  # default rules: allow-nonfinite = false
    trainer(tmp_path, [watch, gate], max_epochs=3).fit(_NaNAt(lr=0.0), loader())
    assert gate.stopped_step == 6
    steps = [r.step for r in watch.history]
    assert steps == list(range(7))
    path = watch.history_path
    assert path is not None
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == steps


class _Grows(TinyNet):
    """Model surgery: at step 4 body.2 is replaced by a wider 5x5 layer."""

    def on_train_batch_start(self, batch: object, batch_idx: int) -> None:
        if self.global_step == 4:
            self.body[2] = nn.Conv2d(16, 16, 5, padding=2)
            self.body[2].to(next(self.parameters()).device)


def test_layer_replaced_mid_run_warns_and_monitoring_continues(tmp_path: Path) -> None:
    watch = FilterWatch(every_n_steps=2)
    tr = trainer(tmp_path, [watch], max_epochs=1)
    with pytest.warns(UserWarning, match="layers changed during training"):
        tr.fit(_Grows(lr=0.0), loader())
    assert not watch.disabled and tr.global_step == 8
    last = watch.history[-1].layer("body.2")
    assert last.kernel_size == [5, 5] and last.drift is None
    assert "has 3x3 kernels" in last.undefined["drift"]
    assert last.relative_change is None and "same shape" in last.undefined["relative_change"]


def test_unwritable_log_directory_warns_and_training_continues(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the log folder should be")
    watch = FilterWatch(every_n_steps=4)
    tr = trainer(blocker / "logs", [watch], max_epochs=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tr.fit(TinyNet(), loader())
    assert tr.global_step == 8 and len(watch.history) == 3
    assert any("could not write its history" in str(w.message) for w in caught)
