"""Measuring: ``analyze`` (a model, state_dict or checkpoint -> Report) and the fused engine."""

from .analyze import analyze, analyze_layers
from .engine import (
    PRECISIONS,
    KernelRead,
    Precision,
    layer_stats,
    measure_layers,
    reports_from_stats,
)

__all__ = ["PRECISIONS", "KernelRead", "Precision", "analyze", "analyze_layers", "layer_stats",
           "measure_layers", "reports_from_stats"]
