"""The sufficient statistics of one layer: one read of the kernel gives every measure.

:func:`layer_stats_update` reads a conv weight once (in its own precision; fp16/bf16 are
upcast to float32) and returns :class:`LayerStats`: sums that add across layers' shards and
processes (counts, ``Σf``, ``Σffᵀ``, for all filters and for the sparse ones, so clean VE
needs no second pass), a max (the peak) and orthogonality's ``Σ|G - I|``.
:func:`filterwatch.functional.group_stats.layer_stats_compute` turns a batch of them into
plain numbers, with one batched eigendecomposition per kernel size and one device-to-host
transfer; :mod:`filterwatch.functional.batched` computes the same statistics for many
whole layers at once.

The per-filter pass is pluggable (``row_pass``): the fused engine passes a Triton kernel on
CUDA; the default is the torch implementation :func:`row_stats`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from ._filters import _output_filter_matrix, _safe_scale, _scaled, _transposed, filter_matrix
from ._scratch import _scratch
from .entropy import (
    MomentSums,
    _variance_entropy_update,
    _variance_entropy_update_t,
)
from .norms import _dead_channels_update, _nonfinite_update
from .orthogonality import _orthogonality_update
from .sparsity import _sparsity_update

__all__ = ["LayerStats", "RowStats", "working_precision"]


class RowStats(NamedTuple):
    """What one read of an ``(n, K)`` filter matrix gives."""

    row_peak: torch.Tensor  # (n,) max|f| per filter (NaN where the filter holds NaN)
    row_l2: torch.Tensor    # (n,) ||f||_2 per filter
    abs_sum: torch.Tensor   # () Σ|w|, float64
    nonfinite: torch.Tensor  # () number of NaN/Inf values
    s1: torch.Tensor        # (K,) Σf, float64
    s2: torch.Tensor        # (K, K) Σffᵀ, float64


class LayerStats(NamedTuple):
    """Sufficient statistics of one layer (sums, except ``peak``: a max)."""

    n: int
    k: int
    c_out: int
    peak: torch.Tensor       # () max|w|
    nonfinite: torch.Tensor  # () NaN/Inf count
    n_sparse: torch.Tensor   # ()
    s1: torch.Tensor         # (K,) Σf
    s2: torch.Tensor         # (K, K) Σffᵀ
    s1_sparse: torch.Tensor  # (K,) the same over the sparse filters only
    s2_sparse: torch.Tensor
    abs_sum: torch.Tensor    # () Σ|w|
    sumsq: torch.Tensor      # () Σw²
    row_l2_sum: torch.Tensor  # () Σ ||f||_2 over filters
    dead: torch.Tensor       # (C_out,) bool, all-zero output filters
    ortho_abs: torch.Tensor | None  # () Σ|G - I|, None when not computed
    scale: float = 1.0       # s1, s2, abs_sum, sumsq, row_l2_sum are of the weight × scale

    def unscaled(self) -> LayerStats:
        """The same statistics of the weight itself (``scale`` 1); float64 holds them for any
        float32 weight."""
        if self.scale == 1.0:
            return self
        s = self.scale
        return self._replace(peak=self.peak / s, s1=self.s1 / s, s2=self.s2 / (s * s),
                             s1_sparse=self.s1_sparse / s, s2_sparse=self.s2_sparse / (s * s),
                             abs_sum=self.abs_sum / s,
                             sumsq=self.sumsq / (s * s), row_l2_sum=self.row_l2_sum / s, scale=1.0)


_ROW_CHUNK = 65536  # filters per block of the CPU pass: its buffers stay in the cache


def row_stats(f: torch.Tensor) -> RowStats:
    """The torch implementation of the per-filter pass, over blocks of ``_ROW_CHUNK``
    filters whose intermediates stay in the CPU's cache (one memory read of ``f``; a
    whole-matrix pass per operation was twice as slow on ResNet-50). Each block works on
    its transpose ``(K, c)`` (one product with the identity): per-filter reductions then
    run over K contiguous rows, which is several times faster on a CPU than reducing rows
    of K values; no float64 copy of the matrix; NaN/Inf are counted only in the filters
    that hold them. Block sums add exactly as the sums of disjoint filter sets do."""
    k, n = int(f.shape[1]), int(f.shape[0])
    chunk = n if f.is_cuda else _ROW_CHUNK
    row_peak = torch.empty(n, dtype=f.dtype, device=f.device)
    row_l2 = torch.empty(n, dtype=f.dtype, device=f.device)
    abs_sum = torch.zeros((), dtype=torch.float64, device=f.device)
    s1 = torch.zeros(k, dtype=torch.float64, device=f.device)
    s2 = torch.zeros(k, k, dtype=torch.float64, device=f.device)
    for i in range(0, n, chunk):
        c = min(chunk, n - i)
        ft = _transposed(f[i : i + c], _scratch((k, c), f.dtype, f.device, "transposed"))
        out = _scratch((k, c), f.dtype, f.device, "abs")
        a = ft.abs() if out is None else torch.abs(ft, out=out)
        torch.amax(a, dim=0, out=row_peak[i : i + c])
        abs_sum += a.sum()
        torch.sum(a.mul_(a), dim=0, out=row_l2[i : i + c])  # |x|² = x², in place
        del a
        sums = _variance_entropy_update_t(ft)  # centres ft in place (small sets: float64)
        s1 += sums.s1
        s2 += sums.s2
    row_l2.sqrt_()
    # the sum of the peaks is finite unless a peak is not (or they overflow: look closer)
    if not math.isfinite(float(row_peak.sum())) and bool((bad_rows := ~torch.isfinite(row_peak)).any()):
        nonfinite = _nonfinite_update(f[bad_rows])
    else:
        nonfinite = torch.zeros((), dtype=torch.int64, device=f.device)
    return RowStats(row_peak=row_peak, row_l2=row_l2, abs_sum=abs_sum, nonfinite=nonfinite,
                    s1=s1, s2=s2)


def working_precision(weight: torch.Tensor, float64: bool = False) -> torch.Tensor:
    """float64 stays float64; everything else is read as float32 (a view for float32);
    ``float64``: everything in float64 (``precision="float64"``)."""
    w = weight.detach()
    return w if w.dtype == torch.float64 else w.to(torch.float64 if float64 else torch.float32)


def layer_stats_update(
    weight: torch.Tensor,
    eps: float,
    *,
    orthogonality: bool = True,
    peak: torch.Tensor | None = None,
    row_pass: Callable[[torch.Tensor], RowStats] = row_stats,
) -> LayerStats:
    """Statistics of one weight in ``(C_out, C_in/groups, *kernel)`` layout.

    ``peak`` overrides the local max (sharded weights pass the all-reduced global peak, so
    the sparse threshold is the global one). Weights from about 1e-30 to 1e30 (float32) or
    near 1e200 (float64) are scaled by a power of two before any product (``scale``)."""
    w = working_precision(weight)
    f = filter_matrix(w)
    rows = row_pass(f)
    scale = _safe_scale(float(rows.row_peak.max()))
    if scale != 1.0:  # rare: read again, scaled, rather than overflow or underflow
        w = _scaled(w, scale)
        f = filter_matrix(w)
        rows = row_pass(f)
        peak = None if peak is None else _scaled(peak, scale)
    local_peak = rows.row_peak.max().to(torch.float64)
    # a max may skip NaN: make the peak NaN so that the layer is reported as non-finite
    local_peak = torch.where(rows.nonfinite > 0, torch.full_like(local_peak, math.nan), local_peak)
    peak = local_peak if peak is None else peak.to(local_peak)
    sparse, _ = _sparsity_update(rows.row_peak, eps, peak)
    sparse_sums = _sparse_sums(f, sparse)
    return LayerStats(
        n=int(f.shape[0]), k=int(f.shape[1]), c_out=int(w.shape[0]), peak=peak,
        nonfinite=rows.nonfinite.to(torch.float64), n_sparse=sparse.sum(),
        s1=rows.s1, s2=rows.s2, s1_sparse=sparse_sums.s1, s2_sparse=sparse_sums.s2,
        abs_sum=rows.abs_sum, sumsq=torch.trace(rows.s2),
        row_l2_sum=rows.row_l2.sum().to(torch.float64),
        dead=_dead_channels_update(rows.row_peak, int(w.shape[0])),
        ortho_abs=_orthogonality_update(_output_filter_matrix(w)) if orthogonality else None,
        scale=scale,
    )


def _sparse_sums(f: torch.Tensor, sparse: torch.Tensor) -> MomentSums:
    """Moments of the sparse filters. On the CPU the few sparse rows are gathered; on a GPU
    they are masked instead (gathering would wait for the device to count them). Sparse
    filters are tiny next to the layer, so their raw float32 sums lose nothing that matters."""
    if not f.is_cuda:
        return _variance_entropy_update(f[sparse])
    fs = f * sparse.unsqueeze(1).to(f.dtype)
    return MomentSums(-1, fs.sum(dim=0, dtype=torch.float64),
                      (fs.T @ fs).to(torch.float64))
