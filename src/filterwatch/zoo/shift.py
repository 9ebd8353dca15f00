"""``filterwatch zoo shift``: the paper's study of a scanned zoo.

Over every filter of one kernel size in the zoo: one PCA basis of the peak-scaled filters
(signed as drift's), one coefficient range (the global min and max), a histogram per
component and per group (``--by`` a meta column, or ``depth``: the ten deciles of
``conv_depth_norm``), float32 epsilon for empty bins, and the symmetric KL between two groups'
histograms weighted by the explained-variance ratios: the same convention as drift, so the
numbers compare. Memory is one checkpoint's filters at a time: three passes over the zoo's
``filters/`` (moments, range, counts), never the whole zoo.

Beyond the paper, each pair of groups gets its noise floor (:mod:`filterwatch.zoo.noise`):
the 95th percentile of the shifts that re-drawn labels give for groups of those sizes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ..errors import InputError
from ..functional.drift import BINS, _sign_fix, _symmetric_kl
from .noise import MIN_FILTERS, MIN_UNITS, pair_noise
from .scan import filters_file

__all__ = ["DEPTH", "Shift", "depth_decile", "shift_matrix"]

DEPTH = "depth"


def depth_decile(depth_norm: float) -> str:
    """The paper's depth group of a layer: the decile of its normalised depth.

    Example:
        >>> depth_decile(0.0), depth_decile(0.55), depth_decile(1.0)
        ('0.0-0.1', '0.5-0.6', '0.9-1.0')
    """
    i = min(int(depth_norm * 10), 9)
    return f"{i / 10:.1f}-{(i + 1) / 10:.1f}"


class Shift(NamedTuple):
    """The shift matrix between the groups (symmetric, zero diagonal, in nats), its noise
    floor (the same shape: the 95th percentile of the shifts re-drawn labels give), how each
    pair's labels were re-drawn (``"units"``: checkpoints for a meta column, layers for
    depth; ``"filters"``: where a group has too few), the units each group holds, and notes."""

    by: str
    kernel_size: str
    groups: list[str]
    n_filters: list[int]
    matrix: list[list[float]]
    explained: list[float]
    noise: list[list[float]] | None = None
    noise_redrawn: list[list[str]] | None = None
    n_units: list[int] | None = None
    notes: tuple[str, ...] = ()

    @property
    def unit(self) -> str:
        """What a unit of a group is: a layer for depth deciles, else a checkpoint."""
        return "layers" if self.by == DEPTH else "checkpoints"

    def to_dict(self) -> dict[str, Any]:
        return {"by": self.by, "kernel_size": self.kernel_size, "groups": self.groups,
                "n_filters": self.n_filters, "n_units": self.n_units, "unit": self.unit,
                "matrix": self.matrix, "noise": self.noise, "noise_redrawn": self.noise_redrawn,
                "noise_quantile": 0.95, "explained": self.explained, "notes": list(self.notes)}

    def cell_text(self, i: int, j: int, digits: int = 3) -> str:
        v = f"{self.matrix[i][j]:.{digits}f}"
        return v if self.noise is None or i == j else f"{v} ({self.noise[i][j]:.{digits}f})"

    def explanation(self) -> list[str]:
        lines = [f"symmetric KL (nats) of {self.kernel_size} filter distributions by {self.by}, "
                 "weighted by the explained variance (0: the same)"]
        if self.noise is not None:
            lines.append(f"(in brackets: the noise floor, the 95th percentile of the shifts that "
                         f"re-drawn labels give for groups of those sizes; labels re-drawn among "
                         f"{self.unit}, or among filters where a group has fewer than {MIN_UNITS} "
                         f"{self.unit}; a shift near its noise is sampling alone)")
        return lines + [f"note: {n}" for n in self.notes]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_markdown(self) -> str:
        head = "| " + self.by + " | filters | " + " | ".join(self.groups) + " |"
        rule = "|---|---:|" + "---:|" * len(self.groups)
        body = [f"| {g} | {n} | " + " | ".join(self.cell_text(i, j) for j in range(len(self.groups))) + " |"
                for i, (g, n) in enumerate(zip(self.groups, self.n_filters, strict=True))]
        return "\n".join([head, rule, *body, "", *self.explanation()]) + "\n"

    def to_table(self) -> str:
        width = max([len(self.by), *(len(g) for g in self.groups)])
        cols = [max(7 if self.noise is None else 15, len(g)) for g in self.groups]

        def cells(values: list[str]) -> str:
            return "  ".join(f"{v:>{c}}" for v, c in zip(values, cols, strict=True))

        lines = [f"{self.by:<{width}}  {'filters':>9}  " + cells(self.groups)]
        for i, (g, n) in enumerate(zip(self.groups, self.n_filters, strict=True)):
            row = [self.cell_text(i, j) for j in range(len(self.groups))]
            lines.append(f"{g:<{width}}  {n:>9}  " + cells(row))
        return "\n".join(lines + self.explanation()) + "\n"


def _members(table: Any, meta_columns: list[str], by: str, kernel_size: str) -> dict[str, dict[str, str]]:
    """For each checkpoint file, its layers of ``kernel_size`` and each one's group."""
    if by != DEPTH and by not in meta_columns:
        meta = ", ".join(meta_columns) or "none"
        raise InputError(f"`--by` expected `depth` or a meta column of the zoo ({meta}), got {by!r}")
    members: dict[str, dict[str, str]] = {}
    for row in table.to_pylist():
        if row["kernel_size"] != kernel_size:
            continue
        group = depth_decile(row["conv_depth_norm"]) if by == DEPTH else str(row[by])
        members.setdefault(row["path"], {})[row["layer"]] = group
    if not members:
        raise InputError(f"`--kernel-size` expected a kernel size in the zoo, got {kernel_size!r} "
                         "with no layers")
    return members


