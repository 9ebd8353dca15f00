"""The fused engine: every measure for every layer in few passes, on the weights' device.

Per layer, a few passes over the ``(n, K)`` filter matrix in its own precision (float32 for
fp16/bf16 too; no float64 copy of the whole layer) give all per-filter statistics (peaks,
norms, sparse mask)
and the sufficient statistics of VE as float64 sums (count, sums, K x K second moments, for
all filters and for the sparse ones, so clean VE needs no second pass). The second moments
come from mean-centred, cache-sized row chunks in float64.
Covariances of all layers with the same K are eigendecomposed in one batched call.
Orthogonality is a float32 Gram matrix computed on its upper block triangle only (the matrix
is symmetric), in row blocks that bound memory. The host sees the numbers once, at the end.

On CUDA with Triton installed, the per-filter pass is one Triton kernel
(:mod:`filterwatch._triton_stats`); everywhere else the same statistics come from torch ops.

The results equal the functional reference path (:func:`filterwatch.measure_layer`) to
about 1e-6 (orthogonality is accumulated in float32); see ``tests/test_engine.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ._triton_stats import triton_row_stats, triton_usable
from .functional._filters import _filter_matrix, _output_filter_matrix
from .functional.entropy import _DEGENERATE_RTOL, _normalize
from .layers import ConvLayer
from .report import LayerReport

__all__ = [
    "LayerStats",
    "layer_stats",
    "measure_layers",
    "orthogonality_fast",
    "orthogonality_sampled",
    "reports_from_stats",
]

_BLOCKS = 8  # row blocks per Gram matrix: only the upper triangle of blocks is computed
_MIN_BLOCK = 64
_CHUNK = 4096  # rows per float64 chunk of the second moments (stays in cache)


@dataclass
class LayerStats:
    """Sufficient statistics of one layer (all sums, except ``peak``: a max)."""

    n: int
    k: int
    c_out: int
    peak: torch.Tensor            # () max |w|
    n_sparse: torch.Tensor        # ()
    s1: torch.Tensor              # (K,) sum of filters
    s2: torch.Tensor              # (K, K) sum of outer products
    s1_sparse: torch.Tensor       # (K,) the same over sparse filters only
    s2_sparse: torch.Tensor
    abs_sum: torch.Tensor         # () Σ|w|
    sumsq: torch.Tensor           # () Σw²
    row_l2_sum: torch.Tensor      # () Σ ||f||_2 over filters
    dead: torch.Tensor            # (C_out,) bool, all-zero output filters
    ortho_abs: torch.Tensor | None  # () Σ|G - I|, None when not computed


def orthogonality_fast(rows: torch.Tensor) -> torch.Tensor:
    """``Σ|G - I|`` for the L2-normalised rows (float32 GEMMs, upper block triangle only)."""
    rows = rows.to(torch.float32)
    norms = torch.linalg.vector_norm(rows, dim=1, keepdim=True)
    unit = rows / torch.where(norms == 0, torch.ones_like(norms), norms)
    n = unit.shape[0]
    block = max(_MIN_BLOCK, -(-n // _BLOCKS))
    total = torch.zeros((), dtype=torch.float64, device=rows.device)
    for i in range(0, n, block):
        a = unit[i : i + block]
        diag = a @ a.T
        idx = torch.arange(diag.shape[0], device=diag.device)
        diag[idx, idx] -= 1.0
        total += diag.abs().sum(dtype=torch.float64)
        if i + block < n:
            total += 2.0 * (a @ unit[i + block :].T).abs().sum(dtype=torch.float64)
    return total


def _shifted_moments(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw sums ``(Σf, Σffᵀ)`` in float64, from cache-sized row chunks upcast to float64 and
    centred on the mean (no cancellation), then shifted back."""
    m = f.mean(dim=0).to(torch.float64)  # any centre works; near the mean avoids cancellation
    s1c = torch.zeros(f.shape[1], dtype=torch.float64, device=f.device)
    s2c = torch.zeros(f.shape[1], f.shape[1], dtype=torch.float64, device=f.device)
    for chunk in torch.split(f, _CHUNK):
        c = chunk.to(torch.float64) - m  # float64 from here: float32 rounding would put
        s1c += c.sum(dim=0)              # ~1e-7·λmax of noise into every eigenvalue
        s2c += c.T @ c
    n = f.shape[0]
    s1 = s1c + n * m
    s2 = s2c + torch.outer(s1c, m) + torch.outer(m, s1c) + n * torch.outer(m, m)
    return s1, s2


