"""The arguments of the training callbacks, checked once, framework-free.

FilterWatch and FilterGate exist for Lightning (:mod:`filterwatch.callbacks`) and for the
Hugging Face Trainer (:mod:`filterwatch.integrations.huggingface`); the two frameworks only
differ in their hooks, their loggers and how they stop a run. Each pair takes the same
arguments and builds the same state from them here: the one Schedule, the Monitor, the
layer selection, the gate's decision state, and the arguments again as JSON (the Trainer
re-creates callbacks from them when it resumes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

from ..gate import GateConfig, Verdict, Violation
from ..gate.decision import (
    GateMode,
    GateStoppingReason,
    check_gate_args,
    gate_config,
    stopping_decision,
)
from ..layers import ConvLayer, LayerSelection, check_selection
from ..monitor import AlertRules, Monitor, MonitorViews, Schedule, check_count
from ..reference import Reference

__all__ = ["GateSettings", "WatchSettings"]


W = TypeVar("W", bound="WatchSettings")


def _as_json_path(value: object) -> str | None:
    return str(value) if isinstance(value, str | Path) else None


class WatchSettings(MonitorViews):
    """What a FilterWatch callback is made of (see the Lightning
    :class:`~filterwatch.FilterWatch` for the arguments); ``select`` and ``alert_rules``
    may also be given as dicts (how a checkpoint stores them)."""

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
        self.schedule = Schedule(every_n_steps, every_n_epochs, max_overhead=max_overhead)
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
        self.disabled = False
        self.failure = ""
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._sharded = False
        self.arguments: dict[str, Any] = {
            "every_n_steps": every_n_steps, "every_n_epochs": every_n_epochs,
            "max_overhead": max_overhead, "orthogonality_every": orthogonality_every,
            "select": self.selection.as_dict(), "reference": _as_json_path(reference),
            "reference_device": None if reference_device is None else str(reference_device),
            "alert_rules": None if rules is None else dataclasses.asdict(rules),
            "images_every": images_every, "histograms": histograms, "history_file": history_file,
            "keep_reports": keep_reports, "strict": strict, "spectral": spectral,
            "spectral_every": spectral_every,
        }
        self._init_framework()

    def _init_framework(self) -> None:
        """The framework's own state (a subclass hook; nothing here)."""

    @property
    def overhead_s(self) -> float:
        """Seconds the monitor has spent so far."""
        return self.schedule.overhead_s


class GateSettings:
    """What a FilterGate callback is made of (see the Lightning :class:`~filterwatch.FilterGate`
    for the arguments), and its decision (pure: :meth:`_evaluate_stopping_criteria`)."""

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
        self._idle = False
        self._sharded = False
        self.arguments: dict[str, Any] = {
            "rules": _as_json_path(rules) or (dict(rules) if isinstance(rules, Mapping) else None),
            "mode": mode, "patience": patience, "every_n_steps": every_n_steps,
            "every_n_epochs": every_n_epochs, "reference": _as_json_path(reference),
        }
        self._init_framework()

    def _init_framework(self) -> None:
        """The framework's own state (a subclass hook; nothing here)."""

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
        stops at ``step`` (True, the caller stops its trainer); with ``"warn"`` only the
        reason is kept (False, the caller warns)."""
        self.stopping_reason_message = reason
        self.failures = 0
        if self.mode != "stop":
            return False
        self.stopped_step = step
        self.stopping_reason = GateStoppingReason.RULES_FAILED
        return True

    def _shareable(self, watch: W | None, watched: Callable[[W], Iterable[str]],
                   layers: Sequence[ConvLayer]) -> W | None:
        """``watch`` if the gate can use its Monitor (one reference and one analysis per step
        for both), else None: the gate was given no reference of its own, the watch computes
        on every snapshot the spectral measures the gate's rules need, and it measures every
        layer the gate checks (``watched(watch)`` names its layers)."""
        if watch is None or watch.disabled or self.monitor.user_reference:
            return None
        if self.monitor.spectral and not (watch.monitor.spectral and watch.monitor.spectral_every == 1):
            return None
        names = set(watched(watch))
        return watch if all(layer.name in names for layer in layers) else None

    def _gate_state(self) -> dict[str, Any]:
        return {"failures": self.failures, "stopped_step": self.stopped_step,
                "stopping_reason": self.stopping_reason.value,
                "stopping_reason_message": self.stopping_reason_message,
                "schedule": self.schedule.state_dict()}

    def _load_gate_state(self, state: Mapping[str, Any]) -> None:
        self.failures = int(state.get("failures", 0))
        self.stopped_step = state.get("stopped_step")
        self.stopping_reason = GateStoppingReason(state.get("stopping_reason", 0))
        self.stopping_reason_message = state.get("stopping_reason_message")
        self.schedule.load_state_dict(state.get("schedule", {}))
