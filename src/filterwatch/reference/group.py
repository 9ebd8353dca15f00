"""One reference distribution (a group of layers) and how layers are assigned to groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..functional.drift import DriftBasis
from ..layers import ConvLayer, format_kernel_size

__all__ = ["GROUPINGS", "Grouping", "ReferenceGroup", "group_key"]

Grouping = Literal["layer", "depth", "kernel"]
GROUPINGS: tuple[Grouping, ...] = ("layer", "depth", "kernel")


@dataclass
class ReferenceGroup:
    """One reference distribution: its key, kernel size, basis, contributing layers and the
    root mean square of their weights (``None`` in files written before it was kept: the
    weight-growth rule then has nothing to compare with)."""

    key: str
    kernel_size: tuple[int, ...]
    basis: DriftBasis
    layers: list[str] = field(default_factory=list)
    rms: float | None = None


def group_key(layer: ConvLayer, grouping: Grouping) -> str:
    """The reference group a layer belongs to (``layer1.0.conv1``, ``depth3/3x3``, ``kernel/3x3``)."""
    if grouping == "layer":
        return layer.name
    if grouping == "depth":
        return f"depth{min(int(layer.depth_norm * 10), 9)}/{format_kernel_size(layer.kernel_size)}"
    return f"kernel/{format_kernel_size(layer.kernel_size)}"