def layer_stats(weight: torch.Tensor, eps: float, orthogonality: bool = True,
                peak: torch.Tensor | None = None) -> LayerStats:
    """Statistics of one canonical-layout weight. ``peak`` overrides the local max (sharded
    weights pass the all-reduced global peak so the sparse threshold is the global one)."""
    w = weight.detach()
    if w.dtype != torch.float64:
        w = w.to(torch.float32)  # fp16/bf16 upcast; float32 stays a view
    f = _filter_matrix(w)
    if triton_usable(f):
        t_stats = triton_row_stats(f)
        row_peak, row_l2 = t_stats["row_peak"], t_stats["row_l2"].to(torch.float64)
        s1, s2, abs_sum = t_stats["s1"], t_stats["s2"], t_stats["abs_sum"]
        local_peak = row_peak.max().to(torch.float64)
        # the kernel's max may skip NaN: make the peak NaN so the layer takes the reference path
        local_peak = torch.where(t_stats["nonfinite"] > 0, torch.full_like(local_peak, math.nan),
                                 local_peak)
    else:
        a = f.abs()
        row_peak = a.amax(dim=1)
        local_peak = row_peak.max().to(torch.float64)
        s1, s2 = _shifted_moments(f)
        abs_sum = a.sum().to(torch.float64)
        row_l2 = torch.linalg.vector_norm(f, dim=1).to(torch.float64)
    peak = local_peak if peak is None else peak.to(local_peak)
    t = eps * peak
    t = torch.where(t == 0, torch.ones_like(t), t)
    sparse = row_peak.to(torch.float64) < t
    fs = f[sparse].to(torch.float64)
    ortho = orthogonality_fast(_output_filter_matrix(w)) if orthogonality else None
    return LayerStats(
        n=int(f.shape[0]), k=int(f.shape[1]), c_out=int(w.shape[0]), peak=peak,
        n_sparse=sparse.sum(), s1=s1, s2=s2, s1_sparse=fs.sum(dim=0), s2_sparse=fs.T @ fs,
        abs_sum=abs_sum, sumsq=row_l2.square().sum(), row_l2_sum=row_l2.sum(),
        dead=(row_peak.reshape(w.shape[0], -1) == 0).all(dim=1), ortho_abs=ortho,
    )


