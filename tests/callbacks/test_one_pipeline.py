"""One snapshot pipeline behind every trainer: the same model watched by the Lightning callback,
the Hugging Face callback and ``watch()`` with a SummaryWriter leaves a history file for each,
with one report schema and the same layers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

import filterwatch
from filterwatch import FilterWatch
from filterwatch.callbacks.huggingface import FilterWatchCallback
from tests.hf_helpers import Blobs, tiny_convnext
from tests.hf_helpers import trainer as hf_trainer

STEPS = 4


class _Lit(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = tiny_convnext()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.model(**batch).loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _schema(lines: list[dict[str, Any]]) -> tuple[frozenset[str], frozenset[str]]:
    report_keys = {k for line in lines for k in line}
    layer_keys = {k for line in lines for layer in line["layers"] for k in layer}
    return frozenset(report_keys), frozenset(layer_keys)


@pytest.mark.slow
def test_every_trainer_leaves_one_history_with_one_schema(tmp_path: Path) -> None:
    lit_watch = FilterWatch(every_n_steps=2)
    logger = TensorBoardLogger(str(tmp_path / "lightning"), name="run")
    pl.Trainer(max_steps=STEPS, logger=logger, callbacks=[lit_watch], enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False, accelerator="cpu").fit(
        _Lit(), DataLoader(Blobs(), batch_size=16))

    hf_watch = FilterWatchCallback(every_n_steps=2)
    hf_trainer(tmp_path / "hf", [hf_watch], max_steps=STEPS).train()

    net = tiny_convnext()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    writer = SummaryWriter(str(tmp_path / "loop"))
    batches = iter(DataLoader(Blobs(), batch_size=16))
    with filterwatch.watch(net, every_n_calls=2, writer=writer) as loop_watch:
        for _ in range(STEPS):
            batch = next(batches)
            net(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    writer.close()

    paths = [lit_watch.history_path, hf_watch.history_path, loop_watch.history_path]
    assert all(p is not None and p.is_file() for p in paths), paths
    histories = [_lines(p) for p in paths if p is not None]
    assert all(len(h) >= 3 for h in histories)  # the start, the scheduled ones, the end
    assert len({_schema(h) for h in histories}) == 1
    names = [{layer["name"].removeprefix("model.") for layer in h[-1]["layers"]} for h in histories]
    assert names[0] == names[1] == names[2]
    steps = [[line["step"] for line in h] for h in histories]
    assert all(s == sorted(set(s)) for s in steps)  # a step is never there twice
    sources = {h[-1]["source"] for h in histories}
    assert sources == {"_Lit", "ConvNextForImageClassification"}
