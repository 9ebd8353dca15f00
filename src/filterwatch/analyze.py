"""``analyze``: every measure for every selected conv layer, as a :class:`Report`."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from ._version import __version__
from .compare import compare_to_reference
from .engine import measure_layers
from .errors import InputError, UndefinedMeasureError
from .functional._filters import _as_float64, _filter_matrix, _output_filter_matrix
from .functional.entropy import _normalize, _variance_entropy_compute, _variance_entropy_update
from .functional.orthogonality import _orthogonality_compute, _orthogonality_update
from .functional.sparsity import _check_eps, _sparsity_compute, _sparsity_update
from .layers import ConvLayer, LayerSelection
from .loading import describe_source, load_state_dict
from .reference import Reference
from .report import LayerReport, Report

__all__ = ["analyze", "analyze_layers", "measure_layer"]

_FILTER_MEASURES = (
    "sparsity",
    "variance_entropy",
    "variance_entropy_norm",
    "variance_entropy_clean",
    "variance_entropy_clean_norm",
    "orthogonality",
)
_NORM_MEASURES = ("weight_norm", "filter_l1_mean", "filter_l2_mean")


def _base_report(layer: ConvLayer) -> LayerReport:
    return LayerReport(
        name=layer.name,
        shape=list(layer.shape),
        kernel_size=list(layer.kernel_size),
        groups=layer.groups,
        kind=layer.kind,
        n_filters=layer.n_filters,
        depth=layer.depth,
        depth_norm=layer.depth_norm,
    )


def _mark_undefined(report: LayerReport, measures: Sequence[str], reason: str) -> None:
    for m in measures:
        setattr(report, m, None)
        report.undefined[m] = reason


def _entropies(report: LayerReport, filters: torch.Tensor, mask: torch.Tensor) -> None:
    k = int(filters.shape[1])
    try:
        ve = _variance_entropy_compute(_variance_entropy_update(filters))
        report.variance_entropy = ve
        report.variance_entropy_norm, why = _normalize(ve, int(filters.shape[0]), k)
        if why:
            report.undefined["variance_entropy_norm"] = why
    except UndefinedMeasureError as exc:
        _mark_undefined(report, ("variance_entropy", "variance_entropy_norm"), str(exc))
    keep = ~mask
    n_clean = int(keep.sum().item())
    clean_keys = ("variance_entropy_clean", "variance_entropy_clean_norm")
    if n_clean == filters.shape[0]:
        report.variance_entropy_clean = report.variance_entropy
        report.variance_entropy_clean_norm = report.variance_entropy_norm
        for src, dst in zip(("variance_entropy", "variance_entropy_norm"), clean_keys, strict=True):
            if src in report.undefined:
                report.undefined[dst] = report.undefined[src]
        return
    try:
        ve_clean = _variance_entropy_compute(_variance_entropy_update(filters[keep]))
        report.variance_entropy_clean = ve_clean
        report.variance_entropy_clean_norm, why = _normalize(ve_clean, n_clean, k)
        if why:
            report.undefined["variance_entropy_clean_norm"] = why
    except UndefinedMeasureError as exc:
        _mark_undefined(report, clean_keys, f"after removing sparse filters: {exc}")


def measure_layer(
    layer: ConvLayer, *, sparsity_eps: float = 0.01, orthogonality: bool = True
) -> LayerReport:
    """All measures of one layer (see :func:`analyze`)."""
    report = _base_report(layer)
    if layer.unavailable:
        _mark_undefined(report, (*_FILTER_MEASURES, *_NORM_MEASURES, "dead_channels", "nonfinite"),
                        layer.unavailable)
        return report
    w = _as_float64(layer.kernel())
    report.nonfinite = int((~torch.isfinite(w)).sum().item())
    dead = (_output_filter_matrix(w) == 0).all(dim=1)
    report.dead_channels = int(dead.sum().item())
    report.dead_channel_indices = dead.nonzero().flatten().tolist()
    if report.nonfinite:
        reason = f"the weight holds {report.nonfinite} non-finite value(s) (NaN/Inf)"
        _mark_undefined(report, (*_FILTER_MEASURES, *_NORM_MEASURES), reason)
        return report
    filters = _filter_matrix(w)
    report.weight_norm = float(torch.linalg.vector_norm(w).item())
    report.filter_l1_mean = float(filters.abs().sum(dim=1).mean().item())
    report.filter_l2_mean = float(torch.linalg.vector_norm(filters, dim=1).mean().item())
    mask, _ = _sparsity_update(filters, sparsity_eps)
    report.sparsity = _sparsity_compute(mask)
    report.n_sparse = int(mask.sum().item())
    _entropies(report, filters, mask)
    if orthogonality:
        try:
            report.orthogonality = _orthogonality_compute(
                *_orthogonality_update(_output_filter_matrix(w))
            )
        except UndefinedMeasureError as exc:
            _mark_undefined(report, ("orthogonality",), str(exc))
    else:
        _mark_undefined(report, ("orthogonality",), "not computed (orthogonality=False)")
    return report


def analyze(
    source: nn.Module | Mapping[str, torch.Tensor] | str | Path,
    *,
    kernel_sizes: Sequence[str | int | Sequence[int]] | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    include_pointwise: bool = False,
    sparsity_eps: float = 0.01,
    orthogonality: bool = True,
    progress: Callable[[int, int, str], None] | None = None,
    reference: Reference | None = None,
    layer_map: Mapping[str, str] | None = None,
    match_by_order: bool = False,
    allow_unmatched: bool = False,
    engine: str = "fused",
) -> Report:
    """Measure the filters of every selected conv layer.

    Args:
        source: an ``nn.Module``, a state_dict, or a checkpoint path (loaded safely).
        kernel_sizes, include, exclude, include_pointwise: layer selection, see
            :func:`filterwatch.discover_layers`.
        sparsity_eps: relative threshold of :func:`filterwatch.functional.sparsity`.
        orthogonality: compute orthogonality (the costly measure).
        progress: called as ``progress(done, total, layer_name)`` after each layer.
        reference: adds ``drift``, ``drift_components`` and (with a snapshot)
            ``relative_change`` per layer; see :class:`filterwatch.Reference`.
        layer_map, match_by_order, allow_unmatched: how layer names are matched to the
            reference's, see :func:`filterwatch.matching.match_layers`.
        engine: ``"fused"`` (default, :mod:`filterwatch.engine`) or ``"reference"`` (the
            float64 functional path, one measure at a time). They agree to about 1e-6.

    Raises:
        NoConvLayersError: the source holds no conv layer, or none matches the selection.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Conv2d(3, 64, 3), nn.ReLU(), nn.Conv2d(64, 64, 3))
        >>> report = analyze(net)
        >>> layer = report.layer("2")
        >>> layer.sparsity, round(layer.variance_entropy_norm, 1)
        (0.0, 1.0)
    """
    name = describe_source(source)
    state = load_state_dict(source) if isinstance(source, str | Path) else source
    selection = LayerSelection(kernel_sizes, include, exclude, include_pointwise)
    return analyze_layers(
        selection.select(state, name), source=name, settings=selection.as_dict(),
        sparsity_eps=sparsity_eps, orthogonality=orthogonality, progress=progress,
        reference=reference, layer_map=layer_map, match_by_order=match_by_order,
        allow_unmatched=allow_unmatched, engine=engine,
    )


def analyze_layers(
    layers: Sequence[ConvLayer],
    *,
    source: str = "",
    settings: Mapping[str, object] | None = None,
    sparsity_eps: float = 0.01,
    orthogonality: bool = True,
    progress: Callable[[int, int, str], None] | None = None,
    reference: Reference | None = None,
    layer_map: Mapping[str, str] | None = None,
    match_by_order: bool = False,
    allow_unmatched: bool = False,
    step: int | None = None,
    engine: str = "fused",
) -> Report:
    """:func:`analyze` on layers that were already discovered (used by the monitors)."""
    if engine not in ("fused", "reference"):
        raise InputError(f"`engine` expected 'fused' or 'reference', got {engine!r}")
    _check_eps(sparsity_eps, "sparsity_eps")
    if engine == "fused":
        reports = measure_layers(layers, sparsity_eps=sparsity_eps, orthogonality=orthogonality,
                                 progress=progress)
    else:
        reports = []
        with torch.no_grad():
            for i, layer in enumerate(layers):
                reports.append(measure_layer(layer, sparsity_eps=sparsity_eps,
                                             orthogonality=orthogonality))
                if progress is not None:
                    progress(i + 1, len(layers), layer.name)
    if reference is not None:
        compare_to_reference(layers, reports, reference, layer_map=layer_map,
                             match_by_order=match_by_order, allow_unmatched=allow_unmatched)
    all_settings: dict[str, object] = {"sparsity_eps": sparsity_eps, **(settings or {})}
    all_settings["reference"] = None if reference is None else ", ".join(reference.sources)
    return Report(
        layers=reports,
        source=source,
        settings=all_settings,
        step=step,
        filterwatch_version=__version__,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
