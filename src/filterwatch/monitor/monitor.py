"""The Lightning-free core of training-time monitoring, shared by ``FilterWatch`` and ``watch``.

A :class:`Monitor` keeps the reference (the weights when monitoring started, unless given),
measures snapshots into :class:`~filterwatch.report.Report` objects (the history), raises
alerts on change and turns reports into flat scalar dicts ``filterwatch/<layer>/<measure>``.
It keeps no reference to the model between calls.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .._atomic import write_text_atomic
from ..errors import InputError
from ..functional.sparsity import check_eps
from ..layers import ConvLayer, LayerSelection
from ..measure import KernelRead, analyze_layers
from ..reference import Matching, Reference, ReferencePlan
from ..report import Report, history_table, summarize, to_table
from ..report.registry import select
from .alerts import Alert, AlertRules, AlertTracker
from .schedule import check_count

__all__ = ["LAYER_TAG", "MODEL_TAG", "SCALAR_MEASURES", "Monitor", "MonitorViews"]

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
            the JSON Lines history that the callbacks write keeps every one.
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
        check_eps(sparsity_eps, "sparsity_eps")
        if reference is not None and not isinstance(reference, Reference | str | Path):
            raise InputError(f"`reference` expected a Reference, a reference file path or None, "
                             f"got {type(reference).__name__}")
        self.reference: Reference | None = (
            Reference.load(reference) if isinstance(reference, str | Path) else reference
        )
        self.user_reference = reference is not None
        self.sparsity_eps = sparsity_eps
        self.reference_device = None if reference_device is None else torch.device(reference_device)
        self.keep_reports = check_count("keep_reports", keep_reports)
        self.history_path: Path | None = None
        self._last_line_at: int | None = None  # where the history file's last line starts
        self.history_error = ""  # why the history file stopped, if it did
        self.tracker = AlertTracker(alert_rules or AlertRules())
        self.history: list[Report] = []
        self.nonfinite_at_start = False  # the fit-start reference saw NaN/Inf weights
        self._unreported: list[Alert] = []

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
        analysis, no new alerts): FilterWatch and FilterGate share one Monitor that way. A
        final snapshot at that step (the run stopped right after the gate's check) measures
        again, with every measure and the caller's ``on_kernel``, and *replaces* that
        snapshot, in the history and in the history file: a step is never there twice."""
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

        ortho = final or len(self.history) % self.orthogonality_every == 0
        spectral = self.spectral and (final or len(self.history) % self.spectral_every == 0)
        report = analyze_layers(layers, source=source, sparsity_eps=self.sparsity_eps,
                                orthogonality=ortho, reference=self.reference, matching=_LENIENT,
                                step=step, on_kernel=hook, spectral=spectral)
        if first:
            self._compare_first(layers, report, captured)
        if same_step:
            self.history[-1] = report
        else:
            self.history.append(report)
        self._append_history(report, replace_last=same_step)
        if len(self.history) > self.keep_reports:
            del self.history[: len(self.history) - self.keep_reports]
        self._unreported += self.tracker.update(report)
        return report

    def take_alerts(self) -> list[Alert]:
        """The alerts no caller has reported yet, oldest first, and forget them: a gate that
        measured a step alone leaves its alerts to the watch that shares its Monitor, which
        prints and logs them with its next snapshot."""
        taken, self._unreported = self._unreported, []
        return taken

    def _compare_first(self, layers: Sequence[ConvLayer], report: Report,
                       captured: dict[str, torch.Tensor]) -> None:
        """The first snapshot is the reference: built from the kernels it read, and compared
        with itself (zero drift and change by construction)."""
        self._build_reference(captured)
        assert self.reference is not None
        plan = ReferencePlan(layers, self.reference, _LENIENT)
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
        for m, v in report.summary.get("mean", {}).items():
            if v is not None:
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
        self.tracker.load_state_dict(state.get("alerts", {}))

    def start_history_file(self, path: Path, resumed_at: int | None = None) -> None:
        """Start the JSON Lines history at ``path`` (every report, one per line, appended as
        it is taken). After a resume from a checkpoint taken at ``resumed_at``, the lines of
        earlier steps are kept and those a crashed run wrote after it are dropped."""
        kept = ""
        if resumed_at is not None and path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            kept = "".join(line for line in lines if _step_of(line) is not None
                           and _step_of(line) <= resumed_at)  # type: ignore[operator]
        write_text_atomic(path, kept)
        self.history_path = path
        self._last_line_at = None

    def _append_history(self, report: Report, replace_last: bool = False) -> None:
        """Append ``report`` to the JSON Lines history file, if one was started (or replace
        the last line with it). A failure (an unwritable or full disk) stops the file, not the
        run: see ``history_error``."""
        if self.history_path is None:
            return
        try:
            with open(self.history_path, "a+b") as fh:
                if replace_last and self._last_line_at is not None:
                    fh.truncate(self._last_line_at)
                fh.seek(0, 2)
                self._last_line_at = fh.tell()
                fh.write(report.to_json(indent=None).encode("utf-8"))
        except OSError as exc:
            self.history_path = None
            self.history_error = f"{type(exc).__name__}: {exc}"


def _step_of(line: str) -> int | None:
    try:
        step = json.loads(line).get("step")
    except (json.JSONDecodeError, AttributeError):
        return None
    return step if isinstance(step, int) else None


class MonitorViews:
    """Read-only views shared by ``FilterWatch`` and ``watch``'s ``Watcher`` (a mixin over an
    attribute ``monitor``)."""

    monitor: Monitor

    @property
    def history(self) -> list[Report]:
        """Every snapshot so far, oldest first."""
        return self.monitor.history

    @property
    def alerts(self) -> list[Alert]:
        return self.monitor.alerts

    @property
    def reference(self) -> Reference | None:
        return self.monitor.reference

    def history_table(self, measure: str = "variance_entropy") -> str:
        """How ``measure`` evolved: one row per layer, one column per snapshot."""
        return history_table(self.history, measure)

    def summary(self) -> str:
        """The last report as a table, and the alerts."""
        if not self.history:
            return f"{type(self).__name__}: no snapshot yet\n"
        text = to_table(self.history[-1])
        if self.alerts:
            text += "alerts:\n" + "".join(f"  step {a.step}: {a.message}\n" for a in self.alerts)
        return text
