"""Norms, dead output channels and non-finite counts: cheap health checks beyond the paper."""

from __future__ import annotations

import math

import torch

from ..errors import InputError, UndefinedMeasureError
from ._filters import _as_float64, _check_weight, filter_matrix

__all__ = ["change_sums_fixed", "dead_channels", "filter_norms", "nonfinite_count", "relative_change",
           "relative_change_compute"]


def filter_norms(weight: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """The ``p``-norm of every filter (kernel slice), shape ``(n,)``, in float64.

    Example:
        >>> import torch
        >>> filter_norms(torch.ones(2, 1, 3, 3), p=1).tolist()
        [9.0, 9.0]
    """
    if p <= 0:
        raise InputError(f"`p` expected a positive number, got {p!r}; hint: 1 or 2")
    w = _as_float64(_check_weight(weight))
    norms: torch.Tensor = torch.linalg.vector_norm(filter_matrix(w), ord=p, dim=1)
    return norms


def _dead_channels_update(row_peak: torch.Tensor, c_out: int) -> torch.Tensor:
    """Dead output channels from each filter's peak: every filter of the channel is all zero."""
    return row_peak.reshape(c_out, -1).amax(dim=1) == 0  # peaks are >= 0 (a NaN one is not 0)


def _nonfinite_update(values: torch.Tensor) -> torch.Tensor:
    """The number of NaN/Inf values, as a tensor (no host sync)."""
    return (~torch.isfinite(values)).sum()


def dead_channels(weight: torch.Tensor) -> torch.Tensor:
    """Boolean mask ``(C_out,)`` of output channels whose filters are all exactly zero.

    Example:
        >>> import torch
        >>> w = torch.randn(3, 2, 3, 3)
        >>> w[1] = 0
        >>> dead_channels(w).nonzero().flatten().tolist()
        [1]
    """
    w = _check_weight(weight)
    return _dead_channels_update(filter_matrix(w).abs().amax(dim=1), int(w.shape[0]))


def nonfinite_count(weight: torch.Tensor) -> int:
    """Number of NaN or infinite values in the weight.

    Example:
        >>> import torch
        >>> nonfinite_count(torch.tensor([[[1.0, float("nan"), float("inf")]]]))
        2
    """
    return int(_nonfinite_update(_check_weight(weight)).item())


_SQUARES_CHUNK = 4096  # values whose squares are added in float32 before float64
# float32 squares are exact enough while the mean square lies in this window (no overflow
# of the sums, no underflow of what matters); outside it the float64 path runs
_FLOAT32_MEAN_SQUARE = (2.0**-60, 2.0**60)


def _sum_squares(x: torch.Tensor) -> torch.Tensor:
    """``Σx²`` as a float64 scalar tensor, without a float64 copy of ``x``: float32 (or the
    input's precision) within chunks of ``_SQUARES_CHUNK`` values, the chunks added in
    float64 (relative error about 1e-7 in float32, against 2e-6 for one float32 norm)."""
    flat = x.reshape(-1)
    q = (flat.numel() // _SQUARES_CHUNK) * _SQUARES_CHUNK
    total = flat[q:].to(torch.float64).square().sum()
    if q:
        rows = torch.linalg.vector_norm(flat[:q].view(-1, _SQUARES_CHUNK), dim=1)
        total = total + rows.to(torch.float64).square().sum()
    return total


def _squares_of_change(w: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """``(Σ(w - ref)², Σref²)``, brought to the host together."""
    num, den = torch.stack([_sum_squares(w - ref), _sum_squares(ref)]).tolist()
    return num, den


def relative_change(weight: torch.Tensor, reference: torch.Tensor) -> float:
    """``‖W − W_ref‖ / ‖W_ref‖`` (Frobenius).

    Computed in the weights' precision (fp16/bf16 read as float32) with float64 sums, and in
    float64 when float32 squares would overflow or underflow (weights far from 1).

    Raises:
        UndefinedMeasureError: the reference is all zero (a zero-initialised layer): there is
            nothing to be relative to.

    Example:
        >>> import torch
        >>> round(relative_change(torch.full((1, 1, 2), 2.0), torch.ones(1, 1, 2)), 12)
        1.0
    """
    w = _check_weight(weight)
    ref = _check_weight(reference, "reference").to(w.device)
    if w.shape != ref.shape:
        raise InputError(
            f"`reference` expected shape {tuple(w.shape)} (the weight's), got {tuple(ref.shape)}"
        )
    work = torch.float64 if torch.float64 in (w.dtype, ref.dtype) else torch.float32
    num, den = _squares_of_change(w.to(work), ref.to(work))
    lo, hi = _FLOAT32_MEAN_SQUARE
    n = ref.numel()
    if work == torch.float32 and not (lo <= den / n <= hi and num / n <= hi):
        num, den = _squares_of_change(_as_float64(w), _as_float64(ref))
    return relative_change_compute(num, den)


def change_sums_fixed(weight: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``(Σ(w - ref)², Σref²)`` as a float64 ``(2,)`` tensor, in float64 throughout and with
    no host read (for a captured snapshot); :func:`relative_change_compute` finishes it."""
    w = weight.detach().to(torch.float64)
    ref = reference.detach().to(w.device, torch.float64)
    return torch.stack([(w - ref).square().sum(), ref.square().sum()])


def relative_change_compute(num: float, den: float) -> float:
    """``sqrt(num / den)`` from the sums of squares of the change and of the reference.

    Raises:
        UndefinedMeasureError: ``den`` is 0 (an all-zero reference).
    """
    if den == 0.0:
        raise UndefinedMeasureError(
            "relative change is undefined: the reference weights are all zero (e.g. a "
            "zero-initialised layer); hint: follow weight_norm instead")
    return math.sqrt(num / den)
