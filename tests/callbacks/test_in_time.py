"""FilterWatch() at its defaults tells the user in time (issue 22): a busy machine makes the
warm-up snapshot slow, a layer dies mid-run, and the alert still comes within 10 % of the run;
the last snapshot has the heatmaps, and the note says what the floor cost."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from filterwatch import FilterWatch
from filterwatch.measure import MeasureOptions
from tests.lightning_helpers import TinyNet, loader, trainer

STEPS, DIES_AT = 200, 100


class KillChannels(pl.Callback):
    """From ``DIES_AT`` on, 14 of the 16 output channels of ``body.2`` stay zero."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        if trainer.global_step >= DIES_AT:
            with torch.no_grad():
                pl_module.body[2].weight[:14] = 0.0


@pytest.mark.slow
def test_an_alert_within_a_tenth_of_the_run_on_a_busy_machine(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    real = MeasureOptions.run
    calls: list[int] = []

    def slow_first(*args: Any, **kwargs: Any) -> Any:  # the warm-up under load: 1.2 s
        calls.append(1)
        if len(calls) == 1:
            time.sleep(1.2)
        return real(*args, **kwargs)

    monkeypatch.setattr(MeasureOptions, "run", slow_first)
    watch = FilterWatch()
    logger = TensorBoardLogger(str(tmp_path), name="run")
    trainer(tmp_path, [KillChannels(), watch], logger=logger, max_steps=STEPS).fit(
        TinyNet(), loader(n=8 * STEPS))
    dead = [a for a in watch.alerts if a.kind == "dead_channels" and a.layer == "body.2"]
    assert dead and DIES_AT <= dead[0].step <= DIES_AT + STEPS // 10
    steps = [r.step for r in watch.history]
    assert all(b - a <= STEPS // 10 for a, b in itertools.pairwise(steps))

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logger.log_dir), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    heatmaps = [t for t in acc.Tags()["images"] if t.startswith("filterwatch/heatmaps/")]
    assert heatmaps and all(acc.Images(t)[-1].step == steps[-1] for t in heatmaps)
