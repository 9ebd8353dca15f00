"""Helpers shared by the Lightning callbacks (private)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..layers import ConvLayer, LayerSelection, discover_layers

__all__: list[str] = []


def current_layers(module: nn.Module, selection: LayerSelection) -> list[ConvLayer]:
    """The selected conv layers of the LightningModule right now ([] when there are none)."""
    return discover_layers(module, select=selection)


def has_conv(layers: Sequence[ConvLayer]) -> bool:
    return any(not layer.unavailable for layer in layers)
