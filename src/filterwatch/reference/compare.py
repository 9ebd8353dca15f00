"""Drift and relative change of a model's layers against a :class:`Reference`.

Two steps, so that a snapshot reads each kernel once: :class:`ReferencePlan` matches the
layers to the reference and checks that they fit *before* any kernel is read (a mismatch is
an error up front); :meth:`ReferencePlan.compare` then works on a kernel that was already
read for the other measures, and :meth:`ReferencePlan.apply` writes the result into the
layer's report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from ..errors import InputError, UndefinedMeasureError
from ..functional.drift import DriftBasis, DriftResult, drift
from ..functional.drift_many import drift_many
from ..functional.norms import relative_change, relative_change_compute
from ..layers import ConvLayer, format_kernel_size
from ..report import LayerReport
from .group import ReferenceGroup
from .matching import Matching, match_layers
from .reference import Reference

__all__ = ["Comparison", "ReferencePlan"]


class _Target(NamedTuple):
    """What one layer is compared with; the reasons say why something is missing."""

    group: ReferenceGroup | None
    ref_name: str | None
    drift_reason: str = ""
    change_reason: str = ""


class Comparison(NamedTuple):
    """One layer against the reference: drift (its per-component terms, its noise floor, the
    histogram counts of the layer's coefficients) and relative change; reasons for what is
    undefined."""

    drift: float | None = None
    components: list[float] | None = None
    noise: float | None = None
    counts: torch.Tensor | None = None
    relative_change: float | None = None
    drift_reason: str = ""
    change_reason: str = ""
    ref_rms: float | None = None  # the reference's weight scale, for weight growth
    growth_reason: str = ""


_NO_RMS = ("the reference file keeps no weight scale (written before filterwatch kept one); "
           "rebuild it with `filterwatch reference build` to judge weight growth")


def _scale(group: ReferenceGroup | None) -> dict[str, object]:
    """The reference's weight scale of ``group``, or why there is none."""
    if group is None:
        return {}
    return {"ref_rms": group.rms} if group.rms is not None else {"growth_reason": _NO_RMS}


def _names_for(layers: Sequence[ConvLayer], ref: Reference, matching: Matching) -> dict[str, str]:
    """Model layer name -> reference layer name (only meaningful for per-layer references)."""
    names = [layer.name for layer in layers]
    if ref.grouping != "layer":
        return {n: n for n in names}
    shapes = ({layer.name: list(layer.shape) for layer in layers}, ref.layer_shapes)
    ref_names = [*ref.groups, *(k for k in ref.skipped if k not in ref.groups)]
    return match_layers(names, ref_names, mapping=matching.layer_map, by_order=matching.by_order,
                        shapes=shapes, allow_unmatched=matching.allow_unmatched)


class ReferencePlan:
    """Which reference group (and snapshot) each layer is compared with, decided up front.

    Raises:
        InputError: layers that cannot be matched to the reference, or a kernel-size
            mismatch (with ``matching.allow_unmatched`` and ``matching.allow_kernel_change``
            each becomes a reason next to a null drift).
    """

    def __init__(self, layers: Sequence[ConvLayer], reference: Reference,
                 matching: Matching | None = None) -> None:
        self.reference = reference
        matching = matching or Matching()
        names = _names_for(layers, reference, matching)
        self.targets = [self._target(layer, names.get(layer.name), matching.allow_kernel_change)
                        for layer in layers]

    def _target(self, layer: ConvLayer, ref_name: str | None, lenient: bool) -> _Target:
        ref = self.reference
        if layer.unavailable:
            return _Target(None, ref_name, layer.unavailable)
        if ref_name is None:
            return _Target(None, None, "no matching layer in the reference")
        key = ref.key_for(layer, ref_name)
        group = ref.groups.get(key)
        if group is None:
            skipped = ref.skipped.get(key)
            if skipped:  # relative change may still be defined (compare() tries it)
                return _Target(None, ref_name, f"no reference for this layer ({skipped})")
            return _Target(None, ref_name, f"the reference has no group `{key}`")
        if group.kernel_size != layer.kernel_size:
            if not lenient:
                raise InputError(
                    f"layer `{layer.name}`: reference group `{key}` expected "
                    f"{format_kernel_size(group.kernel_size)} kernels, got "
                    f"{format_kernel_size(layer.kernel_size)}; hint: the reference was built "
                    "from another model")
            # e.g. model surgery during training: explain, don't fail
            why = (f"the reference group `{key}` has {format_kernel_size(group.kernel_size)} kernels, "
                   f"the layer now has {format_kernel_size(layer.kernel_size)}")
            change = "no reference weights of the same shape" if ref.snapshot else ""
            return _Target(None, ref_name, why, change)
        return _Target(group, ref_name)

    def compare_many(self, items: Sequence[tuple[int, torch.Tensor]]) -> dict[int, Comparison]:
        """:meth:`compare` of many layers at once: the drift of the layers with a reference
        group goes through :func:`~filterwatch.functional.drift_many` (one batch per filter
        size, dtype and device: a snapshot's cost then barely grows with its layer count);
        the Comparisons are those :meth:`compare` gives."""
        batch = [(i, weight) for i, weight in items
                 if self.targets[i].group is not None and not self.targets[i].change_reason]
        bases = [self.targets[i].group.basis for i, _ in batch]  # type: ignore[union-attr]
        known = dict(zip((i for i, _ in batch), drift_many([w for _, w in batch], bases), strict=True))
        return {i: self.compare(i, weight, known.get(i)) for i, weight in items}

    def fixed_terms(self, items: Sequence[tuple[int, torch.Tensor]]
                    ) -> tuple[list[tuple[int, DriftBasis]], list[tuple[int, torch.Tensor]]]:
        """For a captured snapshot (no host read while it runs): which of the layers
        ``items`` have their drift counted on the device, against which basis, and which
        their relative-change sums, against which weights. :meth:`compare` then takes what
        was measured (``known``, ``known_change``) and does the rest."""
        drift_terms: list[tuple[int, DriftBasis]] = []
        change_terms: list[tuple[int, torch.Tensor]] = []
        for i, weight in items:
            target = self.targets[i]
            if target.change_reason:
                continue
            k = math.prod(weight.shape[2:]) if weight.ndim > 2 else 1
            if target.group is not None and int(target.group.basis.basis.shape[0]) == k:
                drift_terms.append((i, target.group.basis))
            snap = self.reference.snapshot_on(target.ref_name, weight.device)
            if snap is not None and tuple(snap.shape) == tuple(weight.shape):
                change_terms.append((i, snap))
        return drift_terms, change_terms

    def compare(self, index: int, weight: torch.Tensor | None, known: DriftResult | None = None,
                known_change: tuple[float, float] | None = None) -> Comparison:
        """Drift and relative change of layer ``index``, whose kernel ``weight`` was read
        (``None``: not read, e.g. a lazy layer; the comparison then says why); ``known``: its
        drift, already measured (:meth:`compare_many`); ``known_change``: its sums of squares
        of the change and of the reference weights (:meth:`fixed_terms`)."""
        target = self.targets[index]
        if weight is None or target.change_reason:
            return Comparison(drift_reason=target.drift_reason, change_reason=target.change_reason)
        out: dict[str, object] = _scale(target.group)
        if target.group is None:
            out["drift_reason"] = target.drift_reason
        else:
            try:
                result = known if known is not None else drift(weight, target.group.basis)
                n = int(weight.shape[0] * weight.shape[1])
                out.update(drift=result.value, components=result.components.tolist(),
                           counts=result.counts, noise=self.reference.noise_floor(target.group.key, n))
            except UndefinedMeasureError as exc:
                out["drift_reason"] = str(exc)
        snap = self.reference.snapshot_on(target.ref_name, weight.device)
        if snap is not None and tuple(snap.shape) == tuple(weight.shape):
            if out.get("drift_reason") and target.group is not None:  # the kernel holds NaN/Inf
                out["change_reason"] = "the weight holds non-finite values"
            else:
                try:
                    out["relative_change"] = (relative_change(weight, snap) if known_change is None
                                              else relative_change_compute(*known_change))
                except UndefinedMeasureError as exc:
                    out["change_reason"] = str(exc)
        elif self.reference.snapshot:
            out["change_reason"] = "no reference weights of the same shape"
        return Comparison(**out)  # type: ignore[arg-type]

    def itself(self, index: int, n_filters: int) -> Comparison:
        """Layer ``index`` against a reference built from these very weights: zero drift and
        zero change by construction (no kernel needed); the noise floor still applies."""
        target = self.targets[index]
        if target.group is None:
            return Comparison(drift_reason=target.drift_reason, change_reason=target.change_reason)
        basis = target.group.basis
        has_snapshot = target.ref_name in self.reference.snapshot
        return Comparison(drift=0.0, components=[0.0] * int(basis.basis.shape[0]),
                          noise=self.reference.noise_floor(target.group.key, n_filters),
                          counts=basis.hist, relative_change=0.0 if has_snapshot else None,
                          **_scale(target.group))  # type: ignore[arg-type]

    @staticmethod
    def apply(report: LayerReport, c: Comparison) -> None:
        """Write a comparison into the layer's report."""
        report.drift, report.drift_components, report.drift_noise = c.drift, c.components, c.noise
        if c.drift is not None and c.noise:
            report.drift_ratio = c.drift / c.noise
        report.relative_change = c.relative_change
        if c.ref_rms and report.weight_norm is not None and report.shape:
            report.weight_growth = report.weight_norm / math.sqrt(math.prod(report.shape)) / c.ref_rms
        elif c.growth_reason:
            report.undefined["weight_growth"] = c.growth_reason
        if c.drift_reason:
            report.undefined["drift"] = c.drift_reason
        if c.change_reason:
            report.undefined["relative_change"] = c.change_reason

