"""filterwatch: watch the health of convolution filters while training.

Degeneracy (sparse, collapsed, random-like, dead, non-finite filters) measured as in
"CNN Filter DB" (Gavrikov & Keuper, CVPR 2022).

Example:
    >>> import torch, filterwatch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.Conv2d(16, 16, 3))
    >>> report = filterwatch.analyze(net)
    >>> [layer.name for layer in report.layers]
    ['0', '1']
"""

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .analyze import analyze, measure_layer
from .errors import FilterwatchError, InputError, NoConvLayersError, UndefinedMeasureError
from .hooks import Watcher, watch
from .layers import ConvLayer, discover_layers
from .loading import load_state_dict
from .reference import Reference
from .report import MEASURES, LayerReport, Report

if TYPE_CHECKING:
    from .callbacks import FilterGate, FilterWatch
    from .metric import FilterMetrics


def __getattr__(name: str) -> Any:
    """Lightning is imported only when a callback is asked for."""
    if name in ("FilterWatch", "FilterGate"):
        from . import callbacks

        return getattr(callbacks, name)
    if name == "FilterMetrics":
        from .metric import FilterMetrics

        return FilterMetrics
    raise AttributeError(f"module 'filterwatch' has no attribute {name!r}")


__all__ = [
    "MEASURES",
    "ConvLayer",
    "FilterGate",
    "FilterMetrics",
    "FilterWatch",
    "FilterwatchError",
    "InputError",
    "LayerReport",
    "NoConvLayersError",
    "Reference",
    "Report",
    "UndefinedMeasureError",
    "Watcher",
    "__version__",
    "analyze",
    "discover_layers",
    "load_state_dict",
    "measure_layer",
    "watch",
]
