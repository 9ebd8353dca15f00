"""Orthogonality of a layer's output filters (1 = mutually orthogonal, 0 = all parallel)."""

from __future__ import annotations

import torch

from ..errors import UndefinedMeasureError
from ._filters import _output_filter_matrix, _prepare
from ._gemm import _mm_nt
from ._scratch import _scratch

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
        return _l1(gram.abs_())
    block = max(_MIN_BLOCK, -(-n // _BLOCKS))
    total = torch.zeros((), dtype=torch.float64, device=rows.device)
    for i in range(0, n, block):
        a = rows[i : i + block]
        g = _mm_nt(a, rows[i:]).mul_(inv[i : i + block, None]).mul_(inv[None, i:])
        g[:, : a.shape[0]].diagonal().sub_(1.0)
        g.abs_()
        total += _l1(g[:, : a.shape[0]])
        if a.shape[0] < g.shape[1]:
            total += 2.0 * _l1(g[:, a.shape[0]:])
    return total


# products of at least this many multiply-adds are costed by their FLOPs: one layer at a
# time, on the upper block triangle (half the FLOPs), through oneDNN where it is faster;
# smaller ones are costed by their launches and go through one batched product per shape
_GRAM_MACS = 8 * 2**20
_GRAM_BLOCK = 1 << 19  # Gram entries of one block of the batched product (2 MiB of float32)


def _l1(x: torch.Tensor) -> torch.Tensor:
    """``Σx`` over the last two dims of a non-negative ``x``: each row in ``x``'s precision,
    the rows in float64 (a float64 sum over both dims converts every value first: five times
    slower)."""
    return x.sum(dim=-1).sum(dim=-1, dtype=torch.float64)


def _orthogonality_update_batched(rows: torch.Tensor) -> torch.Tensor:
    """``Σ|G - I|`` (float64, ``(B,)``) of ``B`` layers' output filters ``(B, C_out, D)``,
    one batched product per block of rows, each block reduced while in cache (the full
    ``B x C_out x C_out`` Gram tensor is never written). Narrow rows (``D <= C_out``, e.g.
    depthwise 3x3) are normalised before the product, wide ones scale their Gram block after.
    Blocks cover the upper triangle only: ``G`` is symmetric."""
    b, c, d = (int(x) for x in rows.shape)
    norms = torch.linalg.vector_norm(rows, dim=2)
    inv = torch.where(norms == 0, torch.zeros_like(norms), 1.0 / norms)  # a zero row stays zero
    narrow = d <= c
    if narrow:
        rows = rows * inv[:, :, None]
    # the diagonal of G: 1 for a nonzero row, 0 for a zero one (computed, not read from G)
    diag = (norms * inv) ** 2
    total: torch.Tensor = ((diag - 1.0).abs() - diag).sum(dim=1, dtype=torch.float64)
    step = max(1, _GRAM_BLOCK // (b * c))
    for i in range(0, c, step):
        s = min(step, c - i)
        # (B, s, C - i), into one buffer that every block reuses (a fresh one costs page faults)
        g = _scratch((b, s, c - i), rows.dtype, rows.device, "gram")
        g = torch.bmm(rows[:, i : i + s], rows[:, i:].transpose(1, 2), out=g)
        if not narrow:
            g.mul_(inv[:, i : i + s, None]).mul_(inv[:, None, i:])
        g.abs_()
        # Σ|G - I| = Σ|G| - Σ|diag| + Σ|diag - 1|; pairs right of the diagonal block stand
        # for their mirror images too (each block is summed while in cache)
        total += 2.0 * _l1(g) - _l1(g[:, :, :s]) if s < g.shape[2] else _l1(g)
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
