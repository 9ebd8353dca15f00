"""Lightning callbacks. Importing this package imports Lightning; the rest of filterwatch
does not."""

from .filterwatch import FilterWatch

__all__ = ["FilterWatch"]
