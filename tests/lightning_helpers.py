"""A tiny LightningModule and data for callback tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class TinyNet(pl.LightningModule):
    def __init__(self, lr: float = 0.05, conv: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters()
        if conv:
            self.body = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2))
        else:
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.body(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loader(n: int = 64, batch: int = 8) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 8, 8, generator=g)
    return DataLoader(TensorDataset(x, (x.mean((1, 2, 3)) > 0).long()), batch_size=batch)


def trainer(root: Path, callbacks: list[Any], logger: Any = None, **kwargs: Any) -> pl.Trainer:
    opts: dict[str, Any] = dict(max_epochs=1, default_root_dir=root, enable_progress_bar=False,
                                enable_model_summary=False, accelerator="cpu", devices=1,
                                enable_checkpointing=False, log_every_n_steps=1)
    opts.update(kwargs)
    return pl.Trainer(callbacks=callbacks, logger=logger if logger is not None else False, **opts)
