"""The framework-free watcher: arguments, schedule, Monitor, sinks and the snapshot sequence,
written once for every trainer.

A trainer adapter (:mod:`filterwatch.callbacks`) subclasses :class:`WatchCore` next to its
framework's callback class and translates its events: training starts (:meth:`~WatchCore.start`),
an optimizer step ends (:meth:`~WatchCore.step_end`), an epoch ends
(:meth:`~WatchCore.epoch_end`), training ends (:meth:`~WatchCore.end`), each with a
:class:`~filterwatch.monitor.Host` that says how its framework logs, warns and agrees
between ranks.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..layers import LayerSelection, check_selection
from ..measure import KernelRead
from ..reference import Reference
from ..report import Report, history_table, to_table
from .alerts import Alert, AlertRules
from .host import Host, turned_off_on_error
from .monitor import Monitor
from .policy import layer_changes, log_alerts, log_notes
from .schedule import Schedule, check_count
from .sinks import HistoryFile, Sink, Snapshot

__all__ = ["WatchCore"]


def as_json_path(value: object) -> str | None:
    """A reference or rules argument as JSON (a path), or None for an object."""
    return str(value) if isinstance(value, str | Path) else None


class WatchCore:
    """Watch conv filters during training, whatever the trainer (see the Lightning
    :class:`~filterwatch.FilterWatch` for the arguments); ``select`` and ``alert_rules`` may
    also be given as dicts (how a checkpoint stores them).

    ``disabled`` says why watching is off ("" while it is on).
    """

    _interval_names = ("every_n_steps", "every_n_epochs")  # for the schedule's messages

    def __init__(
        self,
        every_n_steps: int | None = None,
        every_n_epochs: int | None = None,
        *,
        max_overhead: float = 0.01,
        orthogonality_every: int = 1,
        select: LayerSelection | Mapping[str, Any] | None = None,
        reference: Reference | str | Path | None = None,
        reference_device: str | torch.device | None = None,
        alert_rules: AlertRules | Mapping[str, float] | None = None,
        images_every: int = 10,
        histograms: bool = True,
        history_file: str | None = "filterwatch_history.jsonl",
        keep_reports: int = 100,
        strict: bool = False,
        spectral: bool = False,
        spectral_every: int = 1,
    ) -> None:
        self.schedule = Schedule(every_n_steps, every_n_epochs, max_overhead=max_overhead,
                                 names=self._interval_names)
        check_count("images_every", images_every)
        self.selection = check_selection(select)
        rules = AlertRules(**alert_rules) if isinstance(alert_rules, Mapping) else alert_rules
        self.monitor = Monitor(reference=reference, orthogonality_every=orthogonality_every,
                               alert_rules=rules, reference_device=reference_device,
                               keep_reports=keep_reports, spectral=spectral,
                               spectral_every=spectral_every)
        self.images_every, self.histograms = images_every, histograms
        self.history_file = history_file
        self.strict = strict
        self.disabled = ""
        self.sharded = False  # every rank joins the snapshot's gathers
        self.resumed_at: int | None = None  # the step of the checkpoint this run resumed from
        self.resumed_history: Path | None = None  # the history file of the run resumed
        self.sinks: list[Sink] = []
        self._shapes: dict[str, tuple[int, ...]] = {}
        self.arguments: dict[str, Any] = {
            "every_n_steps": every_n_steps, "every_n_epochs": every_n_epochs,
            "max_overhead": max_overhead, "orthogonality_every": orthogonality_every,
            "select": self.selection.as_dict(), "reference": as_json_path(reference),
            "reference_device": None if reference_device is None else str(reference_device),
            "alert_rules": None if rules is None else dataclasses.asdict(rules),
            "images_every": images_every, "histograms": histograms, "history_file": history_file,
            "keep_reports": keep_reports, "strict": strict, "spectral": spectral,
            "spectral_every": spectral_every,
        }

    # -- views ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def history(self) -> list[Report]:
        """Every snapshot kept so far, oldest first."""
        return self.monitor.history

    @property
    def alerts(self) -> list[Alert]:
        return self.monitor.alerts

    @property
    def reference(self) -> Reference | None:
        return self.monitor.reference

    @property
    def overhead_s(self) -> float:
        """Seconds the monitor has spent so far."""
        return self.schedule.overhead_s

    @property
    def history_path(self) -> Path | None:
        """Where the JSON Lines history goes (None: nowhere, or its disk failed)."""
        return next((s.path for s in self.sinks if isinstance(s, HistoryFile)), None)

    def run_state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the run besides the Monitor: the schedule, and which
        history file is this run's (a resumed run appends to it, never to another's)."""
        path = self.history_path
        return {**self.schedule.state_dict(), "history_path": None if path is None else str(path)}

    def load_run_state(self, state: Mapping[str, Any]) -> None:
        self.schedule.load_state_dict(dict(state))
        self.resumed_at = self.schedule.last_step
        path = state.get("history_path")
        self.resumed_history = Path(path) if isinstance(path, str) else None

    def history_table(self, measure: str = "variance_entropy") -> str:
        """How ``measure`` evolved: one row per layer, one column per snapshot."""
        return history_table(self.history, measure)

    def summary(self) -> str:
        """The last report as a table, and the alerts."""
        if not self.history:
            return f"{self.name}: no snapshot yet\n"
        text = to_table(self.history[-1])
        if self.alerts:
            text += "alerts:\n" + "".join(f"  step {a.step}: {a.message}\n" for a in self.alerts)
        return text

    # -- the trainer's events ----------------------------------------------------------------
    @turned_off_on_error
    def start(self, host: Host, step: int, *, horizon: tuple[float | None, float | None] = (None, None),
              sharded: bool = False, sinks: Callable[[], list[Sink]] = list,
              log_dir: Path | None = None, snapshot: bool = True) -> None:
        """Training (re)starts at ``step``: place the schedule within the run's ``horizon``
        (its steps, an epoch's), open the ``sinks`` and the history file in ``log_dir`` on
        the logging process, and take the start snapshot (the reference) unless resuming
        right after one."""
        self.schedule.begin(step)
        self.schedule.set_horizon(*horizon)
        self.sharded = sharded
        if not any(not layer.unavailable for layer in host.layers(self.selection)):
            host.warn(f"{self.name} found no conv layers to watch (with this selection); it "
                      "stays idle and training continues.")
            self.disabled = "no conv layers"
            return
        if host.is_zero:
            self.sinks = sinks()
            if self.resumed_at is not None:
                for sink in self.sinks:
                    sink.resume(self.resumed_at)
            if self.history_file and log_dir is not None:
                self._open_history(host, log_dir)
        if snapshot and self.schedule.fresh(step):
            self.snapshot(host, step)

    @turned_off_on_error
    def step_end(self, host: Host, step: int) -> None:
        """An optimizer step ended: a snapshot if one is due."""
        if self.schedule.undecided:  # the adaptive placement, at the first step after a start
            self.schedule.decide(step)
            if self.sharded:  # every rank snapshots at the same steps: rank zero's counts decide
                self.schedule.next_step = int(host.broadcast(self.schedule.next_step))
        if self.schedule.due(step):
            self.snapshot(host, step)

    @turned_off_on_error
    def epoch_end(self, host: Host, epoch: int, step: int) -> None:
        """Epoch ``epoch`` (0-based) ended at ``step``."""
        if self.schedule.due_epoch(epoch, step):
            self.snapshot(host, step)

    @turned_off_on_error
    def end(self, host: Host, step: int) -> None:
        """Training ended at ``step``: the final snapshot (the weights as training left them),
        unless the last one was at this step, and a one-line summary."""
        last = self.history[-1] if self.history else None
        if self.schedule.fresh(step) or (last is not None and not self.monitor.complete(last)):
            self.snapshot(host, step, final=True)  # replaces a sampled snapshot of this step
        elif host.is_zero:  # the last scheduled snapshot was at this step: it is the last one
            self._to_sinks(host, lambda sink: sink.finish(self.history))
        path = self.history_path
        host.info(f"{self.name}: {len(self.history)} snapshots, {len(self.alerts)} alerts"
                  + (f"; history in {path}" if path is not None else ""))

    @turned_off_on_error
    def snapshot_at(self, host: Host, step: int) -> Report | None:
        """The report of ``step`` for a gate that shares this watch's Monitor: the snapshot
        taken at that step, or one taken now (every sink gets it, alerts print at once)."""
        if not self.schedule.fresh(step):
            return self.history[-1] if self.history else None
        return self.snapshot(host, step)

    # -- the snapshot sequence ----------------------------------------------------------------
    def snapshot(self, host: Host, step: int, final: bool = False) -> Report | None:
        """Measure the layers now as the snapshot of ``step``, hand it to every sink, print
        its alerts and notes, and place the next one. The report, on the processes that
        measure (all of them when sharded, else rank zero)."""
        start = time.perf_counter()
        report = None
        final = final or self.schedule.is_last(step)  # every measure at the run's last step
        if host.is_zero or self.sharded:  # sharded: every rank joins the gathers
            layers = host.layers(self.selection)
            self._shapes, message = layer_changes(self._shapes, layers, self.name)
            if message and host.is_zero:
                host.warn(message)
            collectors = [c for sink in self.sinks if (c := sink.collector(final)) is not None]
            replaces = final and bool(self.history) and self.history[-1].step == step
            report = self.monitor.measure(layers, step, final=final, source=host.source,
                                          on_kernel=_fan_out(collectors))
            alerts = self.monitor.take_alerts()
        if host.is_zero and report is not None:
            snap = Snapshot(report, self.history, alerts, self.reference,
                            self.monitor.scalars(report, overhead_s=time.perf_counter() - start),
                            final, self.schedule.take_notes(), replaces)
            self._to_sinks(host, lambda sink: sink.write(snap))
            log_alerts(alerts)
            log_notes(snap.notes)
        self.schedule.record(step, time.perf_counter() - start)
        if self.sharded:  # every rank must snapshot at the same steps: rank zero decides
            self.schedule.next_step = int(host.broadcast(self.schedule.next_step))
        return report

    def _to_sinks(self, host: Host, call: Callable[[Sink], None]) -> None:
        """``call`` on every sink; a sink that fails (a full disk, a drawing error) is dropped
        with one warning, its fallback taking its place with the same call: the other outputs,
        the alerts and NaN detection go on (``strict=True`` raises instead)."""
        for i, sink in enumerate(list(self.sinks)):
            try:
                call(sink)
            except Exception as exc:
                if self.strict and not isinstance(exc, OSError):
                    raise
                self.sinks.remove(sink)
                after = "; scalars still go to the loggers" if sink.fallback else ""
                error = str(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
                host.warn(f"{self.name} could not write {sink.what}: {error}{after}; the history "
                          f"stays available as {self.name}.history")
                if sink.fallback is not None:
                    self.sinks.insert(min(i, len(self.sinks)), sink.fallback)
                    call(sink.fallback)

    def _open_history(self, host: Host, folder: Path) -> None:
        assert self.history_file
        try:
            self.sinks.append(HistoryFile.open(folder, self.history_file, self.resumed_at,
                                               self.resumed_history))
        except OSError as exc:  # unwritable or full disk: the run itself is not at stake
            host.warn(f"{self.name} could not write its history file in {folder}: {exc}; the "
                      f"history stays available as {self.name}.history")


def _fan_out(collectors: list[Callable[[KernelRead], None]]) -> Callable[[KernelRead], None] | None:
    if not collectors:
        return None

    def on_kernel(read: KernelRead) -> None:
        for collect in collectors:
            collect(read)

    return on_kernel

