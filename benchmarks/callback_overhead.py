"""Overhead of ``FilterWatch()`` at its defaults (adaptive schedule, TensorBoard logger) on a
short real training run, measured against the same run without it, in one process.

Model: a 6-layer VGG-style CNN (3x3 convs 32-32-64-64-128-128, pooling after each pair) on
scikit-learn's digits (upscaled to 16x16), 150 optimizer steps; both runs use the same seed,
data and TensorBoard logger. Reports the wall-time ratio and the monitor's own accounting
(``callback.overhead_s``, which includes the start and final snapshots and the TensorBoard
extras) and how much of it measuring the snapshots took (``Monitor.measure``, timed by
wrapping it here). Run: ``.venv/bin/python benchmarks/callback_overhead.py [--steps 150] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import logging
import platform
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from filterwatch import FilterWatch


class VGGish(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 1
        for out in (32, 64, 128):
            layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU(), nn.Conv2d(out, out, 3, padding=1),
                       nn.ReLU(), nn.MaxPool2d(2)]
            c = out
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * 2 * 2, 10))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def _data() -> DataLoader:
    d = load_digits()
    x = nn.functional.interpolate(torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0,
                                  size=16, mode="bilinear")
    return DataLoader(TensorDataset(x, torch.tensor(d.target)), batch_size=64, shuffle=True,
                      generator=torch.Generator().manual_seed(0))


def _fit(steps: int, callbacks: list[FilterWatch], root: Path) -> float:
    pl.seed_everything(0, verbose=False)
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, callbacks=callbacks,
                         logger=TensorBoardLogger(root, name="tb"), log_every_n_steps=10,
                         enable_checkpointing=False, enable_model_summary=False,
                         enable_progress_bar=False)
    start = time.perf_counter()
    trainer.fit(VGGish(), _data())
    return time.perf_counter() - start


def _time_measurements() -> list[float]:
    """Wrap ``Monitor.measure`` (this benchmark only) to add up the seconds it takes."""
    from filterwatch.monitor import Monitor

    spent: list[float] = []
    measure = Monitor.measure

    def timed(self: Monitor, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return measure(self, *args, **kwargs)
        finally:
            spent.append(time.perf_counter() - start)

    Monitor.measure = timed  # type: ignore[method-assign]
    return spent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    base, watched, own, snaps, measuring = [], [], [], [], []
    spent = _time_measurements()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            base.append(_fit(args.steps, [], Path(tmp) / f"base{i}"))
            cb = FilterWatch()
            spent.clear()
            watched.append(_fit(args.steps, [cb], Path(tmp) / f"watch{i}"))
            own.append(cb.overhead_s / watched[-1])
            measuring.append(sum(spent) / watched[-1])
            snaps.append(len(cb.history))
    b, w = min(base), min(watched)
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"VGG-style CNN, {args.steps} steps, TensorBoard logger; best of {args.repeats}")
    print(f"training without FilterWatch: {b:.2f} s")
    print(f"training with FilterWatch():  {w:.2f} s, {snaps[0]} snapshots")
    print(f"wall-time ratio: {w / b:.3f}  (noise between identical runs: {(max(base) - min(base)) / b:.1%})")
    print(f"monitor's own time (everything it spent): median {sorted(own)[len(own) // 2]:.2%} of the run")
    print(f"  of which measuring the snapshots (Monitor.measure): median "
          f"{sorted(measuring)[len(measuring) // 2]:.2%} of the run; the rest is the sinks "
          "(TensorBoard scalars, histograms, filter grids, PC1 and the final heatmaps), the history "
          "file and the reference")


if __name__ == "__main__":
    main()
