"""Helpers shared by the Lightning callbacks (private)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from ..layers import ConvLayer, LayerSelection, discover_layers, has_sharded_parameters

__all__: list[str] = []


def current_layers(trainer: Any, pl_module: nn.Module, selection: LayerSelection) -> list[ConvLayer]:
    """The selected conv layers of the LightningModule right now ([] when there are none).

    Sharded models are read through the strategy's wrapper (``trainer.model``): an FSDP1 root
    wraps the LightningModule from outside, and its units can only be summoned correctly
    when the root is known. Wrapper segments are stripped from the names either way."""
    wrapped = getattr(trainer, "model", None)
    if isinstance(wrapped, nn.Module) and wrapped is not pl_module and has_sharded_parameters(pl_module):
        return discover_layers(wrapped, select=selection)
    return discover_layers(pl_module, select=selection)


def has_conv(layers: Sequence[ConvLayer]) -> bool:
    return any(not layer.unavailable for layer in layers)


def horizon(trainer: Any) -> tuple[float | None, float | None]:
    """``(optimizer steps of the whole fit, optimizer steps per epoch)`` where Lightning knows
    them (``None`` or infinite where it does not: an iterable of unknown length)."""
    try:
        total = float(trainer.estimated_stepping_batches)
    except Exception:  # no length to estimate from: the floor then has no horizon
        total = None
    per_epoch = getattr(trainer, "num_training_batches", None)
    accumulate = max(int(getattr(trainer, "accumulate_grad_batches", 1) or 1), 1)
    per_epoch = None if not isinstance(per_epoch, int | float) else per_epoch / accumulate
    return total, per_epoch
