"""Filter sparsity: the share of kernel slices whose every value is tiny relative to the layer."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ..errors import InputError
from ._filters import _prepare, filter_matrix

__all__ = ["SparsityResult", "check_eps", "sparsity"]


class SparsityResult(NamedTuple):
    """Result of :func:`sparsity`.

    Attributes:
        value: share of sparse filters in ``[0, 1]``.
        mask: boolean tensor of shape ``(n,)``, ``True`` for a sparse filter (row-major over
            ``(C_out, C_in/groups)``).
        indices: flat indices of the sparse filters (``mask.nonzero()``).
        threshold: the absolute threshold ``t`` that was applied.
    """

    value: float
    mask: torch.Tensor
    indices: torch.Tensor
    threshold: float


def check_eps(eps: object, arg: str = "eps") -> float:
    """The sparsity threshold must be a share of the layer's peak; returns it as a float
    (every entry point checks its ``eps`` argument with this one function).

    Example:
        >>> check_eps(0.01), check_eps(0)
        (0.01, 0.0)
    """
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0.0 <= eps <= 1.0:
        raise InputError(f"`{arg}` expected a number in [0, 1], got {eps!r}; hint: the paper uses 0.01")
    return float(eps)


def _sparsity_update(row_peak: torch.Tensor, eps: float,
                     peak: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The sparse mask from each filter's peak ``max|f|``: ``(mask, t)``.

    ``t = eps · max|W|`` (``peak`` overrides the layer maximum, e.g. the all-reduced peak of
    a sharded layer); ``t = 1`` when it is 0, so an all-zero layer is fully sparse. A filter
    is sparse when its peak is below ``t`` (every value then is)."""
    layer_peak = row_peak.max().to(torch.float64) if peak is None else peak.to(torch.float64)
    t = eps * layer_peak
    t = torch.where(t == 0, torch.ones_like(t), t)
    if row_peak.dtype == torch.float64:
        return row_peak < t, t
    # x < t for a float32 x exactly when x < the smallest float32 >= t: no float64 copy
    t32 = t.to(row_peak.dtype)
    t32 = torch.where(t32.to(torch.float64) < t, torch.nextafter(t32, torch.full_like(t32, math.inf)), t32)
    return row_peak < t32, t


def sparsity_compute(n_sparse: float, n: int) -> float:
    return n_sparse / n


def sparsity(weight: torch.Tensor, eps: float = 0.01) -> SparsityResult:
    """Share of sparse filters in a conv weight.

    ``t = eps * max|W|`` over the whole layer (``t = 1`` when the layer is all zero); a filter
    (one kernel slice of ``K`` values) is sparse when every value satisfies ``|w| < t``.

    Args:
        weight: conv weight of shape ``(C_out, C_in/groups, *kernel)``; any float dtype or device.
        eps: relative threshold, ``0 <= eps <= 1``.

    Example:
        >>> import torch
        >>> w = torch.randn(4, 2, 3, 3)
        >>> w[1, 0] = 0.0
        >>> r = sparsity(w)
        >>> r.value, r.indices.tolist()
        (0.125, [2])
    """
    eps = check_eps(eps)
    filters = filter_matrix(_prepare(weight, "sparsity"))
    mask, t = _sparsity_update(filters.abs().amax(dim=1), eps)
    return SparsityResult(
        value=sparsity_compute(float(mask.sum()), mask.numel()),
        mask=mask,
        indices=mask.nonzero().flatten(),
        threshold=float(t),
    )
