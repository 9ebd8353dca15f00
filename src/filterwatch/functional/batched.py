"""The statistics of many whole layers of one filter size in one pass: batched by shape.

:func:`group_stats_update` gives the same statistics as calling
:func:`~filterwatch.functional.stats.layer_stats_update` on each layer, as one
:class:`~filterwatch.functional.group_stats.GroupStats`, with a number of tensor operations
that does not grow with the number of layers:

- the layers' ``(n_i, K)`` filter matrices are concatenated into one, each padded to a whole
  number of chunks (a pad row repeats its layer's first filter, so centring on that filter
  makes it exactly zero); per-filter reductions run once over all filters and segmented
  sums (``index_add``) give each layer its share; pad rows count towards an extra segment
  that is dropped;
- the moments ``Σf``, ``Σffᵀ`` come from one batched product over all chunks, each centred on
  its layer's first filter (no cancellation), added per layer in float64;
- orthogonality's Gram matrices of layers of equal shape are one batched product, reduced
  block by block while in cache (:func:`~filterwatch.functional.orthogonality._orthogonality_update_batched`).

On a CPU, reading a value on the host costs nothing, so rare branches (NaN/Inf, weights near
the ends of the float range, sparse filters) are skipped when absent. On any other device the
pass reads nothing on the host: no ``.item()``, no boolean-mask indexing, no output whose size
depends on the data (fixed-size ``index_add`` segment sums instead), so a CUDA graph can
capture it; the ``K x K`` eigendecompositions come afterwards, in
:func:`~filterwatch.functional.group_stats.group_values`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from ._filters import _SAFE_EXPONENT, _transposed
from ._scratch import _scratch
from .group_stats import GroupStats
from .orthogonality import _GRAM_MACS, _orthogonality_update, _orthogonality_update_batched

__all__ = ["CPU_CACHED_VALUES", "group_stats_update", "kept_alone_on_cpu"]

# A layer of more values than this (1 MiB of float32) is measured alone on a CPU: its cost is
# memory traffic, which the one-layer passes keep in cache (batching ResNet-50's 256- and
# 512-channel layers took 85 ms instead of 24); up to it, a layer costs operations, which
# batching saves. Such layers have float64 moments in a batch, as the small ones do.
CPU_CACHED_VALUES = 1 << 18


def kept_alone_on_cpu(values: torch.Tensor) -> bool:
    """Whether ``values`` (a kernel or filter matrix) is measured one layer at a time."""
    return values.device.type == "cpu" and values.numel() > CPU_CACHED_VALUES


_CHUNK = 2048       # filters per chunk of the float32 moment sums (as the per-layer pass)
_CHUNK_SMALL = 128  # filters per chunk of the float64 moment sums of small layers


class _Layout(NamedTuple):
    """Where each layer's filters sit in the padded concatenation (made once per set of shapes)."""

    chunk: int
    pads: tuple[torch.Tensor | None, ...]  # zero rows after each layer (filled with its first filter)
    owner: torch.Tensor      # (N_pad,) layer of each row, pad rows included
    chan_start: torch.Tensor  # (Σ C_out,) first row of each output channel, layer after layer
    chan_end: torch.Tensor    # (Σ C_out,) one past its last row
    first: torch.Tensor      # (L,) row of each layer's first filter
    pad_rows: torch.Tensor   # (P,) the pad rows, and the row each repeats
    pad_src: torch.Tensor
    chunk_seg: torch.Tensor  # (N_pad / chunk,) layer of each chunk
    counts: torch.Tensor     # (L,) float64 filters per layer


