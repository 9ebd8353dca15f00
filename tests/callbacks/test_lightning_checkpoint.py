"""A checkpoint written by a real Lightning Trainer loads safely (weights_only=True)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from filterwatch import analyze, load_state_dict

L = pytest.importorskip("lightning.pytorch")


class _Net(L.LightningModule):
    def __init__(self, lr: float = 0.01, width: int = 8) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.body = nn.Sequential(nn.Conv2d(1, width, 3), nn.ReLU(), nn.Conv2d(width, width, 3),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 2))

    def training_step(self, batch, _):  # type: ignore[no-untyped-def]
        x, y = batch
        return nn.functional.cross_entropy(self.body(x), y)

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


@pytest.mark.slow
def test_real_lightning_ckpt(tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(16, 1, 8, 8), torch.randint(0, 2, (16,))),
                      batch_size=8)
    model = _Net()
    trainer = L.Trainer(max_epochs=1, default_root_dir=tmp_path, logger=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, data)
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    sd = load_state_dict(ckpt)
    assert torch.equal(sd["body.2.weight"], model.body[2].weight.detach())
    report = analyze(ckpt)
    assert [layer.name for layer in report.layers] == ["body.0", "body.2"]
