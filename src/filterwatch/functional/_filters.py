"""Validation and reshaping shared by the functional measures (private)."""

from __future__ import annotations

import torch

from ..errors import InputError, UndefinedMeasureError

__all__: list[str] = []


def _check_weight(weight: object, arg: str = "weight") -> torch.Tensor:
    """Validate a conv weight in (C_out, C_in/groups, k1, ..., kd) layout and return it detached."""
    if not isinstance(weight, torch.Tensor):
        raise InputError(
            f"`{arg}` expected a torch.Tensor, got {type(weight).__name__}; "
            "hint: pass `conv.weight`, not the module"
        )
    if weight.ndim < 3:
        raise InputError(
            f"`{arg}` expected a conv weight with at least 3 dims (C_out, C_in/groups, *kernel), "
            f"got shape {tuple(weight.shape)}; hint: Linear and BatchNorm weights are not conv filters"
        )
    if not weight.is_floating_point():
        raise InputError(f"`{arg}` expected a real floating-point tensor, got dtype {weight.dtype}")
    if weight.is_meta:
        raise InputError(
            f"`{arg}` expected a materialised tensor, got one on the meta device; "
            "hint: load real weights (or run a forward pass for lazy modules) first"
        )
    if weight.numel() == 0:
        raise InputError(f"`{arg}` expected a non-empty tensor, got shape {tuple(weight.shape)}")
    return weight.detach()


def _as_float64(weight: torch.Tensor) -> torch.Tensor:
    """A float64 copy-or-view of ``weight`` (never modifies the original)."""
    return weight.to(torch.float64)


def _require_finite(weight: torch.Tensor, measure: str) -> None:
    bad = int((~torch.isfinite(weight)).sum().item())
    if bad:
        raise UndefinedMeasureError(
            f"{measure} is undefined: the weight holds {bad} non-finite value(s) (NaN/Inf)"
        )


def _filter_matrix(weight: torch.Tensor) -> torch.Tensor:
    """(C_out, C_in/g, *k) -> (n, K): one row per kernel slice."""
    k = 1
    for s in weight.shape[2:]:
        k *= int(s)
    return weight.reshape(-1, k)


def _output_filter_matrix(weight: torch.Tensor) -> torch.Tensor:
    """(C_out, C_in/g, *k) -> (C_out, C_in/g * K): one row per output channel."""
    return weight.reshape(weight.shape[0], -1)


def _prepare(weight: object, measure: str, arg: str = "weight") -> torch.Tensor:
    """Check, upcast to float64 and require finite values; the input is never modified."""
    w = _as_float64(_check_weight(weight, arg))
    _require_finite(w, measure)
    return w
