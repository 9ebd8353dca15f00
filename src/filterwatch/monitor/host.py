"""What a trainer adapter translates for the core: :class:`Host`, one trainer event as the
framework-free :class:`~filterwatch.monitor.WatchCore` and
:class:`~filterwatch.monitor.GateCore` see it, and their one failure policy."""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from ..layers import ConvLayer, LayerSelection

__all__ = ["INFO_LOG", "Host", "turned_off_on_error"]

INFO_LOG = logging.getLogger("filterwatch")  # the one-line summaries of a run
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class Host:
    """One event of a trainer (a plain loop by default: one process, warnings as
    ``UserWarning``, no logger). An adapter subclasses it and overrides what its framework
    does differently: which process logs, how ranks agree, where scalars go.

    Attributes:
        event: the framework's name of the event (``"on_train_start"``), for messages.
        source: the model's class name, for the reports.
    """

    def __init__(self, event: str = "", source: str = "") -> None:
        self.event, self.source = event, source

    @property
    def is_zero(self) -> bool:
        """Whether this process measures alone and logs (rank zero)."""
        return True

    def layers(self, selection: LayerSelection) -> list[ConvLayer]:
        """The selected conv layers of the model right now."""
        raise NotImplementedError

    def broadcast(self, value: T) -> T:
        """Rank zero's ``value`` on every rank."""
        return value

    def warn(self, message: str) -> None:
        warnings.warn(message, UserWarning, stacklevel=4)

    def info(self, message: str) -> None:
        INFO_LOG.info(message)

    def log_scalars(self, scalars: dict[str, float], step: int) -> None:
        """Scalars to the trainer's loggers (the gate's; a watch's go through its sinks)."""


class _Guarded(Protocol):
    disabled: str
    strict: bool

    @property
    def name(self) -> str: ...


def turned_off_on_error(hook: F) -> F:
    """Decorate a core event ``hook(self, host, ...)`` so that an error in it warns once and
    turns the watch off (``disabled`` says why): a monitoring failure never kills a training
    run, unless it was made ``strict``. A watch that is off does nothing."""

    @functools.wraps(hook)
    def run(self: _Guarded, host: Host, *args: Any, **kwargs: Any) -> Any:
        if self.disabled:
            return None
        try:
            return hook(self, host, *args, **kwargs)
        except Exception as exc:
            if self.strict:
                raise
            self.disabled = f"{type(exc).__name__}: {exc}"
            host.warn(f"{self.name} disabled itself after an error in {host.event or hook.__name__}: "
                      f"{self.disabled}. Training continues; pass strict=True to fail instead.")
            return None

    return run  # type: ignore[return-value]
