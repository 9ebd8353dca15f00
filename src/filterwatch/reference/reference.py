"""``Reference``: the filter distributions a model is compared against to measure drift.

Built from a model, a state_dict or checkpoint file, or many of them (a population), grouped
per layer (default), per depth decile or per kernel size. Each group keeps a
:class:`~filterwatch.functional.DriftBasis` (PCA basis, mean, explained-variance ratios,
histogram range and 70-bin histograms). Optionally the raw weights, for relative change.
Saved as safetensors plus JSON metadata (no pickle), see :mod:`filterwatch.reference.codec`.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._version import __version__
from ..errors import InputError, NoConvLayersError, UndefinedMeasureError
from ..functional import scratch_memory
from ..functional.drift import BINS, drift_basis, drift_noise_floor
from ..layers import (
    ConvLayer,
    LayerSelection,
    check_selection,
    describe_source,
    discover_layers,
    format_kernel_size,
    load_state_dict,
)
from .codec import decode, encode, read_file, write_file
from .group import GROUPINGS, Grouping, ReferenceGroup, group_key

__all__ = ["Reference"]

Source = nn.Module | Mapping[str, torch.Tensor] | str | Path


@dataclass
class Reference:
    """Reference filter distributions for drift, plus optional raw weights.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 16, 3))
        >>> ref = Reference.build(net)
        >>> sorted(ref.groups), ref.grouping
        (['0', '1'], 'layer')
    """

    groups: dict[str, ReferenceGroup]
    grouping: Grouping = "layer"
    sources: list[str] = field(default_factory=list)
    layer_shapes: dict[str, list[int]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # group key -> why it has no basis
    snapshot: dict[str, torch.Tensor] = field(default_factory=dict)
    created: str = ""
    filterwatch_version: str = __version__
    bins: int = BINS
    _noise: dict[tuple[str, int], float] = field(default_factory=dict, repr=False, compare=False)

    def noise_floor(self, key: str, n: int) -> float:
        """The drift that sampling alone gives for ``n`` filters against group ``key``
        (:func:`~filterwatch.functional.drift_noise_floor`), computed once per group and size."""
        cached = self._noise.get((key, n))
        if cached is None:
            cached = self._noise[(key, n)] = drift_noise_floor(self.groups[key].basis, n)
        return cached

    def snapshot_on(self, name: str | None, device: torch.device) -> torch.Tensor | None:
        """The reference weights of layer ``name`` on ``device`` (moved there once, then kept
        there: a snapshot compares with the weights where they live)."""
        snap = None if name is None else self.snapshot.get(name)
        if snap is not None and snap.device != device:
            snap = self.snapshot[name] = snap.to(device)  # type: ignore[index]
        return snap

    def key_for(self, layer: ConvLayer, name: str | None = None) -> str:
        """Group key of ``layer`` (``name`` overrides its name, for matched layers)."""
        if self.grouping == "layer":
            return name or layer.name
        return group_key(layer, self.grouping)

    @classmethod
    def build(
        cls,
        sources: Source | Sequence[Source],
        *,
        group: Grouping = "layer",
        snapshot: bool = False,
        select: LayerSelection | None = None,
        bins: int = BINS,
    ) -> Reference:
        """Build a reference from one source or a population of them.

        Args:
            sources: a model, state_dict or checkpoint path, or a list of them. With several,
                each group pools the filters of every source (same kernel size required).
            group: ``"layer"`` (by name), ``"depth"`` (per depth decile and kernel size) or
                ``"kernel"`` (per kernel size).
            snapshot: also keep the raw weights (one source only) for relative change.
            select: which layers, as in :func:`filterwatch.analyze`.
            bins: histogram bins per component.
        """
        if group not in GROUPINGS:
            raise InputError(f"`group` expected one of {', '.join(GROUPINGS)}, got {group!r}")
        select = check_selection(select)
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
            raise InputError(f"`bins` expected an integer >= 2, got {bins!r}; hint: the paper uses 70")
        many: list[Source] = list(sources) if isinstance(sources, list | tuple) else [sources]  # type: ignore[list-item]
        if not many:
            raise InputError("`sources` expected at least one model, state_dict or path, got none")
        if snapshot and len(many) > 1:
            raise InputError("`snapshot` expected a single source, got a population; hint: "
                             "relative change needs one set of reference weights")
        pooled: dict[str, list[torch.Tensor]] = {}
        members: dict[str, list[str]] = {}
        kernels: dict[str, tuple[int, ...]] = {}
        ref = cls(groups={}, grouping=group, sources=[describe_source(s) for s in many], bins=bins,
                  created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        with scratch_memory():  # the layers' passes share their buffers
            ref._add_sources(many, group, snapshot, select, pooled, members, kernels)
            for key, parts in pooled.items():
                filters = torch.cat(parts).to(torch.float64)  # one copy: the basis and the scale
                try:
                    basis = drift_basis(filters, bins=bins)
                except UndefinedMeasureError as exc:  # one filter, NaN/Inf: skip this group only
                    ref.skipped[key] = str(exc)
                    continue
                if float(basis.explained.sum()) == 0.0:
                    ref.skipped[key] = ("drift is undefined: the reference filters do not vary "
                                        "(e.g. a zero-initialised layer)")
                    continue
                sumsq = float(filters.square().sum())
                rms = math.sqrt(sumsq / filters.numel()) if sumsq > 0 else None
                ref.groups[key] = ReferenceGroup(key, kernels[key], basis, sorted(set(members[key])), rms)
        return ref

    def _add_sources(self, many: list[Source], group: Grouping, snapshot: bool,
                     select: LayerSelection, pooled: dict[str, list[torch.Tensor]],
                     members: dict[str, list[str]], kernels: dict[str, tuple[int, ...]]) -> None:
        """Read every source's selected layers into the pools of their groups."""
        for src in many:
            state = load_state_dict(src) if isinstance(src, str | Path) else src
            layers = discover_layers(state, select=select)
            if not layers:
                raise NoConvLayersError(f"`sources` expected conv layers, got none in {describe_source(src)}")
            for layer in layers:
                if layer.unavailable:
                    raise InputError(f"layer `{layer.name}` of {describe_source(src)}: {layer.unavailable}")
                key = group_key(layer, group)
                if kernels.setdefault(key, layer.kernel_size) != layer.kernel_size:
                    raise InputError(
                        f"group `{key}` expected {format_kernel_size(kernels[key])} kernels, got "
                        f"{format_kernel_size(layer.kernel_size)} from layer `{layer.name}` of "
                        f"{describe_source(src)}"
                    )
                w = layer.kernel().detach()
                pooled.setdefault(key, []).append(w.reshape(-1, layer.kernel_numel).cpu())
                members.setdefault(key, []).append(layer.name)
                self.layer_shapes.setdefault(layer.name, list(layer.shape))
                if snapshot:
                    self.snapshot[layer.name] = w.clone().contiguous()  # where the weights live

    @classmethod
    def random_init(cls, source: Source, *, seed: int = 0,
                    select: LayerSelection | None = None) -> Reference:
        """A per-layer reference of freshly initialised weights of each layer's own shape.

        PyTorch initialises conv weights Kaiming-uniform, ``U(-b, b)``; drift peak-scales
        every filter, so ``b`` does not matter. Drift from this reference answers "has this
        layer learned anything?" with no file needed.
        """
        select = check_selection(select)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InputError(f"`seed` expected an integer, got {seed!r}")
        state = load_state_dict(source) if isinstance(source, str | Path) else source
        gen = torch.Generator().manual_seed(seed)
        fake = {
            f"{layer.name}.weight": torch.rand(layer.shape, generator=gen, dtype=torch.float64) * 2 - 1
            for layer in discover_layers(state, select=select)
            if not layer.unavailable
        }
        if not fake:
            raise NoConvLayersError(f"`source` expected conv layers, got none in {describe_source(source)}")
        ref = cls.build(fake)
        ref.sources = [f"random-init({describe_source(source)}, seed={seed})"]
        return ref

    def to_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Plain tensors and JSON-able metadata (what the file and checkpoints hold)."""
        header = {"grouping": self.grouping, "bins": self.bins, "sources": self.sources,
                  "created": self.created, "filterwatch_version": self.filterwatch_version,
                  "layer_shapes": self.layer_shapes, "skipped": self.skipped}
        return encode(self.groups, self.snapshot, header)

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any],
                     where: str | Path = "<checkpoint>") -> Reference:
        """Inverse of :meth:`to_tensors`; every group is validated (``where`` names the source
        in errors)."""
        groups, snapshot, m = decode(tensors, meta, where)
        grouping = str(m["grouping"])
        if grouping not in GROUPINGS:
            raise InputError(f"{where}: `grouping` expected one of {', '.join(GROUPINGS)}, got {grouping!r}")
        return cls(groups=groups, grouping=grouping,
                   sources=list(m.get("sources", [])), layer_shapes=dict(m.get("layer_shapes", {})),
                   skipped=dict(m.get("skipped", {})),
                   snapshot=snapshot, created=str(m.get("created", "")),
                   filterwatch_version=str(m.get("filterwatch_version", "")), bins=int(m["bins"]))

    def save(self, path: str | Path) -> None:
        """Write to ``path`` as safetensors + JSON metadata, atomically."""
        write_file(Path(path), *self.to_tensors())

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        """Read a reference file, validating every group; a bad file is an InputError."""
        p = Path(path)
        return cls.from_tensors(*read_file(p), where=p)

    def describe(self) -> str:
        """A human-readable summary (``filterwatch reference show``)."""
        lines = [
            f"filterwatch reference (grouping: {self.grouping}, {len(self.groups)} groups, "
            f"{self.bins} bins, snapshot: {'yes' if self.snapshot else 'no'})",
            f"created {self.created or '-'} by filterwatch {self.filterwatch_version}",
            "sources: " + (", ".join(self.sources) or "-"),
            "",
        ]
        width = max([5, *(len(k) for k in self.groups)])
        lines.append(f"{'group':<{width}}  kernel  filters  range              top explained")
        for key, g in self.groups.items():
            top = ", ".join(f"{v:.2f}" for v in g.basis.explained[:3].tolist())
            lines.append(f"{key:<{width}}  {format_kernel_size(g.kernel_size):<6}  {g.basis.n:>7}  "
                         f"[{g.basis.lo:+.3f}, {g.basis.hi:+.3f}]  {top}")
        return "\n".join(lines) + "\n"
