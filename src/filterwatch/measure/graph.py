"""One CUDA graph per snapshot: the device work of the whole layers, captured once per layer
set and replayed (behind a flag until ``make gpu-check`` has measured it: set
``FILTERWATCH_CUDA_GRAPH=1``).

What one replay does, with no host read in between: per batch of whole layers (one filter
size, dtype and moment precision) the statistics
(:func:`~filterwatch.functional.batched.group_stats_update`), the drift counts against the
reference (:func:`~filterwatch.functional.drift_many.drift_counts_fixed`: float64 positions,
fixed-size ``index_add`` histograms) and the relative-change sums
(:func:`~filterwatch.functional.norms.change_sums_fixed`); every output is packed into one
float64 vector, which one copy inside the graph puts in pinned host memory. The host then
does what cannot be captured: the ``K x K`` eigendecompositions
(:func:`~filterwatch.functional.group_stats.group_values`), the drift sums, the reports.

The graph reads the weights where they live: optimizers update them in place, so a replay
sees the current values without a copy. Anything that changes the layer set's fingerprint
(data pointers, shapes, strides, dtypes, devices, the reference, the options) captures again;
a capture that fails warns once, and the eager path measures the rest of the run.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from ..functional import filter_matrix
from ..functional.batched import group_stats_update
from ..functional.drift import DriftBasis
from ..functional.drift_many import FixedCounts, drift_counts_fixed
from ..functional.group_stats import GroupStats
from ..functional.norms import change_sums_fixed
from ..functional.stats import working_precision

__all__ = ["Captured", "GraphWork", "SnapshotGraph", "cuda_capture", "eager_capture", "graphs_wanted"]

Outputs = list[torch.Tensor]
Replay = Callable[[], Outputs]
Capture = Callable[[Callable[[], Outputs]], Replay]


def graphs_wanted() -> bool:
    """Whether snapshots on CUDA are captured as graphs (``FILTERWATCH_CUDA_GRAPH=1``)."""
    return os.environ.get("FILTERWATCH_CUDA_GRAPH", "0") == "1"


class GraphWork(NamedTuple):
    """What a captured snapshot computes, fixed for one fingerprint. Positions index the
    weights handed to :meth:`SnapshotGraph.run`."""

    batches: tuple[tuple[tuple[int, ...], bool], ...]  # statistics: positions, float64 moments
    drift: tuple[tuple[tuple[int, ...], tuple[DriftBasis, ...]], ...]  # positions, references
    change: tuple[tuple[int, torch.Tensor], ...]  # positions with reference weights
    eps: float
    orthogonality: bool
    float64: bool  # precision="float64"


class Captured(NamedTuple):
    """One replay's results, on the host."""

    stats: list[tuple[tuple[int, ...], GroupStats]]  # (positions, statistics) per batch
    drift: list[tuple[tuple[int, ...], FixedCounts]]
    change: dict[int, tuple[float, float]]  # position -> (Σ(w - ref)², Σref²)


def _program(work: GraphWork, weights: Sequence[torch.Tensor]) -> Outputs:
    """The device work of one snapshot: only fixed-size outputs, no host read."""
    ws = [working_precision(w, work.float64) for w in weights]
    outs: Outputs = []
    for positions, small in work.batches:
        g = group_stats_update([ws[i] for i in positions], work.eps, orthogonality=work.orthogonality,
                               small=small)
        outs += [t for t in g if isinstance(t, torch.Tensor)]
    for positions, bases in work.drift:
        outs += list(drift_counts_fixed([filter_matrix(ws[i]) for i in positions], bases))
    if work.change:
        outs.append(torch.stack([change_sums_fixed(weights[i], snap) for i, snap in work.change]))
    return outs


def _decode(work: GraphWork, weights: Sequence[torch.Tensor], outs: Outputs) -> Captured:
    """The host tensors of one replay, back into statistics, counts and sums."""
    it = iter(outs)
    stats = []
    for positions, _ in work.batches:
        shapes = [tuple(int(x) for x in weights[i].shape) for i in positions]
        fields = {f: next(it) for f in _TENSOR_FIELDS if f != "ortho_abs" or work.orthogonality}
        stats.append((positions, GroupStats(
            n=tuple(s[0] * s[1] for s in shapes), c_out=tuple(s[0] for s in shapes),
            k=int(torch.Size(shapes[0][2:]).numel()), ortho_abs=fields.pop("ortho_abs", None), **fields)))
    drift = [(positions, FixedCounts(next(it), next(it), next(it))) for positions, _ in work.drift]
    change: dict[int, tuple[float, float]] = {}
    if work.change:
        sums = next(it).tolist()
        change = {i: (num, den) for (i, _), (num, den) in zip(work.change, sums, strict=True)}
    return Captured(stats, drift, change)


_TENSOR_FIELDS = tuple(f for f in GroupStats._fields if f not in ("n", "c_out", "k"))


def _pack(outs: Outputs) -> torch.Tensor:
    return torch.cat([t.reshape(-1).to(torch.float64) for t in outs])


