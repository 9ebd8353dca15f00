"""``FilterWatchCallback``: FilterWatch for the Hugging Face ``Trainer``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers.integrations.integration_utils import TensorBoardCallback
from transformers.trainer_callback import ExportableState, TrainerCallback

from ...errors import InputError
from ...layers import ConvLayer, discover_layers, has_sharded_parameters
from ...monitor import guarded, layer_changes, log_alerts, log_notes
from ..tensorboard import TensorBoardSink
from ..training import WatchSettings
from . import _common as c

__all__ = ["FilterWatchCallback"]

_guarded = guarded(c.warn)


class FilterWatchCallback(c.Ours, WatchSettings, TrainerCallback, ExportableState):
    """Monitor conv filters while a ``transformers.Trainer`` trains.

    ``Trainer(..., callbacks=[FilterWatchCallback()])`` is enough. It takes snapshots on the
    one schedule of filterwatch (every n optimizer steps, every n epochs, or adaptively within
    ``max_overhead`` of the training time; always at the start and at the end) and measures
    degeneracy, drift and relative change against the weights at the start of training.

    - Scalars (``filterwatch/<layer>/<measure>``) go through the Trainer's log path: into
      ``state.log_history`` and to every reporting callback's ``on_log`` (TensorBoard, W&B,
      MLflow...), but not to the console printers.
    - With ``report_to=["tensorboard"]``, the TensorBoard extras (histograms, filter grids,
      heatmaps, the custom-scalars layout, alerts) and the scalars are written to the
      Trainer's own TensorBoard run directory; the JSON Lines history goes next to them
      (else to ``output_dir``).
    - Under DDP/Accelerate only the main process measures and logs; with sharded (FSDP)
      parameters every process takes part in the gathers and the main process logs.
    - Resume: the state rides in each checkpoint (``stateful_callbacks`` in the trainer state,
      the reference tensors beside it in ``filterwatch_watch.safetensors``); a resumed run
      keeps its fit-start reference, its alerts and its history, without duplicates.

    Arguments as for the Lightning :class:`~filterwatch.FilterWatch` (see
    :class:`~filterwatch.integrations.training.WatchSettings`); ``select`` and ``alert_rules``
    may also be given as dicts (how they are stored in a checkpoint).

    Example:
        >>> from filterwatch.integrations.huggingface import FilterWatchCallback
        >>> cb = FilterWatchCallback(every_n_steps=50)
        >>> cb.state()["args"]["every_n_steps"]
        50
    """

    def _init_framework(self) -> None:
        self._handler: Any = None
        self._writer: Any = None
        self._sink: TensorBoardSink | None = None
        self._where: tuple[Any, Any] | None = None  # (args, state) of the run, for state()
        self._resume: dict[str, Any] | None = None  # set by the Trainer when it re-creates us
        self.log_dir: Path | None = None  # where the extras and the history file went

    # -- the Trainer's stateful-callback protocol ---------------------------------------
    def state(self) -> dict[str, Any]:
        """Called by the Trainer while it saves a checkpoint (main process): the arguments and
        the schedule as JSON, the Monitor (reference tensors, history, alerts) in a
        safetensors file inside the checkpoint folder."""
        resume: dict[str, Any] = {"schedule": self.schedule.state_dict()}
        path = None if self.disabled else c.save_state_file(self._where, self.monitor, "watch")
        if path is not None:
            resume["file"] = path
        return {"args": self.arguments, "attributes": {"_resume": resume}}

    def _restore(self, state: Any) -> int | None:
        """After a resume: the saved state back, and the step of its last snapshot."""
        resume = c.saved_attributes(state, self)
        if not resume:
            return None
        self.schedule.load_state_dict(resume.get("schedule", {}))
        c.restore_state_file(self.monitor, resume, "FilterWatchCallback")
        return self.schedule.last_step

    # -- hooks ----------------------------------------------------------------------------
    @_guarded
    def on_train_begin(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                       **kwargs: Any) -> None:
        self._handler = c.callback_handler()
        self._where = (args, state)
        if model is None:
            raise InputError("`model` expected the Trainer's model in on_train_begin, got None")
        self._sharded = has_sharded_parameters(model)
        if not any(not layer.unavailable for layer in self._layers(model)):
            c.warn("FilterWatchCallback found no conv layers to watch (with this selection); "
                   "it stays idle and training continues.")
            self.disabled = True
            return
        resumed_at = self._restore(state) if state.global_step > 0 else None
        self.schedule.begin(state.global_step)
        self.schedule.set_horizon(*c.horizon(state))
        if c.is_zero(state):
            self._open_outputs(args, resumed_at)
        if self.schedule.fresh(state.global_step):
            self._snapshot(args, state, control, model, kwargs)

    @_guarded
    def on_step_end(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                    **kwargs: Any) -> None:
        if self._sharded and self.schedule.undecided and self.schedule.by_step:
            self.schedule.due(state.global_step)  # the adaptive decision: the main process's
            self.schedule.next_step = int(c.broadcast(self.schedule.next_step))
        if self.schedule.due(state.global_step):
            self._snapshot(args, state, control, model, kwargs)

    @_guarded
    def on_epoch_end(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                     **kwargs: Any) -> None:
        epoch = max(0, round(state.epoch or 0.0) - 1)  # state.epoch counts finished epochs
        if self.schedule.due_epoch(epoch, state.global_step):
            self._snapshot(args, state, control, model, kwargs)

    def on_train_end(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                     **kwargs: Any) -> None:
        try:
            self._final(args, state, control, model, kwargs)
        finally:
            if self._writer is not None:
                self._writer.close()
                self._writer = self._sink = None
            # the main process measured alone: leave together (outside the guard, so that a
            # monitor disabled on one process only still meets the others)
            if c.distributed() and not self._sharded:
                torch.distributed.barrier()

    @_guarded
    def _final(self, args: Any, state: Any, control: Any, model: nn.Module | None,
               kwargs: dict[str, Any]) -> None:
        if self.schedule.fresh(state.global_step):
            self._snapshot(args, state, control, model, kwargs, final=True)
        elif self._sink is not None:  # the last scheduled snapshot was at this step
            self._sink.finish(self.history)

    # -- internals ------------------------------------------------------------------------
    def _layers(self, model: nn.Module) -> list[ConvLayer]:
        return discover_layers(model, select=self.selection)

    def _open_outputs(self, args: Any, resumed_at: int | None) -> None:
        """TensorBoard extras into the Trainer's TensorBoard run directory (when it reports
        there), the history file next to them."""
        callbacks = self._handler.callbacks if self._handler is not None else []
        if self._handler is None:
            c.warn("FilterWatchCallback could not reach the Trainer's other callbacks; its "
                   "scalars go to state.log_history and its history file only.")
        tb = next((cb for cb in callbacks if isinstance(cb, TensorBoardCallback)), None)
        tb_dir = _tensorboard_dir(tb)
        folder = self.log_dir = Path(args.output_dir) if tb_dir is None else tb_dir
        if tb_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(folder), filename_suffix=".filterwatch")
            self._sink = TensorBoardSink(self._writer, scalars=True, images_every=self.images_every,
                                         histograms=self.histograms, affords=self.schedule.affords)
            if resumed_at is not None:  # drop what a crashed run wrote after the checkpoint
                self._sink.purge_after(resumed_at)
        if self.history_file:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                self.monitor.start_history_file(folder / self.history_file, resumed_at)
            except OSError as exc:
                c.warn(f"FilterWatchCallback could not write its history file: {exc}")

    def _snapshot(self, args: Any, state: Any, control: Any, model: nn.Module | None,
                  kwargs: dict[str, Any], final: bool = False) -> None:
        assert model is not None
        start = time.perf_counter()
        step = int(state.global_step)
        zero = c.is_zero(state)
        if zero or self._sharded:  # sharded: every process joins the gathers
            layers = self._layers(model)
            self._shapes, message = layer_changes(self._shapes, layers, "FilterWatchCallback")
            if message and zero:
                c.warn(message)
            collect = self._sink.collector(final) if self._sink is not None else None
            report = self.monitor.measure(layers, step, final=final,
                                             source=type(model).__name__, on_kernel=collect)
            new_alerts = self.monitor.take_alerts()  # a gate's on the shared Monitor included
        if zero:
            if self.monitor.history_error:
                c.warn(f"FilterWatchCallback stopped its history file: {self.monitor.history_error}")
                self.monitor.history_error = ""
            metrics = self.monitor.scalars(report, overhead_s=time.perf_counter() - start)
            # TensorBoard gets the scalars from the sink, with the extras, in one event
            skip = (TensorBoardCallback,) if self._sink else ()
            c.forward_logs(self._handler, args, state, control, metrics, skip, model=model, **kwargs)
            notes = self.schedule.take_notes()
            if self._sink is not None:
                try:
                    self._sink.write(report, self.history, new_alerts, self.reference,
                                     scalars=metrics, final=final, notes=notes)
                except OSError as exc:
                    self._sink = None
                    c.warn(f"FilterWatchCallback stopped writing TensorBoard extras: {exc}")
            log_alerts(new_alerts)
            log_notes(notes)
        self.schedule.record(step, time.perf_counter() - start)
        if self._sharded:  # every process must snapshot at the same steps: the main one decides
            self.schedule.next_step = int(c.broadcast(self.schedule.next_step))


def _tensorboard_dir(tb: TensorBoardCallback | None) -> Path | None:
    """The run directory of the Trainer's TensorBoard callback (set up by its own
    ``on_train_begin``, which runs before any user callback's): its writer's ``log_dir``,
    else its ``logging_dir`` (transformers 5 keeps both; 4.x only the writer)."""
    if tb is None:
        return None
    folder = getattr(getattr(tb, "tb_writer", None), "log_dir", None) or getattr(tb, "logging_dir", None)
    return Path(folder) if folder else None
