"""The spectral measures of one kernel, as the engine reports them (values or reasons)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..errors import InputError, UndefinedMeasureError
from ..functional.spectral import conv_operator_norm, lipschitz_bound, matrix_spectrum

__all__ = ["Spectral", "check_input_size", "spectral_values"]

# what the layer's matrix spectrum and the certified bound give (all but ``lipschitz``)
_FROM_MATRIX = ("spectral_norm", "condition_number", "stable_rank", "effective_rank", "lipschitz_bound")


class Spectral(NamedTuple):
    """Spectral options: ``input_size`` adds the exact circular-padding norm at that size."""

    input_size: tuple[int, ...] | None = None


def check_input_size(value: object, arg: str = "input_size") -> tuple[int, ...] | None:
    """``None``, ``(H, W)``, ``32`` or ``"32x32"`` -> a tuple of positive ints (or None)."""
    if value is None:
        return None
    try:
        if isinstance(value, str):
            sizes = tuple(int(p) for p in value.lower().split("x"))
        elif isinstance(value, int) and not isinstance(value, bool):
            sizes = (value,)
        else:
            sizes = tuple(int(p) for p in value)  # type: ignore[attr-defined]
        if not sizes or min(sizes) < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise InputError(f"`{arg}` expected an input size like (32, 32) or '32x32', got {value!r}") from None
    return sizes


def spectral_values(weight: torch.Tensor, groups: int,
                    input_size: tuple[int, ...] | None) -> dict[str, tuple[float | None, str]]:
    """``{measure: (value, reason)}`` for every spectral measure of one kernel."""
    out: dict[str, tuple[float | None, str]]
    try:
        s = matrix_spectrum(weight, groups)
        out = {"spectral_norm": (s.spectral_norm, ""), "condition_number": (s.condition_number, s.reason),
               "stable_rank": (s.stable_rank, ""), "effective_rank": (s.effective_rank, ""),
               "lipschitz_bound": (lipschitz_bound(weight, groups), "")}
    except UndefinedMeasureError as exc:  # the same measures, each with the reason
        out = dict.fromkeys(_FROM_MATRIX, (None, str(exc)))
    if input_size is not None:
        sizes = input_size * (weight.ndim - 2) if len(input_size) == 1 else input_size
        try:
            out["lipschitz"] = (conv_operator_norm(weight, sizes, groups), "")
        except (UndefinedMeasureError, InputError) as exc:
            out["lipschitz"] = (None, str(exc))
    return out
