"""filterwatch: watch the health of convolution filters while training.

Degeneracy (sparse, collapsed, random-like, dead, non-finite filters) measured as in
"CNN Filter DB" (Gavrikov & Keuper, CVPR 2022).

The package's folders are its layers: ``functional`` (pure maths) < ``layers`` (finding and
reading conv layers) < ``report`` (the Report and the registry of measures) < ``reference``
(drift) < ``measure`` (``analyze`` and the engine) < ``gate`` < ``monitor`` (the
framework-free watcher and gatekeeper) < the edges: ``integrations`` (TensorBoard, pictures,
torchmetrics), ``callbacks`` (the trainer adapters: Lightning, Hugging Face, plain-loop hooks)
and ``cli``. ``import filterwatch`` loads none of Lightning, TensorBoard, torchmetrics, Triton
or matplotlib: the names that need them are imported on first use.

Example:
    >>> import torch, filterwatch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.Conv2d(16, 16, 3))
    >>> report = filterwatch.analyze(net)
    >>> [layer.name for layer in report.layers]
    ['0', '1']
"""

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import FilterwatchError, InputError, NoConvLayersError, UndefinedMeasureError
from .layers import ConvLayer, LayerSelection, discover_layers, load_state_dict
from .measure import analyze
from .reference import Matching, Reference
from .report import MEASURES, LayerReport, Report

if TYPE_CHECKING:
    from .callbacks import FilterGate, FilterWatch
    from .callbacks.hooks import Watcher, watch
    from .integrations.metric import FilterMetrics

# name -> module that defines it, imported on first use (the edges and their frameworks)
_LAZY = {
    "FilterWatch": "filterwatch.callbacks",
    "FilterGate": "filterwatch.callbacks",
    "FilterMetrics": "filterwatch.integrations.metric",
    "watch": "filterwatch.callbacks.hooks",
    "Watcher": "filterwatch.callbacks.hooks",
}
# modules that moved, under their old names: the same module object, imported on first use
MOVED = {
    "filterwatch.integrations.huggingface": "filterwatch.callbacks.huggingface",
    "filterwatch.integrations.hooks": "filterwatch.callbacks.hooks",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'filterwatch' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


class _Moved(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds a moved module under its old name (:data:`MOVED`) and hands out the module
    itself, so that ``import filterwatch.integrations.huggingface`` keeps working."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        return importlib.machinery.ModuleSpec(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(MOVED[spec.name])
        self._specs[module.__name__] = module.__spec__
        return module

    def __init__(self) -> None:
        self._specs: dict[str, Any] = {}

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._specs[module.__name__]  # its own, not the alias's


if not any(isinstance(f, _Moved) for f in sys.meta_path):
    sys.meta_path.insert(0, _Moved())


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
