"""Lightning: ``FilterWatch`` and ``FilterGate``, thin adapters of the framework-free
:class:`~filterwatch.monitor.WatchCore` and :class:`~filterwatch.monitor.GateCore`.

``Trainer(callbacks=[FilterWatch()])`` is enough: snapshots on a schedule, degeneracy, drift
and relative change against the weights at the start of ``fit`` to every logger, and with
TensorBoard a layout, histograms, filter grids, layer x step heatmaps and an alert panel.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from ..gate.decision import GateMode, GateStoppingReason
from ..integrations.tensorboard import TensorBoardSink
from ..layers import ConvLayer, LayerSelection, discover_layers, has_sharded_parameters
from ..monitor import GateCore, Host, ScalarLogger, Sink, WatchCore

__all__ = ["FilterGate", "FilterWatch", "GateMode", "GateStoppingReason"]


class _Event(Host):
    """One Lightning hook: rank zero logs, the strategy broadcasts."""

    def __init__(self, event: str, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().__init__(event, type(pl_module).__name__)
        self.trainer, self.pl_module = trainer, pl_module

    @property
    def is_zero(self) -> bool:
        return bool(self.trainer.is_global_zero)

    def layers(self, selection: LayerSelection) -> list[ConvLayer]:
        """Sharded models are read through the strategy's wrapper (``trainer.model``): an FSDP1
        root wraps the LightningModule from outside, and its units can only be summoned
        correctly when the root is known."""
        wrapped = getattr(self.trainer, "model", None)
        if (isinstance(wrapped, nn.Module) and wrapped is not self.pl_module
                and has_sharded_parameters(self.pl_module)):
            return discover_layers(wrapped, select=selection)
        return discover_layers(self.pl_module, select=selection)

    def broadcast(self, value: Any) -> Any:
        return self.trainer.strategy.broadcast(value, src=0)

    def warn(self, message: str) -> None:
        rank_zero_warn(message)

    def info(self, message: str) -> None:
        rank_zero_info(message)

    def log_scalars(self, scalars: dict[str, float], step: int) -> None:
        for lg in self.trainer.loggers:
            lg.log_metrics(scalars, step=step)


def _horizon(trainer: pl.Trainer) -> tuple[float | None, float | None]:
    """``(optimizer steps of the fit, per epoch)`` where Lightning knows them."""
    try:
        total = float(trainer.estimated_stepping_batches)
    except Exception:  # no length to estimate from: the floor then has no horizon
        total = None
    per_epoch = getattr(trainer, "num_training_batches", None)
    accumulate = max(int(getattr(trainer, "accumulate_grad_batches", 1) or 1), 1)
    return total, None if not isinstance(per_epoch, int | float) else per_epoch / accumulate


def _log_dir(trainer: pl.Trainer) -> Path:
    """``trainer.log_dir`` without its broadcast (a collective; only rank zero gets here)."""
    if trainer.loggers:
        first = trainer.loggers[0]
        folder = first.log_dir if isinstance(first, TensorBoardLogger | CSVLogger) else first.save_dir
        if folder:
            return Path(folder)
    return Path(trainer.default_root_dir)


class FilterWatch(WatchCore, Callback):
    """Monitor conv filters during training.

    Args:
        every_n_steps: snapshot every n optimizer steps. With neither this nor
            ``every_n_epochs``, the interval adapts so the monitor takes at most
            ``max_overhead`` of the training time, and snapshots stay within 10 % of a run of
            known length. There is always a snapshot when training starts (step 0: the
            reference itself) and one when it ends.
        every_n_epochs: snapshot at the end of every n-th epoch.
        max_overhead: time budget of the adaptive schedule, as a share of training time.
        orthogonality_every: compute orthogonality (the costly measure) on every k-th
            snapshot only; the final snapshot always has it.
        select: which layers (a :class:`filterwatch.LayerSelection`, as in ``analyze``).
        reference: compare against this :class:`~filterwatch.Reference` or reference file
            instead of the weights at the start of fit.
        reference_device: where the fit-start weights are kept (default: where the weights
            live; ``"cpu"`` to spare GPU memory).
        alert_rules: thresholds of the change alerts.
        images_every: write filter grids and heatmaps on every k-th snapshot (and the last).
        histograms: write per-layer histograms to TensorBoard.
        history_file: name of the JSON Lines history next to the logs: every snapshot, appended
            as it is taken (``None`` to skip; a file an earlier run left there is kept).
        keep_reports: how many of the latest reports ``callback.history`` and the checkpoint
            keep (the history file keeps all).
        strict: let monitoring errors propagate instead of turning the monitor off.
        spectral: also the spectral measures (condition number, ranks, certified Lipschitz
            bound; see ``analyze(spectral=True)``), on every ``spectral_every``-th snapshot.

    Example:
        >>> from filterwatch import FilterWatch, LayerSelection
        >>> cb = FilterWatch(every_n_steps=50, select=LayerSelection(include=["backbone.*"]))
        >>> cb.state_key.startswith("FilterWatch{'every_n_steps': 50")
        True
    """

    _state_key: str | None = None

    @property
    def state_key(self) -> str:  # Lightning asks at every hook: built once
        if self._state_key is None:
            self._state_key = self._generate_state_key(**self.schedule.key(), **self.selection.as_dict())
        return self._state_key

    def state_dict(self) -> dict[str, Any]:
        return {"monitor": self.monitor.state_dict(), **self.run_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.monitor.load_state_dict(state_dict["monitor"])
        self.load_run_state(state_dict)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.loggers:
            rank_zero_warn("FilterWatch: the trainer has no logger; the history is kept in "
                           "memory (callback.history) and in the history file.")
        self.start(_Event("on_train_start", trainer, pl_module), trainer.global_step,
                   horizon=_horizon(trainer), sharded=has_sharded_parameters(pl_module),
                   sinks=lambda: _sinks(self, trainer),
                   log_dir=_log_dir(trainer) if trainer.is_global_zero else None)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self.step_end(_Event("on_train_batch_end", trainer, pl_module), trainer.global_step)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epoch_end(_Event("on_train_epoch_end", trainer, pl_module), trainer.current_epoch,
                       trainer.global_step)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.end(_Event("on_train_end", trainer, pl_module), trainer.global_step)
        # rank zero measured alone: leave together (also when the watch is off on one rank)
        if trainer.world_size > 1:
            trainer.strategy.barrier("filterwatch_train_end")


def _log_metrics(logger: Any, scalars: dict[str, float], step: int) -> None:
    logger.log_metrics(scalars, step=step)


def _sinks(watch: FilterWatch, trainer: pl.Trainer) -> list[Sink]:
    """A TensorBoard logger gets everything of a snapshot, scalars included, from its sink in
    one event (and the scalars again through ``log_metrics`` if its disk fails); every other
    logger gets the scalars."""
    sinks: list[Sink] = []
    for lg in trainer.loggers:
        scalars = ScalarLogger(functools.partial(_log_metrics, lg))
        sinks.append(TensorBoardSink(lg.experiment, images_every=watch.images_every,
                                     histograms=watch.histograms, affords=watch.schedule.affords,
                                     fallback=scalars) if isinstance(lg, TensorBoardLogger) else scalars)
    return sinks


class FilterGate(GateCore, Callback):
    """Check the gate rules during training; stop the run (``mode="stop"``) or warn.

    Args:
        rules: a :class:`~filterwatch.gate.GateConfig`, a ``[tool.filterwatch.gate]``
            style mapping (kebab-case keys), a TOML path, or ``None`` for ``./pyproject.toml``
            (or the defaults).
        mode: ``"stop"`` sets ``trainer.should_stop``; ``"warn"`` only reports.
        patience: consecutive failing checks before acting (NaN/Inf stop at once).
        every_n_steps, every_n_epochs: when to check (default: every epoch, and within every
            10 % of a run of known length); at most once per optimizer step, never at step 0.
        reference: drift reference (a Reference or file); default: weights at the start of fit.

    With a :class:`FilterWatch` on the same trainer that measures every layer the gate checks,
    the two share one Monitor: one reference, and the gate's checks are that watch's snapshots.
    Errors inside the gate propagate: a gate is a check the user asked to be enforced.

    Example:
        >>> from filterwatch.callbacks import FilterGate
        >>> gate = FilterGate({"max-sparsity": 0.5}, patience=2)
        >>> gate.stopping_reason
        <GateStoppingReason.NOT_STOPPED: 0>
    """

    _state_key: str | None = None

    @property
    def state_key(self) -> str:  # Lightning asks at every hook: built once
        if self._state_key is None:
            self._state_key = self._generate_state_key(mode=self.mode, config=self.config.source,
                                                       **self.schedule.key())
        return self._state_key

    def state_dict(self) -> dict[str, Any]:
        state = self.gate_state()
        if self.owns_monitor:
            state["monitor"] = self.monitor.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.load_gate_state(state_dict)
        self.monitor.load_state_dict(state_dict.get("monitor", {}))

    def _stop_if(self, trainer: pl.Trainer, stop: bool) -> None:
        if stop:
            trainer.should_stop = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop_if(trainer, self.start(
            _Event("on_train_start", trainer, pl_module), trainer.global_step,
            horizon=_horizon(trainer), sharded=has_sharded_parameters(pl_module),
            peers=trainer.callbacks))  # type: ignore[attr-defined]

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self._stop_if(trainer, self.step_end(_Event("on_train_batch_end", trainer, pl_module),
                                             trainer.global_step))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop_if(trainer, self.epoch_end(_Event("on_train_epoch_end", trainer, pl_module),
                                              trainer.current_epoch, trainer.global_step))
