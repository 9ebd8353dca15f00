"""``FilterMetrics``: the engine as a ``torchmetrics.Metric`` whose states are sufficient
statistics, so they reduce across processes (sums, and a max for the peaks).

``update(model)`` adds a model's (or a shard's) statistics; ``compute()`` returns a
:class:`~filterwatch.report.Report`. Several updates pool their filters (e.g. the
checkpoints of a population). With ``sharded=True`` every process holds different rows of
each layer: the per-layer peaks are all-reduced (max) before the statistics pass, so the
sparse threshold is the global one and the result equals the unsharded model's.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torchmetrics import Metric

from .._version import __version__
from ..errors import InputError
from ..functional.sparsity import check_eps
from ..functional.stats import LayerStats
from ..layers import ConvLayer, LayerSelection, check_selection, discover_layers, select_layers
from ..measure import layer_stats, reports_from_stats
from ..report import Report

__all__ = ["FilterMetrics"]

_SUM_STATES = ("n", "nonfinite", "n_sparse", "s1", "s2", "s1_sparse", "s2_sparse", "abs_sum", "sumsq",
               "row_l2_sum", "dead", "ortho_abs", "ortho_pairs", "updates")


class FilterMetrics(Metric):
    """Filter measures of a model's conv layers as a torchmetrics ``Metric``.

    Args:
        model: the model (or state_dict) whose conv layers define the states.
        select: which layers (a :class:`filterwatch.LayerSelection`; default: all but 1x1).
        sparsity_eps: see :func:`filterwatch.functional.sparsity`.
        orthogonality: compute orthogonality (needs whole output filters on each process).
        sharded: rows of each layer are split across processes (see the module docstring).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.Conv2d(16, 16, 3))
        >>> metric = FilterMetrics(net)
        >>> metric.update(net)
        >>> report = metric.compute()
        >>> [layer.name for layer in report.layers], report.layer("1").sparsity
        (['0', '1'], 0.0)
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(
        self,
        model: nn.Module | Mapping[str, torch.Tensor],
        *,
        select: LayerSelection | None = None,
        sparsity_eps: float = 0.01,
        orthogonality: bool = True,
        sharded: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sparsity_eps = check_eps(sparsity_eps, "sparsity_eps")
        self.selection = check_selection(select)
        self.layers: list[ConvLayer] = [
            layer for layer in select_layers(model, self.selection, type(model).__name__)
            if not layer.unavailable
        ]
        self.orthogonality = orthogonality and not sharded
        self.sharded = sharded
        n_layers = len(self.layers)
        k_max = max(layer.kernel_numel for layer in self.layers)
        c_max = max(layer.shape[0] for layer in self.layers)
        f64 = torch.float64
        shapes: dict[str, tuple[int, ...]] = {
            "n": (n_layers,), "nonfinite": (n_layers,), "n_sparse": (n_layers,), "s1": (n_layers, k_max),
            "s2": (n_layers, k_max, k_max), "s1_sparse": (n_layers, k_max),
            "s2_sparse": (n_layers, k_max, k_max), "abs_sum": (n_layers,), "sumsq": (n_layers,),
            "row_l2_sum": (n_layers,), "dead": (n_layers, c_max), "ortho_abs": (n_layers,),
            "ortho_pairs": (n_layers,), "updates": (),
        }
        for name in _SUM_STATES:
            self.add_state(name, default=torch.zeros(shapes[name], dtype=f64), dist_reduce_fx="sum")
        self.add_state("peak", default=torch.full((n_layers,), -torch.inf, dtype=f64),
                       dist_reduce_fx="max")

    def _weights(self, model: nn.Module | Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        found = {layer.name: layer for layer in discover_layers(model, select=LayerSelection.everything())}
        missing = [layer.name for layer in self.layers if layer.name not in found]
        if missing:
            raise InputError(f"`model` expected the layers the metric was built with, got none "
                             f"named {', '.join(missing[:5])}; hint: build one metric per architecture")
        return [found[layer.name].kernel() for layer in self.layers]

    def update(self, model: nn.Module | Mapping[str, torch.Tensor]) -> None:
        """Add the statistics of ``model`` (or of this process's shard of it)."""
        weights = self._weights(model)
        peaks = None
        if self.sharded:
            peaks = torch.stack([w.detach().abs().amax().to(torch.float64) for w in weights])
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(peaks, op=dist.ReduceOp.MAX)
        with torch.no_grad():
            for i, w in enumerate(weights):
                st = layer_stats(w, self.sparsity_eps, orthogonality=self.orthogonality,
                                 peak=None if peaks is None else peaks[i])
                self._accumulate(i, st)
        self._state()["updates"] += 1

    def _state(self) -> dict[str, torch.Tensor]:
        """The metric states, typed (torchmetrics stores them as plain attributes)."""
        return {name: getattr(self, name) for name in (*_SUM_STATES, "peak")}

    def _accumulate(self, i: int, st: LayerStats) -> None:
        st = st.unscaled()  # updates may differ in scale: add the weights' own sums
        k, c = st.k, st.c_out
        s = self._state()
        s["n"][i] += st.n
        s["nonfinite"][i] += st.nonfinite
        s["n_sparse"][i] += st.n_sparse
        s["s1"][i, :k] += st.s1
        s["s2"][i, :k, :k] += st.s2
        s["s1_sparse"][i, :k] += st.s1_sparse
        s["s2_sparse"][i, :k, :k] += st.s2_sparse
        s["abs_sum"][i] += st.abs_sum
        s["sumsq"][i] += st.sumsq
        s["row_l2_sum"][i] += st.row_l2_sum
        s["dead"][i, :c] += st.dead.to(torch.float64)
        s["peak"][i] = torch.maximum(s["peak"][i], st.peak)
        if st.ortho_abs is not None:
            s["ortho_abs"][i] += st.ortho_abs
            s["ortho_pairs"][i] += c * (c - 1)

    def compute(self) -> Report:
        # a channel is dead when all-zero in every pooled model; sharded rows live on one rank
        s = self._state()
        dead_in = 1.0 if self.sharded else float(s["updates"].clamp_min(1))
        stats = []
        for i, layer in enumerate(self.layers):
            k, c = layer.kernel_numel, layer.shape[0]
            pairs = float(s["ortho_pairs"][i])
            ortho = None
            if self.orthogonality and pairs > 0:
                ortho = s["ortho_abs"][i] * (c * (c - 1) / pairs) if c > 1 else s["ortho_abs"][i]
            elif self.orthogonality and c < 2:
                ortho = torch.zeros((), dtype=torch.float64)
            stats.append(LayerStats(
                n=int(s["n"][i]), k=k, c_out=c, peak=s["peak"][i], nonfinite=s["nonfinite"][i],
                n_sparse=s["n_sparse"][i],
                s1=s["s1"][i, :k], s2=s["s2"][i, :k, :k], s1_sparse=s["s1_sparse"][i, :k],
                s2_sparse=s["s2_sparse"][i, :k, :k], abs_sum=s["abs_sum"][i], sumsq=s["sumsq"][i],
                row_l2_sum=s["row_l2_sum"][i], dead=s["dead"][i, :c] >= dead_in,
                ortho_abs=ortho,
            ))
        reports = reports_from_stats(self.layers, stats)
        if self.sharded:
            for r in reports:
                r.undefined["orthogonality"] = ("not computed for sharded rows (needs whole output "
                                                "filters; see filterwatch.layers.sharded)")
        return Report(layers=reports, source="FilterMetrics",
                      settings={"sparsity_eps": self.sparsity_eps, **self.selection.as_dict(),
                                "updates": int(s["updates"]), "sharded": self.sharded},
                      filterwatch_version=__version__,
                      created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
