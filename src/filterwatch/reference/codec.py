"""A reference as plain tensors plus JSON metadata, and as a safetensors file (no pickle).

The same encoding travels in training checkpoints (``Monitor.state_dict``) and in reference
files; decoding validates every group, so a corrupt or foreign file gives one clear error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
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
                            "lo": g.basis.lo, "hi": g.basis.hi, "n": g.basis.n,
                            **({} if g.rms is None else {"rms": g.rms})})
    for name, w in snapshot.items():
        tensors[f"snapshot.{name}"] = w.cpu().contiguous()
    meta = {"format": FORMAT, "version": VERSION, **header, "groups": meta_groups,
            "snapshot": sorted(snapshot)}
    return tensors, meta


def _fail(where: str | Path, what: str) -> InputError:
    return InputError(f"{where}: expected a filterwatch reference file, got {what}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _strings(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _group(where: str | Path, i: int, g: Any, tensors: Mapping[str, torch.Tensor],
           bins: int) -> ReferenceGroup:
    if not isinstance(g, dict):
        raise _fail(where, f"group {i} that is a {type(g).__name__}, not an object")
    ok = (isinstance(g.get("key"), str) and isinstance(g.get("kernel_size"), list)
          and all(_is_int(s) and s > 0 for s in g["kernel_size"]) and _strings(g.get("layers", []))
          and _is_int(g.get("n")) and g["n"] >= 2
          and all(isinstance(g.get(x), int | float) and not isinstance(g.get(x), bool) for x in ("lo", "hi")))
    if not ok:
        raise _fail(where, f"group {i} with missing or malformed fields (key, kernel_size, "
                           "layers, n >= 2, lo, hi)")
    kernel = tuple(g["kernel_size"])
    k = math.prod(kernel)
    lo, hi, n = float(g["lo"]), float(g["hi"]), int(g["n"])
    key, layers = g["key"], list(g.get("layers", []))
    try:
        parts = {p: tensors[f"group.{i}.{p}"] for p in _PARTS}
    except KeyError as exc:
        raise _fail(where, f"group `{key}` without its {exc.args[0]} tensor") from None
    want = {"mean": (k,), "basis": (k, k), "explained": (k,), "hist": (k, bins)}
    for part, shape in want.items():
        t = parts[part]
        if tuple(t.shape) != shape or t.dtype != torch.float64:
            raise _fail(where, f"group `{key}` {part} of shape {tuple(t.shape)} {t.dtype} "
                               f"(expected {shape} float64)")
        if not bool(torch.isfinite(t).all()):
            raise _fail(where, f"group `{key}` {part} with non-finite values")
    # peak-scaled filters lie in [-1, 1]^K: a unit basis row gives coefficients within 2 sqrt(K)
    bound = 2.0 * math.sqrt(k) * (1.0 + 1e-9) + 1e-9
    if not (math.isfinite(lo) and math.isfinite(hi) and -bound <= lo < hi <= bound):
        raise _fail(where, f"group `{key}` with a range [{lo:.6g}, {hi:.6g}] that peak-scaled "
                           f"filters cannot have (within ±{bound:.4g} for K = {k})")
    if float(parts["mean"].abs().max()) > 1.0 + 1e-9:
        raise _fail(where, f"group `{key}` whose mean lies outside [-1, 1] (filters are peak-scaled)")
    _check_distribution(where, key, parts, n)
    rms = g.get("rms")
    if rms is not None and (isinstance(rms, bool) or not isinstance(rms, int | float)
                            or not math.isfinite(rms) or rms <= 0):
        raise _fail(where, f"group `{key}` whose `rms` is not a positive number ({rms!r:.40})")
    basis = DriftBasis(parts["mean"], parts["basis"], parts["explained"], lo, hi, parts["hist"], n)
    return ReferenceGroup(key, kernel, basis, layers, None if rms is None else float(rms))


def _check_distribution(where: str | Path, key: str, parts: Mapping[str, torch.Tensor], n: int) -> None:
    """Counts are whole numbers >= 0 that sum to ``n`` per component; explained-variance
    ratios lie in [0, 1] and sum to at most 1; the basis is orthonormal."""
    hist, explained, basis = parts["hist"], parts["explained"], parts["basis"]
    if bool((hist < 0).any()) or not torch.equal(hist, hist.round()):
        raise _fail(where, f"group `{key}` with negative or fractional histogram counts")
    if not bool((hist.sum(dim=1) == n).all()):
        raise _fail(where, f"group `{key}` whose histograms do not count its n = {n} filters")
    if bool((explained < 0).any()) or abs(float(explained.sum()) - 1.0) > 1e-6:
        raise _fail(where, f"group `{key}` whose explained-variance ratios are not >= 0 with sum 1 "
                           f"(sum {float(explained.sum()):.6g}; a build skips a group that does "
                           "not vary)")
    eye = torch.eye(basis.shape[0], dtype=basis.dtype)
    if float((basis @ basis.T - eye).abs().max()) > 1e-6:
        raise _fail(where, f"group `{key}` whose basis is not orthonormal")


def _check_header(where: str | Path, meta: Mapping[str, Any]) -> None:
    checks: dict[str, Callable[[Any], bool]] = {
        "bins": lambda v: _is_int(v) and v >= 2,
        "grouping": lambda v: isinstance(v, str),
        "groups": lambda v: isinstance(v, list),
        "sources": _strings,
        "snapshot": _strings,
        "layer_shapes": lambda v: isinstance(v, dict) and all(
            isinstance(s, list) and all(_is_int(x) for x in s) for s in v.values()),
        "skipped": lambda v: isinstance(v, dict) and all(
            isinstance(a, str) and isinstance(b, str) for a, b in v.items()),
    }
    required = ("bins", "grouping", "groups")
    for name, ok in checks.items():
        if name not in meta:
            if name in required:
                raise _fail(where, f"metadata without `{name}`")
            continue
        if not ok(meta[name]):
            raise _fail(where, f"metadata whose `{name}` is malformed ({meta[name]!r:.40})")


def decode(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], where: str | Path) -> Decoded:
    """Inverse of :func:`encode`, validating every field (files may be crafted)."""
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise _fail(where, "metadata of another format or version")
    _check_header(where, meta)
    bins = int(meta["bins"])
    groups_meta = list(meta["groups"])
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
