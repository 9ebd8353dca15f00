"""Filter sparsity: the share of kernel slices whose every value is tiny relative to the layer."""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..errors import InputError
from ._filters import _filter_matrix, _prepare

__all__ = ["SparsityResult", "sparsity"]


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


def _check_eps(eps: float, arg: str = "eps") -> None:
    """The sparsity threshold must be a share of the layer's peak."""
    if not 0.0 <= eps <= 1.0:
        raise InputError(f"`{arg}` expected a number in [0, 1], got {eps!r}; hint: the paper uses 0.01")


def _sparsity_update(filters: torch.Tensor, eps: float) -> tuple[torch.Tensor, float]:
    """Sufficient statistics: the per-filter mask and the layer threshold ``t``."""
    peak = float(filters.abs().max().item())
    t = eps * peak
    if t == 0.0:
        t = 1.0  # an all-zero layer is fully sparse
    mask = (filters.abs() < t).all(dim=1)
    return mask, t


def _sparsity_compute(mask: torch.Tensor) -> float:
    return float(mask.sum().item()) / mask.numel()


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
    _check_eps(eps)
    filters = _filter_matrix(_prepare(weight, "sparsity"))
    mask, t = _sparsity_update(filters, eps)
    return SparsityResult(
        value=_sparsity_compute(mask),
        mask=mask,
        indices=mask.nonzero().flatten(),
        threshold=t,
    )
