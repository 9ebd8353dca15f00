"""Does a weight look as a fresh initialisation leaves it? (the evidence behind "untrained")

Random-like VE alone cannot tell trained from fresh: wide layers trained briefly keep VE/H_T
near 1. What a fresh initialisation does leave is its *scale and shape*: i.i.d. values of
zero mean, with a root mean square set by the layer's fans, and, for a uniform init, no value
beyond its bound. Training moves weights off those fingerprints (a digits CNN trained from
PyTorch's default init has max |w| 1.02-1.9x the bound ``1/sqrt(fan_in)`` after one epoch).

:func:`init_match` tests the statistics the one-read pass already has (the count, the mean,
the root mean square and ``max|w|``) against the initialisations of PyTorch, torchvision, timm and
Hugging Face, each at the tolerance that its own sampling noise allows:

* uniform on ``±a``: every ``|w| <= a`` and RMS ``a/sqrt(3)``;
* normal with ``σ``: RMS ``σ`` and a largest ``|w|/σ`` inside the 0.01 %-99.99 % range of
  the maximum of that many ``|N(0, 1)|`` draws;
* and for both a mean within 5 standard errors of 0.

Fans follow ``torch.nn.init._calculate_fan_in_and_fan_out`` on the *stored* tensor (for a
transposed conv ``fan_in`` is ``C_out/groups · K``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = ["INITS", "Init", "init_bound_ratio", "init_match"]


class Init(NamedTuple):
    """One known initialisation: ``scale(fan_in, fan_out)`` is the uniform bound ``a`` or
    the normal ``σ``."""

    name: str
    family: str  # "uniform" or "normal"
    scale: str   # how it reads: "1/sqrt(fan_in)"

    def value(self, fan_in: int, fan_out: int) -> float:
        return float(_SCALES[self.scale](fan_in, fan_out))


_SCALES = {
    "1/sqrt(fan_in)": lambda fi, fo: 1.0 / math.sqrt(fi),
    "sqrt(6/fan_in)": lambda fi, fo: math.sqrt(6.0 / fi),
    "sqrt(6/(fan_in+fan_out))": lambda fi, fo: math.sqrt(6.0 / (fi + fo)),
    "sqrt(2/fan_in)": lambda fi, fo: math.sqrt(2.0 / fi),
    "sqrt(2/fan_out)": lambda fi, fo: math.sqrt(2.0 / fo),
    "sqrt(2/(fan_in+fan_out))": lambda fi, fo: math.sqrt(2.0 / (fi + fo)),
    "0.02": lambda fi, fo: 0.02,
}

# PyTorch's default (kaiming_uniform_ with a=sqrt(5)) first: it is what most fresh models hold
INITS: tuple[Init, ...] = (
    Init("PyTorch default (uniform ±1/sqrt(fan_in))", "uniform", "1/sqrt(fan_in)"),
    Init("Kaiming-uniform (fan_in)", "uniform", "sqrt(6/fan_in)"),
    Init("Xavier-uniform", "uniform", "sqrt(6/(fan_in+fan_out))"),
    Init("Kaiming-normal (fan_in)", "normal", "sqrt(2/fan_in)"),
    Init("Kaiming-normal (fan_out)", "normal", "sqrt(2/fan_out)"),
    Init("Xavier-normal", "normal", "sqrt(2/(fan_in+fan_out))"),
    Init("LeCun-normal", "normal", "1/sqrt(fan_in)"),
    Init("normal (σ = 0.02)", "normal", "0.02"),
)

_Z_MEAN = 5.0   # standard errors the mean may be off zero
_Z_RMS = 5.0    # standard errors the RMS may be off its scale
_RMS_SLACK = 0.01  # plus 1 % (truncated normals, float rounding)
_P_PEAK = 1e-4  # the largest |w| must lie inside this two-sided range of its distribution


def init_bound_ratio(peak: float, fan_in: int) -> float:
    """``max|w| · sqrt(fan_in)``: the largest weight over PyTorch's default-init bound
    ``1/sqrt(fan_in)``; at most 1 for a fresh default init, above 1 once trained.

    Example:
        >>> round(init_bound_ratio(0.25, 9), 3)
        0.75
    """
    return peak * math.sqrt(fan_in)


def _gaussian_peak_range(n: int) -> tuple[float, float]:
    """The ``_P_PEAK`` and ``1 - _P_PEAK`` quantiles of ``max |z_i|`` over ``n`` standard
    normal draws: ``P(max <= x) = erf(x / sqrt 2)^n``, so ``x = sqrt 2 · erfinv(p^(1/n))``."""
    q = torch.tensor([math.log(_P_PEAK), math.log1p(-_P_PEAK)], dtype=torch.float64) / n
    lo, hi = (math.sqrt(2.0) * torch.special.erfinv(torch.exp(q))).tolist()
    return lo, hi


def init_match(n: int, fan_in: int, fan_out: int, mean: float, rms: float,
               peak: float) -> Init | None:
    """The first of :data:`INITS` that ``n`` weights with mean ``mean``, root mean square
    ``rms`` and largest magnitude ``peak`` are consistent with, or ``None``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> w = torch.nn.Conv2d(16, 32, 3).weight.detach().double()
        >>> mean, rms, peak = float(w.mean()), float(w.square().mean().sqrt()), float(w.abs().max())
        >>> init_match(w.numel(), 144, 288, mean, rms, peak).name
        'PyTorch default (uniform ±1/sqrt(fan_in))'
        >>> init_match(w.numel(), 144, 288, mean, 1.1 * rms, peak) is None  # trained: larger
        True
    """
    if n < 2 or fan_in < 1 or fan_out < 1 or not all(map(math.isfinite, (mean, rms, peak))):
        return None
    if rms == 0.0:
        return None
    gauss_lo, gauss_hi = _gaussian_peak_range(n)
    for init in INITS:
        scale = init.value(fan_in, fan_out)
        if init.family == "uniform":
            sd, rel_rms_se = scale / math.sqrt(3.0), math.sqrt(0.2 / n)  # Var(w²) = 4a⁴/45
            peak_ok = peak <= scale * (1.0 + 1e-6)
        else:
            sd, rel_rms_se = scale, math.sqrt(0.5 / n)  # Var(w²) = 2σ⁴
            peak_ok = gauss_lo <= peak / scale <= gauss_hi
        mean_ok = abs(mean) <= _Z_MEAN * sd / math.sqrt(n)
        rms_ok = abs(rms / sd - 1.0) <= _RMS_SLACK + _Z_RMS * rel_rms_se
        if peak_ok and mean_ok and rms_ok:
            return init
    return None
