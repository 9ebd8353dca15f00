"""TensorBoard histograms of a snapshot's kernels (filter norms, weights), computed where the
kernels live, with one host transfer per snapshot.

:func:`histogram_terms` reduces one tensor to ``5 + bins`` numbers on its device: min, max,
count, sum, sum of squares and the bin counts between min and max. On a CPU, reading the range
on the host is free and ``histc`` bins in one pass; on any other device the bins are found
without a host read (a fixed-size ``index_add``), so a snapshot does not wait per layer.
:func:`histograms` then brings every layer's terms to the host at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

__all__ = ["BINS", "Histogram", "histogram_terms", "histogram_value", "histograms"]

BINS = 30


class Histogram(NamedTuple):
    """One histogram on the host: its range, count, sums and ``BINS`` counts."""

    lo: float
    hi: float
    num: float
    total: float
    total_sq: float
    counts: list[float]


def _splits(lo: float, hi: float) -> bool:
    """Whether float32 can split ``[lo, hi]`` into bins (else: one bucket)."""
    return hi - lo > 1e-30 * max(abs(lo), abs(hi), 1e-30) and math.isfinite(hi - lo)


def histogram_terms(values: torch.Tensor) -> torch.Tensor | None:
    """``(5 + BINS,)`` float64 on ``values``' device: min, max, count, Σv, Σv², then the counts
    of ``BINS`` equal bins from min to max (``None`` for no values).

    Example:
        >>> t = histogram_terms(torch.tensor([0.0, 1.0, 1.0, 3.0]))
        >>> [round(x) for x in t[:5].tolist()], round(float(t[5:].sum()))
        ([0, 3, 4, 5, 11], 4)
    """
    v = values.detach().reshape(-1).to(torch.float32)
    n = v.numel()
    if n == 0:
        return None
    lo, hi = torch.aminmax(v)
    head = torch.stack([lo, hi, torch.full_like(lo, float(n)), v.sum(), torch.dot(v, v)]).to(torch.float64)
    if v.device.type == "cpu":  # host reads are free here: histc in one pass
        lo_f, hi_f = float(lo), float(hi)
        if math.isfinite(lo_f) and math.isfinite(hi_f) and _splits(lo_f, hi_f):
            counts = torch.histc(v, bins=BINS, min=lo_f, max=hi_f).to(torch.float64)
        else:
            counts = torch.zeros(BINS, dtype=torch.float64)
            counts[0] = float(n)
        return torch.cat([head, counts])
    return torch.cat([head, _counts_on_device(v, lo, hi)])


def _counts_on_device(v: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """``BINS`` counts from ``lo`` to ``hi`` with no host read: each value's bin from its
    float64 offset (the last bin closed, as ``histc``), added with a fixed-size ``index_add``."""
    span = (hi - lo).to(torch.float64)
    scale = torch.where(torch.isfinite(span) & (span > 0), BINS / span, torch.zeros_like(span))
    where = ((v.to(torch.float64) - lo) * scale).nan_to_num_(0.0).clamp_(0, BINS - 1).long()
    counts = torch.zeros(BINS, dtype=torch.float64, device=v.device)
    return counts.index_add_(0, where, torch.ones(1, dtype=torch.float64, device=v.device).expand(v.numel()))


def histograms(terms: Sequence[torch.Tensor | None]) -> list[Histogram | None]:
    """The histograms of many :func:`histogram_terms`, brought to the host in one transfer per
    device (``None`` where there were no values or they were not finite)."""
    present = [t for t in terms if t is not None]
    if not present:
        return [None] * len(terms)
    by_device: dict[torch.device, list[int]] = {}
    for i, t in enumerate(present):
        by_device.setdefault(t.device, []).append(i)
    rows: list[list[float]] = [[] for _ in present]
    for idx in by_device.values():
        for i, row in zip(idx, torch.stack([present[i] for i in idx]).tolist(), strict=True):
            rows[i] = row
    it = iter(rows)
    out: list[Histogram | None] = []
    for term in terms:
        row = next(it) if term is not None else None
        if row is None or not all(math.isfinite(x) for x in row[:5]):
            out.append(None)
            continue
        lo, hi, num, total, total_sq = row[:5]
        counts = row[5:] if _splits(lo, hi) else [num] + [0.0] * (BINS - 1)
        out.append(Histogram(lo, hi, num, total, total_sq, counts))
    return out


def histogram_value(tag: str, h: Histogram) -> Any:
    """A TensorBoard histogram summary value (bucket limits: the bins' upper edges)."""
    from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary

    edges = torch.linspace(h.lo, h.hi if h.hi > h.lo else h.lo + 1.0, BINS + 1)
    histo = HistogramProto(min=h.lo, max=h.hi, num=h.num, sum=h.total, sum_squares=h.total_sq,
                           bucket_limit=edges[1:].tolist(), bucket=h.counts)
    return Summary.Value(tag=tag, histo=histo)
