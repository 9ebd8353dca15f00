"""Exceptions raised by filterwatch.

Every error message follows the form "`arg` expected X, got Y" plus a hint, and names what
was being processed (a layer, a file), so the user can fix the call without reading the source.
"""

from __future__ import annotations

__all__ = ["FilterwatchError", "InputError", "NoConvLayersError", "UndefinedMeasureError"]


class FilterwatchError(Exception):
    """Base class of every error filterwatch raises on purpose."""


class InputError(FilterwatchError, ValueError):
    """Bad input from the user: a file, a model, an argument. The CLI exits with code 2."""


class NoConvLayersError(InputError):
    """The model, state_dict or checkpoint holds no convolution weights to measure."""


class UndefinedMeasureError(FilterwatchError, ValueError):
    """A measure is mathematically undefined for this input (e.g. orthogonality of one filter).

    The message is the reason; :func:`filterwatch.analyze` stores it in the report next to a
    ``null`` value instead of failing.
    """
