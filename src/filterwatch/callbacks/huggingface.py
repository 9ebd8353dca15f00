"""The Hugging Face ``Trainer``: ``FilterWatchCallback`` and ``FilterGateCallback``, thin
adapters of :class:`~filterwatch.monitor.WatchCore` and :class:`~filterwatch.monitor.GateCore`
(needs ``transformers``: ``pip install 'filterwatch[huggingface]'``).

    from filterwatch.callbacks.huggingface import FilterGateCallback, FilterWatchCallback

    trainer = Trainer(model, args, train_dataset=...,
                      callbacks=[FilterWatchCallback(), FilterGateCallback({"max-sparsity": 0.5})])

Scalars go through the Trainer's log path (``state.log_history`` and every reporting
callback's ``on_log``: TensorBoard, W&B, MLflow..., not the console printers); with
``report_to=["tensorboard"]`` the TensorBoard extras go to the Trainer's own run directory,
the JSON Lines history next to them (else to ``output_dir``). Under DDP/Accelerate the main
process measures and logs; with sharded (FSDP) parameters every process joins the gathers.
Their state rides in each checkpoint, so a resumed run keeps its reference and history.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from types import FrameType
from typing import Any

import torch.distributed as dist
from torch import nn

from ..errors import InputError

try:
    from transformers.integrations.integration_utils import TensorBoardCallback
    from transformers.trainer_callback import (
        CallbackHandler,
        ExportableState,
        PrinterCallback,
        ProgressCallback,
        TrainerCallback,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise InputError("filterwatch's Hugging Face callbacks expected the `transformers` package, "
                     "which is not installed; hint: pip install 'filterwatch[huggingface]'") from exc

from ..gate.decision import GateStoppingReason
from ..integrations.tensorboard import TensorBoardSink
from ..layers import ConvLayer, LayerSelection, discover_layers, has_sharded_parameters
from ..monitor import GateCore, Host, ScalarLogger, Sink, WatchCore
from . import _hf_state as saved

__all__ = ["FilterGateCallback", "FilterWatchCallback", "GateStoppingReason"]

_CONSOLE = (PrinterCallback, ProgressCallback)  # a snapshot's hundreds of scalars are not for them


def _handler() -> CallbackHandler | None:
    """The ``CallbackHandler`` calling the current hook (the Trainer hands a callback neither
    itself nor its other callbacks; every event comes through ``call_event`` a few frames up)."""
    frame: FrameType | None = sys._getframe(1)
    for _ in range(12):
        if frame is None:
            return None
        if isinstance(owner := frame.f_locals.get("self"), CallbackHandler):
            return owner
        frame = frame.f_back
    return None


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _Event(Host):
    """One Trainer event: the main process logs, ``torch.distributed`` broadcasts."""

    def __init__(self, event: str, handler: CallbackHandler | None, args: Any, state: Any,
                 control: Any, model: nn.Module | None, kwargs: dict[str, Any]) -> None:
        super().__init__(event, "" if model is None else type(model).__name__)
        self.handler, self.args, self.state, self.control = handler, args, state, control
        self.model, self.kwargs = model, kwargs
        self.skip: tuple[type, ...] = ()  # callbacks that get the scalars another way

    @property
    def is_zero(self) -> bool:
        return bool(self.state.is_world_process_zero)

    def layers(self, selection: LayerSelection) -> list[ConvLayer]:
        if self.model is None:
            raise InputError(f"`model` expected the Trainer's model in {self.event}, got None")
        return discover_layers(self.model, select=selection)

    def broadcast(self, value: Any) -> Any:
        if not _distributed():
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def warn(self, message: str) -> None:
        warnings.warn(message, UserWarning, stacklevel=4)

    def log_scalars(self, scalars: dict[str, float], step: int) -> None:
        """As ``Trainer.log`` does, to every callback but the console printers and our own."""
        self.state.log_history.append({**scalars, "step": self.state.global_step})
        for cb in self.handler.callbacks if self.handler is not None else []:
            if not isinstance(cb, (*_CONSOLE, WatchCore, GateCore, *self.skip)):
                cb.on_log(self.args, self.state, self.control, logs=dict(scalars), model=self.model,
                          **self.kwargs)

    @property
    def horizon(self) -> tuple[float | None, float | None]:
        """``(optimizer steps of the run, per epoch)``, set before ``on_train_begin``."""
        total = getattr(self.state, "max_steps", 0) or None
        epochs = getattr(self.state, "num_train_epochs", 0) or None
        return total, None if total is None or epochs is None else total / epochs


class _Adapter:
    """What both callbacks do with an event: keep the handler and ``(args, state)``, and
    their state in checkpoints."""

    _handler: CallbackHandler | None = None
    _where: tuple[Any, Any] | None = None  # (args, state) of the run, for the checkpoint
    _resume: dict[str, Any] | None = None  # set by the Trainer when it re-creates us
    _now: _Event | None = None

    def _event(self, name: str, args: Any, state: Any, control: Any, model: nn.Module | None,
               kwargs: dict[str, Any]) -> _Event:
        if name == "on_train_begin":
            self._handler, self._where = _handler(), (args, state)
        self._now = _Event(name, self._handler, args, state, control, model, kwargs)
        return self._now

    def _saved(self, state: Any, monitor: Any, who: str) -> dict[str, Any] | None:
        """After a resume: the attributes this callback stored, the Monitor loaded back."""
        resume = saved.saved_attributes(state, self) if state.global_step > 0 else None
        problem = saved.restore_state_file(monitor, resume) if resume else ""
        if problem:
            warnings.warn(f"{who}: {problem}", UserWarning, stacklevel=3)
        return resume

    def _exported(self, arguments: dict[str, Any], resume: dict[str, Any], monitor: Any,
                  name: str) -> dict[str, Any]:
        path = None if monitor is None else saved.save_state_file(self._where, monitor, name)
        if path is not None:
            resume["file"] = path
        return {"args": arguments, "attributes": {"_resume": resume}}


class FilterWatchCallback(_Adapter, WatchCore, TrainerCallback, ExportableState):
    """Monitor conv filters while a ``transformers.Trainer`` trains (arguments as for the
    Lightning :class:`~filterwatch.FilterWatch`).

    Example:
        >>> from filterwatch.callbacks.huggingface import FilterWatchCallback
        >>> cb = FilterWatchCallback(every_n_steps=50)
        >>> cb.state()["args"]["every_n_steps"]
        50
    """

    _writer: Any = None
    _to_tensorboard = False
    log_dir: Path | None = None  # where the extras and the history file went

    def state(self) -> dict[str, Any]:
        return self._exported(self.arguments, {"schedule": self.run_state()},
                              None if self.disabled else self.monitor, "watch")

    def on_train_begin(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                       **kwargs: Any) -> None:
        host = self._event("on_train_begin", args, state, control, model, kwargs)
        resume = self._saved(state, self.monitor, self.name)
        if resume:
            self.load_run_state(resume.get("schedule", {}))
        if host.is_zero:
            self.log_dir, self._to_tensorboard = self._run_dir(args)
            if self._handler is None:
                host.warn(f"{self.name} could not reach the Trainer's other callbacks; its "
                          "scalars go to state.log_history and its history file only.")
        self.start(host, state.global_step, horizon=host.horizon,
                   sharded=model is not None and has_sharded_parameters(model),
                   sinks=self._sinks, log_dir=self.log_dir)

    def on_step_end(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                    **kwargs: Any) -> None:
        self.step_end(self._event("on_step_end", args, state, control, model, kwargs),
                      int(state.global_step))

    def on_epoch_end(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                     **kwargs: Any) -> None:
        epoch = max(0, round(state.epoch or 0.0) - 1)  # state.epoch counts finished epochs
        self.epoch_end(self._event("on_epoch_end", args, state, control, model, kwargs), epoch,
                       int(state.global_step))

    def on_train_end(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                     **kwargs: Any) -> None:
        try:
            self.end(self._event("on_train_end", args, state, control, model, kwargs),
                     int(state.global_step))
        finally:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            if _distributed() and not self.sharded:  # the main process measured alone
                dist.barrier()

    def _tensorboard(self) -> TensorBoardCallback | None:
        callbacks = self._handler.callbacks if self._handler is not None else []
        return next((cb for cb in callbacks if isinstance(cb, TensorBoardCallback)), None)

    def _run_dir(self, args: Any) -> tuple[Path, bool]:
        """The Trainer's TensorBoard run directory when it reports there (its callback's
        ``on_train_begin`` runs before ours; transformers 5 keeps ``logging_dir``, 4.x only
        the writer's ``log_dir``), else ``output_dir``: the history file goes there."""
        tb = self._tensorboard()
        folder = getattr(getattr(tb, "tb_writer", None), "log_dir", None) or getattr(tb, "logging_dir", None)
        return (Path(folder), True) if folder else (Path(args.output_dir), False)

    def _sinks(self) -> list[Sink]:
        def log(scalars: dict[str, float], step: int) -> None:
            assert self._now is not None  # TensorBoard gets them from its sink, with the extras
            self._now.skip = (TensorBoardCallback,) if any(isinstance(s, TensorBoardSink)
                                                          for s in self.sinks) else ()
            self._now.log_scalars(scalars, step)

        sinks: list[Sink] = [ScalarLogger(log)]
        if self._to_tensorboard and self.log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.log_dir), filename_suffix=".filterwatch")
            sinks.append(TensorBoardSink(self._writer, images_every=self.images_every,
                                         histograms=self.histograms, affords=self.schedule.affords))
        return sinks


