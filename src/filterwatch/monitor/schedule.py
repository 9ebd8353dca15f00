"""The one schedule of FilterWatch, FilterGate and ``watch()``: when to take a snapshot.

Every n steps (at multiples of n), every n epochs, or, with neither, adaptively: after each
snapshot the next one is placed so that the monitor's time stays within ``max_overhead`` of
the training time. Whatever the mode, at most one snapshot per step (an optimizer step under
Lightning, a forward call under ``watch()``), however many batches that step accumulates.

Two rules keep the adaptive mode (and the gate's default) in time:

* **No extrapolation from the warm-up.** The first snapshot of a process pays one-off costs
  (imports, kernel compilation, building the reference: 1.1-1.4 s instead of 29 ms measured
  under load). Its cost is logged but neither extrapolated nor charged to the budget; the
  next snapshot's cost is the first estimate.
* **A floor.** When the run's length is known (:meth:`Schedule.set_horizon`), snapshots are
  at most ``FLOOR_SHARE`` (10 %) of the run apart, and at least one per epoch, so damage is
  seen within 10 % of the run. Where the budget would space them further, the floor wins and
  :meth:`Schedule.take_notes` says what it costs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from ..errors import InputError

__all__ = ["FLOOR_SHARE", "Schedule", "check_count", "check_interval"]

_UNDECIDED = -1
FLOOR_SHARE = 0.1  # damage is seen within this share of a run of known length


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
        floor: keep snapshots within ``FLOOR_SHARE`` of a run of known length and at least
            one per epoch (default: in the adaptive mode only; a fixed interval is the user's).
        names: the argument names used in error messages (``every_n_calls`` for ``watch``).

    Example:
        >>> s = Schedule(every_n_steps=2)
        >>> [step for step in (0, 0, 1, 2, 2, 3, 4) if s.due(step) and s.record(step, 0.0) is None]
        [0, 2, 4]
        >>> s = Schedule(every_n_epochs=1, max_overhead=None, floor=True)
        >>> s.set_horizon(total_steps=200, steps_per_epoch=100)
        >>> s.floor_gap
        20
    """

    def __init__(self, every_n_steps: int | None = None, every_n_epochs: int | None = None, *,
                 max_overhead: float | None = 0.01, floor: bool | None = None,
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
        self.floor = self.adaptive if floor is None else bool(floor)
        self.next_step = 0
        self.last_step: int | None = None
        self.overhead_s = 0.0
        self.warmup_s = 0.0  # what the process's first snapshot cost (not extrapolated)
        self.total_steps: int | None = None
        self.steps_per_epoch: int | None = None
        self._clock = clock
        self._origin: tuple[float, float, int] | None = None  # (time, overhead, step) at begin
        self._warm = False  # a snapshot was taken in this process
        self._warmup_since_origin = 0.0
        self._last_spent: float | None = None  # the last steady snapshot's cost
        self._notes: list[str] = []
        self._floor_noted = False

    @property
    def adaptive(self) -> bool:
        return self.every_n_steps is None and self.every_n_epochs is None

    @property
    def by_step(self) -> bool:
        """Whether steps (not only epochs) trigger snapshots."""
        return self.every_n_steps is not None or self.adaptive or self.floor_gap is not None

    def begin(self, step: int) -> None:
        """Training (re)starts at ``step``: the adaptive mode measures time from here."""
        self._origin = (self._clock(), self.overhead_s, step)
        self._warmup_since_origin = 0.0

    def set_horizon(self, total_steps: float | None = None,
                    steps_per_epoch: float | None = None) -> None:
        """The run's length in steps and an epoch's, where the trainer knows them (``None``
        or infinite: unknown); they set :attr:`floor_gap`."""
        def known(v: float | None) -> int | None:
            return math.ceil(v) if v is not None and math.isfinite(v) and v > 0 else None

        self.total_steps, self.steps_per_epoch = known(total_steps), known(steps_per_epoch)
        if self.floor and not self.adaptive and self.every_n_steps is None and self.last_step is not None:
            self.next_step = self._next(self.last_step)  # epoch mode: the floor places the next

    @property
    def floor_gap(self) -> int | None:
        """The most steps between two snapshots that the floor allows (``None``: no floor)."""
        if not self.floor:
            return None
        gaps = [g for g in (None if self.total_steps is None else int(FLOOR_SHARE * self.total_steps),
                            self.steps_per_epoch) if g is not None]
        return max(1, min(gaps)) if gaps else None

    @property
    def undecided(self) -> bool:
        """Adaptive mode before a training step was timed: :meth:`decide` places the next
        snapshot at the next step (under sharding the caller broadcasts that decision so that
        ranks agree)."""
        return self.next_step < 0

    def decide(self, step: int) -> None:
        """Place an undecided next snapshot now that ``step`` was timed (nothing otherwise)."""
        if self.undecided and self.by_step and step != self.last_step:
            self.next_step = self._adaptive_next(step)

    def due(self, step: int) -> bool:
        """Whether a step-triggered snapshot is due at ``step`` (pure: an undecided placement
        is never due; :meth:`decide` places it)."""
        return (self.by_step and step != self.last_step and not self.undecided
                and step >= self.next_step)

    def due_epoch(self, epoch: int, step: int) -> bool:
        """Whether an epoch-triggered snapshot is due at the end of ``epoch`` (0-based)."""
        n = self.every_n_epochs
        return n is not None and (epoch + 1) % n == 0 and step != self.last_step

    def is_last(self, step: int) -> bool:
        """Whether ``step`` is the run's last, where its length is known."""
        return self.total_steps is not None and step >= self.total_steps

    def fresh(self, step: int) -> bool:
        """Whether nothing was taken at ``step`` yet (start and final snapshots)."""
        return step != self.last_step

    def record(self, step: int, spent_s: float) -> None:
        """A snapshot was taken at ``step`` and cost ``spent_s`` seconds: place the next one.
        The process's first snapshot is the warm-up: counted in :attr:`overhead_s`, but
        neither extrapolated nor charged to the budget."""
        self.last_step = step
        self.overhead_s += spent_s
        if not self._warm:
            self._warm = True
            self.warmup_s += spent_s
            self._warmup_since_origin += spent_s
        else:
            self._last_spent = spent_s
        self.next_step = self._next(step)

    def skip(self, step: int) -> None:
        """Treat ``step`` as done without a snapshot (e.g. no check at step 0)."""
        self.last_step = step
        self.next_step = self._next(step)

    def take_notes(self) -> list[str]:
        """What the schedule has to say since the last call (e.g. what the floor costs)."""
        notes, self._notes = self._notes, []
        return notes

    def _training_s(self) -> float:
        t0, overhead0, _ = self._origin or (self._clock(), self.overhead_s, 0)
        return max(self._clock() - t0 - (self.overhead_s - overhead0), 1e-9)

    def _spent_s(self) -> float:
        """What the monitor spent since training (re)started, less the warm-up."""
        overhead0 = self._origin[1] if self._origin is not None else 0.0
        return self.overhead_s - overhead0 - self._warmup_since_origin

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
        return self._spent_s() + cost_s <= self.max_overhead * self._training_s()

    def _next(self, step: int) -> int:
        if self.every_n_steps is not None:
            return (step // self.every_n_steps + 1) * self.every_n_steps
        if not self.adaptive:
            gap = self.floor_gap
            return self.next_step if gap is None else step + gap
        if self._origin is None or step <= self._origin[2]:
            return _UNDECIDED  # no training step timed yet: decide at the next step
        return self._adaptive_next(step)

    def _adaptive_next(self, step: int) -> int:
        """The first step at which everything the monitor has spent since training (re)started
        (less the warm-up), plus one more snapshot like the last, stays within
        ``max_overhead`` of the training time, but no later than the floor allows."""
        assert self.max_overhead is not None
        step0 = self._origin[2] if self._origin is not None else step
        if step <= step0:
            return step + 1
        last = self.last_step if self.last_step is not None else step0
        gap = self.floor_gap
        cap = None if gap is None else last + gap
        if self._last_spent is None:  # only the warm-up so far: its cost says nothing
            return cap if cap is not None else step  # no floor: measure a steady one now
        training = self._training_s()
        per_step = training / (step - step0)
        needed = (self._spent_s() + self._last_spent) / self.max_overhead - training
        nxt = max(last + 1, step + math.ceil(max(needed, 0.0) / per_step))
        if cap is not None and nxt > cap:
            self._note_floor(self._last_spent / (gap * per_step) if gap else 0.0)
            return cap
        return nxt

    def _note_floor(self, share: float) -> None:
        """Say once what following the floor costs, when it costs more than the budget."""
        assert self.max_overhead is not None
        if self._floor_noted or share <= self.max_overhead:
            return
        self._floor_noted = True
        run = f"this {self.total_steps}-step run" if self.total_steps else "this run"
        self._notes.append(
            f"snapshots every {self.floor_gap} steps (the floor: damage seen within "
            f"{FLOOR_SHARE:.0%} of {run}, and at least once per epoch) cost about {share:.1%} of "
            f"the training time, more than max_overhead {self.max_overhead:.1%}: the floor wins. "
            "Give every_n_steps for a fixed interval, or a larger max_overhead to silence this.")

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
