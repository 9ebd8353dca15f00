"""The Lightning-free core of training-time monitoring, shared by ``FilterWatch`` and ``watch``.

A :class:`Monitor` keeps the reference (the weights when monitoring started, unless given),
measures snapshots into :class:`~filterwatch.report.Report` objects (the history), raises
alerts on change and turns reports into flat scalar dicts ``filterwatch/<layer>/<measure>``.
It keeps no reference to the model between calls. Where the reports go (loggers, TensorBoard,
the JSON Lines history) is the business of the sinks (:mod:`filterwatch.monitor.sinks`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from ..layers import ConvLayer, LayerSelection
from ..measure import KernelRead, MeasureOptions
from ..measure.graph import graphs_wanted
from ..reference import Matching, Reference
from ..report import Report, summarize
from ..report.registry import select
from .alerts import Alert, AlertRules, AlertTracker
from .schedule import check_count

__all__ = ["LAYER_TAG", "MODEL_TAG", "OVERHEAD_TAG", "SCALAR_MEASURES", "Monitor"]

SCALAR_MEASURES: tuple[str, ...] = tuple(m.key for m in select(scalar=True))
# the logged tags: one per layer and measure; the model's means in a namespace of their own,
# which no layer name can take (a layer may be called "model")
LAYER_TAG = "filterwatch/{layer}/{measure}"
MODEL_TAG = "filterwatch_model/{measure}"
OVERHEAD_TAG = "filterwatch/overhead_ms"  # what the snapshot itself cost
# model surgery mid-run: explain, don't fail
_LENIENT = Matching(allow_unmatched=True, allow_kernel_change=True)


class Monitor:
    """Snapshots, history, reference and alerts for one training run.

    Args:
        reference: ``None`` to use the weights of the first snapshot (fine-tuning drift), a
            :class:`Reference`, or a path to a reference file.
        orthogonality_every: compute orthogonality on every k-th snapshot only (it is the
            costly measure); the final snapshot always has it.
        sparsity_eps: see :func:`filterwatch.functional.sparsity`.
        alert_rules: thresholds of the change alerts.
        reference_device: where the fit-start reference weights live (default: where the
            weights themselves live, so relative change needs no copy).
        keep_reports: how many of the latest reports the history (and a checkpoint) keeps;
            the JSON Lines history (:class:`~filterwatch.monitor.HistoryFile`) keeps every one.
        spectral: also the spectral measures, on every ``spectral_every``-th snapshot.

    The measurement options are validated here, once per run (see :meth:`options_for`).
    """

    def __init__(
        self,
        *,
        reference: Reference | str | Path | None = None,
        orthogonality_every: int = 1,
        sparsity_eps: float = 0.01,
        alert_rules: AlertRules | None = None,
        reference_device: str | torch.device | None = None,
        keep_reports: int = 100,
        spectral: bool = False,
        spectral_every: int = 1,
    ) -> None:
        if not isinstance(spectral, bool):
            raise InputError(f"`spectral` expected True or False, got {spectral!r}")
        self.spectral, self.spectral_every = spectral, check_count("spectral_every", spectral_every)
        self.orthogonality_every = check_count("orthogonality_every", orthogonality_every)
        if reference is not None and not isinstance(reference, Reference | str | Path):
            raise InputError(f"`reference` expected a Reference, a reference file path or None, "
                             f"got {type(reference).__name__}")
        self.reference: Reference | None = (
            Reference.load(reference) if isinstance(reference, str | Path) else reference
        )
        self.user_reference = reference is not None
        self.reference_device = None if reference_device is None else torch.device(reference_device)
        self.keep_reports = check_count("keep_reports", keep_reports)
        self.tracker = AlertTracker(alert_rules or AlertRules())
        self.history: list[Report] = []
        self.nonfinite_at_start = False  # the fit-start reference saw NaN/Inf weights
        self._unreported: list[Alert] = []
        self.snapshots = 0  # taken so far (the history keeps only the last keep_reports)
        # validated once: the options of a snapshot with every measure, and its variants
        self._options = MeasureOptions(sparsity_eps, reference=self.reference, matching=_LENIENT,
                                       spectral=spectral, cuda_graph=graphs_wanted())
        self._variants: dict[tuple[bool, bool], MeasureOptions] = {}

    @property
    def sparsity_eps(self) -> float:
        return self._options.sparsity_eps

    def options_for(self, *, final: bool = False) -> MeasureOptions:
        """The options of the next snapshot: orthogonality and the spectral measures on their
        every-k snapshots (the final one has every measure). Made once per combination and
        reference, each keeping its matching plan until the layers change."""
        ortho = final or self.snapshots % self.orthogonality_every == 0
        spectral = self.spectral and (final or self.snapshots % self.spectral_every == 0)
        options = self._variants.get((ortho, spectral))
        if options is None or options.reference is not self.reference:
            options = self._options.variant(orthogonality=ortho, spectral=spectral,
                                            reference=self.reference)
            self._variants[(ortho, spectral)] = options
        return options

    @property
    def alerts(self) -> list[Alert]:
        return self.tracker.alerts

    def _build_reference(self, weights: dict[str, torch.Tensor]) -> None:
        """The fit-start reference, from kernels a snapshot already read (kept where the
        weights live unless ``reference_device`` says otherwise)."""
        state = {f"{name}.weight": w if self.reference_device is None else w.to(self.reference_device)
                 for name, w in weights.items()}
        ref = Reference.build(state, snapshot=True, select=LayerSelection.everything())
        ref.sources = ["weights at the start of monitoring"]
        self.reference = ref
        self.nonfinite_at_start = any(not bool(torch.isfinite(w).all()) for w in state.values())

    def ensure_reference(self, layers: Sequence[ConvLayer]) -> None:
        """Take the fit-start reference from ``layers`` (one read each) unless one exists."""
        if self.reference is None:
            with torch.no_grad():
                self._build_reference({layer.name: layer.kernel().clone()
                                       for layer in layers if not layer.unavailable})

    def measure(self, layers: Sequence[ConvLayer], step: int, *, final: bool = False,
                source: str = "", on_kernel: Callable[[KernelRead], None] | None = None,
                ) -> Report:
        """Measure one snapshot, reading each kernel once, and append it to the history; its
        new alerts wait for :meth:`take_alerts`. ``on_kernel`` sees each kernel while the
        snapshot holds it.

        A second call at the step of the last snapshot returns that snapshot (no new
        analysis, no new alerts). A final snapshot at that step (the last one lacked a
        sampled measure) measures again, with every measure and the caller's ``on_kernel``,
        and *replaces* that snapshot in the history (and the sinks replace it too): a step is
        never there twice."""
        same_step = bool(self.history) and self.history[-1].step == step
        if same_step and not final:
            return self.history[-1]
        first = self.reference is None
        captured: dict[str, torch.Tensor] = {}

        def hook(read: KernelRead) -> None:
            if first:
                captured[read.layer.name] = read.weight.detach().clone()
            if on_kernel is not None:
                on_kernel(read)

        report = self.options_for(final=final).run(layers, source=source, step=step, on_kernel=hook)
        if first:
            self._compare_first(layers, report, captured)
        if same_step:
            self.history[-1] = report
        else:
            self.history.append(report)
            self.snapshots += 1
        if len(self.history) > self.keep_reports:
            del self.history[: len(self.history) - self.keep_reports]
        self._unreported += self.tracker.update(report)
        return report

    def complete(self, report: Report) -> bool:
        """Whether ``report`` has every measure a final snapshot has (orthogonality and the
        spectral measures are sampled on every k-th snapshot only)."""
        return bool(report.settings.get("orthogonality", True)) and (
            not self.spectral or bool(report.settings.get("spectral")))

    def take_alerts(self) -> list[Alert]:
        """The alerts no caller has reported yet, oldest first, and forget them (the watch's
        snapshot hands them to its sinks and prints them)."""
        taken, self._unreported = self._unreported, []
        return taken

    def _compare_first(self, layers: Sequence[ConvLayer], report: Report,
                       captured: dict[str, torch.Tensor]) -> None:
        """The first snapshot is the reference: built from the kernels it read, and compared
        with itself (zero drift and change by construction)."""
        self._build_reference(captured)
        assert self.reference is not None
        plan = self.options_for().plan(layers)
        assert plan is not None
        for i, (layer, lr) in enumerate(zip(layers, report.layers, strict=True)):
            plan.apply(lr, plan.itself(i, layer.n_filters) if layer.name in captured
                       else plan.compare(i, None))
        report.settings["reference"] = ", ".join(self.reference.sources)
        report.summary = summarize(report.layers)

    @staticmethod
    def scalars(report: Report, overhead_s: float | None = None) -> dict[str, float]:
        """Flat ``{prefix/<layer>/<measure>: value}`` plus ``{prefix_model/<measure>}`` (outside
        the layers' namespace: a layer called ``model`` keeps its own tags), and the
        snapshot's cost in milliseconds when ``overhead_s`` is given."""
        out: dict[str, float] = {}
        for layer in report.layers:
            for m in SCALAR_MEASURES:
                v = layer.value(m)
                if v is not None:
                    out[LAYER_TAG.format(layer=layer.name, measure=m)] = v
        for m, v in {**report.summary.get("mean", {}), **report.summary.get("total", {})}.items():
            if v is not None:  # a mean of what averages, the total of a count
                out[MODEL_TAG.format(measure=m)] = float(v)
        product = report.settings.get("lipschitz_bound_product")  # the stack's bound, not a mean
        if product is not None and math.isfinite(product):
            out[MODEL_TAG.format(measure="lipschitz_bound")] = float(product)
        if overhead_s is not None:
            out[OVERHEAD_TAG] = overhead_s * 1000.0
        return out

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors, numbers and strings only (checkpoints load with weights_only=True)."""
        ref = None
        if self.reference is not None:
            tensors, meta = self.reference.to_tensors()
            ref = {"tensors": {k: v.cpu() for k, v in tensors.items()}, "meta": json.dumps(meta)}
        return {
            "reference": ref,
            "user_reference": self.user_reference,
            "history": [r.to_json(indent=None) for r in self.history[-self.keep_reports:]],
            "snapshots": self.snapshots,
            "alerts": self.tracker.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        ref = state.get("reference")
        if ref is not None and not (self.user_reference and self.reference is not None):
            self.reference = Reference.from_tensors(dict(ref["tensors"]), json.loads(ref["meta"]),
                                                    "<checkpoint>")
            if self.reference_device is not None:
                self.reference.snapshot = {k: v.to(self.reference_device)
                                           for k, v in self.reference.snapshot.items()}
        self.history = [Report.from_json(text, where="checkpoint") for text in state.get("history", [])]
        self.snapshots = int(state.get("snapshots", len(self.history)))
        self.tracker.load_state_dict(state.get("alerts", {}))
