"""Run by tests/test_faults.py: train with FilterWatch and checkpoints; ``--kill-at N`` sends
this very process SIGKILL at step N (a real crash: no cleanup, no on_train_end)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from filterwatch import FilterWatch
from tests.lightning_helpers import TinyNet, loader, trainer


class Killer(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--kill-at", type=int)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    out = Path(args.out)
    watch = FilterWatch(every_n_steps=2)
    ckpt = ModelCheckpoint(dirpath=out / "ckpt", every_n_train_steps=5, save_last=True,
                           save_top_k=-1)
    callbacks: list[Any] = [watch, ckpt]
    if args.kill_at is not None:
        callbacks.append(Killer(args.kill_at))
    logger = TensorBoardLogger(out, name="tb", version=0)  # one run directory across restarts
    tr = trainer(out, callbacks, logger=logger, max_epochs=3, enable_checkpointing=True)
    torch.manual_seed(0)
    tr.fit(TinyNet(), loader(), ckpt_path=str(out / "ckpt" / "last.ckpt") if args.resume else None)
    if watch.reference is not None:
        watch.reference.save(out / "reference.safetensors")
    (out / "result.json").write_text(json.dumps({
        "history_steps": [r.step for r in watch.history],
        "reference_sources": watch.reference.sources if watch.reference else None,
        "global_step": tr.global_step,
    }))


if __name__ == "__main__":
    main()
