"""``FilterWatch``: a Lightning callback that watches every conv layer's filters.

``Trainer(callbacks=[FilterWatch()])`` is enough: it snapshots the kernels on a schedule,
logs degeneracy, drift and relative change against the weights at the start of ``fit`` to
every logger, and with TensorBoard adds a layout, histograms, filter grids, layer x step
heatmaps and an alert panel.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from ..integrations.tensorboard import TensorBoardSink
from ..integrations.training import WatchSettings
from ..layers import has_sharded_parameters
from ..measure import KernelRead
from ..monitor import guarded, layer_changes, log_alerts, log_notes
from ._common import current_layers, has_conv, horizon

__all__ = ["FilterWatch"]

_guarded = guarded(rank_zero_warn)


def _log_dir(trainer: pl.Trainer) -> Path:
    """Where the run logs, as ``trainer.log_dir`` says, but without its broadcast: that is a
    collective, and only rank zero gets here (under DDP the other ranks would hang or die)."""
    if trainer.loggers:
        first = trainer.loggers[0]
        folder = first.log_dir if isinstance(first, TensorBoardLogger | CSVLogger) else first.save_dir
        if folder:
            return Path(folder)
    return Path(trainer.default_root_dir)


class FilterWatch(WatchSettings, Callback):
    """Monitor conv filters during training.

    Args:
        every_n_steps: snapshot every n optimizer steps. With neither this nor
            ``every_n_epochs``, the interval adapts so the monitor takes at most
            ``max_overhead`` of the training time. There is always a snapshot when training
            starts (step 0: the reference itself) and one when it ends.
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
            as it is taken (``None`` to skip).
        keep_reports: how many of the latest reports ``callback.history`` and the checkpoint
            keep (the history file keeps all).
        strict: let monitoring errors propagate instead of disabling the monitor.
        spectral: also log the spectral measures (condition number, ranks, certified
            Lipschitz bound; see ``analyze(spectral=True)``), on every ``spectral_every``-th
            snapshot (and the last): they cost more than the others, and the adaptive
            schedule counts them.

    Example:
        >>> from filterwatch import FilterWatch
        >>> from filterwatch import FilterWatch, LayerSelection
        >>> cb = FilterWatch(every_n_steps=50, select=LayerSelection(include=["backbone.*"]))
        >>> cb.state_key.startswith("FilterWatch{'every_n_steps': 50")
        True
    """

    def _init_framework(self) -> None:
        self._sinks: dict[int, TensorBoardSink] = {}  # id of its TensorBoardLogger -> sink
        self._warned_no_logger = False
        self._resumed_at: int | None = None
        self._state_key: str | None = None

    # -- identity and state -------------------------------------------------------------
    @property
    def state_key(self) -> str:
        # Lightning asks for it at every hook: built once (schedule and selection never change)
        if self._state_key is None:
            self._state_key = self._generate_state_key(**self.schedule.key(), **self.selection.as_dict())
        return self._state_key

    def state_dict(self) -> dict[str, Any]:
        return {"monitor": self.monitor.state_dict(), **self.schedule.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.monitor.load_state_dict(state_dict["monitor"])
        self.schedule.load_state_dict(state_dict)
        self._resumed_at = self.schedule.last_step

    # -- Lightning hooks ------------------------------------------------------------------
    @_guarded
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.schedule.begin(trainer.global_step)
        self.schedule.set_horizon(*horizon(trainer))
        self._sharded = has_sharded_parameters(pl_module)
        layers = current_layers(trainer, pl_module, self.selection)
        if not has_conv(layers):
            rank_zero_warn("FilterWatch found no conv layers to watch (with this selection); "
                           "it stays idle and training continues.")
            self.disabled = True
            return
        # the reference is taken from the first snapshot's own read (or from the checkpoint)
        if trainer.is_global_zero:
            # a TensorBoard logger gets everything of a snapshot, scalars included, from its
            # sink in one event; every other logger gets the scalars through log_metrics
            tensorboards = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
            self._sinks = {id(lg): TensorBoardSink(lg.experiment, scalars=True,
                                                   images_every=self.images_every,
                                                   histograms=self.histograms,
                                                   affords=self.schedule.affords)
                           for lg in tensorboards}
            if self._resumed_at is not None:  # drop what a crashed run logged after the checkpoint
                for sink in self._sinks.values():
                    sink.purge_after(self._resumed_at)
            self._start_history_file(trainer)
        if not trainer.loggers and not self._warned_no_logger:
            self._warned_no_logger = True
            rank_zero_warn("FilterWatch: the trainer has no logger; the history is kept in "
                           "memory (callback.history) and in the history file.")
        if self.schedule.fresh(trainer.global_step):  # not when resuming right after a snapshot
            self._snapshot(trainer, pl_module, trainer.global_step)

    @_guarded
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._sharded and self.schedule.undecided and self.schedule.by_step:
            self.schedule.due(trainer.global_step)  # the adaptive decision: rank zero's counts
            self.schedule.next_step = int(trainer.strategy.broadcast(self.schedule.next_step, src=0))
        if self.schedule.due(trainer.global_step):
            self._snapshot(trainer, pl_module, trainer.global_step)

    @_guarded
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.schedule.due_epoch(trainer.current_epoch, trainer.global_step):
            self._snapshot(trainer, pl_module, trainer.global_step)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._final(trainer, pl_module)
        # rank zero measured and wrote alone: let every rank leave together, so that no rank
        # tears its process group down while another still holds it (gloo aborts then).
        # Outside the guard: a monitor disabled on one rank only must not skip the barrier.
        if trainer.world_size > 1:
            trainer.strategy.barrier("filterwatch_train_end")

    @_guarded
    def _final(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.schedule.fresh(trainer.global_step):
            self._snapshot(trainer, pl_module, trainer.global_step, final=True)
        else:  # the last scheduled snapshot was at this step: it is the last one
            for sink in self._sinks.values():
                sink.finish(self.history)
        path = self.monitor.history_path
        rank_zero_info(f"FilterWatch: {len(self.history)} snapshots, {len(self.alerts)} alerts"
                       + (f"; history in {path}" if path is not None else ""))

    def _start_history_file(self, trainer: pl.Trainer) -> None:
        if not self.history_file:
            return
        folder = _log_dir(trainer)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.monitor.start_history_file(folder / self.history_file, self._resumed_at)
        except OSError as exc:  # unwritable or full disk: the run itself is not at stake
            self._history_failed(str(exc))

    def _history_failed(self, exc: str) -> None:
        self.monitor.history_path = None
        rank_zero_warn(f"FilterWatch could not write its history file: {exc}; the history stays "
                       "available as callback.history.")

    # -- internals ------------------------------------------------------------------------
    def _snapshot(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int,
                  final: bool = False) -> None:
        start = time.perf_counter()
        if trainer.is_global_zero or self._sharded:  # sharded: every rank joins the gathers
            layers = current_layers(trainer, pl_module, self.selection)
            self._warn_on_surgery(layers)
            collectors = [sink.collector(final) for sink in self._sinks.values()]

            def on_kernel(read: KernelRead) -> None:
                for collect in collectors:
                    collect(read)

            report = self.monitor.measure(layers, step, final=final,
                                             source=type(pl_module).__name__,
                                             on_kernel=on_kernel if collectors else None)
            new_alerts = self.monitor.take_alerts()  # a gate's on the shared Monitor included
        if trainer.is_global_zero:
            if self.monitor.history_error:
                self._history_failed(self.monitor.history_error)
                self.monitor.history_error = ""
            metrics = self.monitor.scalars(report, overhead_s=time.perf_counter() - start)
            for lg in trainer.loggers:
                if id(lg) not in self._sinks:
                    lg.log_metrics(metrics, step=step)
            notes = self.schedule.take_notes()
            for key, sink in list(self._sinks.items()):
                try:
                    sink.write(report, self.history, new_alerts, self.reference,
                               scalars=metrics, final=final, notes=notes)
                except OSError as exc:  # unwritable / full log directory
                    del self._sinks[key]  # its logger gets the scalars through log_metrics again
                    rank_zero_warn(f"FilterWatch stopped writing TensorBoard extras: {exc}; "
                                   "scalars still go to the loggers.")
            log_alerts(new_alerts)
            log_notes(notes)
        self.schedule.record(step, time.perf_counter() - start)
        if self._sharded:  # every rank must snapshot at the same steps: rank zero decides
            self.schedule.next_step = int(trainer.strategy.broadcast(self.schedule.next_step, src=0))

    def _warn_on_surgery(self, layers: Sequence[Any]) -> None:
        """Warn (once per change) when layers appear, disappear or change shape mid-run."""
        self._shapes, message = layer_changes(self._shapes, layers, "FilterWatch")
        if message:
            rank_zero_warn(message)
