"""The statistics of many layers of one filter size, stacked, and their numbers.

:class:`GroupStats` is the batched twin of :class:`~filterwatch.functional.stats.LayerStats`:
every field has a leading layer dimension (dead channels: one flat mask over all layers'
output channels), so turning a whole snapshot into numbers costs a fixed number of tensor
operations however many layers it has. :func:`group_values` does that: one device-to-host
copy, then one batched ``K x K`` eigendecomposition per group (outside any captured device
work), then plain Python numbers per layer.

Both engines feed it: the batched pass (:func:`filterwatch.functional.batched.group_stats_update`)
directly, the one-layer-at-a-time pass (sharded weights, ``FilterMetrics``) through
:func:`stack_layer_stats`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from .entropy import _variance_entropy_compute
from .stats import LayerStats

__all__ = ["GroupStats", "LayerValues", "group_values", "layer_stats_compute", "stack_by_k",
           "stack_layer_stats"]


class GroupStats(NamedTuple):
    """Sufficient statistics of ``L`` layers with ``K``-value filters (sums, except ``peak``:
    a max), of the weights times ``scale`` (a power of two per layer, 1 but near the ends of
    the float range)."""

    n: tuple[int, ...]       # filters per layer
    c_out: tuple[int, ...]   # output channels per layer
    k: int
    peak: torch.Tensor       # (L,) max|w|, NaN where the layer holds NaN/Inf
    nonfinite: torch.Tensor  # (L,) NaN/Inf count
    n_sparse: torch.Tensor   # (L,)
    s1: torch.Tensor         # (L, K) Σf
    s2: torch.Tensor         # (L, K, K) Σffᵀ
    s1_sparse: torch.Tensor  # (L, K) over the sparse filters only
    s2_sparse: torch.Tensor  # (L, K, K)
    abs_sum: torch.Tensor    # (L,) Σ|w|
    sumsq: torch.Tensor      # (L,) Σw²
    row_l2_sum: torch.Tensor  # (L,) Σ ||f||_2 over filters
    dead: torch.Tensor       # (Σ C_out,) bool: all-zero output filters, layer after layer
    ortho_abs: torch.Tensor | None  # (L,) Σ|G - I|, None when not computed
    scale: torch.Tensor      # (L,) float64


class LayerValues(NamedTuple):
    """One layer's numbers, on the host (NaN where the statistics leave them undefined)."""

    n: int
    k: int
    c_out: int
    nonfinite: int
    n_sparse: int
    variance_entropy: float
    variance_entropy_clean: float
    weight_norm: float
    filter_l1_mean: float
    filter_l2_mean: float
    ortho_abs: float | None  # None: not computed
    dead_indices: list[int]
    weight_sum: float  # Σw
    peak: float        # max|w|
    sparse_sumsq: float = 0.0  # Σw² over the sparse filters


def stack_layer_stats(stats: Sequence[LayerStats]) -> GroupStats:
    """One :class:`GroupStats` from per-layer statistics of one filter size (one stack per
    field, however many layers)."""
    if len({s.k for s in stats}) != 1:
        raise ValueError(f"expected statistics of one filter size, got K = {sorted({s.k for s in stats})}")
    dev = stats[0].s1.device
    nan = torch.full((), math.nan, dtype=torch.float64, device=dev)
    has_ortho = any(s.ortho_abs is not None for s in stats)  # a missing one is NaN (see group_values)

    def stacked(name: str) -> torch.Tensor:
        return torch.stack([nan if (t := getattr(s, name)) is None else t.to(torch.float64) for s in stats])

    return GroupStats(
        n=tuple(s.n for s in stats), c_out=tuple(s.c_out for s in stats), k=stats[0].k,
        peak=stacked("peak"), nonfinite=stacked("nonfinite"), n_sparse=stacked("n_sparse"),
        s1=stacked("s1"), s2=stacked("s2"), s1_sparse=stacked("s1_sparse"), s2_sparse=stacked("s2_sparse"),
        abs_sum=stacked("abs_sum"), sumsq=stacked("sumsq"), row_l2_sum=stacked("row_l2_sum"),
        dead=torch.cat([s.dead for s in stats]),
        ortho_abs=stacked("ortho_abs") if has_ortho else None,
        scale=torch.tensor([s.scale for s in stats], dtype=torch.float64, device=dev))


# the per-layer scalars of a group, in the order of one (L, 9) matrix
_SCALARS = ("nonfinite", "n_sparse", "abs_sum", "row_l2_sum", "sumsq", "ortho_abs", "s1_total",
            "peak", "scale")


