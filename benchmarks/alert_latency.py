"""How soon ``FilterWatch()`` at its defaults reports a layer that dies, on a busy machine.

A 4-conv digits CNN (BatchNorm, SGD) trains for ``--steps`` optimizer steps; from step
``--dies-at`` on, 115 of the 128 output channels of its third conv stay zero (the case of
issue 22). ``--busy N`` starts N processes that spin on the CPU for the whole run (the machine
has 2 cores). Prints the snapshot steps, the step of the "dead channels" alert, the latency as
a share of the run, the floor's note, and whether the last snapshot has heatmaps.

Run: ``.venv/bin/python benchmarks/alert_latency.py --busy 2``
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import calibration_models as cm  # noqa: E402

from filterwatch import FilterWatch  # noqa: E402


def _spin(stop: Any) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


class Net(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = cm._bn()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


class Kill(pl.Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        if trainer.global_step >= self.at:
            with torch.no_grad():
                pl_module.net[7].weight[:115] = 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=470)
    parser.add_argument("--dies-at", type=int, default=164)
    parser.add_argument("--busy", type=int, default=2, help="CPU-spinning processes alongside")
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    x, y, _, _ = cm._digits()
    data = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True,
                      generator=torch.Generator().manual_seed(0))
    stop = mp.Event()
    hogs = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(args.busy)]
    for h in hogs:
        h.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            watch = FilterWatch()
            logger = TensorBoardLogger(tmp, name="run")
            t0 = time.perf_counter()
            pl.Trainer(max_steps=args.steps, max_epochs=-1, accelerator="cpu", devices=1,
                       logger=logger, callbacks=[Kill(args.dies_at), watch], enable_progress_bar=False,
                       enable_checkpointing=False, enable_model_summary=False).fit(Net(), data)
            wall = time.perf_counter() - t0
            from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
            acc = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "tensors": 0})
            acc.Reload()
            heatmaps = [t for t in acc.Tags()["images"] if t.startswith("filterwatch/heatmaps/")]
            tag = "filterwatch/notes/text_summary"
            notes = ([e.tensor_proto.string_val[0].decode() for e in acc.Tensors(tag)]
                     if tag in acc.Tags()["tensors"] else [])
    finally:
        stop.set()
        for h in hogs:
            h.join()
    steps = [r.step for r in watch.history]
    dead = [a.step for a in watch.alerts if a.kind == "dead_channels"]
    print(f"run: {args.steps} steps in {wall:.1f} s with {args.busy} busy processes; "
          f"warm-up snapshot {watch.schedule.warmup_s * 1000:.0f} ms; "
          f"monitor {watch.overhead_s / wall:.1%} of the wall time")
    print(f"snapshots at steps {steps}")
    if dead:
        late = dead[0] - args.dies_at
        print(f"layer died at step {args.dies_at}; alert at step {dead[0]}: {late} steps later, "
              f"{late / args.steps:.1%} of the run")
    else:
        print("no dead-channels alert")
    print(f"heatmaps at the last snapshot: {bool(heatmaps)}; notes: {notes or 'none'}")


if __name__ == "__main__":
    main()
