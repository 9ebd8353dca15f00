"""Tensor operations per snapshot against the layer count: the batched pass against the
one-layer-at-a-time pass, in one run (issue 26).

Counts every aten operation dispatched while one snapshot's statistics are measured
(``MeasureOptions().run``: sparsity, VE raw/normalised/clean, orthogonality, norms, dead
channels, NaN/Inf, init evidence), with a ``TorchDispatchMode``; counts are exact and the same
on any machine. Models: 6 shapes of small 3x3 layers (64-64, 32-32, 32 and 96 depthwise, 64-32,
16-16) repeated 1 and 8 times (6 and 48 layers), and the same with two large shapes (128-128,
batched with float64 moments, and 256-128: over 2^18 values, which keeps the per-layer pass on
a CPU), and the small ones with
a reference built from them (drift and relative change, as a monitor's snapshot has them).
Run from the repository root:

  .venv/bin/python benchmarks/bench_ops.py
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from filterwatch.functional.stats import layer_stats_update
from filterwatch.layers import ConvLayer, discover_layers
from filterwatch.measure.engine import reports_from_stats
from filterwatch.measure.options import MeasureOptions
from filterwatch.reference import Reference, ReferencePlan

ROOT = Path(__file__).resolve().parents[1]
SMALL = ((64, 64, 1), (32, 32, 1), (32, 32, 32), (96, 96, 96), (64, 32, 1), (16, 16, 1))
MIXED = ((64, 64, 1), (128, 128, 1), (32, 32, 32), (96, 96, 96), (256, 128, 1), (16, 16, 1))


class _Count(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops += 1
        return func(*args, **(kwargs or {}))


def _layers(shapes: tuple[tuple[int, int, int], ...], repeat: int) -> list[ConvLayer]:
    torch.manual_seed(0)
    net = nn.Sequential(*[nn.Conv2d(c_in, c_out, 3, groups=g, bias=False)
                          for _ in range(repeat) for c_out, c_in, g in shapes])
    return discover_layers(net)


def _batched(layers: list[ConvLayer]) -> Any:
    return MeasureOptions().run(layers)


def _per_layer(layers: list[ConvLayer]) -> Any:
    with torch.no_grad():
        return reports_from_stats(layers, [layer_stats_update(layer.kernel(), 0.01) for layer in layers])


def _reference(layers: list[ConvLayer]) -> Reference:
    return Reference.build({f"{layer.name}.weight": layer.kernel() for layer in layers})


def _batched_drift(layers: list[ConvLayer]) -> Any:
    """The engine with a reference (drift and relative change): the monitor's snapshot."""
    return MeasureOptions(reference=_REFERENCES[id(layers)]).run(layers)


def _per_layer_drift(layers: list[ConvLayer]) -> Any:
    plan = ReferencePlan(layers, _REFERENCES[id(layers)])
    with torch.no_grad():
        reports = _per_layer(layers)
        for i, (layer, report) in enumerate(zip(layers, reports, strict=True)):
            plan.apply(report, plan.compare(i, layer.kernel()))
    return reports


_REFERENCES: dict[int, Reference] = {}


def _ops(run: Any, layers: list[ConvLayer]) -> int:
    run(layers)  # layouts and caches are made once per set of shapes
    with _Count() as count:
        run(layers)
    return count.ops


def main() -> None:
    lines = [f"Tensor operations per snapshot (aten ops, exact), torch {torch.__version__}; "
             f"{time.strftime('%Y-%m-%d')}.", "",
             "| layers | batched (the engine) | one layer at a time | 48 / 6 batched | 48 / 6 per layer |",
             "|---|---:|---:|---:|---:|"]
    cases = (("small", SMALL, _batched, _per_layer), ("with 2 large shapes", MIXED, _batched, _per_layer),
             ("small, with drift", SMALL, _batched_drift, _per_layer_drift))
    for name, shapes, batched, per_layer in cases:
        sets = {r: _layers(shapes, r) for r in (1, 8)}
        _REFERENCES.update({id(ls): _reference(ls) for ls in sets.values()})
        counts = {(r, how): _ops(run, sets[r]) for r in (1, 8)
                  for how, run in (("batched", batched), ("per_layer", per_layer))}
        growth = {how: f"{counts[8, how] / counts[1, how]:.2f}x" for how in ("batched", "per_layer")}
        for r in (1, 8):
            last = r == 8
            lines.append(f"| {6 * r} {name} | {counts[r, 'batched']} | {counts[r, 'per_layer']} | "
                         f"{growth['batched'] if last else ''} | {growth['per_layer'] if last else ''} |")
    text = "\n".join(lines) + "\n"
    (ROOT / "benchmarks" / "results_ops.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
