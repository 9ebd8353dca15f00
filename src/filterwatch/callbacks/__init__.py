"""The trainer adapters, side by side, each a thin translation of its framework's events to
the framework-free core (:class:`~filterwatch.monitor.WatchCore`,
:class:`~filterwatch.monitor.GateCore`):

- :mod:`~filterwatch.callbacks.lightning`: ``FilterWatch`` and ``FilterGate`` (Lightning);
- :mod:`~filterwatch.callbacks.huggingface`: ``FilterWatchCallback`` and ``FilterGateCallback``
  (the Hugging Face ``Trainer``);
- :mod:`~filterwatch.callbacks.hooks`: ``watch()``, forward hooks for a plain loop.

Each module imports its own framework only, when it is imported: ``from filterwatch.callbacks
import FilterWatch`` loads Lightning, ``filterwatch.callbacks.hooks`` loads none.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .lightning import FilterGate, FilterWatch, GateStoppingReason

__all__ = ["FilterGate", "FilterWatch", "GateStoppingReason"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import lightning

        return getattr(lightning, name)
    raise AttributeError(f"module 'filterwatch.callbacks' has no attribute {name!r}")
