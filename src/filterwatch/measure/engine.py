"""The fused engine: every measure for every layer from one read of each kernel.

Each kernel is read once, on its own device and in its own precision (fp16/bf16 as float32;
``precision="float64"`` upcasts first); drift, spectral measures and ``on_kernel`` take what
they need from that read. The statistics are then computed **batched by filter size**
(:func:`filterwatch.functional.batched.group_stats_update`): the layers with the same ``K``
go through one pass together, so a snapshot costs about the same number of tensor operations
whatever its layer count. Two kinds of layer keep the one-layer-at-a-time pass
(:func:`filterwatch.functional.stats.layer_stats_update`): sharded weights (one all-gather
each, measured while in hand) and, on a CPU, layers of more than 2^18 values (1 MiB of
float32, :data:`~filterwatch.functional.batched.CPU_CACHED_VALUES`), whose cost is memory
traffic that the per-layer pass keeps in cache (on CUDA with Triton installed its
per-filter pass is one Triton kernel, :mod:`filterwatch.measure._triton_stats`). Every
group's numbers reach the host in one transfer, followed by one batched ``K x K``
eigendecomposition per group.

The same functions, fed different statistics, serve ``FilterMetrics`` and the functional API.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import torch

from ..errors import InputError
from ..functional import filter_matrix, scratch_memory
from ..functional.batched import CPU_CACHED_VALUES, group_stats_update, kept_alone_on_cpu
from ..functional.drift import DriftBasis
from ..functional.drift_many import drift_from_counts
from ..functional.entropy import _SMALL, normalized_entropy, random_band
from ..functional.group_stats import GroupStats, LayerValues, group_values, stack_by_k
from ..functional.init_match import init_bound_ratio, init_match
from ..functional.orthogonality import orthogonality_compute
from ..functional.sparsity import sparsity_compute
from ..functional.stats import LayerStats, RowStats, layer_stats_update, row_stats, working_precision
from ..layers import ConvLayer
from ..reference.compare import Comparison, ReferencePlan
from ..report import LayerReport
from ..report.registry import get, select
from ._triton_stats import triton_row_stats, triton_usable
from .graph import GraphWork, SnapshotGraph
from .spectral import Spectral, spectral_values

__all__ = ["PRECISIONS", "KernelRead", "Precision", "check_precision", "layer_stats", "measure_layers",
           "reports_from_stats", "unavailable_report"]

Precision = Literal["float32", "float64"]
PRECISIONS: tuple[Precision, ...] = ("float32", "float64")
Progress = Callable[[int, int, str], None]

# what a kernel gives (the registry's measures that need no reference), and of those what a
# kernel with NaN/Inf still gives (the counts)
_FROM_KERNEL = tuple(m.key for m in select(needs_reference=False, spectral=False))
_NOT_FROM_NONFINITE = tuple(k for k in _FROM_KERNEL if k not in ("nonfinite", "dead_channels"))


def check_precision(precision: object) -> Precision:
    if precision not in PRECISIONS:
        raise InputError(f"`precision` expected one of {', '.join(PRECISIONS)}, got {precision!r}; "
                         "hint: float32 (default) agrees with float64 to about 1e-6")
    return precision


def _row_pass(f: torch.Tensor) -> Callable[[torch.Tensor], RowStats]:
    """The Triton kernel where it can run (CUDA, or its interpreter), else torch."""
    return triton_row_stats if triton_usable(f) else row_stats


def layer_stats(weight: torch.Tensor, eps: float, *, orthogonality: bool = True,
                peak: torch.Tensor | None = None, precision: Precision = "float32") -> LayerStats:
    """Sufficient statistics of one ``(C_out, C_in/groups, *kernel)`` weight (one read)."""
    w = _working(weight, precision)
    row_pass = row_stats if w.dtype == torch.float64 else _row_pass(filter_matrix(w))
    return layer_stats_update(w, eps, orthogonality=orthogonality, peak=peak, row_pass=row_pass)


_BATCH_VALUES = 1 << 24  # kernel values measured together at most (64 MiB of float32)


def _working(weight: torch.Tensor, precision: Precision) -> torch.Tensor:
    """The weight in the precision the statistics are computed in: its working precision
    (:func:`~filterwatch.functional.stats.working_precision`), float64 throughout with
    ``precision="float64"``."""
    return working_precision(weight, precision == "float64")


def _batches(members: list[tuple[int, torch.Tensor]]) -> list[list[tuple[int, torch.Tensor]]]:
    """Layers of one group split so that each batch holds at most ``_BATCH_VALUES`` values
    (a batch is copied once into one padded matrix)."""
    out: list[list[tuple[int, torch.Tensor]]] = [[]]
    size = 0
    for member in members:
        numel = member[1].numel()
        if out[-1] and size + numel > _BATCH_VALUES:
            out.append([])
            size = 0
        out[-1].append(member)
        size += numel
    return out


def _base(layer: ConvLayer) -> LayerReport:
    return LayerReport(name=layer.name, shape=list(layer.shape), kernel_size=list(layer.kernel_size),
                       groups=layer.groups, kind=layer.kind, n_filters=layer.n_filters,
                       depth=layer.depth, depth_norm=layer.depth_norm)


def _undefined(r: LayerReport, measures: Sequence[str], reason: str) -> None:
    for m in measures:
        setattr(r, m, None)
        r.undefined[m] = reason


def unavailable_report(layer: ConvLayer) -> LayerReport:
    """A report whose every measure is undefined because the kernel cannot be read."""
    r = _base(layer)
    _undefined(r, _FROM_KERNEL, layer.unavailable)
    return r


# the most random-looking VE/H_T of trained layers: a random band must clear it (by its own
# noise) before VE can call a layer of that size random-like
_TRAINED_EDGE = get("variance_entropy_norm").healthy[1]  # type: ignore[index]


def _set_entropy(r: LayerReport, key: str, value: float, n: int, k: int, prefix: str) -> None:
    if n < 2 or math.isnan(value):
        _undefined(r, (key, f"{key}_norm"),
                   f"{prefix}variance entropy is undefined for fewer than 2 filters (got {n})")
        return
    setattr(r, key, value)
    norm, why = normalized_entropy(value, n, k)
    setattr(r, f"{key}_norm", norm)
    if why:
        r.undefined[f"{key}_norm"] = why


def _set_random(r: LayerReport, n: int, k: int) -> None:
    """The random band of the layer's size, and whether its VE lies in it (``None`` where
    VE cannot tell a layer of this size from random: the band reaches down to trained
    layers' values)."""
    norm = r.variance_entropy_norm
    band = random_band(n, k) if norm is not None else None
    if band is None or norm is None:
        return
    r.random_band = [band.lo, band.hi]
    r.random_like = norm >= band.lo if band.tells_from(_TRAINED_EDGE) else None


