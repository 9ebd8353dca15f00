"""Norms, dead output channels and non-finite counts: cheap health checks beyond the paper."""

from __future__ import annotations

import torch

from ..errors import InputError, UndefinedMeasureError
from ._filters import _as_float64, _check_weight, _filter_matrix

__all__ = ["dead_channels", "filter_norms", "nonfinite_count", "relative_change"]


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
    norms: torch.Tensor = torch.linalg.vector_norm(_filter_matrix(w), ord=p, dim=1)
    return norms


def _dead_channels_update(row_peak: torch.Tensor, c_out: int) -> torch.Tensor:
    """Dead output channels from each filter's peak: every filter of the channel is all zero."""
    return (row_peak.reshape(c_out, -1) == 0).all(dim=1)


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
    return _dead_channels_update(_filter_matrix(w).abs().amax(dim=1), int(w.shape[0]))


def nonfinite_count(weight: torch.Tensor) -> int:
    """Number of NaN or infinite values in the weight.

    Example:
        >>> import torch
        >>> nonfinite_count(torch.tensor([[[1.0, float("nan"), float("inf")]]]))
        2
    """
    return int(_nonfinite_update(_check_weight(weight)).item())


def relative_change(weight: torch.Tensor, reference: torch.Tensor) -> float:
    """``‖W − W_ref‖ / ‖W_ref‖`` (Frobenius).

    Raises:
        UndefinedMeasureError: the reference is all zero (a zero-initialised layer): there is
            nothing to be relative to.

    Example:
        >>> import torch
        >>> round(relative_change(torch.full((1, 1, 2), 2.0), torch.ones(1, 1, 2)), 12)
        1.0
    """
    w = _as_float64(_check_weight(weight))
    ref = _as_float64(_check_weight(reference, "reference")).to(w.device)
    if w.shape != ref.shape:
        raise InputError(
            f"`reference` expected shape {tuple(w.shape)} (the weight's), got {tuple(ref.shape)}"
        )
    num = float(torch.linalg.vector_norm(w - ref).item())
    den = float(torch.linalg.vector_norm(ref).item())
    if den == 0.0:
        raise UndefinedMeasureError(
            "relative change is undefined: the reference weights are all zero (e.g. a "
            "zero-initialised layer); hint: follow weight_norm instead")
    return num / den