def _filters(folder: Path, members: dict[str, dict[str, str]]
             ) -> Iterator[tuple[str, tuple[str, str], torch.Tensor]]:
    """``(group, (path, layer), peak-scaled filters)`` per layer, one checkpoint's file at a
    time."""
    from safetensors import safe_open

    for path, layers in sorted(members.items()):
        file = filters_file(folder, path)
        if not file.is_file():
            raise InputError(f"{folder}: the filters of {path!r} are missing; hint: scan it again "
                             "(filterwatch zoo scan ... --force)")
        with safe_open(str(file), framework="pt") as fh:
            for name, group in layers.items():
                yield group, (path, name), fh.get_tensor(name).to(torch.float64)


def shift_matrix(folder: Path, table: Any, meta_columns: list[str], by: str, kernel_size: str = "3x3",
                 bins: int = BINS) -> Shift:
    """The shift matrix of the zoo in ``folder`` (its ``table`` and meta columns) between the
    groups of ``by`` (see the module)."""
    members = _members(table, meta_columns, by, kernel_size)
    n, s1, s2 = 0, None, None
    for _, _, f in _filters(folder, members):  # 1: the moments of every filter
        n += int(f.shape[0])
        s1 = f.sum(dim=0) if s1 is None else s1 + f.sum(dim=0)
        s2 = f.T @ f if s2 is None else s2 + f.T @ f
    if n < 2 or s1 is None or s2 is None:
        raise InputError(f"`zoo` expected at least 2 filters of {kernel_size}, got {n}")
    mean = s1 / n
    evals, evecs = torch.linalg.eigh((s2 - n * torch.outer(mean, mean)) / (n - 1))
    order = torch.argsort(evals, descending=True)
    lam = evals[order].clamp_min(0.0)
    basis = _sign_fix(evecs[:, order].T.contiguous())
    explained = lam / lam.sum() if float(lam.sum()) > 0 else torch.zeros_like(lam)
    lo, hi = math.inf, -math.inf
    for _, _, f in _filters(folder, members):  # 2: one coefficient range
        c = (f - mean) @ basis.T
        lo, hi = min(lo, float(c.min())), max(hi, float(c.max()))
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    k = int(mean.shape[0])
    units: dict[str, dict[str | tuple[str, str], torch.Tensor]] = {}  # group -> unit -> counts
    sizes: dict[str, int] = {}
    for group, (path, layer), f in _filters(folder, members):  # 3: the histograms per unit
        c = (f - mean) @ basis.T
        idx = ((c - lo) * (bins / (hi - lo))).floor_().clamp_(0, bins - 1).long()
        idx += (torch.arange(k) * bins)[None, :]
        unit: str | tuple[str, str] = (path, layer) if by == DEPTH else path
        held = units.setdefault(group, {})
        held[unit] = held.get(unit, torch.zeros(k * bins, dtype=torch.float64)) + torch.bincount(
            idx.reshape(-1), minlength=k * bins).to(torch.float64)
        sizes[group] = sizes.get(group, 0) + int(f.shape[0])
    groups = sorted(units)
    per_unit = [torch.stack(list(units[g].values())).view(-1, k, bins) for g in groups]
    hist = torch.stack([u.sum(dim=0) for u in per_unit])  # (G, K, bins)
    terms = _symmetric_kl(hist[:, None], hist[None, :])  # (G, G, K)
    matrix = (terms * explained).sum(dim=-1)
    noise, redrawn = pair_noise(per_unit, explained)
    small = [g for g in groups if sizes[g] < MIN_FILTERS]
    notes = (f"{len(small)} group(s) with fewer than {MIN_FILTERS} filters ({', '.join(small[:5])}"
             f"{', ...' if len(small) > 5 else ''}): their shifts are mostly noise; compare them "
             "with their noise floor",) if small else ()
    return Shift(by, kernel_size, groups, [sizes[g] for g in groups], matrix.tolist(), explained.tolist(),
                 noise, redrawn, [len(u) for u in per_unit], notes)
