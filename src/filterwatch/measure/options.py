"""What one measurement computes, validated once: :class:`MeasureOptions`.

``analyze`` builds one per call; a training-time :class:`~filterwatch.monitor.Monitor`
builds its variants once per run (with and without the costly measures) and each keeps
its reference matching plan until the model's layers change.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable, Mapping, Sequence

from .._version import __version__
from ..errors import InputError
from ..functional.sparsity import check_eps
from ..layers import ConvLayer
from ..reference import Matching, Reference, ReferencePlan, check_matching
from ..report import LayerReport, Report
from .engine import KernelRead, Precision, check_precision, measure_layers
from .graph import SnapshotGraph
from .spectral import Spectral, check_input_size

__all__ = ["MeasureOptions"]


class MeasureOptions:
    """The measurement options of ``analyze`` (see there), checked when made.

    Example:
        >>> import torch
        >>> from filterwatch.layers import discover_layers
        >>> layers = discover_layers(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3)))
        >>> options = MeasureOptions(orthogonality=False)
        >>> options.run(layers).layers[0].orthogonality is None
        True
        >>> options.variant(orthogonality=True).orthogonality
        True
    """

    def __init__(self, sparsity_eps: float = 0.01, orthogonality: bool = True,
                 precision: Precision = "float32", reference: Reference | None = None,
                 matching: Matching | None = None, spectral: bool = False,
                 input_size: object = None, cuda_graph: bool = False) -> None:
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
        # the matching plan of the layers last measured (it depends on their names and shapes)
        self._plan: tuple[tuple[ConvLayer, ...], ReferencePlan] | None = None
        # a training monitor's snapshots on CUDA, as one captured graph per variant (a one-off
        # measurement would capture for a single replay)
        self.cuda_graph = bool(cuda_graph)
        self._graph: SnapshotGraph | None = None

    def variant(self, *, orthogonality: bool | None = None, spectral: bool | None = None,
                reference: Reference | None = None) -> MeasureOptions:
        """The same options with some measures (or the reference) changed; the plan cache is
        kept while the reference is the same."""
        out = MeasureOptions.__new__(MeasureOptions)
        out.__dict__.update(self.__dict__)
        if orthogonality is not None:
            out.orthogonality = bool(orthogonality)
        if spectral is not None:
            out.spectral = (self.spectral or Spectral()) if spectral else None
        if reference is not None and reference is not self.reference:
            out.reference, out._plan = reference, None
        out._graph = None  # each variant captures its own work
        return out

    def plan(self, layers: Sequence[ConvLayer]) -> ReferencePlan | None:
        """The reference matching plan of ``layers``, built again only when their names,
        shapes or kinds changed (model surgery)."""
        if self.reference is None:
            return None
        key = tuple(layers)
        if self._plan is None or self._plan[0] != key:
            self._plan = (key, ReferencePlan(layers, self.reference, self.matching))
        return self._plan[1]

    def run(self, layers: Sequence[ConvLayer], *, source: str = "",
            settings: Mapping[str, object] | None = None,
            progress: Callable[[int, int, str], None] | None = None, step: int | None = None,
            on_kernel: Callable[[KernelRead], None] | None = None) -> Report:
        """Measure ``layers`` (each kernel read once) into a Report; ``on_kernel`` sees each
        kernel while the measurement holds it."""
        reports = measure_layers(layers, sparsity_eps=self.sparsity_eps,
                                 orthogonality=self.orthogonality, precision=self.precision,
                                 progress=progress, plan=self.plan(layers), on_kernel=on_kernel,
                                 spectral=self.spectral, graph=self._graph_of_run())
        all_settings: dict[str, object] = {"sparsity_eps": self.sparsity_eps, **(settings or {})}
        if self.spectral is not None:
            all_settings["spectral"] = True
            if self.spectral.input_size is not None:
                all_settings["input_size"] = list(self.spectral.input_size)
                all_settings["lipschitz"] = ("exact norm of each kernel as a stride-1 circular "
                                             "convolution at input_size")
            all_settings["lipschitz_bound_product"] = _bound_product(reports)
        if not self.orthogonality:
            all_settings["orthogonality"] = False  # skipped on this snapshot (sampled)
        if self.precision != "float32":
            all_settings["precision"] = self.precision
        all_settings["reference"] = None if self.reference is None else ", ".join(self.reference.sources)
        return Report(layers=reports, source=source, settings=all_settings, step=step,
                      filterwatch_version=__version__,
                      created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    def _graph_of_run(self) -> SnapshotGraph | None:
        if self.cuda_graph and self._graph is None:
            self._graph = SnapshotGraph()
        return self._graph

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        return f"MeasureOptions({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


def _bound_product(reports: Sequence[LayerReport]) -> float | None:
    """The product of the layers' Lipschitz bounds: a bound of the conv stack *with
    1-Lipschitz activations and no skip connections* (None when a layer has none)."""
    bounds = [r.lipschitz_bound for r in reports]
    if not bounds or any(b is None for b in bounds):
        return None
    return math.prod(b for b in bounds if b is not None)


