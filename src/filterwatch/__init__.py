"""filterwatch: watch the health of convolution filters while training.

Degeneracy (sparse, collapsed, random-like, dead, non-finite filters) measured as in
"CNN Filter DB" (Gavrikov & Keuper, CVPR 2022).

The package's folders are its layers: ``functional`` (pure maths) < ``layers`` (finding and
reading conv layers) < ``report`` (the Report and the registry of measures) < ``reference``
(drift) < ``measure`` (``analyze`` and the engine) < ``gate`` and ``monitor`` < the edges,
``integrations`` (TensorBoard, hooks, torchmetrics), ``callbacks`` (Lightning) and ``cli``.
``import filterwatch`` loads none of Lightning, TensorBoard, torchmetrics, Triton or
matplotlib: the names that need them are imported on first use.

Example:
    >>> import torch, filterwatch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.Conv2d(16, 16, 3))
    >>> report = filterwatch.analyze(net)
    >>> [layer.name for layer in report.layers]
    ['0', '1']
"""

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import FilterwatchError, InputError, NoConvLayersError, UndefinedMeasureError
from .layers import ConvLayer, LayerSelection, discover_layers, load_state_dict
from .measure import analyze
from .reference import Matching, Reference
from .report import MEASURES, LayerReport, Report

if TYPE_CHECKING:
    from .callbacks import FilterGate, FilterWatch
    from .integrations.hooks import Watcher, watch
    from .integrations.metric import FilterMetrics

# name -> module that defines it, imported on first use (the edges and their frameworks)
_LAZY = {
    "FilterWatch": "filterwatch.callbacks",
    "FilterGate": "filterwatch.callbacks",
    "FilterMetrics": "filterwatch.integrations.metric",
    "watch": "filterwatch.integrations.hooks",
    "Watcher": "filterwatch.integrations.hooks",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'filterwatch' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "MEASURES",
    "ConvLayer",
    "FilterGate",
    "FilterMetrics",
    "FilterWatch",
    "FilterwatchError",
    "InputError",
    "LayerReport",
    "LayerSelection",
    "Matching",
    "NoConvLayersError",
    "Reference",
    "Report",
    "UndefinedMeasureError",
    "Watcher",
    "__version__",
    "analyze",
    "discover_layers",
    "load_state_dict",
    "watch",
]
