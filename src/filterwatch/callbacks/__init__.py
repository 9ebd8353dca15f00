"""Lightning callbacks. Importing this package imports Lightning; the rest of filterwatch
does not."""

from .filtergate import FilterGate, GateStoppingReason
from .filterwatch import FilterWatch

__all__ = ["FilterGate", "FilterWatch", "GateStoppingReason"]