class FilterGateCallback(_Adapter, GateCore, TrainerCallback, ExportableState):
    """Check the gate rules while a ``transformers.Trainer`` trains; stop the run
    (``control.should_training_stop``) or warn (arguments, decision and sharing as for the
    Lightning :class:`~filterwatch.FilterGate`).

    Example:
        >>> from filterwatch.callbacks.huggingface import FilterGateCallback
        >>> gate = FilterGateCallback({"max-sparsity": 0.5}, every_n_steps=10)
        >>> gate.stopping_reason.name
        'NOT_STOPPED'
    """

    def state(self) -> dict[str, Any]:
        return self._exported(self.arguments, self.gate_state(),
                              self.monitor if self.owns_monitor else None, "gate")

    def _stop_if(self, control: Any, stop: bool) -> None:
        if stop:
            control.should_training_stop = True

    def on_train_begin(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                       **kwargs: Any) -> None:
        host = self._event("on_train_begin", args, state, control, model, kwargs)
        resume = self._saved(state, self.monitor, self.name)
        if resume:
            self.load_gate_state(resume)
        peers = self._handler.callbacks if self._handler is not None else []
        self._stop_if(control, self.start(host, state.global_step, horizon=host.horizon,
                                          sharded=model is not None and has_sharded_parameters(model),
                                          peers=peers))

    def on_step_end(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                    **kwargs: Any) -> None:
        host = self._event("on_step_end", args, state, control, model, kwargs)
        self._stop_if(control, self.step_end(host, int(state.global_step)))

    def on_epoch_end(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                     **kwargs: Any) -> None:
        host = self._event("on_epoch_end", args, state, control, model, kwargs)
        epoch = max(0, round(state.epoch or 0.0) - 1)
        self._stop_if(control, self.epoch_end(host, epoch, int(state.global_step)))