@functools.lru_cache(maxsize=64)
def _layout(shapes: tuple[tuple[int, ...], ...], k: int, chunk: int, dtype: torch.dtype,
            device: torch.device) -> _Layout:
    c_out = torch.tensor([s[0] for s in shapes])
    c_in = torch.tensor([s[1] for s in shapes])
    n = c_out * c_in
    pad = -n % chunk
    rows = n + pad
    start = torch.cumsum(rows, 0) - rows
    layer = torch.repeat_interleave(torch.arange(len(shapes)), rows)  # pad rows included
    pos = torch.arange(int(rows.sum())) - start[layer]
    is_pad = pos >= n[layer]
    owner = torch.repeat_interleave(torch.arange(len(shapes)), c_out)  # layer of each channel
    within = torch.arange(int(c_out.sum())) - (torch.cumsum(c_out, 0) - c_out)[owner]
    chan_start = start[owner] + within * c_in[owner]
    pad_rows = is_pad.nonzero().flatten()
    zeros = torch.zeros(int(pad.max()), k, dtype=dtype, device=device)
    return _Layout(
        chunk=chunk, pads=tuple(zeros[:p] if p else None for p in pad.tolist()),
        owner=layer.to(device),
        chan_start=chan_start.to(device), chan_end=(chan_start + c_in[owner]).to(device),
        first=start.to(device), pad_rows=pad_rows.to(device), pad_src=start[layer[pad_rows]].to(device),
        chunk_seg=layer[::chunk].to(device), counts=n.to(torch.float64).to(device))


def _padded(matrices: Sequence[torch.Tensor], layout: _Layout, out: torch.Tensor | None = None
            ) -> torch.Tensor:
    """The layers' ``(n_i, K)`` filter matrices one after another, each followed by its pad
    rows, which repeat its first filter (centred on that filter, a pad row is exactly zero);
    ``matrices`` in the dtype the layout was made for."""
    pieces: list[torch.Tensor] = []
    for m, pad in zip(matrices, layout.pads, strict=True):
        pieces += [m] if pad is None else [m, pad]
    f = torch.cat(pieces, out=out)
    if layout.pad_rows.numel():
        f.index_copy_(0, layout.pad_rows, f.index_select(0, layout.pad_src))
    return f


