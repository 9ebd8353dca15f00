"""Where a snapshot goes: one :class:`Snapshot` object, handed to every :class:`Sink`.

Every trainer adapter gets every sink: the scalar loggers (:class:`ScalarLogger`), the JSON
Lines history (:class:`HistoryFile`) and, at the edges, the TensorBoard extras
(:class:`filterwatch.integrations.tensorboard.TensorBoardSink`). A new training-time output is
one class with the methods of :class:`Sink`; :class:`~filterwatch.monitor.WatchCore` calls
them, and a sink whose disk fails (``OSError``) is dropped with one warning, its
:attr:`Sink.fallback` taking its place, while training goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .._atomic import write_text_atomic
from ..measure import KernelRead
from ..reference import Reference
from ..report import Report
from .alerts import Alert

__all__ = ["HistoryFile", "ScalarLogger", "Sink", "Snapshot", "free_path"]


@dataclass(frozen=True)
class Snapshot:
    """One snapshot, as every sink receives it.

    Attributes:
        report: what was measured (``report.step`` is the step).
        history: every report the run keeps, this one last.
        alerts: the alerts this snapshot raised (and any a sharing gate left unreported).
        reference: what drift was measured against.
        scalars: the flat ``{tag: value}`` dict of :meth:`Monitor.scalars` (the snapshot's
            cost in ``filterwatch/overhead_ms``).
        final: the snapshot of the weights as training left them.
        notes: what the schedule has to say (e.g. what the floor costs).
        replaces_last: this report replaces the last one (the same step, measured again as the
            final snapshot): a step is never written twice.
    """

    report: Report
    history: Sequence[Report]
    alerts: Sequence[Alert] = ()
    reference: Reference | None = None
    scalars: dict[str, float] = field(default_factory=dict)
    final: bool = False
    notes: Sequence[str] = ()
    replaces_last: bool = False

    @property
    def step(self) -> int:
        return int(self.report.step or 0)


class Sink:
    """The interface of a training-time output (every method may be left as it is here).

    Attributes:
        what: what it writes, for the one warning when writing fails.
        fallback: the sink that takes its place after a failure (``None``: none).
    """

    what = "an output"
    fallback: Sink | None = None

    def resume(self, step: int) -> None:
        """The run resumed from a checkpoint taken at ``step``: forget what a crashed run wrote
        after it."""

    def collector(self, final: bool) -> Callable[[KernelRead], None] | None:
        """What this sink needs of each kernel while the next snapshot holds it (``None``:
        nothing; the report suffices)."""
        return None

    def write(self, snapshot: Snapshot) -> None:
        """Write one snapshot."""

    def finish(self, history: Sequence[Report]) -> None:
        """Training ended at the step of the last snapshot (no final one was taken)."""


class ScalarLogger(Sink):
    """The snapshot's scalars to a logger function ``log(scalars, step)`` (a Lightning
    logger's ``log_metrics``, the Hugging Face Trainer's log path).

    Example:
        >>> seen = []
        >>> sink = ScalarLogger(lambda scalars, step: seen.append((step, scalars)))
        >>> sink.write(Snapshot(Report(layers=[], step=3), [], scalars={"a": 1.0}))
        >>> seen
        [(3, {'a': 1.0})]
    """

    what = "the scalars"

    def __init__(self, log: Callable[[dict[str, float], int], None]) -> None:
        self.log = log

    def write(self, snapshot: Snapshot) -> None:
        self.log(dict(snapshot.scalars), snapshot.step)


def free_path(folder: Path, name: str) -> Path:
    """``folder / name``, or the first of ``stem-2``, ``stem-3``... that does not exist, created
    empty here and now (exclusively: two runs starting together never get the same file, and a
    file an earlier run or the user left there is never truncated)."""
    folder.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        path = folder / (name if n == 1 else f"{Path(name).stem}-{n}{Path(name).suffix}")
        try:
            with open(path, "x", encoding="utf-8"):
                return path
        except FileExistsError:
            n += 1


class HistoryFile(Sink):
    """Every report of the run, one JSON object per line, appended as it is taken.

    A fresh run creates a file of its own (see :func:`free_path`); a resumed run reopens the
    file it wrote before (its checkpoint names it), keeping the lines up to the checkpoint's
    step and losing those a crashed run wrote after it. A report that replaces the last one
    replaces its line.
    """

    def __init__(self, path: Path, keep_until: int | None = None) -> None:
        self.path = path
        self.what = f"its history file {path}"
        self._last_line_at: int | None = None  # where the file's last line starts
        if keep_until is not None and path.is_file():  # the resumed run's own file
            kept = "".join(line for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
                           if (step := _step_of(line)) is not None and step <= keep_until)
            write_text_atomic(path, kept)

    @classmethod
    def open(cls, folder: Path, name: str, resumed_at: int | None = None,
             own: Path | None = None) -> HistoryFile:
        """The history of a fresh run, in a file of its own (see :func:`free_path`), or of the
        run resumed at ``resumed_at``: ``own``, the file that run wrote (its checkpoint says
        which), cut back to that step."""
        if resumed_at is not None and own is not None and own.is_file():
            return cls(own, keep_until=resumed_at)
        return cls(free_path(folder, name))

    def write(self, snapshot: Snapshot) -> None:
        with open(self.path, "a+b") as fh:
            if snapshot.replaces_last and self._last_line_at is not None:
                fh.truncate(self._last_line_at)
            fh.seek(0, 2)
            self._last_line_at = fh.tell()
            fh.write(snapshot.report.to_json(indent=None).encode("utf-8"))


def _step_of(line: str) -> int | None:
    try:
        step = json.loads(line).get("step")
    except (json.JSONDecodeError, AttributeError):
        return None
    return step if isinstance(step, int) else None
