"""Orthogonality of a layer's output filters (1 = mutually orthogonal, 0 = all parallel)."""

from __future__ import annotations

import torch

from ..errors import UndefinedMeasureError
from ._filters import _output_filter_matrix, _prepare

__all__ = ["orthogonality"]

# Rows of the Gram matrix computed at once; bounds the extra memory to chunk x C_out floats.
_CHUNK = 2048


def _orthogonality_update(rows: torch.Tensor) -> tuple[float, int]:
    """``(Σ|G - I|, C_out)`` for L2-normalised output filters, ``G`` their cosine matrix.

    A zero row stays zero, so its diagonal entry contributes ``|0 - 1| = 1``: this is what
    the reference implementation (``torchconvquality``) does, and we match it.
    """
    norms = torch.linalg.vector_norm(rows, dim=1, keepdim=True)
    unit = rows / torch.where(norms == 0, torch.ones_like(norms), norms)
    n = unit.shape[0]
    total = 0.0
    for start in range(0, n, _CHUNK):
        block = unit[start : start + _CHUNK] @ unit.T
        diag = torch.arange(block.shape[0], device=block.device)
        block[diag, diag + start] -= 1.0
        total += float(block.abs().sum().item())
    return total, n


def _orthogonality_compute(abs_sum: float, n: int) -> float:
    if n < 2:
        raise UndefinedMeasureError(
            f"orthogonality is undefined for a layer with {n} output filter (C_out = 1): "
            "there is no pair to compare"
        )
    return 1.0 - abs_sum / (n * (n - 1))


def orthogonality(weight: torch.Tensor) -> float:
    """Orthogonality of the output filters: ``1 - Σ|G - I| / (C_out (C_out - 1))``.

    Each output filter (a row of ``W`` reshaped to ``(C_out, C_in/groups * K)``) is
    L2-normalised; ``G`` is their cosine-similarity matrix. Random layers give about
    ``1 - sqrt(2 / (π C_in K))``. Costs ``C_out² · C_in K`` multiply-adds; memory is bounded
    by computing ``G`` in row blocks.

    Raises:
        UndefinedMeasureError: ``C_out = 1``, or non-finite values.

    Example:
        >>> import torch
        >>> orthogonality(torch.eye(4).reshape(4, 4, 1, 1).repeat(1, 1, 3, 3) / 3)
        1.0
        >>> abs(orthogonality(torch.ones(4, 2, 3, 3))) < 1e-12   # all parallel
        True
    """
    rows = _output_filter_matrix(_prepare(weight, "orthogonality"))
    return _orthogonality_compute(*_orthogonality_update(rows))
