"""Helpers shared by the Lightning callbacks (private)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..errors import InputError
from ..layers import ConvLayer, LayerSelection, discover_layers

__all__: list[str] = []


def current_layers(module: nn.Module, selection: LayerSelection) -> list[ConvLayer]:
    """The selected conv layers of the LightningModule right now ([] when there are none)."""
    return selection.filter(discover_layers(module, include_pointwise=True))


def check_intervals(**intervals: int | None) -> None:
    """Schedule arguments are positive integers or None (checked in ``__init__``)."""
    for name, value in intervals.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(f"`{name}` expected a positive integer or None, got {value!r}")


def has_conv(layers: Sequence[ConvLayer]) -> bool:
    return any(not layer.unavailable for layer in layers)