def _entropy(s1: torch.Tensor, s2: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Batched VE (base 10) from raw sums: ``s1 (L, K)``, ``s2 (L, K, K)``, ``n (L,)``;
    NaN where fewer than 2 filters."""
    nn_ = n.to(s2).clamp_min(1.0)
    mean = s1 / nn_[:, None]
    scatter = s2 - nn_[:, None, None] * mean[:, :, None] * mean[:, None, :]
    cov = scatter / (nn_ - 1).clamp_min(1.0)[:, None, None]
    lam = torch.linalg.eigvalsh(cov).clamp_min(0.0)
    total = lam.sum(dim=1)
    energy = torch.diagonal(s2, dim1=1, dim2=2).sum(dim=1) / nn_
    p = lam / torch.where(total > 0, total, torch.ones_like(total))[:, None]
    h = -torch.special.xlogy(p, p).sum(dim=1) / math.log(10.0)
    h = torch.where((total == 0) | (total <= _DEGENERATE_RTOL * energy), torch.zeros_like(h), h)
    return torch.where(n >= 2, h, torch.full_like(h, math.nan))


def reports_from_stats(layers: Sequence[ConvLayer], stats: Sequence[LayerStats]) -> list[LayerReport]:
    """Turn statistics into LayerReports: one batched eigendecomposition per kernel size and a
    single device-to-host transfer of all scalars."""
    by_k: dict[int, list[int]] = {}
    for i, s in enumerate(stats):
        by_k.setdefault(s.k, []).append(i)
    ve = [math.nan] * len(stats)
    ve_clean = [math.nan] * len(stats)
    for idx in by_k.values():
        group = [stats[i] for i in idx]
        n = torch.tensor([s.n for s in group], device=group[0].s1.device)
        n_sparse = torch.stack([s.n_sparse for s in group])
        s1 = torch.stack([s.s1 for s in group])
        s2 = torch.stack([s.s2 for s in group])
        s1c = s1 - torch.stack([s.s1_sparse for s in group])
        s2c = s2 - torch.stack([s.s2_sparse for s in group])
        # layers with NaN/Inf go through the reference path later; keep eigh well defined
        s1, s2, s1c, s2c = (torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
                            for x in (s1, s2, s1c, s2c))
        both = torch.cat([_entropy(s1, s2, n), _entropy(s1c, s2c, n - n_sparse)]).tolist()
        for j, i in enumerate(idx):
            ve[i], ve_clean[i] = both[j], both[len(idx) + j]
    scalars = torch.stack([torch.stack([
        s.peak, s.n_sparse.to(s.peak), s.abs_sum, s.row_l2_sum, s.sumsq,
        s.ortho_abs if s.ortho_abs is not None else torch.full_like(s.peak, math.nan),
        s.dead.sum().to(s.peak)]) for s in stats]).tolist()
    return [_report(layer, s, row, v, vc)
            for layer, s, row, v, vc in zip(layers, stats, scalars, ve, ve_clean, strict=True)]


def _report(layer: ConvLayer, s: LayerStats, row: list[float], ve: float,
            ve_clean: float) -> LayerReport:
    peak, n_sparse, abs_sum, l2_sum, sumsq, ortho_abs, dead = row
    if not math.isfinite(peak):  # NaN/Inf somewhere: the reference path counts and explains
        from .analyze import measure_layer

        return measure_layer(layer, orthogonality=s.ortho_abs is not None)
    r = LayerReport(name=layer.name, shape=list(layer.shape), kernel_size=list(layer.kernel_size),
                    groups=layer.groups, kind=layer.kind, n_filters=layer.n_filters,
                    depth=layer.depth, depth_norm=layer.depth_norm)
    r.nonfinite = 0
    r.dead_channels = int(dead)
    r.dead_channel_indices = s.dead.nonzero().flatten().tolist() if dead else []
    r.sparsity, r.n_sparse = n_sparse / s.n, int(n_sparse)
    r.weight_norm, r.filter_l1_mean, r.filter_l2_mean = math.sqrt(sumsq), abs_sum / s.n, l2_sum / s.n
    _set_entropy(r, "variance_entropy", ve, s.n, s.k, "")
    n_clean = s.n - int(n_sparse)
    if n_clean == s.n:  # nothing sparse: clean VE is VE, reasons included
        for src, dst in (("variance_entropy", "variance_entropy_clean"),
                         ("variance_entropy_norm", "variance_entropy_clean_norm")):
            setattr(r, dst, getattr(r, src))
            if src in r.undefined:
                r.undefined[dst] = r.undefined[src]
    else:
        _set_entropy(r, "variance_entropy_clean", ve_clean, n_clean, s.k,
                     "after removing sparse filters: ")
    if s.ortho_abs is None:
        r.undefined["orthogonality"] = "not computed (orthogonality=False)"
    elif s.c_out < 2:
        r.undefined["orthogonality"] = (f"orthogonality is undefined for a layer with {s.c_out} output "
                                        "filter (C_out = 1): there is no pair to compare")
    else:
        r.orthogonality = 1.0 - ortho_abs / (s.c_out * (s.c_out - 1))
    return r


def _set_entropy(r: LayerReport, key: str, value: float, n: int, k: int, prefix: str) -> None:
    if n < 2 or math.isnan(value):
        reason = f"{prefix}variance entropy is undefined for fewer than 2 filters (got {n})"
        r.undefined[key] = r.undefined[f"{key}_norm"] = reason
        return
    setattr(r, key, value)
    norm, why = _normalize(value, n, k)
    setattr(r, f"{key}_norm", norm)
    if why:
        r.undefined[f"{key}_norm"] = why


def measure_layers(layers: Sequence[ConvLayer], *, sparsity_eps: float = 0.01,
                   orthogonality: bool = True,
                   progress: Callable[[int, int, str], None] | None = None) -> list[LayerReport]:
    """Every measure for every layer through the fused path (unavailable layers and layers
    with non-finite weights go through the reference path, which explains them).

    Kernels are read one layer at a time (only small statistics are kept), then all layers'
    spectra go through one batched eigendecomposition per kernel size."""
    from .analyze import measure_layer

    ready = [i for i, layer in enumerate(layers) if not layer.unavailable]
    stats = []
    with torch.no_grad():
        for i, layer in enumerate(layers):
            if not layer.unavailable:
                stats.append(layer_stats(layer.kernel(), sparsity_eps, orthogonality))
            if progress is not None:
                progress(i + 1, len(layers), layer.name)
        fused = reports_from_stats([layers[i] for i in ready], stats) if ready else []
    out: list[LayerReport | None] = [None] * len(layers)
    for i, report in zip(ready, fused, strict=True):
        out[i] = report
    return [r if r is not None else measure_layer(layers[i], sparsity_eps=sparsity_eps,
                                                  orthogonality=orthogonality)
            for i, r in enumerate(out)]


def orthogonality_sampled(rows: torch.Tensor, pairs: int = 20000, seed: int = 0,
                          delta: float = 0.05) -> tuple[float, float]:
    """A cheaper orthogonality for very large layers: ``(estimate, bound)``.

    The off-diagonal mean of ``|G|`` is estimated from ``pairs`` random distinct pairs of
    output filters (``pairs · D`` multiply-adds instead of ``C_out² · D``); zero rows' diagonal
    terms are counted exactly. Each ``|G_ij|`` lies in ``[0, 1]``, so by Hoeffding the estimate
    is within ``bound = sqrt(ln(2/δ) / (2·pairs))`` of the exact value with probability
    ``1 − δ`` (0.0096 for 20,000 pairs at δ = 0.05; the typical error is far smaller).
    """
    n = rows.shape[0]
    if n < 2:
        raise ValueError(f"orthogonality is undefined for {n} output filter(s)")
    r = rows.detach().to(torch.float32)
    norms = torch.linalg.vector_norm(r, dim=1)
    unit = r / torch.where(norms == 0, torch.ones_like(norms), norms)[:, None]
    gen = torch.Generator().manual_seed(seed)
    i = torch.randint(0, n, (pairs,), generator=gen)
    j = (i + torch.randint(1, n, (pairs,), generator=gen)) % n  # j != i
    i, j = i.to(r.device), j.to(r.device)
    mean_off = float((unit[i] * unit[j]).sum(dim=1).abs().mean())
    zero_rows = int((norms == 0).sum())
    c = mean_off + zero_rows / (n * (n - 1))
    return 1.0 - c, math.sqrt(math.log(2.0 / delta) / (2.0 * pairs))