def _fans(layer: ConvLayer) -> tuple[int, int]:
    """``(fan_in, fan_out)`` as ``torch.nn.init`` computes them on the stored weight (a
    transposed conv stores ``(C_in, C_out/groups, *kernel)``)."""
    k = math.prod(layer.kernel_size)
    c_out, c_in_g = layer.shape[0], layer.shape[1]
    if layer.kind.startswith("ConvTranspose"):
        g = layer.groups or 1
        return c_out // g * k, c_in_g * g * k
    return c_in_g * k, c_out * k


def _set_init(r: LayerReport, layer: ConvLayer, v: LayerValues) -> None:
    """How the weights compare with a fresh initialisation (the evidence for "untrained"):
    fresh needs both the init's fingerprint (mean, RMS, largest |w|) and a VE inside the
    random band of the layer's size (where VE is defined), and one of them must be able to
    tell a trained layer apart: VE at this size, or a uniform init's bound."""
    fan_in, fan_out = _fans(layer)
    r.init_bound_ratio = init_bound_ratio(v.peak, fan_in)
    count = v.n * v.k
    init = init_match(count, fan_in, fan_out, v.weight_sum / count, v.weight_norm / math.sqrt(count),
                      v.peak)
    in_band = r.random_band is None or (r.variance_entropy_norm or 0.0) >= r.random_band[0]
    # the evidence must be able to tell: VE at this size, or a uniform init's hard bound (a
    # normal init's RMS and peak alone let a small trained layer pass: 288 values allow 22 %)
    telling = r.random_like is not None or (init is not None and init.family == "uniform")
    r.fresh_init = None if init is None or not in_band or not telling else init.name


def _sparse_rms_ratio(v: LayerValues) -> float | None:
    """The sparse filters' RMS over the layer's: 0 when they are zero, near 1 when they hold
    typical weights that a few large ones make look sparse."""
    if v.n_sparse == 0 or v.weight_norm == 0.0:
        return None
    rms = v.weight_norm / math.sqrt(v.n * v.k)
    return math.sqrt(max(v.sparse_sumsq, 0.0) / (v.n_sparse * v.k)) / rms


