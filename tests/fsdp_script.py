"""Run by tests/test_sharded.py: FSDP2 (fully_shard) on 2 CPU processes with gloo.

Every rank: analyze() of the sharded model (one layer all-gathered at a time), FilterMetrics
with sharded rows synced through torch.distributed, and watch() hooks during a few training
steps. Each rank writes its reports to OUT/rank<r>.json; rank 0 also the unsharded weights."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 32, 3), nn.ReLU(),
                        nn.Conv2d(32, 32, 3, groups=4), nn.Flatten(), nn.LazyLinear(2))
    net(torch.randn(1, 3, 10, 10))
    with torch.no_grad():
        net[2].weight[:, :5] = 0.0          # sparse filters
        net[0].weight[0, 0, 0, 0] = 9.0     # the global peak sits in rank 0's shard
        net[4].weight[20:] *= 1e-4          # sparse only relative to rank 0's peak
    return net


def _track_gathers() -> list[int]:
    """Count how many all-gathered (full) layers are alive at once during analyze()."""
    import gc
    import weakref

    import filterwatch.layers.sharded as fwd

    original, alive, peak = fwd.full_tensor, [], [0, 0]  # [most alive at once, gathers]

    def tracking(t: torch.Tensor) -> torch.Tensor:
        out = original(t)
        if fwd.is_sharded(t):
            peak[1] += 1
            gc.collect()
            alive[:] = [r for r in alive if r() is not None]
            alive.append(weakref.ref(out))
            peak[0] = max(peak[0], len(alive))
        return out

    fwd.full_tensor = tracking  # type: ignore[assignment]
    return peak


def _worker(rank: int, world: int, out: str, port: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from filterwatch import FilterMetrics, Reference, analyze, watch

    warnings.filterwarnings("ignore")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    net = _model()
    if rank == 0:
        torch.save({k: v for k, v in net.state_dict().items() if v.ndim == 4},
                   Path(out) / "unsharded.pt")
    mesh = init_device_mesh("cpu", (world,))
    for i in (0, 2, 4):
        fully_shard(net[i], mesh=mesh)
    fully_shard(net, mesh=mesh)
    peak_alive = _track_gathers()
    report = analyze(net)                               # every rank, layer by layer
    analyze_peak = peak_alive[0]
    reference = Reference.build(net, snapshot=True)     # one gather per layer ...
    before = peak_alive[1]
    analyze(net, reference=reference)                   # ... and one per layer for all measures
    gathers_with_reference = peak_alive[1] - before
    local = {name: p.to_local() for name, p in net.named_parameters() if p.ndim == 4}
    metric = FilterMetrics({k: v for k, v in net.state_dict().items() if v.ndim == 4},
                           sharded=True)
    metric.update({f"{k}": v for k, v in local.items()})  # this rank's rows only
    merged = metric.compute()                           # torchmetrics syncs the states
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    with watch(net, every_n_calls=1) as w:
        for _ in range(2):
            opt.zero_grad()
            net(torch.randn(2, 3, 10, 10)).sum().backward()
            opt.step()
    hf_history = _hugging_face_callback(net, rank, Path(out))
    # FSDP1 (flat parameters, what Lightning's FSDPStrategy uses): summoned for the snapshot
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    fsdp1 = FSDP(_model(), device_id=torch.device("cpu"), use_orig_params=True,
                 auto_wrap_policy=ModuleWrapPolicy({nn.Conv2d}))  # one unit per conv layer
    flat_shapes = sorted({tuple(p.shape) for p in fsdp1.parameters()})
    fsdp1_report = analyze(fsdp1)
    result = {"analyze": report.to_dict(), "fsdp1": fsdp1_report.to_dict(),
              "fsdp1_param_ndims": sorted({len(s) for s in flat_shapes}), "metric": merged.to_dict(),
              "watch": w.history[-1].to_dict(), "hf": hf_history,
              "sharded_local_rows": local["2.weight"].shape[0],
              "max_full_layers_alive": analyze_peak, "gathers_with_reference": gathers_with_reference}
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def _hugging_face_callback(net: nn.Module, rank: int, out: Path) -> dict:  # type: ignore[type-arg]
    """The Hugging Face FilterWatchCallback's hooks on the sharded model, as the Trainer calls
    them on every process (without a Trainer: the hooks, a TrainerState and a TrainerControl):
    every process joins the gathers (so each measures), the main one alone logs."""
    from types import SimpleNamespace

    from transformers import TrainerControl, TrainerState

    from filterwatch.callbacks.huggingface import FilterWatchCallback

    cb = FilterWatchCallback(every_n_steps=1, history_file=None)
    args = SimpleNamespace(output_dir=str(out / "hf"))
    state, control = TrainerState(is_world_process_zero=rank == 0), TrainerControl()
    cb.on_train_begin(args, state, control, model=net)
    state.global_step = 1
    cb.on_step_end(args, state, control, model=net)
    cb.on_train_end(args, state, control, model=net)
    assert not cb.disabled, cb.disabled
    return {"history": [r.to_dict() for r in cb.history],
            "logged": [e["step"] for e in state.log_history]}


if __name__ == "__main__":
    mp.spawn(_worker, args=(2, sys.argv[1], sys.argv[2]), nprocs=2)
