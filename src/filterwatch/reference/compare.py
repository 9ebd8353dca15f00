"""Drift and relative change of a model's layers against a :class:`Reference`."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import InputError, UndefinedMeasureError
from ..functional.drift import drift, drift_noise_floor
from ..functional.norms import relative_change
from ..layers import ConvLayer, format_kernel_size
from ..report import LayerReport
from .matching import Matching, match_layers
from .reference import Reference

__all__ = ["compare_to_reference"]


def _names_for(layers: Sequence[ConvLayer], ref: Reference, matching: Matching) -> dict[str, str]:
    """Model layer name -> reference layer name (only meaningful for per-layer references)."""
    names = [layer.name for layer in layers]
    if ref.grouping != "layer":
        return {n: n for n in names}
    shapes = ({layer.name: list(layer.shape) for layer in layers}, ref.layer_shapes)
    return match_layers(names, list(ref.groups), mapping=matching.layer_map, by_order=matching.by_order,
                        shapes=shapes, allow_unmatched=matching.allow_unmatched)


def _one(layer: ConvLayer, report: LayerReport, ref: Reference, ref_name: str | None,
         lenient: bool) -> None:
    if layer.unavailable:
        report.undefined["drift"] = layer.unavailable
        return
    if ref_name is None:
        report.undefined["drift"] = "no matching layer in the reference"
        return
    key = ref.key_for(layer, ref_name)
    group = ref.groups.get(key)
    if group is None:
        report.undefined["drift"] = f"the reference has no group `{key}`"
        return
    if group.kernel_size != layer.kernel_size:
        if lenient:  # e.g. model surgery during training: explain, don't fail
            report.undefined["drift"] = (
                f"the reference group `{key}` has {format_kernel_size(group.kernel_size)} kernels, "
                f"the layer now has {format_kernel_size(layer.kernel_size)}")
            if ref.snapshot:
                report.undefined["relative_change"] = "no reference weights of the same shape"
            return
        raise InputError(
            f"layer `{layer.name}`: reference group `{key}` expected "
            f"{format_kernel_size(group.kernel_size)} kernels, got "
            f"{format_kernel_size(layer.kernel_size)}; hint: the reference was built from another model"
        )
    w = layer.kernel()
    try:
        result = drift(w, group.basis)
        report.drift = result.value
        report.drift_components = result.components.tolist()
        report.drift_noise = drift_noise_floor(group.basis, layer.n_filters)
    except UndefinedMeasureError as exc:
        report.undefined["drift"] = str(exc)
    snap = ref.snapshot.get(ref_name)
    if snap is not None and tuple(snap.shape) == tuple(w.shape):
        if int((~torch.isfinite(w)).sum()) == 0:
            report.relative_change = relative_change(w, snap)
        else:
            report.undefined["relative_change"] = "the weight holds non-finite values"
    elif ref.snapshot:
        report.undefined["relative_change"] = "no reference weights of the same shape"


def compare_to_reference(
    layers: Sequence[ConvLayer],
    reports: Sequence[LayerReport],
    reference: Reference,
    matching: Matching | None = None,
) -> None:
    """Fill ``drift``, ``drift_components``, ``drift_noise`` (what sampling alone would give,
    see :func:`filterwatch.functional.drift_noise_floor`) and ``relative_change`` in place.

    Raises:
        InputError: layers that cannot be matched to the reference, or a kernel-size
            mismatch (with ``matching.allow_unmatched`` both become a reason next to a null drift).
    """
    matching = matching or Matching()
    names = _names_for(layers, reference, matching)
    with torch.no_grad():
        for layer, report in zip(layers, reports, strict=True):
            _one(layer, report, reference, names.get(layer.name), matching.allow_unmatched)