def _report(layer: ConvLayer, v: LayerValues) -> LayerReport:
    r = _base(layer)
    r.nonfinite = v.nonfinite
    r.dead_channels, r.dead_channel_indices = len(v.dead_indices), v.dead_indices
    if v.nonfinite:
        _undefined(r, _NOT_FROM_NONFINITE, f"the weight holds {v.nonfinite} non-finite value(s) (NaN/Inf)")
        return r
    r.sparsity, r.n_sparse = sparsity_compute(v.n_sparse, v.n), v.n_sparse
    r.weight_norm, r.filter_l1_mean, r.filter_l2_mean = v.weight_norm, v.filter_l1_mean, v.filter_l2_mean
    r.sparse_rms_ratio = _sparse_rms_ratio(v)
    _set_entropy(r, "variance_entropy", v.variance_entropy, v.n, v.k, "")
    _set_random(r, v.n, v.k)
    _set_init(r, layer, v)
    if v.n_sparse == 0:  # nothing sparse: clean VE is VE, reasons included
        for src in ("variance_entropy", "variance_entropy_norm"):
            dst = src.replace("variance_entropy", "variance_entropy_clean")
            setattr(r, dst, getattr(r, src))
            if src in r.undefined:
                r.undefined[dst] = r.undefined[src]
    else:
        _set_entropy(r, "variance_entropy_clean", v.variance_entropy_clean, v.n - v.n_sparse, v.k,
                     "after removing sparse filters: ")
    if v.ortho_abs is None:
        r.undefined["orthogonality"] = "not computed (orthogonality=False)"
    elif v.c_out < 2:
        r.undefined["orthogonality"] = (f"orthogonality is undefined for a layer with {v.c_out} output "
                                        "filter (C_out = 1): there is no pair to compare")
    else:
        r.orthogonality = orthogonality_compute(v.ortho_abs, v.c_out)
    return r


def reports_from_stats(layers: Sequence[ConvLayer], stats: Sequence[LayerStats]) -> list[LayerReport]:
    """LayerReports from per-layer statistics (one batched eigendecomposition per kernel size)."""
    return reports_from_groups([(list(range(len(layers))), stats)], layers)


def reports_from_groups(groups: Sequence[tuple[Sequence[int], GroupStats | Sequence[LayerStats]]],
                        layers: Sequence[ConvLayer]) -> list[LayerReport]:
    """LayerReports of ``layers`` from statistics gathered in groups: ``(positions, stats)``,
    the stats batched (:class:`GroupStats`) or per layer; one host copy for all of them."""
    flat: list[tuple[list[int], GroupStats]] = []
    for positions, st in groups:
        if isinstance(st, GroupStats):
            flat.append((list(positions), st))
        else:
            flat += [([positions[j] for j in js], g) for js, g in stack_by_k(st)]
    out: dict[int, LayerReport] = {}
    for (positions, _), values in zip(flat, group_values([g for _, g in flat]), strict=True):
        for i, v in zip(positions, values, strict=True):
            out[i] = _report(layers[i], v)
    return [out[i] for i in sorted(out)]


def _counts(comparisons: dict[int, Comparison], i: int) -> torch.Tensor | None:
    return comparisons[i].counts if i in comparisons else None


class KernelRead(NamedTuple):
    """One layer's kernel as a snapshot read it, handed to ``on_kernel`` while it is in hand.

    Attributes:
        position: the layer's index in the measured list.
        layer: the layer.
        weight: its kernel in ``(C_out, C_in/groups, *kernel)`` layout, on its own device.
        drift_counts: ``(K, bins)`` histogram counts of its coefficients on the reference's
            basis (row 0: the first principal component), when drift was measured.
    """

    position: int
    layer: ConvLayer
    weight: torch.Tensor
    drift_counts: torch.Tensor | None


