"""Drift of many filter sets of one filter size against their references, in one pass.

:func:`drift_many` gives, for every set that it takes, exactly what :func:`~filterwatch.functional.drift`
gives (the same counts: those of float64 arithmetic), with a number of tensor operations that
does not grow with the number of sets. The sets are concatenated in the padded layout of
:mod:`filterwatch.functional.batched` (pad rows repeat a set's first filter and are counted in
a bin that is dropped); each chunk's bin positions come from its own set's basis in one
batched product; positions within round-off of a bin edge are recomputed in float64 with their
set's frame; one ``bincount`` counts every set. A set with NaN/Inf, with values near the ends
of the float range or with a filter so small that its peak needs rescaling, a reference whose
float32 round-off is too coarse, and on a CPU a set of more than 2^18 values (drift() keeps
its passes in the cache: batching ResNet-50's layers took 164 ms instead of 55; see
:data:`~filterwatch.functional.batched.CPU_CACHED_VALUES`) are left to
:func:`~filterwatch.functional.drift` (``None`` in their place), which says why or handles it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Generic, NamedTuple, TypeVar

import torch

from ._binning import _FLOAT64_BELOW, Frame, _exact_positions, _roundoff, _row_peaks
from ._filters import _SAFE_EXPONENT, filter_matrix
from .batched import _layout, _padded, _segment_sums, kept_alone_on_cpu
from .drift import DriftBasis, DriftResult, _symmetric_kl

__all__ = ["FixedCounts", "drift_counts_fixed", "drift_from_counts", "drift_many"]

_CHUNK = 256  # filters per chunk: the padding a small set pays, against the product's size
_TINY = 2.0**-64  # a filter peak below this is rescaled by drift(): left to it


T = TypeVar("T")


class _PerReferences(Generic[T]):
    """What is made from a list of references, kept for the lists seen last (a monitor
    compares with the same references at every snapshot). Keyed by the references' ids; each
    entry holds the references themselves, so no id can be reused while it lives."""

    def __init__(self, kept: int) -> None:
        self.kept = kept
        self.entries: OrderedDict[tuple[object, ...], tuple[tuple[DriftBasis, ...], T]] = OrderedDict()

    def get(self, refs: Sequence[DriftBasis], extra: tuple[object, ...], make: Callable[[], T]) -> T:
        key = (tuple(id(r) for r in refs), *extra)
        hit = self.entries.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], refs, strict=True)):
            self.entries.move_to_end(key)
            return hit[1]
        value = make()
        self.entries[key] = (tuple(refs), value)
        while len(self.entries) > self.kept:
            self.entries.popitem(last=False)
        return value


_Made = tuple[Frame, torch.Tensor, float]  # a reference's frame, offsets, round-off bound
_Stacked = tuple[list[Frame], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
_FRAMES: _PerReferences[_Made] = _PerReferences(1024)
_STACKS: _PerReferences[_Stacked] = _PerReferences(64)
_HOST: _PerReferences[tuple[torch.Tensor, torch.Tensor]] = _PerReferences(64)


def _frame(ref: DriftBasis, dtype: torch.dtype, device: torch.device) -> _Made:
    """The reference's Frame and round-off bound, made exactly as drift() makes them."""
    def make() -> _Made:
        frame = Frame(ref.mean.to(device, torch.float64), ref.basis.to(device, torch.float64), ref.lo,
                      ref.hi, int(ref.hist.shape[1]))
        return frame, frame.offset, _roundoff(dtype, frame)

    return _FRAMES.get([ref], (dtype, device), make)


def _frames(refs: Sequence[DriftBasis], dtype: torch.dtype, device: torch.device) -> _Stacked:
    """Each set's :class:`Frame` as drift() makes it (offsets and round-off bound computed
    set by set: drift()'s to the last bit, which decides a position exactly on a bin edge)
    and, stacked: basis ``(L, K, K)`` and offset ``(L, K)`` in float64, bins per unit ``(L,)``,
    round-off bounds ``(L,)``. Kept per list of references, so a snapshot that compares with
    the same ones again (a captured one, above all) copies nothing from the host."""
    def make() -> _Stacked:
        made = [_frame(r, dtype, device) for r in refs]
        frames = [m[0] for m in made]
        return (frames, torch.stack([fr.basis for fr in frames]), torch.stack([m[1] for m in made]),
                torch.tensor([fr.scale for fr in frames], dtype=torch.float64, device=device),
                torch.tensor([m[2] for m in made], dtype=torch.float64, device=device))

    return _STACKS.get(refs, (dtype, device), make)


