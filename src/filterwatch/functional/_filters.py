"""Validation and reshaping shared by the functional measures (private)."""

from __future__ import annotations

import math

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


def filter_matrix(weight: torch.Tensor) -> torch.Tensor:
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


# Products of values whose peak lies in [2^-40, 2^40] stay far from float32's overflow and
# underflow; outside that window a weight is multiplied by a power of two first (exact).
_SAFE_EXPONENT = 40


def _safe_scale(peak: float) -> float:
    """1, or the power of two that brings ``peak`` to about 1 when it lies outside the window."""
    if not math.isfinite(peak) or peak == 0.0:
        return 1.0
    exponent = math.frexp(peak)[1]
    return 1.0 if abs(exponent) <= _SAFE_EXPONENT else math.ldexp(1.0, -exponent)


def _scaled(t: torch.Tensor, scale: float) -> torch.Tensor:
    """``t * scale`` for a power of two ``scale`` that ``t``'s dtype may not hold (2^136 is
    beyond float32): applied in two halves, each of which it holds."""
    if scale == 1.0:
        return t
    exponent = math.frexp(scale)[1] - 1
    half = exponent // 2
    return t * math.ldexp(1.0, half) * math.ldexp(1.0, exponent - half)


def _rows_to_unit_peak(f: torch.Tensor, peak: torch.Tensor,
                       below: float = 2.0**-64) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows whose peak is tiny (subnormal in float32: ``1 / peak`` overflows) scaled by a power
    of two each, so that their peak is about 1 (for measures that are scale-invariant per
    row, such as drift); the input is never modified."""
    tiny = (peak > 0) & (peak < below)
    if not bool(tiny.any()):
        return f, peak
    factor = torch.ldexp(torch.ones_like(peak[tiny], dtype=torch.float64),
                         -torch.frexp(peak[tiny].to(torch.float64)).exponent)
    f, peak = f.clone(), peak.clone()
    f[tiny] = (f[tiny].to(torch.float64) * factor[:, None]).to(f.dtype)
    peak[tiny] = (peak[tiny].to(torch.float64) * factor).to(peak.dtype)
    return f, peak


_COLUMN_CHAIN = 32  # rows at most this wide: a chain of column maxima beats a row reduction


def _row_max(a: torch.Tensor) -> torch.Tensor:
    """The max of each row of an ``(n, K)`` matrix (NaN where a row holds one). For narrow
    rows (kernel slices: K = 9, 25, 49), K - 1 element-wise maxima of strided columns run
    several times faster on a CPU than ``amax(dim=1)``, whose inner loop is K long."""
    n, k = int(a.shape[0]), int(a.shape[1])
    if k > _COLUMN_CHAIN or k < 2 or a.is_cuda:
        return a.amax(dim=1)
    out = a[:, 0].clone()
    for i in range(1, k):
        torch.maximum(out, a[:, i], out=out)
    return out.reshape(n)


def _transposed(f: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``f.T`` ``(K, n)``, contiguous. On a CPU this is the product with the identity, which
    writes the transpose several times faster than a strided copy; it is exact for finite
    values (a NaN/Inf turns its whole filter into NaN: such filters are reported as
    non-finite anyway). Always a new tensor (or ``out``): callers overwrite it."""
    if f.is_cuda or f.shape[0] < 2:  # a copy, never a view: callers centre it in place
        return f.T.clone(memory_format=torch.contiguous_format) if out is None else out.copy_(f.T)
    eye = torch.eye(int(f.shape[1]), dtype=f.dtype, device=f.device)
    return eye @ f.T if out is None else torch.mm(eye, f.T, out=out)
