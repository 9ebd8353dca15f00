"""``analyze``: every measure for every selected conv layer, as a :class:`Report`."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from ..layers import (
    LayerSelection,
    check_selection,
    describe_source,
    discover_layers,
    load_state_dict,
    own_forward_convs,
    select_layers,
)
from ..reference import Matching, Reference
from ..report import Report
from .engine import Precision
from .options import MeasureOptions

__all__ = ["analyze"]

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
    options = MeasureOptions(sparsity_eps, orthogonality, precision, reference, matching, spectral,
                             input_size)
    name = describe_source(source)
    state = load_state_dict(source) if isinstance(source, str | Path) else source
    everything = discover_layers(state, select=LayerSelection.everything(selection.transposed))
    layers = select_layers(state, selection, name, everything)
    settings: dict[str, object] = dict(selection.as_dict())
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