def _segment_sums(x: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """Float64 sums of the rows of ``x`` by ``index`` (values ``0..size-1``)."""
    out = torch.zeros((size, *x.shape[1:]), dtype=torch.float64, device=x.device)
    return out.index_add_(0, index, x.to(torch.float64))


def _layer_sums(rows: torch.Tensor, layout: _Layout, size: int) -> torch.Tensor:
    """Float64 sums per layer of per-filter values ``rows`` (``(N_pad,)`` or ``(N_pad, m)``):
    summed chunk by chunk first (contiguous), then the chunks per layer; pad rows must hold 0."""
    chunks = rows.reshape(-1, layout.chunk, *rows.shape[1:]).sum(dim=1, dtype=torch.float64)
    return _segment_sums(chunks, layout.chunk_seg, size)


def _power_of_two_scale(peak: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Per layer, 1, or the power of two that brings its peak to about 1 when the peak lies
    outside ``[2^-40, 2^40]`` (as :func:`~filterwatch.functional._filters._safe_scale`), held
    by ``dtype``; computed on the device."""
    exponent = torch.frexp(torch.nan_to_num(peak, nan=1.0, posinf=1.0)).exponent.to(torch.float64)
    limit = 126.0 if dtype == torch.float32 else 1022.0
    scale = torch.exp2(-exponent.clamp(-limit, limit))
    outside = (exponent.abs() > _SAFE_EXPONENT) & (peak > 0)
    return torch.where(outside, scale, torch.ones_like(scale))


def _nonfinite_rows(f: torch.Tensor, row_peak: torch.Tensor) -> torch.Tensor:
    """NaN/Inf values per filter (a filter holds some exactly where its peak is not finite:
    max propagates NaN). On a CPU only those filters are read again."""
    if f.device.type != "cpu":
        return (~torch.isfinite(f)).sum(dim=1)
    bad = ~torch.isfinite(row_peak)
    counts = torch.zeros(row_peak.shape, dtype=torch.int64)
    if bool(bad.any()):
        counts[bad] = (~torch.isfinite(f[bad])).sum(dim=1)
    return counts


def _moments(ft: torch.Tensor, layout: _Layout, size: int,
             sparse: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``Σf``, ``Σffᵀ`` per layer, of all filters and of the sparse ones, from the padded
    ``(K, N_pad)`` matrix (centred in place, chunk by chunk, on each layer's first filter)."""
    k = int(ft.shape[0])
    chunk = layout.chunk
    shift = ft.index_select(1, layout.first)  # (K, L): each layer's first filter
    c3 = ft.view(k, -1, chunk).permute(1, 0, 2)  # (chunks, K, chunk), a view of ft
    c3.sub_(shift.T.index_select(0, layout.chunk_seg)[:, :, None])  # pad rows are now 0

    def sums(c: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s1c = _segment_sums(c.sum(dim=2), layout.chunk_seg, size)
        s2c = _segment_sums(torch.bmm(c, c3.transpose(1, 2)), layout.chunk_seg, size)
        m = shift.T.to(torch.float64)
        s1 = s1c + n[:, None] * m
        outer = s1c[:, :, None] * m[:, None, :]
        s2 = s2c + outer + outer.transpose(1, 2) + n[:, None, None] * m[:, :, None] * m[:, None, :]
        return s1, s2

    s1, s2 = sums(c3, layout.counts)
    n_sparse = _layer_sums(sparse, layout, size)
    if ft.device.type == "cpu" and not bool(sparse.any()):  # usual: nothing sparse
        return s1, s2, torch.zeros_like(s1), torch.zeros_like(s2), n_sparse
    masked = c3 * sparse.view(-1, 1, chunk).to(c3.dtype)
    s1s, s2s = sums(masked, n_sparse)
    return s1, s2, s1s, s2s, n_sparse


_GramGroup = tuple[tuple[int, ...], tuple[int, ...], torch.Tensor, bool]  # shape, layers, on device, big


@functools.lru_cache(maxsize=64)
def _gram_plan(shapes: tuple[tuple[int, ...], ...], device: torch.device
               ) -> tuple[tuple[_GramGroup, ...], torch.Tensor]:
    """The layers grouped by shape (indices on the host and the device; whether the shape's
    Gram is costed by FLOPs), and the permutation that puts their results back in order:
    made once per set of shapes, so a captured pass copies nothing from the host."""
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, shape in enumerate(shapes):
        by_shape.setdefault(shape, []).append(i)
    plan, order = [], []
    for shape, idx in by_shape.items():
        big = shape[0] * shape[0] * math.prod(shape[1:]) >= _GRAM_MACS
        plan.append((shape, tuple(idx), torch.tensor(idx, device=device), big))
        order += idx
    inverse = torch.empty(len(order), dtype=torch.int64)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return tuple(plan), inverse.to(device)


def _orthogonality(weights: Sequence[torch.Tensor], scale: torch.Tensor, rescale: bool) -> torch.Tensor:
    """``Σ|G - I|`` of each layer: one batched product per shape of small layers, the
    blocked per-layer product for large ones (their FLOPs, not the launches, cost)."""
    plan, inverse = _gram_plan(tuple(tuple(int(x) for x in w.shape) for w in weights), scale.device)
    parts = []
    for shape, idx, idx_t, big in plan:
        c, d = shape[0], math.prod(shape[1:])
        if big:
            for i in idx:
                rows = weights[i].reshape(c, d)
                rows = rows * scale[i].to(rows.dtype) if rescale else rows
                parts.append(_orthogonality_update(rows).reshape(1))
            continue
        rows = torch.stack([weights[i] for i in idx]).reshape(len(idx), c, d)  # any memory format
        if rescale:
            rows = rows * scale.index_select(0, idx_t).to(rows.dtype)[:, None, None]
        parts.append(_orthogonality_update_batched(rows))
    return torch.cat(parts).index_select(0, inverse)


def group_stats_update(weights: Sequence[torch.Tensor], eps: float, *, orthogonality: bool = True,
                       small: bool = False) -> GroupStats:
    """Statistics of whole conv weights ``(C_out, C_in/groups, *kernel)`` with one filter
    size ``K``, one dtype (float32 or float64) and one device; ``small``: moments in float64
    (as the per-layer pass does for layers of fewer than 8192 filters).

    Example:
        >>> import torch
        >>> from filterwatch.functional.group_stats import group_values
        >>> _ = torch.manual_seed(0)
        >>> copies = torch.randn(1, 1, 3, 3).repeat(8, 4, 1, 1)
        >>> g = group_stats_update([torch.randn(64, 32, 3, 3), copies], 0.01, small=True)
        >>> [round(v.variance_entropy, 2) for v in group_values([g])[0]]
        [0.95, 0.0]
    """
    k = math.prod(weights[0].shape[2:])
    size = len(weights)
    dtype = torch.float64 if small else weights[0].dtype
    layout = _layout(tuple(tuple(w.shape) for w in weights), k, _CHUNK_SMALL if small else _CHUNK,
                     weights[0].dtype, weights[0].device)
    rows = int(layout.owner.shape[0])
    dev = weights[0].device
    f = _padded([w.reshape(-1, k) for w in weights], layout,
                _scratch((rows, k), weights[0].dtype, dev, "batch"))
    if dtype != f.dtype:
        buf = _scratch((rows, k), dtype, dev, "batch")
        f = f.to(dtype) if buf is None else buf.copy_(f)
    # (K, N_pad): per-filter reductions over K contiguous rows
    ft = _transposed(f, _scratch((k, rows), dtype, dev, "transposed"))
    a = torch.abs(ft, out=_scratch((k, rows), dtype, dev, "abs"))
    row_peak = a.amax(dim=0)
    bad_rows = _nonfinite_rows(f, row_peak).index_fill_(0, layout.pad_rows, 0)
    nonfinite = _layer_sums(bad_rows, layout, size)
    # pad rows repeat a filter of their layer: they change no layer's max
    chunk_peak = row_peak.view(-1, layout.chunk).amax(dim=1).to(torch.float64)
    peak = torch.zeros(size, dtype=torch.float64, device=f.device).scatter_reduce_(
        0, layout.chunk_seg, chunk_peak, "amax")
    peak = torch.where(nonfinite > 0, torch.full_like(peak, math.nan), peak)
    scale = _power_of_two_scale(peak, dtype)
    rescale = f.device.type != "cpu" or bool((scale != 1.0).any())
    if rescale:  # rare on a CPU: weights near the ends of the float range
        per_row = scale.to(dtype).index_select(0, layout.owner)  # pad rows too: they stay copies
        ft.mul_(per_row)
        a.mul_(per_row)
        row_peak = row_peak * per_row
        peak = peak * scale
    row_abs = a.sum(dim=0)
    row_l2 = a.mul_(a).sum(dim=0).sqrt_()
    t = eps * peak
    t = torch.where(t == 0, torch.ones_like(t), t)
    sparse = row_peak.to(torch.float64) < t.index_select(0, layout.owner)
    sparse.index_fill_(0, layout.pad_rows, False)
    # an output channel is dead when none of its filters has a nonzero peak
    nonzero = row_peak != 0
    live = torch.cumsum(torch.cat([nonzero.new_zeros(1), nonzero]), 0)
    dead = live.index_select(0, layout.chan_end) == live.index_select(0, layout.chan_start)
    sums = _layer_sums(torch.stack([row_abs, row_l2], dim=1).index_fill_(0, layout.pad_rows, 0), layout, size)
    s1, s2, s1s, s2s, n_sparse = _moments(ft, layout, size, sparse)
    return GroupStats(
        n=tuple(int(w.shape[0] * w.shape[1]) for w in weights),
        c_out=tuple(int(w.shape[0]) for w in weights), k=k, peak=peak, nonfinite=nonfinite,
        n_sparse=n_sparse, s1=s1, s2=s2, s1_sparse=s1s, s2_sparse=s2s, abs_sum=sums[:, 0],
        sumsq=torch.diagonal(s2, dim1=1, dim2=2).sum(dim=1), row_l2_sum=sums[:, 1], dead=dead,
        ortho_abs=_orthogonality(weights, scale, rescale) if orthogonality else None, scale=scale)