def _host_terms(refs: Sequence[DriftBasis]) -> tuple[torch.Tensor, torch.Tensor]:
    """The references' histograms and explained-variance ratios on the host, stacked (a
    captured snapshot reads them at every replay: no copy each time)."""
    return _HOST.get(refs, (), lambda: (torch.stack([r.hist.to("cpu", torch.float64) for r in refs]),
                                        torch.stack([r.explained.to("cpu", torch.float64) for r in refs])))


def _usable(f: torch.Tensor, peak: torch.Tensor, owner: torch.Tensor, size: int, tol: torch.Tensor
            ) -> list[bool]:
    """Which sets the batch can take (read on the host: drift is not in a captured part)."""
    worst = torch.zeros(size, dtype=torch.float64, device=f.device).scatter_reduce_(
        0, owner, torch.nan_to_num(peak.to(torch.float64), nan=0.0, posinf=0.0), "amax")
    bad = _segment_sums(~torch.isfinite(peak) | ((peak > 0) & (peak < _TINY)), owner, size)
    exponent = torch.frexp(worst).exponent
    ok = (bad == 0) & ((exponent.abs() <= _SAFE_EXPONENT) | (worst == 0)) & (tol < _FLOAT64_BELOW)
    return [bool(x) for x in ok.tolist()]


def _subset(filters: Sequence[torch.Tensor], references: Sequence[DriftBasis], keep: list[int]
            ) -> list[DriftResult | None]:
    """The batch of the sets ``keep``; ``None`` for the others."""
    out: list[DriftResult | None] = [None] * len(filters)
    if keep:
        results = _batch([filters[i] for i in keep], [references[i] for i in keep])
        for i, r in zip(keep, results, strict=True):
            out[i] = r
    return out


