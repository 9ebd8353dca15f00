"""``analyze``: every measure for every selected conv layer, as a :class:`Report`."""

from __future__ import annotations

import datetime as _dt
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from .._version import __version__
from ..errors import InputError
from ..functional.sparsity import check_eps
from ..layers import (
    ConvLayer,
    LayerSelection,
    check_selection,
    describe_source,
    discover_layers,
    load_state_dict,
    own_forward_convs,
    select_layers,
)
from ..reference import Matching, Reference, ReferencePlan, check_matching
from ..report import LayerReport, Report
from .engine import KernelRead, Precision, check_precision, measure_layers
from .spectral import Spectral, check_input_size

__all__ = ["analyze", "analyze_layers"]

Source = nn.Module | Mapping[str, torch.Tensor] | str | Path


def analyze(
    source: Source,
    *,
    select: LayerSelection | None = None,
    reference: Reference | None = None,
    matching: Matching | None = None,
    sparsity_eps: float = 0.01,
    orthogonality: bool = True,
    precision: Precision = "float32",
    progress: Callable[[int, int, str], None] | None = None,
    spectral: bool = False,
    input_size: tuple[int, ...] | int | str | None = None,
) -> Report:
    """Measure the filters of every selected conv layer.

    Every option is checked before anything is loaded.

    Args:
        source: an ``nn.Module``, a state_dict, or a checkpoint path (loaded safely).
        select: which layers (default: all but 1x1), a :class:`filterwatch.LayerSelection`.
        reference: adds ``drift``, ``drift_components``, ``drift_noise`` and (with a snapshot)
            ``relative_change`` per layer; see :class:`filterwatch.Reference`.
        matching: how layer names are matched to the reference's
            (:class:`filterwatch.reference.Matching`; default: exact names, then without
            a shared prefix).
        sparsity_eps: relative threshold of :func:`filterwatch.functional.sparsity`.
        orthogonality: compute orthogonality (the costly measure).
        precision: ``"float32"`` (default: products in float32, sums in float64) or
            ``"float64"`` (every product in float64, about twice as slow). They agree to
            about 1e-6.
        progress: called as ``progress(done, total, layer_name)`` after each layer.
        spectral: also the spectral measures (``spectral_norm``, ``condition_number``,
            ``stable_rank``, ``effective_rank``, ``lipschitz_bound``; see
            :mod:`filterwatch.functional.spectral`). Off by default: exact and certified,
            they cost an FFT and float64 eigenvalues per layer (seconds for 512-channel 3x3
            layers on a CPU; see the README's benchmark).
        input_size: with ``spectral``, also ``lipschitz``: the exact norm of each kernel as a
            stride-1 circular convolution on an input of this size (``(32, 32)``, ``"32x32"``).

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
    selection = check_selection(select)
    options = _Options(sparsity_eps, orthogonality, precision, reference, matching, spectral, input_size)
    name = describe_source(source)
    state = load_state_dict(source) if isinstance(source, str | Path) else source
    layers = select_layers(state, selection, name)
    settings: dict[str, object] = dict(selection.as_dict())
    everything = discover_layers(state, select=LayerSelection.everything(selection.transposed))
    pointwise = [layer.name for layer in everything if all(s == 1 for s in layer.kernel_size)
                 and not selection.accepts(layer.name, layer.kernel_size)]
    if pointwise:  # listed, so that "left out" is visible (VE is 0 for one-value kernels)
        settings["left_out_pointwise"] = pointwise
    custom = own_forward_convs(source) if isinstance(source, nn.Module) else []
    custom = [n for n in custom if any(layer.name == n for layer in layers)]
    if custom:  # say which kernel was measured
        settings["measured_parameter_not_op_weight"] = custom
        warnings.warn(
            f"{', '.join(custom[:5])}{' ...' if len(custom) > 5 else ''}: conv classes with their own "
            "forward (e.g. weight standardisation) may convolve with a kernel other than their "
            "`weight` parameter; analyze() measured the parameter. filterwatch.watch() measures "
            "the kernel each convolution op receives.", UserWarning, stacklevel=2)
    return options.run(layers, source=name, settings=settings, progress=progress)


class _Options:
    """The measurement options, validated once."""

    def __init__(self, sparsity_eps: float, orthogonality: bool, precision: object,
                 reference: Reference | None, matching: Matching | None, spectral: bool = False,
                 input_size: object = None) -> None:
        self.sparsity_eps = check_eps(sparsity_eps, "sparsity_eps")
        self.orthogonality = bool(orthogonality)
        self.precision = check_precision(precision)
        if reference is not None and not isinstance(reference, Reference):
            raise InputError(f"`reference` expected a filterwatch.Reference or None, got "
                            f"{type(reference).__name__}; hint: Reference.load(path)")
        self.reference = reference
        self.matching = check_matching(matching)
        if not isinstance(spectral, bool):
            raise InputError(f"`spectral` expected True or False, got {spectral!r}")
        sizes = check_input_size(input_size)
        if sizes is not None and not spectral:
            raise InputError("`input_size` expected spectral=True (it sizes the exact operator norm), "
                             "got spectral=False")
        self.spectral = Spectral(sizes) if spectral else None

    def run(self, layers: Sequence[ConvLayer], *, source: str, settings: Mapping[str, object],
            progress: Callable[[int, int, str], None] | None, step: int | None = None,
            on_kernel: Callable[[KernelRead], None] | None = None) -> Report:
        plan = None if self.reference is None else ReferencePlan(layers, self.reference, self.matching)
        reports = measure_layers(layers, sparsity_eps=self.sparsity_eps,
                                 orthogonality=self.orthogonality, precision=self.precision,
                                 progress=progress, plan=plan, on_kernel=on_kernel,
                                 spectral=self.spectral)
        all_settings: dict[str, object] = {"sparsity_eps": self.sparsity_eps, **settings}
        if self.spectral is not None:
            all_settings["spectral"] = True
            if self.spectral.input_size is not None:
                all_settings["input_size"] = list(self.spectral.input_size)
                all_settings["lipschitz"] = ("exact norm of each kernel as a stride-1 circular "
                                             "convolution at input_size")
            all_settings["lipschitz_bound_product"] = _bound_product(reports)
        if self.precision != "float32":
            all_settings["precision"] = self.precision
        all_settings["reference"] = None if self.reference is None else ", ".join(self.reference.sources)
        return Report(layers=reports, source=source, settings=all_settings, step=step,
                      filterwatch_version=__version__,
                      created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))


def analyze_layers(
    layers: Sequence[ConvLayer],
    *,
    source: str = "",
    settings: Mapping[str, object] | None = None,
    reference: Reference | None = None,
    matching: Matching | None = None,
    sparsity_eps: float = 0.01,
    orthogonality: bool = True,
    precision: Precision = "float32",
    progress: Callable[[int, int, str], None] | None = None,
    step: int | None = None,
    on_kernel: Callable[[KernelRead], None] | None = None,
    spectral: bool = False,
) -> Report:
    """:func:`analyze` on layers that were already discovered (used by the monitors);
    ``on_kernel`` sees each kernel while the snapshot holds it (see
    :func:`~filterwatch.measure.engine.measure_layers`)."""
    options = _Options(sparsity_eps, orthogonality, precision, reference, matching, spectral)
    return options.run(layers, source=source, settings=settings or {}, progress=progress, step=step,
                       on_kernel=on_kernel)


def _bound_product(reports: Sequence[LayerReport]) -> float | None:
    """The product of the layers' Lipschitz bounds: a bound of the conv stack *with
    1-Lipschitz activations and no skip connections* (None when a layer has none)."""
    bounds = [r.lipschitz_bound for r in reports]
    if not bounds or any(b is None for b in bounds):
        return None
    return math.prod(b for b in bounds if b is not None)
