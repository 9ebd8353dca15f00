"""Run by tests/integrations/test_huggingface_ddp.py under ``torch.distributed.run`` (2 CPU
processes, gloo): a Hugging Face Trainer with FilterWatchCallback and FilterGateCallback.
Each rank writes what it saw to OUT/rank<r>.json."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch

from filterwatch.callbacks.huggingface import FilterGateCallback, FilterWatchCallback
from tests.hf_helpers import DWCONV, Sabotage, trainer


class RankZeroSabotage(Sabotage):
    """Zero the layer on rank 0 only: rank 0 sees the fault, rank 1 does not, and both
    processes must stop at the same step."""

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if int(os.environ["RANK"]) == 0:
            super().on_step_end(args, state, control, model=model, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--gate", action="store_true")
    opts = parser.parse_args()
    warnings.filterwarnings("ignore")
    out, rank = Path(opts.out), int(os.environ["RANK"])
    watch = FilterWatchCallback(every_n_steps=2)
    callbacks: list[Any] = [watch]
    gate = None
    if opts.gate:
        gate = FilterGateCallback({"max-dead-channel-share": 0}, every_n_steps=1)
        callbacks = [RankZeroSabotage(3), watch, gate]
    tr = trainer(out / "run", callbacks, max_steps=8, ddp_backend="gloo")
    tr.train()
    entries = [e for e in tr.state.log_history if f"filterwatch/{DWCONV}/sparsity" in e]
    (out / f"rank{rank}.json").write_text(json.dumps({
        "world": tr.args.world_size,
        "history_steps": [r.step for r in watch.history],
        "logged_steps": [e["step"] for e in entries],
        "global_step": tr.state.global_step,
        "gate_stopped": None if gate is None else gate.stopped_step,
        "last": entries[-1] if entries else None,
    }))
    if rank == 0:
        unwrapped = tr.model.module if hasattr(tr.model, "module") else tr.model
        torch.save({k: v for k, v in unwrapped.state_dict().items()}, out / "final.pt")


if __name__ == "__main__":
    main()
