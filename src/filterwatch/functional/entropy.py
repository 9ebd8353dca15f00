"""Variance entropy (VE) of a layer's filters: raw, normalised to random filters, and clean."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ..errors import InputError, UndefinedMeasureError
from ._filters import _filter_matrix, _prepare
from ._random_entropy import random_entropy_threshold

__all__ = ["VEStats", "VarianceEntropy", "random_entropy_threshold", "variance_entropy"]

# Total variance at or below this share of the filters' mean energy is round-off, not signal:
# exact copies of one filter then give VE = 0 instead of the entropy of numerical noise.
_DEGENERATE_RTOL = 1e-12


class VEStats(NamedTuple):
    """Sufficient statistics of a filter set: ``n``, mean ``(K,)``, centred scatter ``(K, K)``."""

    n: int
    mean: torch.Tensor
    scatter: torch.Tensor


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


def _variance_entropy_update(filters: torch.Tensor) -> VEStats:
    """Two-pass (centred) statistics of an ``(n, K)`` float64 filter matrix."""
    mean = filters.mean(dim=0)
    centred = filters - mean
    return VEStats(int(filters.shape[0]), mean, centred.T @ centred)


def _variance_entropy_compute(stats: VEStats) -> float:
    """VE from the statistics: entropy (base 10) of the normalised covariance spectrum."""
    n = stats.n
    if n < 2:
        raise UndefinedMeasureError(
            f"variance entropy is undefined for fewer than 2 filters (got {n})"
        )
    lam = torch.linalg.eigvalsh(stats.scatter / (n - 1)).clamp_min(0.0)
    total = float(lam.sum().item())
    energy = (float(torch.trace(stats.scatter).item()) + n * float(stats.mean.square().sum())) / n
    if total == 0.0 or total <= _DEGENERATE_RTOL * energy:
        return 0.0
    p = lam / total
    return float(-torch.special.xlogy(p, p).sum().item() / math.log(10.0))


def _normalize(entropy: float, n: int, k: int) -> tuple[float | None, str]:
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
        >>> round(variance_entropy(w).entropy, 6)
        0.0
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> ve = variance_entropy(torch.randn(256, 64, 3, 3))
        >>> round(ve.entropy, 2), round(ve.normalized, 2)
        (0.95, 1.0)
    """
    filters = _filter_matrix(_prepare(weight, "variance entropy"))
    if mask is not None:
        if mask.dtype != torch.bool or mask.shape != (filters.shape[0],):
            raise InputError(
                f"`mask` expected a bool tensor of shape ({filters.shape[0]},), got "
                f"{mask.dtype} {tuple(mask.shape)}; hint: use sparsity(weight).mask"
            )
        filters = filters[mask.to(filters.device)]
    entropy = _variance_entropy_compute(_variance_entropy_update(filters))
    normalized, reason = _normalize(entropy, int(filters.shape[0]), int(filters.shape[1]))
    return VarianceEntropy(entropy, normalized, int(filters.shape[0]), reason)
