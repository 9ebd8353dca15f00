"""What both Hugging Face Trainer callbacks need (private): the Trainer's other callbacks,
its log path, agreement between processes, and their state in a checkpoint."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from types import FrameType
from typing import Any

import torch.distributed as dist
from transformers.trainer_callback import CallbackHandler, PrinterCallback, ProgressCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ...errors import InputError
from ...monitor import Monitor

__all__: list[str] = []

STATE_FILE = "filterwatch_{name}.safetensors"
# the console printers: a snapshot's hundreds of scalars are not for the progress bar
_CONSOLE = (PrinterCallback, ProgressCallback)


class Ours:
    """The base of filterwatch's Trainer callbacks: they never get each other's logs."""


def warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)


def callback_handler() -> CallbackHandler | None:
    """The Trainer's ``CallbackHandler`` that is calling the current hook, or None.

    The Trainer hands a callback no reference to itself, its loggers or its other callbacks;
    every event reaches a callback through ``CallbackHandler.call_event``, so the handler
    is the caller a few frames up. Found once per run (at ``on_train_begin``)."""
    frame: FrameType | None = sys._getframe(1)
    for _ in range(12):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if isinstance(owner, CallbackHandler):
            return owner
        frame = frame.f_back
    return None


def forward_logs(handler: CallbackHandler | None, args: Any, state: Any, control: Any,
                 logs: dict[str, float], skip: tuple[type, ...], **kwargs: Any) -> None:
    """Log ``logs`` as ``Trainer.log`` does: into ``state.log_history`` and to every callback's
    ``on_log`` (so TensorBoard, W&B, MLflow... all get them), except the console printers,
    filterwatch's own callbacks and the callbacks in ``skip``."""
    state.log_history.append({**logs, "step": state.global_step})
    for cb in handler.callbacks if handler is not None else []:
        if not isinstance(cb, (*_CONSOLE, Ours, *skip)):
            cb.on_log(args, state, control, logs=dict(logs), **kwargs)


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def broadcast(value: Any) -> Any:
    """Rank zero's ``value`` on every rank (as is without a process group)."""
    if not distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def checkpoint_folder(args: Any, state: Any) -> Path:
    """Where the Trainer is saving the checkpoint of this step (``Trainer._save_checkpoint``):
    ``output_dir/checkpoint-<step>``, or under a hyperparameter search the newest such folder
    one level down (``output_dir/<trial run>/checkpoint-<step>``)."""
    name = f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
    folder = Path(args.output_dir) / name
    if folder.is_dir():
        return folder
    trials = [p for p in Path(args.output_dir).glob(f"*/{name}") if p.is_dir()]
    return max(trials, key=lambda p: p.stat().st_mtime) if trials else folder


def save_monitor(monitor: Monitor, path: Path) -> None:
    """The Monitor's state (reference tensors, history, alerts) as one safetensors file: the
    trainer state is JSON, and tensors do not belong in it."""
    from safetensors.torch import save_file

    state = monitor.state_dict()
    ref = state.pop("reference")
    tensors = {} if ref is None else {k: v.detach().cpu().contiguous().clone()
                                      for k, v in ref["tensors"].items()}
    state["reference_meta"] = None if ref is None else ref["meta"]
    save_file(tensors, str(path), metadata={"filterwatch_monitor": json.dumps(state)})


def load_monitor(monitor: Monitor, path: Path) -> None:
    """Restore what :func:`save_monitor` wrote (safetensors: nothing is unpickled)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = (fh.metadata() or {}).get("filterwatch_monitor")
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        if meta is None:
            raise InputError("it holds no filterwatch state")
        state = json.loads(meta)
        ref_meta = state.pop("reference_meta")
        state["reference"] = None if ref_meta is None else {"tensors": tensors, "meta": ref_meta}
        monitor.load_state_dict(state)
    except Exception as exc:  # a corrupt file must not stop the resumed run
        raise InputError(f"could not restore the filterwatch state from {path}: "
                         f"{type(exc).__name__}: {exc}") from None


def save_state_file(where: tuple[Any, Any] | None, monitor: Monitor, name: str) -> str | None:
    """Write ``monitor`` into the checkpoint the Trainer is saving (``where`` is the run's
    ``(args, state)``); the file's path, or None where there is no such folder."""
    if where is None:
        return None
    folder = checkpoint_folder(*where)
    if not folder.is_dir():
        return None
    path = folder / STATE_FILE.format(name=name)
    save_monitor(monitor, path)
    return str(path.resolve())


def restore_state_file(monitor: Monitor, resume: dict[str, Any], who: str) -> None:
    """Load the Monitor that :func:`save_state_file` wrote, if the saved state names one; a
    missing or corrupt file warns, and the reference restarts from the resumed weights."""
    if "file" in resume:
        try:
            load_monitor(monitor, Path(resume["file"]))
        except InputError as exc:
            warn(f"{who}: {exc}; the reference restarts from the resumed weights")


def saved_attributes(state: Any, callback: Any) -> dict[str, Any] | None:
    """The attributes this callback stored in the checkpoint: set on it when the Trainer
    re-created it from them, else read from the trainer state's ``stateful_callbacks``
    (the Trainer loads them whether or not it re-creates callbacks)."""
    if callback._resume:
        return dict(callback._resume)
    entry = (getattr(state, "stateful_callbacks", None) or {}).get(type(callback).__name__)
    if isinstance(entry, list):
        entry = entry[0] if entry else None
    if not isinstance(entry, dict):
        return None
    attributes = entry.get("attributes", {}).get("_resume")
    return attributes if isinstance(attributes, dict) else None


def is_zero(state: Any) -> bool:
    return bool(state.is_world_process_zero)


def horizon(state: Any) -> tuple[float | None, float | None]:
    """``(optimizer steps of the run, optimizer steps per epoch)`` from the TrainerState
    (``max_steps`` and ``num_train_epochs`` are set before ``on_train_begin``)."""
    total = getattr(state, "max_steps", 0) or None
    epochs = getattr(state, "num_train_epochs", 0) or None
    return total, None if total is None or epochs is None else total / epochs
