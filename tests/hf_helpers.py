"""A tiny transformers ConvNeXt and a Trainer around it, for the Hugging Face callback tests
(random init from a config: no hub download; data generated here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import (
    ConvNextConfig,
    ConvNextForImageClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

DWCONV = "convnext.encoder.stages.0.layers.0.dwconv"


class Blobs(Dataset[dict[str, torch.Tensor]]):
    """Two classes of 16x16 images: a bright blob top-left or bottom-right, plus noise."""

    def __init__(self, n: int = 96, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, 2, (n,), generator=g)
        self.x = 0.3 * torch.randn(n, 1, 16, 16, generator=g)
        for i, label in enumerate(self.y.tolist()):
            r = slice(2, 7) if label == 0 else slice(9, 14)
            self.x[i, 0, r, r] += 1.0

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.x[i], "labels": self.y[i]}


def tiny_convnext(seed: int = 0) -> ConvNextForImageClassification:
    torch.manual_seed(seed)
    config = ConvNextConfig(num_channels=1, patch_size=2, num_stages=2, hidden_sizes=[16, 32],
                            depths=[1, 1], image_size=16, num_labels=2)
    return ConvNextForImageClassification(config)


def trainer(folder: Path, callbacks: list[Any], *, model: Any = None, max_steps: int = 6,
            **args: Any) -> Trainer:
    settings: dict[str, Any] = {
        "output_dir": str(folder), "max_steps": max_steps, "per_device_train_batch_size": 16,
        "learning_rate": 1e-3, "logging_steps": 1, "save_strategy": "no",
        "report_to": ["tensorboard"], "use_cpu": True, "disable_tqdm": True, "seed": 0,
    }
    settings.update(args)
    return Trainer(model=model if model is not None else tiny_convnext(),
                   args=TrainingArguments(**settings), train_dataset=Blobs(), callbacks=callbacks)


class Sabotage(TrainerCallback):
    """At the end of optimizer step ``step`` (and every later one if ``persist``), zero (or
    NaN) one conv layer's weights."""

    def __init__(self, step: int, value: float = 0.0, layer: str = DWCONV, persist: bool = False) -> None:
        self.step, self.value, self.layer, self.persist = step, value, layer, persist

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if state.global_step == self.step or (self.persist and state.global_step > self.step):
            with torch.no_grad():
                model.get_submodule(self.layer).weight.fill_(self.value)
