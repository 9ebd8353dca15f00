"""FilterGate with a real Lightning Trainer: stops a run whose weights go bad."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from filterwatch import FilterGate, InputError
from filterwatch.callbacks import GateStoppingReason
from tests.lightning_helpers import TinyNet, loader, trainer

pytestmark = pytest.mark.slow


class ZeroesALayer(TinyNet):
    """Training goes bad partway: at step 5 a hook zeroes most of body.2's filters."""

    def on_train_batch_start(self, batch: object, batch_idx: int) -> None:
        if self.global_step >= 5:
            with torch.no_grad():
                self.body[2].weight[:, :14] = 0.0


def test_gate_stops_the_run_and_says_why(tmp_path: Path) -> None:
    gate = FilterGate({"max-sparsity": 0.5}, every_n_steps=2)
    tr = trainer(tmp_path, [gate], max_epochs=5)
    tr.fit(ZeroesALayer(lr=0.0), loader())
    assert gate.stopping_reason is GateStoppingReason.RULES_FAILED
    assert gate.stopped_step == 6 and tr.global_step == 6
    assert "body.2: sparsity = 0.875 violates max-sparsity 0.5" in gate.stopping_reason_message
    assert "weight decay or dead ReLUs" in gate.stopping_reason_message


def test_patience_and_warn_mode(tmp_path: Path) -> None:
    gate = FilterGate({"max-sparsity": 0.5}, every_n_steps=2, patience=2)
    tr = trainer(tmp_path, [gate], max_epochs=5)
    with pytest.warns(UserWarning, match="gate failed 1/2 consecutive checks"):
        tr.fit(ZeroesALayer(lr=0.0), loader())
    assert gate.stopped_step == 8
    warn = FilterGate({"max-sparsity": 0.5}, every_n_steps=2, mode="warn")
    tr = trainer(tmp_path, [warn], max_epochs=2)
    with pytest.warns(UserWarning, match="mode='warn'"):
        tr.fit(ZeroesALayer(lr=0.0), loader())
    assert tr.global_step == 16 and warn.stopping_reason is GateStoppingReason.NOT_STOPPED


def test_healthy_run_is_not_stopped(tmp_path: Path) -> None:
    gate = FilterGate()
    tr = trainer(tmp_path, [gate], max_epochs=2)
    tr.fit(TinyNet(), loader())
    assert tr.global_step == 16 and gate.stopped_step is None
    assert gate.last_verdict is not None and gate.last_verdict.passed


def test_gate_arguments_checked_in_init() -> None:
    with pytest.raises(InputError, match="`mode` expected 'stop' or 'warn'"):
        FilterGate(mode="halt")
    with pytest.raises(InputError, match="`patience` expected a positive integer"):
        FilterGate(patience=0)
    with pytest.raises(InputError, match="unknown key `max-sparsty`"):
        FilterGate({"max-sparsty": 1})


@pytest.mark.filterwarnings("ignore:FilterWatch. the trainer has no logger:UserWarning")
def test_one_check_per_optimizer_step_under_gradient_accumulation(tmp_path: Path) -> None:
    """accumulate_grad_batches=4: on_train_batch_end sees each global step 4 times; the gate
    (and FilterWatch) act once per optimizer step, at the multiples of every_n_steps."""
    from filterwatch import FilterWatch

    checked: list[int] = []

    class Recording(FilterGate):
        def check(self, host, step):  # type: ignore[no-untyped-def]
            checked.append(step)
            return super().check(host, step)

    gate = Recording({"max-sparsity": 0.5}, every_n_steps=2, patience=3)
    watch = FilterWatch(every_n_steps=2)
    tr = trainer(tmp_path, [gate, watch], max_epochs=2, accumulate_grad_batches=4)
    tr.fit(TinyNet(), loader())  # 8 batches per epoch: 2 optimizer steps per epoch, 4 in all
    assert tr.global_step == 4
    assert checked == [2, 4]
    assert [r.step for r in watch.history] == [0, 2, 4]
