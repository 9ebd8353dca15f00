"""The framework-free gatekeeper: check the gate rules during training, decide, and say
whether the trainer must stop, written once for every trainer (the adapters in
:mod:`filterwatch.callbacks` only stop their trainer when :meth:`GateCore.check` says so)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..gate import GateConfig, Verdict, Violation, evaluate
from ..gate.decision import (
    GATE_TAG,
    GateMode,
    GateStoppingReason,
    check_gate_args,
    gate_config,
    stopping_decision,
)
from ..layers import ConvLayer
from ..reference import Reference
from .host import Host
from .monitor import Monitor
from .schedule import Schedule
from .watchcore import WatchCore, as_json_path

__all__ = ["STOP_LOG", "GateCore"]

STOP_LOG = logging.getLogger("filterwatch.gate")  # a decision, not a malfunction: one line


class GateCore:
    """Check the gate rules during training (see the Lightning :class:`~filterwatch.FilterGate`
    for the arguments) and decide (pure: :meth:`_evaluate_stopping_criteria`).

    ``disabled`` says why the gate is off ("" while it checks: only when the model has no conv
    layer). Errors inside the gate propagate: a gate is a check the user asked for.
    """

    def __init__(
        self,
        rules: GateConfig | Mapping[str, Any] | str | Path | None = None,
        *,
        mode: GateMode = "stop",
        patience: int = 1,
        every_n_steps: int | None = None,
        every_n_epochs: int | None = None,
        reference: Reference | str | Path | None = None,
    ) -> None:
        check_gate_args(mode, patience)
        floor = every_n_steps is None and every_n_epochs is None  # the default: in time
        self.schedule = Schedule(every_n_steps, 1 if floor else every_n_epochs, max_overhead=None,
                                 floor=floor)
        self.config = gate_config(rules, type(self).__name__)
        self.mode: GateMode = mode
        self.patience = patience
        self.selection = self.config.select
        self.monitor = Monitor(reference=reference, spectral=self.config.needs_spectral)
        self.failures = 0
        self.stopped_step: int | None = None
        self.stopping_reason = GateStoppingReason.NOT_STOPPED
        self.stopping_reason_message: str | None = None
        self.last_verdict: Verdict | None = None
        self.disabled = ""
        self.sharded = False
        self.shared_with: WatchCore | None = None  # the watch whose Monitor and snapshots it uses
        self.arguments: dict[str, Any] = {
            "rules": as_json_path(rules) or (dict(rules) if isinstance(rules, Mapping) else None),
            "mode": mode, "patience": patience, "every_n_steps": every_n_steps,
            "every_n_epochs": every_n_epochs, "reference": as_json_path(reference),
        }

    @property
    def name(self) -> str:
        return type(self).__name__

    # -- the trainer's events ----------------------------------------------------------------
    def start(self, host: Host, step: int, *, horizon: tuple[float | None, float | None] = (None, None),
              sharded: bool = False, peers: Iterable[object] = ()) -> bool:
        """Training (re)starts at ``step``: no check before training has done anything, except
        for NaN/Inf weights already there. Shares the Monitor of a watch among ``peers`` (the
        trainer's other callbacks) where it can. True when the trainer must stop."""
        self.schedule.begin(step)
        self.schedule.set_horizon(*horizon)
        if self.schedule.fresh(step):
            self.schedule.skip(step)
        layers = host.layers(self.selection)
        if not any(not layer.unavailable for layer in layers):
            host.warn(f"{self.name} found no conv layers to check; it stays idle.")
            self.disabled = "no conv layers"
            return False
        self.sharded = sharded
        watch = next((p for p in peers if isinstance(p, WatchCore)), None)
        self.shared_with = self._shareable(host, watch, layers)
        if self.shared_with is not None:
            self.monitor = self.shared_with.monitor
        elif host.is_zero or sharded:
            self.monitor.ensure_reference(layers)
        if host.broadcast(self.monitor.nonfinite_at_start):  # nothing to wait for: check now
            return self.check(host, step)
        return False

    def step_end(self, host: Host, step: int) -> bool:
        return self.check(host, step) if self.schedule.due(step) else False

    def epoch_end(self, host: Host, epoch: int, step: int) -> bool:
        return self.check(host, step) if self.schedule.due_epoch(epoch, step) else False

    def check(self, host: Host, step: int) -> bool:
        """Check the rules at ``step`` (rank zero decides, every rank agrees) and log the
        number of violations; True when the trainer must stop now."""
        self.schedule.record(step, 0.0)
        if self.disabled or self.stopping_reason is not GateStoppingReason.NOT_STOPPED:
            return False
        violations: list[Violation] = []
        if host.is_zero or self.sharded:  # sharded: every rank joins the gathers
            watch = self.shared_with
            report = None if watch is None else watch.snapshot_at(host, step)
            if report is None:  # alone, or the watch turned itself off
                report = self.monitor.measure(host.layers(self.selection), step)
                self.monitor.take_alerts()  # the gate judges values; change alerts are a watch's
            self.last_verdict = evaluate(report, self.config)
            violations = self.last_verdict.violations
        violations = host.broadcast(violations)
        should_stop, reason = self._decide(violations)
        if host.is_zero:
            host.log_scalars({GATE_TAG: float(len(violations))}, step)
        if reason and not should_stop:
            host.warn(f"{self.name}: {reason}")
        if not should_stop:
            return False
        if self._stopped(step, reason):
            if host.is_zero:
                STOP_LOG.warning("%s stopped training at step %d: %s", self.name, step, reason)
            return True
        host.warn(f"{self.name} (mode='warn'): {reason}")
        return False

    # -- the decision (pure) ------------------------------------------------------------------
    def _evaluate_stopping_criteria(self, violations: list[Violation],
                                    failures: int) -> tuple[bool, str | None]:
        """``(should_stop, reason)`` from this check's violations and the failure streak."""
        return stopping_decision(violations, failures, self.patience)

    def _decide(self, violations: Sequence[Violation]) -> tuple[bool, str | None]:
        """One check's violations: the failure streak grows (or restarts), then the decision."""
        self.failures = self.failures + 1 if violations else 0
        return self._evaluate_stopping_criteria(list(violations), self.failures)

    def _stopped(self, step: int, reason: str | None) -> bool:
        """Keep a decision to stop and start the streak again: with ``mode="stop"`` the run
        stops at ``step`` (True); with ``"warn"`` only the reason is kept (False)."""
        self.stopping_reason_message = reason
        self.failures = 0
        if self.mode != "stop":
            return False
        self.stopped_step = step
        self.stopping_reason = GateStoppingReason.RULES_FAILED
        return True

    def _shareable(self, host: Host, watch: WatchCore | None,
                   layers: Sequence[ConvLayer]) -> WatchCore | None:
        """``watch`` if the gate can use its Monitor and snapshots (one reference and one
        analysis per step for both), else None: the gate was given no reference of its own,
        it measures every layer the gate checks, and on every snapshot it computes the sampled
        measures (orthogonality, the spectral ones) that the gate's rules check."""
        if watch is None or watch.disabled or self.monitor.user_reference:
            return None
        if self.monitor.spectral and not (watch.monitor.spectral and watch.monitor.spectral_every == 1):
            return None
        if self.config.needs("orthogonality") and watch.monitor.orthogonality_every != 1:
            return None
        names = {layer.name for layer in host.layers(watch.selection)}
        return watch if all(layer.name in names for layer in layers) else None

    # -- state in a checkpoint ----------------------------------------------------------------
    @property
    def owns_monitor(self) -> bool:
        """Whether the Monitor is the gate's own (a shared one is stored once, by the watch)."""
        return self.shared_with is None

    def gate_state(self) -> dict[str, Any]:
        """The decision state and the schedule, as JSON (the Monitor is stored apart)."""
        return {"failures": self.failures, "stopped_step": self.stopped_step,
                "stopping_reason": self.stopping_reason.value,
                "stopping_reason_message": self.stopping_reason_message,
                "schedule": self.schedule.state_dict()}

    def load_gate_state(self, state: Mapping[str, Any]) -> None:
        self.failures = int(state.get("failures", 0))
        self.stopped_step = state.get("stopped_step")
        self.stopping_reason = GateStoppingReason(state.get("stopping_reason", 0))
        self.stopping_reason_message = state.get("stopping_reason_message")
        self.schedule.load_state_dict(state.get("schedule", {}))
