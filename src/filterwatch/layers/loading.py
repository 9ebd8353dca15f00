"""Safe loading of checkpoints: never unpickles arbitrary code.

``.pt``/``.pth``/``.ckpt`` files go through ``torch.load(weights_only=True)``, which only
rebuilds tensors and plain containers; a file that needs anything else (a class, a function,
``os.system``) is refused with the name of what it asked for. ``.safetensors`` files go
through safetensors. A Hugging Face checkpoint folder (``model.safetensors``, sharded
``model-0000x-of-0000n.safetensors`` with their index, or ``pytorch_model.bin``) is read as
the model file(s) inside it. Every failure is an :class:`~filterwatch.errors.InputError`
with a one-line message that names the file.
"""

from __future__ import annotations

import json
import pickle
import re
import stat
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import InputError, NoConvLayersError
from .discover import discover_layers
from .facts import LayerFacts
from .selection import LayerSelection

__all__ = ["describe_source", "load_state_dict", "natural_key"]

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network")
_SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
# what a Hugging Face (transformers, diffusers, timm) checkpoint folder holds, preferred first
_FOLDER_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_FOLDER_FILES = ("model.safetensors", "pytorch_model.bin", "diffusion_pytorch_model.safetensors")


def describe_source(source: object) -> str:
    """How reports name a source: the path, the model's class, or ``"state_dict"``."""
    if isinstance(source, str | Path):
        return str(source)
    if isinstance(source, torch.nn.Module):
        return type(source).__name__
    return "state_dict"


