"""Orthogonality of a layer's output filters (1 = mutually orthogonal, 0 = all parallel)."""

from __future__ import annotations

import torch

from ..errors import UndefinedMeasureError
from ._filters import _output_filter_matrix, _prepare
from ._gemm import _mm_nt

__all__ = ["orthogonality"]

_BLOCKS = 4  # row blocks per Gram matrix: only the upper triangle of blocks is computed
_MIN_BLOCK = 64
_GPU_FULL = 16384  # on a GPU, one whole Gram matrix up to this many output filters (1 GiB)


def _orthogonality_update(rows: torch.Tensor) -> torch.Tensor:
    """``Σ|G - I|`` (a float64 scalar tensor) for the L2-normalised rows ``(C_out, D)``, ``G``
    their cosine matrix, computed in the rows' precision on the upper block triangle only
    (``G`` is symmetric), in row blocks that bound memory.

    A zero row stays zero, so its diagonal entry contributes ``|0 - 1| = 1``: this is what
    the reference implementation (``torchconvquality``) does, and we match it.
    """
    norms = torch.linalg.vector_norm(rows, dim=1)
    inv = torch.where(norms == 0, torch.zeros_like(norms), 1.0 / norms)  # a zero row stays zero
    n = rows.shape[0]
    # the Gram matrix of the rows as they are, scaled afterwards: C_out² numbers to scale,
    # instead of a normalised copy of all C_out · D
    if rows.is_cuda and n <= _GPU_FULL:  # FLOPs are cheap there, kernel launches are not
        gram = (rows @ rows.T).mul_(inv[:, None]).mul_(inv[None, :])
        gram.diagonal().sub_(1.0)
        return gram.abs().sum(dtype=torch.float64)
    block = max(_MIN_BLOCK, -(-n // _BLOCKS))
    total = torch.zeros((), dtype=torch.float64, device=rows.device)
    for i in range(0, n, block):
        a = rows[i : i + block]
        g = _mm_nt(a, rows[i:]).mul_(inv[i : i + block, None]).mul_(inv[None, i:])
        diag = g[:, : a.shape[0]]
        diag.diagonal().sub_(1.0)
        total += diag.abs().sum(dtype=torch.float64)
        if a.shape[0] < g.shape[1]:
            total += 2.0 * g[:, a.shape[0]:].abs().sum(dtype=torch.float64)
    return total


def orthogonality_compute(abs_sum: float, c_out: int) -> float:
    if c_out < 2:
        raise UndefinedMeasureError(
            f"orthogonality is undefined for a layer with {c_out} output filter (C_out = 1): "
            "there is no pair to compare"
        )
    return 1.0 - abs_sum / (c_out * (c_out - 1))


def orthogonality(weight: torch.Tensor) -> float:
    """Orthogonality of the output filters: ``1 - Σ|G - I| / (C_out (C_out - 1))``.

    Each output filter (a row of ``W`` reshaped to ``(C_out, C_in/groups * K)``) is
    L2-normalised; ``G`` is their cosine-similarity matrix. Random layers give about
    ``1 - sqrt(2 / (π C_in K))``. Costs ``C_out² · C_in K / 2`` multiply-adds (float64 here;
    the engine uses float32).

    Raises:
        UndefinedMeasureError: ``C_out = 1``, or non-finite values.

    Example:
        >>> import torch
        >>> abs(orthogonality(torch.eye(4).reshape(4, 4, 1, 1).repeat(1, 1, 3, 3) / 3) - 1.0) < 1e-12
        True
        >>> abs(orthogonality(torch.ones(4, 2, 3, 3))) < 1e-12   # all parallel
        True
    """
    rows = _output_filter_matrix(_prepare(weight, "orthogonality"))
    return orthogonality_compute(float(_orthogonality_update(rows)), int(rows.shape[0]))
