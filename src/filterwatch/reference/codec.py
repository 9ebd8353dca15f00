"""A reference as plain tensors plus JSON metadata, and as a safetensors file (no pickle).

The same encoding travels in training checkpoints (``Monitor.state_dict``) and in reference
files; decoding validates every group, so a corrupt or foreign file gives one clear error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch

from .._atomic import write_atomic
from ..errors import InputError
from ..functional.drift import DriftBasis
from .group import ReferenceGroup

__all__ = ["Decoded", "decode", "encode", "read_file", "write_file"]

FORMAT = "filterwatch-reference"
VERSION = 1
_PARTS = ("mean", "basis", "explained", "hist")


class Decoded(NamedTuple):
    """What :func:`decode` returns: the groups, the snapshot weights and the metadata."""

    groups: dict[str, ReferenceGroup]
    snapshot: dict[str, torch.Tensor]
    meta: dict[str, Any]


def encode(groups: Mapping[str, ReferenceGroup], snapshot: Mapping[str, torch.Tensor],
           header: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Plain tensors and JSON-able metadata (``header`` carries grouping, bins, sources...)."""
    tensors: dict[str, torch.Tensor] = {}
    meta_groups = []
    for i, (key, g) in enumerate(groups.items()):
        for part in _PARTS:
            tensors[f"group.{i}.{part}"] = getattr(g.basis, part).to(torch.float64).contiguous()
        meta_groups.append({"key": key, "kernel_size": list(g.kernel_size), "layers": g.layers,
                            "lo": g.basis.lo, "hi": g.basis.hi, "n": g.basis.n})
    for name, w in snapshot.items():
        tensors[f"snapshot.{name}"] = w.cpu().contiguous()
    meta = {"format": FORMAT, "version": VERSION, **header, "groups": meta_groups,
            "snapshot": sorted(snapshot)}
    return tensors, meta


def _fail(where: str | Path, what: str) -> InputError:
    return InputError(f"{where}: expected a filterwatch reference file, got {what}")


def _group(where: str | Path, i: int, g: dict[str, Any], tensors: Mapping[str, torch.Tensor],
           bins: int) -> ReferenceGroup:
    try:
        kernel = tuple(int(s) for s in g["kernel_size"])
        k = math.prod(kernel)
        lo, hi, n = float(g["lo"]), float(g["hi"]), int(g["n"])
        parts = {p: tensors[f"group.{i}.{p}"] for p in _PARTS}
        key, layers = str(g["key"]), [str(x) for x in g.get("layers", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(where, f"group {i} incomplete ({exc!r} missing or malformed)") from None
    want = {"mean": (k,), "basis": (k, k), "explained": (k,), "hist": (k, bins)}
    for part, shape in want.items():
        t = parts[part]
        if tuple(t.shape) != shape or t.dtype != torch.float64:
            raise _fail(where, f"group `{key}` {part} of shape {tuple(t.shape)} {t.dtype} "
                               f"(expected {shape} float64)")
        if not bool(torch.isfinite(t).all()):
            raise _fail(where, f"group `{key}` {part} with non-finite values")
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise _fail(where, f"group `{key}` with an invalid range [{lo}, {hi}]")
    basis = DriftBasis(parts["mean"], parts["basis"], parts["explained"], lo, hi, parts["hist"], n)
    return ReferenceGroup(key, kernel, basis, layers)


def decode(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], where: str | Path) -> Decoded:
    """Inverse of :func:`encode`, validating every group."""
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise _fail(where, "metadata of another format or version")
    try:
        bins = int(meta["bins"])
        groups_meta = list(meta["groups"])
        str(meta["grouping"])
    except (KeyError, TypeError, ValueError):
        raise _fail(where, "metadata without bins/groups/grouping") from None
    groups = {}
    for i, g in enumerate(groups_meta):
        group = _group(where, i, g, tensors, bins)
        groups[group.key] = group
    snapshot = {name: tensors[f"snapshot.{name}"] for name in meta.get("snapshot", [])
                if f"snapshot.{name}" in tensors}
    return Decoded(groups, snapshot, dict(meta))


def write_file(path: Path, tensors: dict[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    """safetensors with the metadata as JSON under ``"filterwatch"``, written atomically."""
    from safetensors.torch import save_file

    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata={"filterwatch": json.dumps(meta)}))


def read_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and metadata of a reference file; anything else is an InputError."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise InputError(f"`reference` expected an existing file, got {str(path)!r} (no such file)")
    with open(path, "rb") as raw_fh:
        if raw_fh.read(4) == b"PK\x03\x04":
            raise _fail(path, "a PyTorch checkpoint; hint: make a reference from it with "
                              "`filterwatch reference build PATH -o REF`")
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get("filterwatch")
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise _fail(path, f"a truncated or corrupt file ({exc})") from None
    if raw is None:
        raise _fail(path, "a safetensors file without filterwatch metadata (a checkpoint?)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise _fail(path, "corrupt metadata (not JSON)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _fail(path, "metadata of another format")
    if meta.get("version") != VERSION:
        raise _fail(path, f"format version {meta.get('version')!r} (this filterwatch reads {VERSION})")
    return tensors, meta
