"""One checkpoint's rows of the zoo table, and the table's schema (the part that runs on a
worker: it gets a path and returns plain rows, never tensors)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._atomic import write_atomic
from ..functional.drift import peak_scale
from ..layers import LayerSelection, format_kernel_size
from ..report.registry import select

__all__ = ["MEASURES", "Settings", "checkpoint_rows", "schema"]

MEASURES = tuple(m.key for m in select(spectral=False))


class Settings(dict):  # type: ignore[type-arg]
    """What a scan measures (plain data: it travels to workers and is kept in ``zoo.json``):
    ``kernel_sizes``, ``include``, ``exclude``, ``include_pointwise``, ``sparsity_eps``."""

    def selection(self) -> LayerSelection:
        return LayerSelection(self.get("kernel_sizes"), self.get("include", []), self.get("exclude", []),
                              bool(self.get("include_pointwise", False)))


def _plain(v: object) -> object:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def checkpoint_rows(file: str, path: str, meta: Mapping[str, str], settings: Mapping[str, Any],
                    threads: int | None = None, filters_to: str | None = None
                    ) -> tuple[list[dict[str, Any]], bytes]:
    """The rows of one checkpoint: one per conv layer, with ``path`` as written, the layer's
    facts, every measure under its registry name and the manifest's meta columns; none when
    it has conv layers but none that the settings select (another architecture). Raises what
    loading and ``analyze`` raise (the scan lists it as a failure). Also the layers'
    peak-scaled filters (``f / max|f|``, float32, ``(n, K)`` per layer) as safetensors: what
    ``zoo shift`` needs, so that no later step reads the checkpoint again. They are written
    to the file ``filters_to`` (atomically) where the worker sees the zoo's folder, and
    returned as bytes otherwise (a cluster without a shared file system)."""
    import torch

    from ..layers import discover_layers, load_state_dict
    from ..measure import analyze

    if threads:
        torch.set_num_threads(threads)
    opts = Settings(settings)
    state = load_state_dict(file)  # read once; a file without conv weights fails here
    layers = discover_layers(state, select=opts.selection())
    if not layers:
        return [], _keep_filters({}, filters_to)
    report = analyze(state, select=opts.selection(), sparsity_eps=float(opts.get("sparsity_eps", 0.01)))
    filters = {conv.name: peak_scale(conv.kernel().detach().reshape(-1, conv.kernel_numel)
                                     .to(torch.float32)).contiguous()
               for conv in layers if not conv.unavailable}
    rows = []
    for r in report.layers:
        row: dict[str, Any] = {
            "path": path, "layer": r.name, "kind": r.kind, "kernel_size": format_kernel_size(r.kernel_size),
            "shape": list(r.shape), "n_filters": r.n_filters, "conv_depth": r.depth,
            "conv_depth_norm": r.depth_norm,
        }
        row.update({key: _plain(getattr(r, key)) for key in MEASURES})
        row.update(meta)
        rows.append(row)
    return rows, _keep_filters(filters, filters_to)


def _keep_filters(filters: Mapping[str, Any], filters_to: str | None) -> bytes:
    """The filters as safetensors bytes, or written straight to ``filters_to`` (then ``b""``)."""
    from safetensors.torch import save, save_file

    if filters_to is None:
        return save(dict(filters))
    write_atomic(Path(filters_to), lambda p: save_file(dict(filters), str(p)))
    return b""


def schema(meta_columns: Sequence[str]) -> Any:
    """The Parquet schema of every checkpoint's file (so that files with all-null measures
    still read as one table)."""
    import pyarrow as pa

    fields = [("path", pa.string()), ("layer", pa.string()), ("kind", pa.string()),
              ("kernel_size", pa.string()), ("shape", pa.list_(pa.int64())), ("n_filters", pa.int64()),
              ("conv_depth", pa.int64()), ("conv_depth_norm", pa.float64())]
    fields += [(m.key, pa.int64() if m.integer else pa.float64()) for m in select(spectral=False)]
    fields += [(c, pa.string()) for c in meta_columns]
    return pa.schema(fields)