def measure_layers(layers: Sequence[ConvLayer], *, sparsity_eps: float = 0.01,
                   orthogonality: bool = True, precision: Precision = "float32",
                   progress: Progress | None = None, plan: ReferencePlan | None = None,
                   on_kernel: Callable[[KernelRead], None] | None = None,
                   spectral: Spectral | None = None, graph: SnapshotGraph | None = None
                   ) -> list[LayerReport]:
    """Every measure for every layer from **one read of each kernel**: the statistics, the
    comparison with the reference (``plan``) and whatever ``on_kernel`` takes from the kernel
    (TensorBoard histograms, filter images, reference weights) all come from that read.

    Kernels are read one layer at a time (under sharding each read is one all-gather); a
    layer whose kernel cannot be read gets a report that says why. With ``graph`` and whole
    layers on CUDA, their device work is one replay of a captured graph
    (:mod:`filterwatch.measure.graph`)."""
    stats: list[LayerStats] = []
    one_by_one: list[int] = []
    held: list[tuple[int, torch.Tensor]] = []  # whole kernels: views of the model's weights
    whole: dict[tuple[int, torch.dtype, torch.device, bool], list[tuple[int, torch.Tensor]]] = {}
    comparisons: dict[int, Comparison] = {}
    spectra = {}
    with torch.no_grad(), scratch_memory():
        for i, layer in enumerate(layers):
            if not layer.unavailable:
                weight = layer.kernel()
                w = _working(weight, precision)
                small = layer.n_filters < _SMALL or w.numel() <= CPU_CACHED_VALUES
                if layer.sharded or kept_alone_on_cpu(w):
                    # sharded: one all-gather each, measured while it is in hand; large on a
                    # CPU: costed by memory traffic, not operations, and the per-layer pass
                    # keeps its blocks in cache (see CPU_CACHED_VALUES)
                    stats.append(layer_stats(w, sparsity_eps, orthogonality=orthogonality,
                                             precision=precision))
                    one_by_one.append(i)
                    if plan is not None:
                        comparisons[i] = plan.compare(i, weight)
                    if on_kernel is not None:
                        on_kernel(KernelRead(i, layer, weight, _counts(comparisons, i)))
                else:  # compared, and handed to on_kernel, with the others of its kind below
                    whole.setdefault((layer.kernel_numel, w.dtype, w.device, small), []).append((i, w))
                    held.append((i, weight))
                if spectral is not None:
                    spectra[i] = spectral_values(weight, layer.groups or 1, spectral.input_size)
                del weight
            if progress is not None:
                progress(i + 1, len(layers), layer.name)
        groups: list[tuple[Sequence[int], GroupStats | Sequence[LayerStats]]] = [(one_by_one, stats)]
        replayed = None
        if graph is not None and graph.takes([w for _, w in held]):
            replayed = _replayed(graph, held, whole, plan, sparsity_eps, orthogonality, precision)
        if replayed is not None:
            groups += replayed[0]
            comparisons.update(replayed[1])
        else:
            if plan is not None:
                comparisons.update(plan.compare_many(held))
            for (_, _, _, small), members in whole.items():
                for batch in _batches(members):
                    groups.append(([i for i, _ in batch], group_stats_update(
                        [w for _, w in batch], sparsity_eps, orthogonality=orthogonality, small=small)))
        if on_kernel is not None:
            for i, weight in held:
                on_kernel(KernelRead(i, layers[i], weight, _counts(comparisons, i)))
        measured = reports_from_groups(groups, layers)
    ready = [i for i, layer in enumerate(layers) if not layer.unavailable]
    out = [unavailable_report(layer) for layer in layers]
    for i, report in zip(ready, measured, strict=True):
        out[i] = report
    if plan is not None:
        for i, report in enumerate(out):
            plan.apply(report, comparisons[i] if i in comparisons else plan.compare(i, None))
    for i, values in spectra.items():
        for key, (value, reason) in values.items():
            setattr(out[i], key, value)
            if reason:
                out[i].undefined[key] = reason
    return out


def _replayed(graph: SnapshotGraph, held: list[tuple[int, torch.Tensor]],
              whole: dict[tuple[int, torch.dtype, torch.device, bool], list[tuple[int, torch.Tensor]]],
              plan: ReferencePlan | None, eps: float, orthogonality: bool, precision: Precision
              ) -> tuple[list[tuple[Sequence[int], GroupStats]], dict[int, Comparison]] | None:
    """The whole layers' statistics and comparisons through the captured graph (``None``:
    graphs are off; measure eagerly)."""
    at = {i: p for p, (i, _) in enumerate(held)}
    batches = tuple((tuple(at[i] for i, _ in batch), small)
                    for (_, _, _, small), members in whole.items() for batch in _batches(members))
    drift_terms, change_terms = plan.fixed_terms(held) if plan is not None else ([], [])
    by_kind: dict[tuple[int, int], list[tuple[int, DriftBasis]]] = {}
    for i, basis in drift_terms:
        by_kind.setdefault((int(basis.basis.shape[0]), int(basis.hist.shape[1])), []).append((i, basis))
    work = GraphWork(batches, tuple((tuple(at[i] for i, _ in terms), tuple(b for _, b in terms))
                                    for terms in by_kind.values()),
                     tuple((at[i], snap) for i, snap in change_terms), eps, orthogonality,
                     precision == "float64")
    got = graph.run(work, [w for _, w in held])
    if got is None:
        return None
    groups: list[tuple[Sequence[int], GroupStats]] = [([held[p][0] for p in positions], g)
                                                      for positions, g in got.stats]
    comparisons: dict[int, Comparison] = {}
    if plan is not None:
        known = {held[p][0]: r for (positions, fixed), (_, bases) in zip(got.drift, work.drift, strict=True)
                 for p, r in zip(positions, drift_from_counts(fixed, bases), strict=True)}
        change = {held[p][0]: sums for p, sums in got.change.items()}
        comparisons = {i: plan.compare(i, w, known.get(i), change.get(i)) for i, w in held}
    return groups, comparisons
