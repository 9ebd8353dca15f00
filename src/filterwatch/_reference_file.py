"""Reference <-> safetensors file with JSON metadata; strict validation on load (private)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from ._atomic import write_atomic
from .errors import InputError
from .functional.drift import DriftBasis
from .reference import Reference, ReferenceGroup

__all__: list[str] = []

FORMAT = "filterwatch-reference"
VERSION = 1


def reference_to_tensors(ref: Reference) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Plain tensors + JSON-able metadata (the file's content, also used in checkpoints)."""
    tensors: dict[str, torch.Tensor] = {}
    groups = []
    for i, (key, g) in enumerate(ref.groups.items()):
        b = g.basis
        for part in ("mean", "basis", "explained", "hist"):
            tensors[f"group.{i}.{part}"] = getattr(b, part).to(torch.float64).contiguous()
        groups.append({"key": key, "kernel_size": list(g.kernel_size), "layers": g.layers,
                       "lo": b.lo, "hi": b.hi, "n": b.n})
    for name, w in ref.snapshot.items():
        tensors[f"snapshot.{name}"] = w.contiguous()
    meta = {
        "format": FORMAT, "version": VERSION, "grouping": ref.grouping, "bins": ref.bins,
        "sources": ref.sources, "created": ref.created,
        "filterwatch_version": ref.filterwatch_version, "layer_shapes": ref.layer_shapes,
        "groups": groups, "snapshot": sorted(ref.snapshot),
    }
    return tensors, meta


def save_reference(ref: Reference, path: Path) -> None:
    from safetensors.torch import save_file

    tensors, meta = reference_to_tensors(ref)
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata={"filterwatch": json.dumps(meta)}))


def _fail(path: Path, what: str) -> InputError:
    return InputError(f"{path}: expected a filterwatch reference file, got {what}")


def _read(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
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
    return meta, tensors


def _group(path: Path, i: int, g: dict[str, Any], tensors: dict[str, torch.Tensor],
           bins: int) -> ReferenceGroup:
    try:
        kernel = tuple(int(s) for s in g["kernel_size"])
        k = math.prod(kernel)
        lo, hi, n = float(g["lo"]), float(g["hi"]), int(g["n"])
        parts = {p: tensors[f"group.{i}.{p}"] for p in ("mean", "basis", "explained", "hist")}
        key, layers = str(g["key"]), [str(x) for x in g.get("layers", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(path, f"group {i} incomplete ({exc!r} missing or malformed)") from None
    want = {"mean": (k,), "basis": (k, k), "explained": (k,), "hist": (k, bins)}
    for part, shape in want.items():
        t = parts[part]
        if tuple(t.shape) != shape or t.dtype != torch.float64:
            raise _fail(path, f"group `{key}` {part} of shape {tuple(t.shape)} {t.dtype} "
                              f"(expected {shape} float64)")
        if not bool(torch.isfinite(t).all()):
            raise _fail(path, f"group `{key}` {part} with non-finite values")
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise _fail(path, f"group `{key}` with an invalid range [{lo}, {hi}]")
    basis = DriftBasis(parts["mean"], parts["basis"], parts["explained"], lo, hi, parts["hist"], n)
    return ReferenceGroup(key, kernel, basis, layers)


def load_reference(path: Path) -> Reference:
    meta, tensors = _read(path)
    return reference_from_tensors(tensors, meta, path)


def reference_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                           path: Path) -> Reference:
    """Inverse of :func:`reference_to_tensors`, validating every group."""
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise _fail(path, "metadata of another format or version")
    try:
        bins = int(meta["bins"])
        groups_meta = list(meta["groups"])
        grouping = str(meta["grouping"])
    except (KeyError, TypeError, ValueError):
        raise _fail(path, "metadata without bins/groups/grouping") from None
    groups = {}
    for i, g in enumerate(groups_meta):
        group = _group(path, i, g, tensors, bins)
        groups[group.key] = group
    snapshot = {name: tensors[f"snapshot.{name}"] for name in meta.get("snapshot", [])
                if f"snapshot.{name}" in tensors}
    return Reference(
        groups=groups, grouping=grouping, sources=list(meta.get("sources", [])),
        layer_shapes=dict(meta.get("layer_shapes", {})), snapshot=snapshot,
        created=str(meta.get("created", "")),
        filterwatch_version=str(meta.get("filterwatch_version", "")), bins=bins,
    )