def _specs(outs: Outputs) -> list[tuple[tuple[int, ...], torch.dtype]]:
    return [(tuple(t.shape), t.dtype) for t in outs]


def _unpack(flat: torch.Tensor, specs: Sequence[tuple[tuple[int, ...], torch.dtype]]) -> Outputs:
    """The outputs again (on the host, in their own dtypes) from the packed float64 vector;
    copies, so that the next replay, which rewrites the pinned buffer, changes none of them."""
    sizes = [torch.Size(shape).numel() for shape, _ in specs]
    return [part.reshape(shape).to(dtype, copy=True)
            for part, (shape, dtype) in zip(torch.split(flat, sizes), specs, strict=True)]


def eager_capture(fn: Callable[[], Outputs]) -> Replay:
    """No graph: every replay runs ``fn`` and packs its outputs as a graph's replay would (the
    stand-in that the CPU tests drive through the same packing and decoding)."""
    specs = _specs(fn())

    def replay() -> Outputs:
        return _unpack(_pack(fn()).cpu(), specs)

    return replay


def cuda_capture(fn: Callable[[], Outputs]) -> Replay:
    """``fn`` captured as a CUDA graph whose last node copies the packed outputs into pinned
    host memory; a replay then costs one launch and one wait. ``fn`` runs once first on a
    side stream (lazy initialisation: layouts, frames, library handles), as capture needs."""
    side = torch.cuda.Stream()  # type: ignore[no-untyped-call]
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        specs = _specs(fn())
    torch.cuda.current_stream().wait_stream(side)
    host = torch.empty(sum(torch.Size(s).numel() for s, _ in specs), dtype=torch.float64, pin_memory=True)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        host.copy_(_pack(fn()), non_blocking=True)
    done = torch.cuda.Event()  # type: ignore[no-untyped-call]

    def replay() -> Outputs:
        graph.replay()
        done.record()
        done.synchronize()  # the snapshot's one wait: its numbers are on the host now
        return _unpack(host, specs)

    return replay


def _fingerprint(work: GraphWork, weights: Sequence[torch.Tensor]) -> tuple[object, ...]:
    """What a captured graph depends on: where and how every input lives, and the work."""
    def where(t: torch.Tensor) -> tuple[object, ...]:
        return (t.data_ptr(), tuple(t.shape), tuple(t.stride()), t.dtype, t.device)

    return (tuple(where(w) for w in weights), work.batches, work.eps, work.orthogonality, work.float64,
            tuple((p, tuple(id(b) for b in bases)) for p, bases in work.drift),
            tuple((i, where(s)) for i, s in work.change))


_RECAPTURES_IN_A_ROW = 3  # a new fingerprint at this many snapshots in a row: stop capturing


class SnapshotGraph:
    """The captured snapshot of one run (one per set of options): captures when the
    fingerprint changes, replays otherwise; after a failed capture, or when every snapshot
    brings new tensors (a model that makes its kernels afresh, e.g. weight normalisation),
    it warns once and :meth:`run` returns ``None`` (the caller measures eagerly).

    ``capture``: :func:`cuda_capture` (default) or :func:`eager_capture` (the CPU tests'
    stand-in, with ``devices=("cpu",)``); ``devices``: the device types it takes.
    """

    def __init__(self, capture: Capture | None = None, devices: tuple[str, ...] = ("cuda",)) -> None:
        self._capture = capture or cuda_capture
        self.devices = devices
        self._key: tuple[object, ...] | None = None
        self._replay: Replay | None = None
        self.captures = 0
        self._changed = 0
        self.off: str | None = None  # why graphs are off for this run

    def takes(self, weights: Sequence[torch.Tensor]) -> bool:
        """Whether these weights can go through the graph (all on devices it takes)."""
        return self.off is None and bool(weights) and all(w.device.type in self.devices for w in weights)

    def run(self, work: GraphWork, weights: Sequence[torch.Tensor]) -> Captured | None:
        """This snapshot's results through the graph (captured first if the fingerprint is
        new), or ``None`` when graphs are off."""
        if self.off is not None:
            return None
        key = _fingerprint(work, weights)
        if key != self._key or self._replay is None:
            self._changed += 1
            if self._changed >= _RECAPTURES_IN_A_ROW:
                self._turn_off("its kernels are new tensors at every snapshot (nothing to replay)")
                return None
            try:
                self._replay = self._capture(lambda: _program(work, weights))
            except Exception as exc:  # capture is best effort: the eager path is always there
                self._turn_off(f"capture failed ({type(exc).__name__}: {exc})")
                return None
            self._key = key
            self.captures += 1
        else:
            self._changed = 0
        return _decode(work, weights, self._replay())

    def _turn_off(self, why: str) -> None:
        self.off = why
        self._replay = None
        warnings.warn(f"filterwatch: CUDA graph snapshots are off for this run: {why}; the "
                      "snapshots are measured eagerly (the same numbers)", UserWarning, stacklevel=4)
