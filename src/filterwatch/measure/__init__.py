"""Measuring: ``analyze`` (a model, state_dict or checkpoint -> Report) and the fused engine."""

from .analyze import analyze
from .engine import (
    PRECISIONS,
    KernelRead,
    Precision,
    layer_stats,
    measure_layers,
    reports_from_stats,
)
from .options import MeasureOptions

__all__ = ["PRECISIONS", "KernelRead", "MeasureOptions", "Precision", "analyze", "layer_stats",
           "measure_layers", "reports_from_stats"]
