"""Overhead of ``FilterWatch()`` with its default (adaptive) schedule on a real training run.

Trains the digits CNN of ``examples/finetune_digits.py`` for a few epochs twice in one run,
without and with the callback (same seed, same data), and reports the wall-time ratio and the
monitor's own accounting (``callback.overhead_s``). Run:
``.venv/bin/python benchmarks/callback_overhead.py [--epochs 10] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from finetune_digits import DigitsCNN, digits

from filterwatch import FilterWatch


def _fit(epochs: int, callbacks: list[FilterWatch]) -> float:
    pl.seed_everything(0, verbose=False)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
                         callbacks=callbacks, enable_checkpointing=False,
                         enable_model_summary=False, enable_progress_bar=False)
    start = time.perf_counter()
    trainer.fit(DigitsCNN(), digits(range(0, 5)))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(torch.get_num_threads())
    base, watched, own, snaps = [], [], [], []
    for _ in range(args.repeats):
        base.append(_fit(args.epochs, []))
        cb = FilterWatch(history_file=None)
        watched.append(_fit(args.epochs, [cb]))
        own.append(cb.overhead_s)
        snaps.append(len(cb.history))
    b, w = min(base), min(watched)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")
    print(f"training without FilterWatch: {b:.2f} s (best of {args.repeats})")
    print(f"training with FilterWatch():  {w:.2f} s, {snaps[0]} snapshots")
    print(f"wall-time ratio: {w / b:.3f}  (noise between identical runs: "
          f"{(max(base) - min(base)) / b:.1%})")
    print(f"monitor's own time: {min(own):.3f} s = {min(own) / b:.2%} of training")


if __name__ == "__main__":
    main()
