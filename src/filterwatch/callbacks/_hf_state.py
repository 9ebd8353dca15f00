"""The Hugging Face callbacks' state in a Trainer checkpoint (private): the arguments and
the schedule ride in the trainer state's ``stateful_callbacks`` (JSON); the Monitor's
reference tensors, history and alerts in a safetensors file beside them (nothing is
unpickled on resume)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..errors import InputError
from ..monitor import Monitor

__all__: list[str] = []

STATE_FILE = "filterwatch_{name}.safetensors"


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


def restore_state_file(monitor: Monitor, resume: dict[str, Any]) -> str:
    """Load the Monitor that :func:`save_state_file` wrote, if the saved state names one; why
    it could not be (a missing or corrupt file: the reference restarts from the resumed
    weights), or ""."""
    if "file" in resume:
        try:
            load_monitor(monitor, Path(resume["file"]))
        except InputError as exc:
            return f"{exc}; the reference restarts from the resumed weights"
    return ""


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
