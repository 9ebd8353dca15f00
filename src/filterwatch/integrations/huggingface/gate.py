"""``FilterGateCallback``: FilterGate for the Hugging Face ``Trainer``."""

from __future__ import annotations

import logging
from typing import Any

from torch import nn
from transformers.trainer_callback import ExportableState, TrainerCallback

from ...errors import InputError
from ...gate import Violation, evaluate
from ...gate.decision import GATE_TAG, GateStoppingReason
from ...layers import ConvLayer, discover_layers, has_sharded_parameters
from ..training import GateSettings
from . import _common as c
from .watch import FilterWatchCallback

__all__ = ["FilterGateCallback"]

_LOG = logging.getLogger("filterwatch.gate")


class FilterGateCallback(c.Ours, GateSettings, TrainerCallback, ExportableState):
    """Check the gate rules while a ``transformers.Trainer`` trains; stop the run
    (``control.should_training_stop``) or warn.

    Arguments, decision and state as for the Lightning :class:`~filterwatch.FilterGate`:
    ``patience`` consecutive failing checks stop the run (NaN/Inf at once), the reason is kept
    in ``stopping_reason_message``. With a :class:`FilterWatchCallback` on the same Trainer
    that measures every layer the gate checks, the two share one Monitor (one reference, one
    analysis per step). Under DDP the main process decides and every process stops at the
    same step. Errors inside the gate propagate: a gate is a check the user asked for.

    Example:
        >>> from filterwatch.integrations.huggingface import FilterGateCallback
        >>> gate = FilterGateCallback({"max-sparsity": 0.5}, every_n_steps=10)
        >>> gate.stopping_reason.name
        'NOT_STOPPED'
    """

    def _init_framework(self) -> None:
        self._handler: Any = None
        self._shared_with: FilterWatchCallback | None = None
        self._where: tuple[Any, Any] | None = None
        self._resume: dict[str, Any] | None = None

    # -- the Trainer's stateful-callback protocol ---------------------------------------
    def state(self) -> dict[str, Any]:
        resume = self._gate_state()
        # a shared Monitor is stored once, by the watch
        path = None if self._shared_with is not None else c.save_state_file(self._where, self.monitor, "gate")
        if path is not None:
            resume["file"] = path
        return {"args": self.arguments, "attributes": {"_resume": resume}}

    def _restore(self, state: Any) -> None:
        resume = c.saved_attributes(state, self)
        if not resume:
            return
        self._load_gate_state(resume)
        c.restore_state_file(self.monitor, resume, "FilterGateCallback")

    # -- hooks ----------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                       **kwargs: Any) -> None:
        self._handler = c.callback_handler()
        self._where = (args, state)
        if model is None:
            raise InputError("`model` expected the Trainer's model in on_train_begin, got None")
        if state.global_step > 0:
            self._restore(state)
        self.schedule.begin(state.global_step)
        self.schedule.set_horizon(*c.horizon(state))
        if self.schedule.fresh(state.global_step):
            self.schedule.skip(state.global_step)  # no check before training has done anything
        layers = self._layers(model, self.selection)
        if not any(not layer.unavailable for layer in layers):
            c.warn("FilterGateCallback found no conv layers to check; it stays idle.")
            self._idle = True
            return
        self._sharded = has_sharded_parameters(model)
        self._share(model, layers)
        if self._shared_with is None and (c.is_zero(state) or self._sharded):
            self.monitor.ensure_reference(layers)
        if c.broadcast(self.monitor.nonfinite_at_start):  # NaN/Inf at the start: check now
            self._check(args, state, control, model, kwargs)

    def on_step_end(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                    **kwargs: Any) -> None:
        if self.schedule.due(state.global_step):
            self._check(args, state, control, model, kwargs)

    def on_epoch_end(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                     **kwargs: Any) -> None:
        epoch = max(0, round(state.epoch or 0.0) - 1)
        if self.schedule.due_epoch(epoch, state.global_step):
            self._check(args, state, control, model, kwargs)

    # -- internals ------------------------------------------------------------------------
    @staticmethod
    def _layers(model: nn.Module, select: Any) -> list[ConvLayer]:
        return discover_layers(model, select=select)

    def _share(self, model: nn.Module, layers: list[ConvLayer]) -> None:
        """Use the Monitor of a FilterWatchCallback on the same Trainer where it fits (see
        :meth:`~filterwatch.integrations.training.GateSettings._shareable`)."""
        callbacks = self._handler.callbacks if self._handler is not None else []
        watch = next((cb for cb in callbacks if isinstance(cb, FilterWatchCallback)), None)
        shared = self._shareable(
            watch, lambda w: (layer.name for layer in self._layers(model, w.selection)), layers)
        if shared is not None:
            self.monitor, self._shared_with = shared.monitor, shared

    def _check(self, args: Any, state: Any, control: Any, model: nn.Module | None,
               kwargs: dict[str, Any]) -> None:
        step = int(state.global_step)
        self.schedule.record(step, 0.0)
        if self._idle or self.stopping_reason is not GateStoppingReason.NOT_STOPPED:
            return
        assert model is not None
        violations: list[Violation] = []
        if c.is_zero(state) or self._sharded:  # sharded: every process joins the gathers
            watch = self._shared_with
            if watch is not None and not watch.disabled and watch.schedule.due(step):
                # listed before the watch: let it take its snapshot now (logs, extras and alerts
                # once, whatever the order of the callbacks); the gate reads the same report
                watch.on_step_end(args, state, control, model=model, **kwargs)
            owner = watch.selection if watch is not None else self.selection
            report = self.monitor.measure(self._layers(model, owner), step)
            self.last_verdict = evaluate(report, self.config)
            violations = self.last_verdict.violations
        violations = c.broadcast(violations)  # the main process decides, for every process
        should_stop, reason = self._decide(violations)
        if c.is_zero(state):
            c.forward_logs(self._handler, args, state, control, {GATE_TAG: float(len(violations))},
                           (), model=model, **kwargs)
        if reason and not should_stop and c.is_zero(state):
            c.warn(f"FilterGateCallback: {reason}")
        if not should_stop:
            return
        if self._stopped(step, reason):
            control.should_training_stop = True
            if c.is_zero(state):  # a decision, not a malfunction: one line on its logger
                _LOG.warning("FilterGateCallback stopped training at step %d: %s", step, reason)
        elif c.is_zero(state):
            c.warn(f"FilterGateCallback (mode='warn'): {reason}")
