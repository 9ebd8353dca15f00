"""The one schedule of FilterWatch, FilterGate and watch()."""

from __future__ import annotations

import itertools

import pytest

from filterwatch import InputError
from filterwatch.monitor import Schedule


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _run(s: Schedule, steps: list[int]) -> list[int]:
    taken = []
    for step in steps:
        s.decide(step)
        if s.due(step):
            s.record(step, 0.0)
            taken.append(step)
    return taken


def test_every_n_steps_at_multiples_once_per_step() -> None:
    s = Schedule(every_n_steps=3)
    # each step seen several times, as under gradient accumulation
    assert _run(s, [0, 0, 0, 1, 1, 2, 3, 3, 3, 4, 5, 6, 7, 9, 9, 10]) == [0, 3, 6, 9]


def test_skip_and_fresh() -> None:
    s = Schedule(every_n_steps=2)
    s.skip(0)
    assert not s.fresh(0) and s.fresh(1)
    assert _run(s, [0, 1, 2, 3, 4]) == [2, 4]


def test_epochs_only_never_trigger_by_step() -> None:
    s = Schedule(every_n_epochs=2)
    assert not s.by_step and _run(s, list(range(10))) == []
    assert [e for e in range(6) if s.due_epoch(e, step=10 * e + 1)] == [1, 3, 5]
    s.record(20, 0.0)
    assert not s.due_epoch(1, step=20)  # that step already has its snapshot


def test_adaptive_keeps_the_overhead_within_budget() -> None:
    clock = FakeClock()
    s = Schedule(max_overhead=0.01, clock=clock)
    s.begin(0)
    step, spent_total, train_total = 0, 0.0, 0.0
    while step < 5000:
        s.decide(step)
        if s.due(step):
            clock.t += 0.05             # a snapshot costs 50 ms ...
            s.record(step, 0.05)        # ... and is recorded when it is done
            spent_total += 0.05
        clock.t += 0.01                 # a training step costs 10 ms
        train_total += 0.01
        step += 1
    assert spent_total / train_total == pytest.approx(0.01, rel=0.2)
    assert s.overhead_s == pytest.approx(spent_total)


def test_state_round_trip_keeps_the_next_step() -> None:
    s = Schedule(every_n_steps=5)
    _run(s, [0, 5])
    again = Schedule(every_n_steps=5)
    again.load_state_dict(s.state_dict())
    assert (again.next_step, again.last_step) == (10, 5)
    assert not again.fresh(5)


@pytest.mark.parametrize("kwargs,match", [
    ({"every_n_steps": 0}, "`every_n_steps` expected a positive integer or None, got 0"),
    ({"every_n_steps": True}, "`every_n_steps` expected a positive integer or None, got True"),
    ({"every_n_epochs": 1.5}, "`every_n_epochs` expected a positive integer or None"),
    ({"max_overhead": 2.0}, "`max_overhead` expected a share in \\(0, 1\\)"),
    ({"max_overhead": None}, "give every_n_steps or every_n_epochs"),
])
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InputError, match=match):
        Schedule(**kwargs)  # type: ignore[arg-type]


def test_affords_an_extra_only_within_the_adaptive_budget() -> None:
    clock = FakeClock()
    s = Schedule(max_overhead=0.01, clock=clock)
    s.begin(0)
    s.record(0, 0.5)    # the start snapshot, the warm-up: not charged
    s.record(1, 0.02)   # a steady one: 20 ms
    clock.t += 10.52    # 10 s of training: a budget of 100 ms, 80 ms of it left
    assert s.affords(0.07) and not s.affords(0.1)
    assert Schedule(every_n_steps=5).affords(100.0)  # a fixed interval: the user chose the cost


def _simulate(s: Schedule, clock: FakeClock, steps: int, warmup_s: float, snapshot_s: float,
              step_s: float) -> list[int]:
    """A run: the first snapshot costs ``warmup_s``, every later one ``snapshot_s``."""
    taken: list[int] = []
    s.begin(0)
    for step in range(steps):
        s.decide(step)
        if (step == 0 and s.fresh(0)) or s.due(step):
            cost = warmup_s if not taken else snapshot_s
            clock.t += cost
            s.record(step, cost)
            taken.append(step)
        clock.t += step_s
    return taken


def test_the_warm_up_is_not_extrapolated() -> None:
    """Issue 22: a 1.4 s first snapshot (imports, compiles) on a 470-step run used to push the
    next one past the end of training. Without a horizon the next step measures a steady one."""
    clock = FakeClock()
    s = Schedule(max_overhead=0.01, clock=clock)
    taken = _simulate(s, clock, 470, warmup_s=1.4, snapshot_s=0.03, step_s=0.06)
    assert taken[:2] == [0, 1] and len(taken) >= 8
    gaps = [b - a for a, b in itertools.pairwise(taken[1:])]  # after the probe at step 1
    assert gaps[0] <= 100 and max(gaps[1:]) <= 60  # 30 ms at 1 % of 60 ms steps: every ~50
    assert s.warmup_s == pytest.approx(1.4)


def test_the_floor_sees_damage_within_a_tenth_of_the_run() -> None:
    clock = FakeClock()
    s = Schedule(max_overhead=0.01, clock=clock)
    s.set_horizon(total_steps=470, steps_per_epoch=47 * 5)
    taken = _simulate(s, clock, 470, warmup_s=1.4, snapshot_s=0.3, step_s=0.06)  # a costly one
    assert s.floor_gap == 47
    assert all(b - a <= 47 for a, b in itertools.pairwise(taken)) and taken[-1] >= 470 - 47
    (note,) = s.take_notes()  # the budget wanted fewer: the floor won, and it says what it cost
    assert "every 47 steps" in note and "10% of this 470-step run" in note and "10.6%" in note
    assert s.take_notes() == []


def test_the_floor_keeps_one_snapshot_per_epoch() -> None:
    s = Schedule(max_overhead=0.01)
    s.set_horizon(total_steps=10_000, steps_per_epoch=300)
    assert s.floor_gap == 300
    s.set_horizon(total_steps=float("inf"), steps_per_epoch=None)  # an endless iterable
    assert s.floor_gap is None
    assert Schedule(every_n_steps=5).floor_gap is None  # a fixed interval is the user's choice


def test_the_gates_default_epochs_and_floor() -> None:
    s = Schedule(None, 1, max_overhead=None, floor=True)
    s.set_horizon(total_steps=100, steps_per_epoch=50)
    s.skip(0)  # no check at step 0
    assert s.by_step and _run(s, list(range(1, 101))) == list(range(10, 101, 10))
    plain = Schedule(None, 1, max_overhead=None)
    plain.set_horizon(total_steps=100, steps_per_epoch=50)
    assert not plain.by_step  # every_n_epochs given by the user: epochs only
