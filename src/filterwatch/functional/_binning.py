"""Histogram counts of filter coefficients in one fused pass, exact at the bin edges (private).

Drift bins the coefficients of peak-scaled, reference-centred filters in a basis. Done as
written, that is about ten passes over a float64 copy of the filters. Here the bin position
of filter ``f`` on basis row ``b_k`` is

    position = (b_k · f) · (s / peak(f)) + c_k,   s = bins / (hi - lo),   c_k = -(b_k · mean + lo) · s

one matrix product of the raw filters in their own precision and two in-place passes; the
bin is ``floor(position)`` clamped to ``[0, bins - 1]``. In float32 a position within a
round-off bound of a bin edge may land on the wrong side: those few (about 0.1 % of the
filters) are recomputed in float64, so the counts are those of float64 arithmetic.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ._filters import _row_max
from ._scratch import _scratch

__all__: list[str] = []

# A generous multiple of the float32 round-off of one position (a K-term dot product, a
# product and a sum): positions closer than this to a bin edge are recomputed in float64.
_ROUNDOFF_FACTOR = 8.0
_FLOAT64_BELOW = 0.25  # a round-off bound this wide (a degenerate range): all in float64


class Frame(NamedTuple):
    """Where coefficients are binned: the reference's ``mean`` (K,) and ``basis`` (K, K,
    one direction per row), both float64, and ``bins`` equal bins over ``[lo, hi]``."""

    mean: torch.Tensor
    basis: torch.Tensor
    lo: float
    hi: float
    bins: int

    @property
    def scale(self) -> float:
        """Bins per unit of coefficient: ``s = bins / (hi - lo)``."""
        return self.bins / (self.hi - self.lo)

    @property
    def offset(self) -> torch.Tensor:
        """``c_k = -(b_k · mean + lo) · s`` (float64, one per basis row)."""
        return -(self.basis @ self.mean + self.lo) * self.scale


def _row_peaks(f: torch.Tensor) -> torch.Tensor:
    """``max |f|`` per row of an ``(n, K)`` matrix (NaN or Inf where a row holds one)."""
    out = _scratch(tuple(f.shape), f.dtype, f.device, "binning-abs")
    return _row_max(f.abs() if out is None else torch.abs(f, out=out))


def _positions(f: torch.Tensor, peak: torch.Tensor, frame: Frame) -> torch.Tensor:
    """``(K, n)`` bin positions in ``f``'s precision, in a reused buffer."""
    inv = torch.where(peak == 0, torch.ones_like(peak), peak).reciprocal_().mul_(frame.scale)
    k, n = int(frame.basis.shape[0]), int(f.shape[0])
    out = _scratch((k, n), f.dtype, f.device, "binning-y")
    basis = frame.basis.to(f)
    y = basis @ f.T if out is None else torch.mm(basis, f.T, out=out)
    return y.mul_(inv).add_(frame.offset.to(f)[:, None])


def _exact_positions(f: torch.Tensor, peak: torch.Tensor, frame: Frame) -> torch.Tensor:
    """``(K, m)`` positions of a few filters ``f`` ``(m, K)``, in float64."""
    p = peak.to(torch.float64)
    p = torch.where(p == 0, torch.ones_like(p), p)
    return (frame.basis @ f.to(torch.float64).T) * (frame.scale / p) + frame.offset[:, None]


def _roundoff(dtype: torch.dtype, frame: Frame) -> float:
    """A bound on the round-off of a position computed in ``dtype`` (0 for float64)."""
    if dtype == torch.float64:
        return 0.0
    k = int(frame.basis.shape[1])
    magnitude = (frame.scale * float(frame.basis.abs().sum(dim=1).max())
                 + float(frame.offset.abs().max()))
    return _ROUNDOFF_FACTOR * (k + 2) * torch.finfo(dtype).eps * magnitude


def _near_edges(y: torch.Tensor, tol: float) -> torch.Tensor:
    """The filters (columns of ``y``) with a position within ``tol`` of a whole number (a
    bin edge). Found per filter (a min over the K rows, which is cheap) rather than per
    value: the whole filter is then recomputed, and finding the few columns is fast."""
    dist = _scratch(tuple(y.shape), y.dtype, y.device, "binning-dist")
    dist = torch.round(y) if dist is None else torch.round(y, out=dist)
    return (dist.sub_(y).abs_().amin(dim=0) < tol).nonzero().flatten()


def coefficient_range(f: torch.Tensor, peak: torch.Tensor, mean: torch.Tensor,
                      basis: torch.Tensor) -> tuple[float, float]:
    """Min and max over all rows of ``basis`` of the coefficients ``b_k · (f / peak - mean)``
    of the finite ``(n, K)`` filters, as float64 arithmetic gives them: one float32 product
    for all, then float64 for the few filters whose float32 extreme lies within round-off
    of the overall one."""
    frame = Frame(mean, basis, 0.0, 1.0, 1)  # scale 1, offset -b_k · mean: the coefficients
    y = _positions(f, peak, frame)
    low, high = y.amin(dim=0), y.amax(dim=0)  # per filter (two fast passes over K rows)
    lo, hi = float(low.min()), float(high.max())
    tol = 2.0 * _roundoff(f.dtype, frame)
    if tol == 0.0:
        return lo, hi
    near = ((low <= lo + tol) | (high >= hi - tol)).nonzero().flatten()
    exact = _exact_positions(f[near], peak[near], frame)
    return float(exact.min()), float(exact.max())


def bin_counts(f: torch.Tensor, peak: torch.Tensor, frame: Frame) -> torch.Tensor:
    """``(K, bins)`` float64 counts of the coefficients of the finite ``(n, K)`` filters ``f``
    (float32 or float64; ``peak`` from :func:`_row_peaks`); coefficients outside
    ``[lo, hi]`` are counted in the edge bins."""
    tol = _roundoff(f.dtype, frame)
    if tol >= _FLOAT64_BELOW:
        f, peak, tol = f.to(torch.float64), peak.to(torch.float64), 0.0
    y = _positions(f, peak, frame)
    near = _near_edges(y, tol) if tol > 0 else None
    y.clamp_(0, frame.bins - 1)
    out = _scratch(tuple(y.shape), torch.int32, y.device, "binning-idx")
    idx = y.to(torch.int32) if out is None else out.copy_(y)  # truncation: floor, as y >= 0
    if near is not None and near.numel():
        exact = _exact_positions(f[near], peak[near], frame)
        idx[:, near] = exact.floor_().clamp_(0, frame.bins - 1).to(torch.int32)
    k_all = int(y.shape[0])
    idx += (torch.arange(k_all, dtype=torch.int32, device=idx.device) * frame.bins)[:, None]
    counts = torch.bincount(idx.view(-1), minlength=k_all * frame.bins)
    return counts.reshape(k_all, frame.bins).to(torch.float64)
