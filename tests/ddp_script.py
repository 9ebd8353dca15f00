"""Run by tests/test_distributed.py: a 2-process CPU (gloo) Lightning run with FilterWatch and
FilterGate. Each rank writes what it saw to OUT/rank<r>.json; rank 0 also the final weights."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger

from filterwatch import FilterGate, FilterWatch
from tests.lightning_helpers import TinyNet, loader, trainer


class GoesBad(TinyNet):
    """From step 5 on, rank 0 only zeroes most of body.2 (lr = 0, so the ranks' weights now
    differ): rank 0 sees the fault, rank 1 does not, and both must stop at the same step."""

    def on_train_batch_start(self, batch: object, batch_idx: int) -> None:
        if self.global_step >= 5 and self.global_rank == 0:
            with torch.no_grad():
                self.body[2].weight[:, :14] = 0.0


class Recorder(Callback):
    """Writes what this rank's callbacks saw (runs inside each worker, also for ddp_spawn)."""

    def __init__(self, out: Path, watch: FilterWatch, gate: FilterGate | None) -> None:
        self.out, self.watch, self.gate = out, watch, gate

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        rank = trainer.global_rank
        info = {
            "rank": rank, "global_step": trainer.global_step, "world": trainer.world_size,
            "history_steps": [r.step for r in self.watch.history],
            "gate_stopped": None if self.gate is None else self.gate.stopped_step,
            "gate_reason": None if self.gate is None else self.gate.stopping_reason_message,
        }
        if rank == 0:  # written before the json, which says that this rank is done
            torch.save({k: v.detach().cpu() for k, v in pl_module.state_dict().items()},
                       self.out / "final.pt")
            if self.watch.reference is not None:
                self.watch.reference.save(self.out / "reference.safetensors")
        (self.out / f"rank{rank}.json").write_text(json.dumps(info))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--strategy", default="ddp")
    p.add_argument("--out", required=True)
    p.add_argument("--gate", action="store_true")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    out = Path(args.out)
    torch.manual_seed(0)
    watch = FilterWatch(every_n_steps=2)
    callbacks: list = [watch]
    gate = None
    if args.gate:
        gate = FilterGate({"max-sparsity": 0.5}, every_n_steps=2)
        callbacks.append(gate)
    callbacks.append(Recorder(out, watch, gate))
    model = GoesBad(lr=0.0) if args.gate else TinyNet()
    tr = trainer(out, callbacks, logger=CSVLogger(out, name="csv"), max_epochs=4,
                 devices=2, strategy=args.strategy)
    tr.fit(model, loader(n=64, batch=4))


if __name__ == "__main__":
    main()