def _flat(g: GroupStats) -> list[torch.Tensor]:
    """What the host needs of a group, as float64 tensors (one copy for all groups)."""
    nan = torch.full_like(g.peak, math.nan)
    scalars = torch.stack([g.nonfinite, g.n_sparse, g.abs_sum, g.row_l2_sum, g.sumsq,
                           nan if g.ortho_abs is None else g.ortho_abs, g.s1.sum(dim=1), g.peak,
                           g.scale], dim=1)
    return [scalars, g.s1, g.s2, g.s1_sparse, g.s2_sparse, g.dead.to(torch.float64)]


def _to_host(groups: Sequence[GroupStats]) -> list[list[torch.Tensor]]:
    """Every group's tensors on the CPU, in one device-to-host copy."""
    parts = [_flat(g) for g in groups]
    if all(p.device.type == "cpu" for ps in parts for p in ps):
        return parts
    tensors = [p for ps in parts for p in ps]
    flat = torch.cat([p.reshape(-1) for p in tensors]).cpu()
    pieces = iter(torch.split(flat, [p.numel() for p in tensors]))
    return [[next(pieces).reshape(p.shape) for p in ps] for ps in parts]


def _entropies(n: torch.Tensor, n_sparse: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor,
               s1_sparse: torch.Tensor, s2_sparse: torch.Tensor) -> tuple[list[float], list[float]]:
    """VE and clean VE of a group's layers: one batched eigendecomposition."""
    s1c, s2c = s1 - s1_sparse, s2 - s2_sparse
    # layers with NaN/Inf are reported as undefined; keep eigh well defined meanwhile
    s1, s2, s1c, s2c = (torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0) for x in (s1, s2, s1c, s2c))
    n_clean = n - n_sparse.to(n)
    both = _variance_entropy_compute(torch.cat([n, n_clean]), torch.cat([s1, s1c]),
                                     torch.cat([s2, s2c])).tolist()
    return both[: len(n)], both[len(n):]


def group_values(groups: Sequence[GroupStats]) -> list[list[LayerValues]]:
    """Every layer's numbers: one copy to the host, then one batched ``K x K``
    eigendecomposition per group there."""
    out = []
    for g, (scalars, s1, s2, s1_sparse, s2_sparse, dead) in zip(groups, _to_host(groups), strict=True):
        rows = scalars.tolist()
        n = torch.tensor(g.n, dtype=torch.int64)
        ve, ve_clean = _entropies(n, scalars[:, 1].round().to(torch.int64), s1, s2, s1_sparse, s2_sparse)
        dead_flags = dead.tolist()
        sparse_sumsq = torch.diagonal(s2_sparse, dim1=1, dim2=2).sum(dim=1).tolist()
        values, start = [], 0
        for i, row in enumerate(rows):
            nonfinite, n_sparse, abs_sum, l2_sum, sumsq, ortho, total, peak, scale = row
            c = g.c_out[i]
            values.append(LayerValues(
                n=g.n[i], k=g.k, c_out=c, nonfinite=int(nonfinite), n_sparse=int(n_sparse),
                variance_entropy=ve[i], variance_entropy_clean=ve_clean[i],
                weight_norm=math.sqrt(sumsq) / scale, filter_l1_mean=abs_sum / scale / g.n[i],
                filter_l2_mean=l2_sum / scale / g.n[i],
                # NaN with finite weights: that layer's statistics had none (stack_layer_stats)
                ortho_abs=None if g.ortho_abs is None or (math.isnan(ortho) and not nonfinite) else ortho,
                dead_indices=[j for j, d in enumerate(dead_flags[start : start + c]) if d],
                weight_sum=total / scale, peak=peak / scale,
                sparse_sumsq=sparse_sumsq[i] / scale / scale))
            start += c
        out.append(values)
    return out


def stack_by_k(stats: Sequence[LayerStats]) -> list[tuple[list[int], GroupStats]]:
    """Per-layer statistics stacked per filter size: ``(positions in stats, group)`` each."""
    by_k: dict[int, list[int]] = {}
    for i, s in enumerate(stats):
        by_k.setdefault(s.k, []).append(i)
    return [(idx, stack_layer_stats([stats[i] for i in idx])) for idx in by_k.values()]


def layer_stats_compute(stats: Sequence[LayerStats]) -> list[LayerValues]:
    """Every layer's numbers from per-layer statistics (stacked per filter size first)."""
    stacked = stack_by_k(stats)
    out: list[LayerValues | None] = [None] * len(stats)
    for (idx, _), values in zip(stacked, group_values([g for _, g in stacked]), strict=True):
        for i, v in zip(idx, values, strict=True):
            out[i] = v
    return [v for v in out if v is not None]