def _is_safetensors(path: Path) -> bool:
    if path.suffix.lower() in _SAFETENSORS_SUFFIXES:
        return True
    with open(path, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{" and not zipfile.is_zipfile(path)


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(
            f"{path}: expected a valid safetensors file, got a truncated or corrupt one ({exc})"
        ) from None
    # safetensors stores names sorted as text (Conv_110 before Conv_41, stem.0 last): the
    # model's order is lost, and natural order (numbers as numbers) is the best guess of it
    return {k: tensors[k] for k in sorted(tensors, key=natural_key)}


def natural_key(name: str) -> list[tuple[int, int | str]]:
    """Sort key that compares the numbers in a name as numbers: ``conv2 < conv10``.

    Example:
        >>> sorted(["Conv_110", "Conv_41", "layer10.0", "layer2.1"], key=natural_key)
        ['Conv_41', 'Conv_110', 'layer2.1', 'layer10.0']
    """
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part]


def _explain_unpickling(path: Path, exc: BaseException) -> InputError:
    text = str(exc)
    # torch <= 2.5: "unsupported GLOBAL x.y"; 2.6+: "Unsupported global: GLOBAL x.y was not..."
    found = (re.search(r"GLOBAL ([\w.]+)", text)
             or re.search(r"(?i)unsupported global:? '?([\w.]+)", text))
    if found:
        return InputError(
            f"{path}: refused to load: it needs `{found.group(1)}` to unpickle, and filterwatch "
            "only loads plain tensors (weights_only=True), never code; hint: re-save it with "
            "torch.save(model.state_dict(), ...) or as .safetensors"
        )
    return InputError(
        f"{path}: expected a PyTorch checkpoint, got something that is not one, or is corrupt "
        f"({_first_line(text)})"
    )


def _first_line(text: str) -> str:
    found = re.search(r"Unsupported operand \d+", text)
    return f"unreadable pickle data: {found.group(0)}" if found else "unreadable pickle data"


def _has_zip_magic(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def _load_torch(path: Path) -> object:
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols: noise here
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise
    except pickle.UnpicklingError as exc:
        raise _explain_unpickling(path, exc) from None
    except (RuntimeError, OSError) as exc:
        text = str(exc)
        broken_zip = ("zip archive" in text or "PytorchStreamReader" in text
                      or (isinstance(exc, OSError) and _has_zip_magic(path)
                          and not zipfile.is_zipfile(path)))
        if broken_zip:
            raise InputError(
                f"{path}: expected a complete checkpoint, got a truncated or corrupt zip archive"
            ) from None
        first = (text.splitlines() or [type(exc).__name__])[0][:160]
        raise InputError(f"{path}: could not read the checkpoint ({first})") from None
    except Exception as exc:  # any other parse failure of untrusted bytes
        # weights_only=True never runs code, so whatever failed was the file's format
        mode = path.stat().st_mode
        kind = ("a device or other special file, not a regular file" if not stat.S_ISREG(mode)
                else "an empty file" if path.stat().st_size == 0 else "a file that is not a checkpoint")
        raise InputError(
            f"{path}: expected a PyTorch checkpoint, got {kind} ({type(exc).__name__})"
        ) from None


_MAX_DEPTH = 64  # nested mappings deeper than any real checkpoint's
_VIEW_SLACK = 1 << 20  # bytes a view may declare beyond its storage (small broadcasts)


def _flatten(obj: Mapping[object, object], path: Path, prefix: str = "",
             seen: tuple[int, ...] = ()) -> dict[str, torch.Tensor]:
    """The tensors of nested mappings, named with dots; a mapping that contains itself or is
    nested too deep, and a tensor that declares more values than its storage holds (a
    zero-stride view would be materialised: gigabytes from a few bytes), are refused."""
    if id(obj) in seen or len(seen) >= _MAX_DEPTH:
        what = "contains itself" if id(obj) in seen else f"is nested more than {_MAX_DEPTH} levels deep"
        raise InputError(f"{path}: expected a state_dict, got a mapping that {what} (at "
                         f"{prefix.rstrip('.')[:80] or 'the top'})")
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, torch.Tensor):
            _check_storage(value, name, path)
            out[name] = value
        elif isinstance(value, Mapping):
            out.update(_flatten(value, path, name + ".", (*seen, id(obj))))
    return out


def _check_storage(t: torch.Tensor, name: str, path: Path) -> None:
    if t.layout is not torch.strided or t.is_quantized:
        return
    declared = t.numel() * t.element_size()
    held = t.untyped_storage().nbytes()
    if declared > held + _VIEW_SLACK:
        raise InputError(
            f"{path}: tensor `{name[:80]}` expected at most the {held} bytes its storage holds, "
            f"got a view declaring {list(t.shape)} = {declared} bytes (zero or overlapping "
            "strides); hint: save real tensors (.contiguous()), not expanded views")


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise InputError(
            f"{path}: expected a state_dict (a mapping of names to tensors), got a "
            f"{type(obj).__name__}; hint: save model.state_dict(), not the model or a list"
        )
    for key in _WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            return _flatten(inner, path)
    return _flatten(obj, path)


def load_state_dict(path: str | Path, *, require_conv: bool = True) -> dict[str, torch.Tensor]:
    """Load the tensors of a checkpoint without running any code from it.

    Accepts ``.pt``/``.pth`` state_dicts, ``{"state_dict": ...}`` wrappers (Lightning
    ``.ckpt`` included), ``.safetensors``, Hugging Face checkpoint folders (their model
    file, or all shards of a sharded one) and ``.onnx`` models (their conv weights, see
    :mod:`filterwatch.layers.onnx_file`). Nested mappings are flattened with dots.

    Args:
        path: the file, or a Hugging Face checkpoint folder.
        require_conv: raise :class:`~filterwatch.errors.NoConvLayersError` when no tensor looks
            like a conv weight.

    Example:
        >>> import tempfile, torch
        >>> from torch import nn
        >>> f = tempfile.NamedTemporaryFile(suffix=".pt", delete=False).name
        >>> torch.save({"state_dict": nn.Conv2d(3, 8, 3).state_dict()}, f)
        >>> sorted(load_state_dict(f))
        ['bias', 'weight']
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"`path` expected an existing file, got {str(p)!r} (no such file)")
    files, indexed = _model_files(p) if p.is_dir() else ([p], {})
    parts = [_load_file(file) for file in files]
    state: dict[str, torch.Tensor] = {}
    for part in parts:
        state.update(part)
    missing = [name for name in indexed if name not in state]
    if missing:  # transformers would initialise these layers at random: not this checkpoint
        raise InputError(
            f"{p}: its shard index names {len(missing)} weight(s) that no shard holds "
            f"({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}); hint: a shard is "
            "stale or was replaced: download or save the checkpoint again")
    if len(files) > 1:  # shards: the model's order across them, as within one file
        state = {k: state[k] for k in sorted(state, key=natural_key)}
    facts = [part for part in parts if isinstance(part, LayerFacts)]
    if facts:  # what the file said beyond its tensors (ONNX: groups, ConvTranspose)
        state = LayerFacts(state, {k: v for f in facts for k, v in f.groups.items()},
                           set().union(*(f.transposed for f in facts)))
    if require_conv and not discover_layers(state, select=LayerSelection.everything()):
        floats = sum(1 for v in state.values() if v.is_floating_point())
        raise NoConvLayersError(
            f"{p}: expected conv weights (tensors of 3+ dims named '*weight'), got none among "
            f"{len(state)} tensors ({floats} floating); hint: is this a conv network checkpoint?"
        )
    return state


def _load_file(p: Path) -> dict[str, torch.Tensor]:
    if p.suffix.lower() == ".onnx":
        from .onnx_file import load_onnx

        return load_onnx(p)
    try:
        obj: object = _load_safetensors(p) if _is_safetensors(p) else _load_torch(p)
    except PermissionError:
        raise InputError(f"`path` expected a readable file, got {str(p)!r} (permission denied)") from None
    return _unwrap(obj, p)


def _model_files(folder: Path) -> tuple[list[Path], dict[str, str]]:
    """The model file(s) of a Hugging Face checkpoint folder: the shards its index names
    (which must lie inside the folder) and the index's weight map, else its single model
    file."""
    for name in _FOLDER_INDEXES:
        index = folder / name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
                shards = sorted({str(v) for v in weight_map.values()}, key=natural_key)
            except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
                raise InputError(f"{index}: expected a shard index with a 'weight_map' object, "
                                 "got something else") from None
            for shard in shards:  # plain file names (the hub cache links them: that is fine)
                if Path(shard).name != shard or shard in (".", ".."):
                    raise InputError(f"{index}: expected shard file names inside {str(folder)!r}, "
                                     f"got {shard!r}; hint: an index must not point outside its folder")
                if not (folder / shard).is_file():
                    raise InputError(f"{index}: names the shard {shard!r}, which is missing")
            return [folder / shard for shard in shards], {str(k): str(v) for k, v in weight_map.items()}
    for name in _FOLDER_FILES:
        if (folder / name).is_file():
            return [folder / name], {}
    raise InputError(
        f"`path` expected a checkpoint file or a Hugging Face checkpoint folder, got the "
        f"directory {str(folder)!r} without {' or '.join(_FOLDER_FILES[:2])}; hint: point at "
        "the .pt/.ckpt/.safetensors file inside it"
    )
