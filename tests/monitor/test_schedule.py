"""The one schedule of FilterWatch, FilterGate and watch()."""

from __future__ import annotations

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
    s.record(0, 0.02)   # the start snapshot: 20 ms
    clock.t += 10.0     # 10 s of training: a budget of 100 ms, 80 ms of it left
    assert s.affords(0.07) and not s.affords(0.1)
    assert Schedule(every_n_steps=5).affords(100.0)  # a fixed interval: the user chose the cost
