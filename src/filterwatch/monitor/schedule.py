"""The one schedule of FilterWatch, FilterGate and ``watch()``: when to take a snapshot.

Every n steps (at multiples of n), every n epochs, or, with neither, adaptively: after each
snapshot the next one is placed so that the monitor's time stays within ``max_overhead`` of
the training time. Whatever the mode, at most one snapshot per step (an optimizer step under
Lightning, a forward call under ``watch()``), however many batches that step accumulates.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from ..errors import InputError

__all__ = ["Schedule", "check_count", "check_interval"]

_UNDECIDED = -1


def check_count(name: str, value: object) -> int:
    """An every-k or keep-n argument: an integer >= 1 (booleans are refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"`{name}` expected an integer >= 1, got {value!r}")
    return value


def check_interval(name: str, value: object) -> int | None:
    """A schedule interval is a positive integer or None (booleans are refused)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InputError(f"`{name}` expected a positive integer or None, got {value!r}")
    return value


class Schedule:
    """When the next snapshot is due.

    Args:
        every_n_steps: a snapshot at every multiple of n steps.
        every_n_epochs: a snapshot at the end of every n-th epoch.
        max_overhead: with neither interval, the share of training time the monitor may take
            (adaptive mode); ``None`` refuses the adaptive mode.
        names: the argument names used in error messages (``every_n_calls`` for ``watch``).

    Example:
        >>> s = Schedule(every_n_steps=2)
        >>> [step for step in (0, 0, 1, 2, 2, 3, 4) if s.due(step) and s.record(step, 0.0) is None]
        [0, 2, 4]
    """

    def __init__(self, every_n_steps: int | None = None, every_n_epochs: int | None = None, *,
                 max_overhead: float | None = 0.01,
                 names: tuple[str, str] = ("every_n_steps", "every_n_epochs"),
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.every_n_steps = check_interval(names[0], every_n_steps)
        self.every_n_epochs = check_interval(names[1], every_n_epochs)
        if max_overhead is not None and (isinstance(max_overhead, bool)
                                         or not isinstance(max_overhead, int | float)
                                         or not 0.0 < max_overhead < 1.0):
            raise InputError(f"`max_overhead` expected a share in (0, 1), got {max_overhead!r}; "
                             "hint: 0.01 is 1 %")
        if self.every_n_steps is None and self.every_n_epochs is None and max_overhead is None:
            raise InputError(f"`{names[0]}` expected a positive integer, got None; hint: give "
                             f"{names[0]} or {names[1]}, or a max_overhead for an adaptive schedule")
        self.max_overhead = max_overhead
        self.next_step = 0
        self.last_step: int | None = None
        self.overhead_s = 0.0
        self._clock = clock
        self._origin: tuple[float, float, int] | None = None  # (time, overhead, step) at begin
        self._last_spent = 0.0

    @property
    def adaptive(self) -> bool:
        return self.every_n_steps is None and self.every_n_epochs is None

    @property
    def by_step(self) -> bool:
        """Whether steps (not only epochs) trigger snapshots."""
        return self.every_n_steps is not None or self.adaptive

    def begin(self, step: int) -> None:
        """Training (re)starts at ``step``: the adaptive mode measures time from here."""
        self._origin = (self._clock(), self.overhead_s, step)

    @property
    def undecided(self) -> bool:
        """Adaptive mode before a training step was timed: :meth:`due` decides at the next
        step (under sharding the caller broadcasts that decision so that ranks agree)."""
        return self.next_step < 0

    def due(self, step: int) -> bool:
        """Whether a step-triggered snapshot is due at ``step``."""
        if not self.by_step or step == self.last_step:
            return False
        if self.undecided:
            self.next_step = self._adaptive_next(step)
        return step >= self.next_step

    def due_epoch(self, epoch: int, step: int) -> bool:
        """Whether an epoch-triggered snapshot is due at the end of ``epoch`` (0-based)."""
        n = self.every_n_epochs
        return n is not None and (epoch + 1) % n == 0 and step != self.last_step

    def fresh(self, step: int) -> bool:
        """Whether nothing was taken at ``step`` yet (start and final snapshots)."""
        return step != self.last_step

    def record(self, step: int, spent_s: float) -> None:
        """A snapshot was taken at ``step`` and cost ``spent_s`` seconds: place the next one."""
        self.last_step = step
        self.overhead_s += spent_s
        self.next_step = self._next(step, spent_s)

    def skip(self, step: int) -> None:
        """Treat ``step`` as done without a snapshot (e.g. no check at step 0)."""
        self.last_step = step
        self.next_step = self._next(step, 0.0)

    def affords(self, cost_s: float) -> bool:
        """Whether spending ``cost_s`` more seconds now keeps the adaptive mode within
        ``max_overhead`` of the training time so far (always True with a fixed interval: the
        user chose the cost). For optional extras, such as heatmaps, decided on the spot.

        Example:
            >>> Schedule(every_n_steps=5).affords(10.0)
            True
        """
        if not self.adaptive or self._origin is None or self.max_overhead is None:
            return True
        t0, overhead0, _ = self._origin
        training = max(self._clock() - t0 - (self.overhead_s - overhead0), 1e-9)
        return self.overhead_s - overhead0 + cost_s <= self.max_overhead * training

    def _next(self, step: int, spent_s: float) -> int:
        if self.every_n_steps is not None:
            return (step // self.every_n_steps + 1) * self.every_n_steps
        if not self.adaptive:
            return self.next_step
        self._last_spent = spent_s
        if self._origin is None or step <= self._origin[2]:
            return _UNDECIDED  # no training step timed yet: decide at the next step
        return self._adaptive_next(step)

    def _adaptive_next(self, step: int) -> int:
        """The first step at which everything the monitor has spent since training (re)started,
        plus one more snapshot like the last, stays within ``max_overhead`` of the training
        time: the start and final snapshots and every extra count against the budget."""
        assert self.max_overhead is not None
        t0, overhead0, step0 = self._origin or (self._clock(), self.overhead_s, step)
        if step <= step0:
            return step + 1
        training = max(self._clock() - t0 - (self.overhead_s - overhead0), 1e-9)
        per_step = training / (step - step0)
        spent = self.overhead_s - overhead0 + self._last_spent
        needed = spent / self.max_overhead - training  # training time still to go
        last = self.last_step if self.last_step is not None else step0
        return max(last + 1, step + math.ceil(max(needed, 0.0) / per_step))

    def state_dict(self) -> dict[str, Any]:
        return {"next_step": self.next_step, "last_step": self.last_step, "overhead_s": self.overhead_s}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.next_step = int(state.get("next_step", 0))
        last = state.get("last_step")
        self.last_step = None if last is None else int(last)
        self.overhead_s = float(state.get("overhead_s", 0.0))

    def key(self) -> dict[str, Any]:
        """What identifies this schedule (for callback state keys)."""
        return {"every_n_steps": self.every_n_steps, "every_n_epochs": self.every_n_epochs}