def _positions_of(rows: torch.Tensor, chunk: int, k: int) -> torch.Tensor:
    """Where the K values of filters ``rows`` sit in the flat ``(chunks, K, chunk)`` layout,
    filter by filter (``(len(rows) * K,)``)."""
    at = (rows // chunk) * (k * chunk) + rows % chunk
    return (at[:, None] + torch.arange(k, device=rows.device)[None, :] * chunk).reshape(-1)


def drift_many(currents: Sequence[torch.Tensor], references: Sequence[DriftBasis]
               ) -> list[DriftResult | None]:
    """Drift of each ``currents[i]`` (a conv weight or an ``(n, K)`` filter matrix) from
    ``references[i]``, the sets of each filter size, dtype and device in one batch; ``None``
    where :func:`~filterwatch.functional.drift` must take that set (see the module's text).

    Example:
        >>> import torch
        >>> from filterwatch.functional import drift, drift_basis
        >>> _ = torch.manual_seed(0)
        >>> ws = [torch.randn(64, 16, 3, 3), torch.randn(8, 1, 3, 3), torch.randn(8, 4, 5, 5)]
        >>> refs = [drift_basis(w) for w in ws]
        >>> moved = [w + 0.3 * torch.randn_like(w) for w in ws]
        >>> [abs(a.value - drift(w, r).value) < 1e-9 for a, w, r in zip(drift_many(moved, refs), moved, refs)]
        [True, True, True]
    """
    # what drift() would refuse (not a float tensor, no values, on the meta device) is left to it
    plain = [isinstance(w, torch.Tensor) and w.is_floating_point() and w.numel() > 0 and w.ndim >= 2
             and not w.is_meta for w in currents]
    filters = [filter_matrix(w if w.ndim > 2 else w.unsqueeze(1)).detach() if ok else torch.empty(0, 0)
               for w, ok in zip(currents, plain, strict=True)]
    filters = [f if f.dtype == torch.float64 else f.to(torch.float32) for f in filters]
    kinds: dict[tuple[object, ...], list[int]] = {}
    for i, (f, ref, ok) in enumerate(zip(filters, references, plain, strict=True)):
        if ok and not kept_alone_on_cpu(f) and int(ref.basis.shape[0]) == int(f.shape[1]):
            kinds.setdefault((int(f.shape[1]), f.dtype, f.device, int(ref.hist.shape[1])), []).append(i)
    out: list[DriftResult | None] = [None] * len(filters)
    for members in kinds.values():
        for i, r in zip(members, _batch([filters[i] for i in members], [references[i] for i in members]),
                        strict=True):
            out[i] = r
    return out


def _batch(filters: Sequence[torch.Tensor], references: Sequence[DriftBasis]) -> list[DriftResult | None]:
    """:func:`drift_many` of ``(n, K)`` filter matrices of one K, dtype, device and bin count."""
    dtype, k, dev, size = filters[0].dtype, int(filters[0].shape[1]), filters[0].device, len(filters)
    layout = _layout(tuple((int(f.shape[0]), 1) for f in filters), k, _CHUNK, dtype, dev)
    f = _padded(filters, layout)
    peak = _row_peaks(f)
    frames, basis, offset, scale, tol = _frames(references, dtype, dev)
    usable = _usable(f, peak, layout.owner, size, tol)
    if not all(usable):
        return _subset(filters, references, [i for i, ok in enumerate(usable) if ok])
    bins = int(references[0].hist.shape[1])
    chunk_of = layout.chunk_seg
    # positions (chunks, K, chunk) = (B f) · s / peak + c, as drift() computes them
    y = torch.bmm(basis.to(dtype).index_select(0, chunk_of), f.view(-1, layout.chunk, k).transpose(1, 2))
    inv = torch.where(peak == 0, torch.ones_like(peak), peak).reciprocal_()
    inv.mul_(scale.to(dtype).index_select(0, layout.owner))
    y.mul_(inv.view(-1, 1, layout.chunk)).add_(offset.to(dtype).index_select(0, chunk_of)[:, :, None])
    near = None
    if dtype != torch.float64:  # positions within round-off of an edge: float64 below
        dist = torch.round(y).sub_(y).abs_().amin(dim=1).view(-1)
        close = dist < tol.to(dtype).index_select(0, layout.owner)
        close.index_fill_(0, layout.pad_rows, False)
        near = close.nonzero().flatten()
    y.clamp_(0, bins - 1)
    idx = y.to(torch.int32)
    base = (chunk_of[:, None] * k + torch.arange(k, device=dev)[None, :]) * bins  # (chunks, K)
    idx += base.to(torch.int32)[:, :, None]  # each set's and component's own bins
    flat = idx.view(-1)
    if near is not None and near.numel():
        who = layout.owner.index_select(0, near)
        # rows come set after set: recomputed as drift() does, with each set's own frame
        per_set = torch.bincount(who, minlength=size).tolist()
        parts = zip(torch.split(f.index_select(0, near), per_set),
                    torch.split(peak.index_select(0, near), per_set), frames, strict=True)
        exact = torch.cat([_exact_positions(rows, p, frame).T for rows, p, frame in parts if rows.numel()])
        keys = exact.floor_().clamp_(0, bins - 1) + (who[:, None] * k + torch.arange(k, device=dev)) * bins
        flat.index_copy_(0, _positions_of(near, layout.chunk, k), keys.reshape(-1).to(torch.int32))
    flat.index_fill_(0, _positions_of(layout.pad_rows, layout.chunk, k), size * k * bins)  # dropped
    counts = torch.bincount(flat, minlength=(size * k + 1) * bins)
    counts = counts[: size * k * bins].view(size, k, bins).to(torch.float64)
    ref = torch.stack([r.hist.to(dev, torch.float64) for r in references])
    explained = torch.stack([r.explained.to(dev, torch.float64) for r in references])
    components = explained * _symmetric_kl(ref, counts)
    values = components.sum(dim=1).tolist()
    return [DriftResult(v, components[i], counts[i]) for i, v in enumerate(values)]


class FixedCounts(NamedTuple):
    """What :func:`drift_counts_fixed` leaves on the device: the counts ``(L, K, bins)`` and,
    per set, what :func:`drift_from_counts` needs to know whether drift() must take it."""

    counts: torch.Tensor  # (L, K, bins) float64
    bad: torch.Tensor     # (L,) float64: filters with NaN/Inf or a peak that needs rescaling
    worst: torch.Tensor   # (L,) float64: the largest finite peak


def drift_counts_fixed(filters: Sequence[torch.Tensor], references: Sequence[DriftBasis]) -> FixedCounts:
    """Histogram counts of many ``(n, K)`` filter sets of one K, dtype, device and bin count on
    their references' bins, with **no host read**: fixed-size outputs only, every position in
    float64 (no edge recomputation, whose size depends on the data), counts added with a
    fixed-size ``index_add``. This is the drift of a captured snapshot (a CUDA graph): the
    frames are made before capture (they are kept per reference). The counts are those of
    float64 arithmetic, as drift()'s are; they can differ from drift()'s only where a float64
    position lies within a few ulps of a bin edge. Sets that drift() must take (NaN/Inf,
    extreme scales, tiny filters) are flagged by ``bad``/``worst`` for
    :func:`drift_from_counts`, and their counts are not to be used.
    """
    k, dev, size = int(filters[0].shape[1]), filters[0].device, len(filters)
    bins = int(references[0].hist.shape[1])
    layout = _layout(tuple((int(f.shape[0]), 1) for f in filters), k, _CHUNK, torch.float64, dev)
    f = _padded([m.to(torch.float64) for m in filters], layout)
    peak = f.abs().amax(dim=1)
    _, basis, offset, scale, _ = _frames(references, torch.float64, dev)
    chunk_of = layout.chunk_seg
    y = torch.bmm(basis.index_select(0, chunk_of), f.view(-1, layout.chunk, k).transpose(1, 2))
    per_filter = scale.index_select(0, layout.owner) / torch.where(peak == 0, torch.ones_like(peak), peak)
    y = y * per_filter.view(-1, 1, layout.chunk) + offset.index_select(0, chunk_of)[:, :, None]
    idx = torch.nan_to_num(y, nan=0.0).clamp_(0, bins - 1).floor_().long()
    idx += ((chunk_of[:, None] * k + torch.arange(k, device=dev)[None, :]) * bins)[:, :, None]
    flat = idx.view(-1).index_fill_(0, _positions_of(layout.pad_rows, layout.chunk, k), size * k * bins)
    counts = torch.zeros((size * k + 1) * bins, dtype=torch.float64, device=dev)
    counts.index_add_(0, flat, torch.ones(1, dtype=torch.float64, device=dev).expand(flat.numel()))
    finite = torch.isfinite(peak)
    flagged = (~finite | ((peak > 0) & (peak < _TINY))).index_fill_(0, layout.pad_rows, False)
    bad = _segment_sums(flagged, layout.owner, size)
    worst = torch.zeros(size, dtype=torch.float64, device=dev).scatter_reduce_(
        0, layout.owner, torch.where(finite, peak, torch.zeros_like(peak)), "amax")
    return FixedCounts(counts[: size * k * bins].view(size, k, bins), bad, worst)


def drift_from_counts(fixed: FixedCounts, references: Sequence[DriftBasis]) -> list[DriftResult | None]:
    """Drift of each set from :func:`drift_counts_fixed`'s counts, on the host; ``None``
    where drift() must take the set (NaN/Inf, extreme scales, tiny filters, a reference too
    coarse for float32), as :func:`drift_many` leaves them."""
    counts, bad, worst = (t.to("cpu", torch.float64) for t in fixed)
    exponent = torch.frexp(worst).exponent
    ok = ((bad == 0) & ((exponent.abs() <= _SAFE_EXPONENT) | (worst == 0))).tolist()
    ref, explained = _host_terms(references)
    components = explained * _symmetric_kl(ref, counts)
    values = components.sum(dim=1).tolist()
    return [DriftResult(v, components[i], counts[i]) if ok[i] else None for i, v in enumerate(values)]
