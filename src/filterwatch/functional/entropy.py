"""Variance entropy (VE) of a layer's filters: raw, normalised to random filters, and clean.

Split as in torchmetrics: :func:`_variance_entropy_update` turns a filter matrix into
sufficient statistics that add up (count, ``Σf``, ``Σffᵀ`` in float64), and
:func:`_variance_entropy_compute` turns a batch of those statistics into entropies. The
fused engine, :class:`~filterwatch.integrations.metric.FilterMetrics` and
:func:`variance_entropy` all go through these two functions.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ..errors import InputError, UndefinedMeasureError
from ._filters import _prepare, _transposed, filter_matrix
from ._random_entropy import RandomBand, random_band, random_entropy_threshold
from ._scratch import _scratch

__all__ = ["MomentSums", "RandomBand", "VarianceEntropy", "random_band", "random_entropy_threshold",
           "variance_entropy"]

# Total variance at or below this share of the filters' mean energy is round-off, not signal:
# exact copies of one filter then give VE = 0 instead of the entropy of numerical noise.
_DEGENERATE_RTOL = 1e-12
_CHUNK = 2048  # filters whose outer products are added in their precision, then in float64
_SHIFT_ROWS = 4096  # rows that estimate the centre
_SMALL = 8192  # fewer filters than this: float64 throughout


class MomentSums(NamedTuple):
    """Sufficient statistics of a filter set, all float64 sums: they add across sets."""

    n: int
    s1: torch.Tensor  # (K,) Σf
    s2: torch.Tensor  # (K, K) Σffᵀ


class VarianceEntropy(NamedTuple):
    """Result of :func:`variance_entropy`.

    Attributes:
        entropy: VE in ``[0, log10 K]`` (base-10 logs, as in the paper).
        normalized: ``entropy / H_T(n)``, or ``None`` where ``H_T(n) <= 0`` (``n <= 2``) or
            ``K = 1``; above 1 means random-like.
        n_filters: number of filters the entropy was computed over.
        reason: why ``normalized`` is ``None`` (empty otherwise).
    """

    entropy: float
    normalized: float | None
    n_filters: int
    reason: str = ""


def _variance_entropy_update(filters: torch.Tensor) -> MomentSums:
    """``(n, Σf, Σffᵀ)`` of an ``(n, K)`` filter matrix, as float64 sums (see
    :func:`_variance_entropy_update_t`)."""
    k, n = int(filters.shape[1]), int(filters.shape[0])
    return _variance_entropy_update_t(
        _transposed(filters, _scratch((k, n), filters.dtype, filters.device, "moments")))


def _variance_entropy_update_t(ft: torch.Tensor) -> MomentSums:
    """``(n, Σf, Σffᵀ)`` of filters given as the columns of ``ft`` ``(K, n)`` (contiguous;
    overwritten: it is centred in place).

    The filters are centred on a cheap estimate of their mean (no cancellation), then the
    outer products are formed in the filters' own precision within chunks of ``_CHUNK``
    filters (one batched matrix product) and the chunks are added in float64 (sets of fewer
    than ``_SMALL`` filters are upcast first: exact for tiny and rank-1 sets, and cheap); the
    sums are shifted back to raw sums, which add across sets and processes. Callers scale
    weights near the ends of the float range first (see :mod:`filterwatch.functional.stats`)."""
    k, n = int(ft.shape[0]), int(ft.shape[1])
    dev = ft.device
    if n == 0:
        return MomentSums(0, torch.zeros(k, dtype=torch.float64, device=dev),
                          torch.zeros(k, k, dtype=torch.float64, device=dev))
    if n < _SMALL and ft.dtype != torch.float64:  # small sets: all in float64
        ft = ft.to(torch.float64)
    shift = ft[:, :_SHIFT_ROWS].mean(dim=1)
    m = shift.to(torch.float64)
    ft.sub_(shift[:, None])
    q = (n // _CHUNK) * _CHUNK
    s1c = torch.zeros(k, dtype=torch.float64, device=dev)
    s2c = torch.zeros(k, k, dtype=torch.float64, device=dev)
    if q:  # (a sum with dtype=float64 would first copy all of ft to float64)
        c3 = ft[:, :q].reshape(k, -1, _CHUNK).transpose(0, 1)  # (chunks, K, _CHUNK)
        s1c += c3.sum(dim=2).sum(dim=0, dtype=torch.float64)
        s2c += torch.bmm(c3, c3.transpose(1, 2)).sum(dim=0, dtype=torch.float64)
    if q < n:
        rest = ft[:, q:].to(torch.float64)
        s1c += rest.sum(dim=1)
        s2c += rest @ rest.T
    s1 = s1c + n * m
    s2 = s2c + torch.outer(s1c, m) + torch.outer(m, s1c) + n * torch.outer(m, m)
    return MomentSums(n, s1, s2)


def _variance_entropy_compute(n: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """Batched VE (base 10) from raw sums: ``n (L,)``, ``s1 (L, K)``, ``s2 (L, K, K)``.

    Entropy of the normalised covariance spectrum; 0 where the total variance is zero or
    round-off; NaN where fewer than 2 filters."""
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
    return torch.where(n.to(s2.device) >= 2, h, torch.full_like(h, math.nan))


def normalized_entropy(entropy: float, n: int, k: int) -> tuple[float | None, str]:
    """``entropy / H_T(n)`` and, where that is undefined, the reason."""
    if k < 2:
        return None, "normalised VE is undefined for 1-value kernels (VE is always 0)"
    h_t = random_entropy_threshold(n, k)
    if h_t <= 0.0:
        return None, f"normalised VE is undefined for n={n} filters (H_T(n) <= 0)"
    return entropy / h_t, ""


def variance_entropy(weight: torch.Tensor, mask: torch.Tensor | None = None) -> VarianceEntropy:
    """Variance entropy of the kernel slices of a conv weight.

    Centre the ``(n, K)`` filter matrix, take the eigenvalues ``λ`` of its covariance,
    ``p = λ / Σλ`` and ``H = -Σ p log10 p`` (``0 log 0 = 0``; ``H = 0`` when ``Σλ = 0``).
    0 means every filter is a scaled copy of one pattern; ``log10 K`` means i.i.d. random.

    Args:
        weight: conv weight ``(C_out, C_in/groups, *kernel)``, any float dtype or device.
        mask: optional boolean ``(n,)`` selecting the filters to keep; pass
            ``~sparsity(w).mask`` for the *clean* VE.

    Raises:
        UndefinedMeasureError: fewer than 2 filters are selected, or the weight is not finite.

    Example:
        >>> import torch
        >>> w = torch.randn(1, 1, 3, 3).repeat(8, 4, 1, 1)   # one filter pattern, copied
        >>> abs(variance_entropy(w).entropy) < 1e-9
        True
        >>> _ = torch.manual_seed(0)
        >>> ve = variance_entropy(torch.randn(256, 64, 3, 3))
        >>> round(ve.entropy, 2), round(ve.normalized, 2)
        (0.95, 1.0)
    """
    filters = filter_matrix(_prepare(weight, "variance entropy"))
    if mask is not None:
        ok = isinstance(mask, torch.Tensor) and mask.dtype == torch.bool
        if not ok or mask.shape != (filters.shape[0],):
            got = (f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, torch.Tensor)
                   else type(mask).__name__)
            raise InputError(
                f"`mask` expected a bool tensor of shape ({filters.shape[0]},), got {got}; "
                "hint: use sparsity(weight).mask"
            )
        filters = filters[mask.to(filters.device)]
    n, k = int(filters.shape[0]), int(filters.shape[1])
    if n < 2:
        raise UndefinedMeasureError(f"variance entropy is undefined for fewer than 2 filters (got {n})")
    stats = _variance_entropy_update(filters)
    entropy = float(_variance_entropy_compute(
        torch.tensor([n], device=filters.device), stats.s1[None], stats.s2[None])[0])
    normalized, reason = normalized_entropy(entropy, n, k)
    return VarianceEntropy(entropy, normalized, n, reason)
