"""``FilterGate``: stop (or flag) a Lightning run whose filters go bad, like ``EarlyStopping``."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from ..gate import Violation, evaluate
from ..gate.decision import GATE_TAG, GateMode, GateStoppingReason
from ..integrations.training import GateSettings
from ..layers import has_sharded_parameters
from ._common import current_layers, has_conv, horizon
from .filterwatch import FilterWatch

__all__ = ["FilterGate", "GateMode", "GateStoppingReason"]


class FilterGate(GateSettings, Callback):
    """Check the gate rules during training; stop the run (``mode="stop"``) or warn.

    Args:
        rules: a :class:`~filterwatch.gate.GateConfig`, a ``[tool.filterwatch.gate]``
            style mapping (kebab-case keys), a TOML path, or ``None`` for ``./pyproject.toml``
            (or the defaults).
        mode: ``"stop"`` sets ``trainer.should_stop``; ``"warn"`` only reports.
        patience: consecutive failing checks before acting.
        every_n_steps, every_n_epochs: when to check (default: every epoch, and within every
            10 % of a run of known length); at most once per optimizer step, never at step 0.
        reference: drift reference (a Reference or file); default: weights at the start of fit.

    Errors inside the gate propagate: a gate is a check the user asked to be enforced.

    Example:
        >>> from filterwatch.callbacks import FilterGate
        >>> gate = FilterGate({"max-sparsity": 0.5}, patience=2)
        >>> gate.stopping_reason
        <GateStoppingReason.NOT_STOPPED: 0>
    """

    def _init_framework(self) -> None:
        self._shared_with: FilterWatch | None = None
        self._state_key: str | None = None

    @property
    def state_key(self) -> str:
        if self._state_key is None:  # Lightning asks at every hook: built once
            self._state_key = self._generate_state_key(mode=self.mode, config=self.config.source,
                                                       **self.schedule.key())
        return self._state_key

    def state_dict(self) -> dict[str, Any]:
        state = self._gate_state()
        if self._shared_with is None:  # a shared Monitor is stored once, by FilterWatch
            state["monitor"] = self.monitor.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._load_gate_state(state_dict)
        self.monitor.load_state_dict(state_dict.get("monitor", {}))

    # -- hooks --------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.schedule.begin(trainer.global_step)
        self.schedule.set_horizon(*horizon(trainer))
        if self.schedule.fresh(trainer.global_step):
            self.schedule.skip(trainer.global_step)  # no check before training has done anything
        layers = current_layers(trainer, pl_module, self.selection)
        if not has_conv(layers):
            rank_zero_warn("FilterGate found no conv layers to check; it stays idle.")
            self._idle = True
            return
        self._sharded = has_sharded_parameters(pl_module)
        self._share(trainer, pl_module, layers)
        if self._shared_with is None and (trainer.is_global_zero or self._sharded):
            self.monitor.ensure_reference(layers)
        nan_now = trainer.strategy.broadcast(self.monitor.nonfinite_at_start, src=0)  # all ranks
        if nan_now:  # NaN/Inf already at fit start: nothing to wait for, check now
            self._run_check(trainer, pl_module)

    def _share(self, trainer: pl.Trainer, pl_module: pl.LightningModule, layers: list[Any]) -> None:
        """Use the Monitor of a FilterWatch on the same trainer where it fits (see
        :meth:`~filterwatch.integrations.training.GateSettings._shareable`)."""
        watch = next((cb for cb in trainer.callbacks if isinstance(cb, FilterWatch)), None)  # type: ignore[attr-defined]
        shared = self._shareable(
            watch, lambda w: (layer.name for layer in current_layers(trainer, pl_module, w.selection)),
            layers)
        if shared is not None:
            self.monitor, self._shared_with = shared.monitor, shared

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.schedule.due(trainer.global_step):
            self._run_check(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.schedule.due_epoch(trainer.current_epoch, trainer.global_step):
            self._run_check(trainer, pl_module)

    def _run_check(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.schedule.record(trainer.global_step, 0.0)
        if self._idle or self.stopping_reason is not GateStoppingReason.NOT_STOPPED:
            return
        violations: list[Violation] = []
        if trainer.is_global_zero or self._sharded:  # sharded: every rank joins the gathers
            watch = self._shared_with
            if watch is not None and not watch.disabled and watch.schedule.due(trainer.global_step):
                # listed before the watch: let it take its snapshot now (logs, extras and
                # alerts once, whatever the order of the callbacks); the gate reads that report
                watch.on_train_batch_end(trainer, pl_module, None, None, 0)
            owner = self if watch is None else watch
            layers = current_layers(trainer, pl_module, owner.selection)
            report = self.monitor.measure(layers, trainer.global_step)
            self.last_verdict = evaluate(report, self.config)
            violations = self.last_verdict.violations
        violations = trainer.strategy.broadcast(violations, src=0)  # rank zero decides ...
        should_stop, reason = self._decide(violations)
        should_stop = trainer.strategy.reduce_boolean_decision(should_stop, all=False)  # ... all agree
        for lg in trainer.loggers if trainer.is_global_zero else []:
            lg.log_metrics({GATE_TAG: float(len(violations))}, step=trainer.global_step)
        if reason and not should_stop:
            rank_zero_warn(f"FilterGate: {reason}")
        if not should_stop:
            return
        if self._stopped(trainer.global_step, reason):
            trainer.should_stop = True
            rank_zero_info(f"FilterGate stopped training at step {trainer.global_step}: {reason}")
        else:
            rank_zero_warn(f"FilterGate (mode='warn'): {reason}")
