"""The Lightning-free core of training-time monitoring, shared by ``FilterWatch`` and ``watch``.

A :class:`Monitor` keeps the reference (the weights when monitoring started, unless given),
measures snapshots into :class:`~filterwatch.report.Report` objects (the history), raises
alerts on change and turns reports into flat scalar dicts ``filterwatch/<layer>/<measure>``.
It keeps no reference to the model between calls.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .._atomic import write_text_atomic
from ..errors import InputError
from ..functional.sparsity import _check_eps
from ..layers import ConvLayer, LayerSelection
from ..measure import analyze_layers
from ..reference import Matching, Reference
from ..report import Report, history_table
from ..report.registry import select
from .alerts import Alert, AlertRules, AlertTracker

__all__ = ["SCALAR_MEASURES", "Monitor", "MonitorViews"]

SCALAR_MEASURES: tuple[str, ...] = tuple(m.key for m in select(scalar=True))
_LENIENT = Matching(allow_unmatched=True)  # model surgery mid-run: explain, don't fail


class Monitor:
    """Snapshots, history, reference and alerts for one training run.

    Args:
        reference: ``None`` to use the weights of the first snapshot (fine-tuning drift), a
            :class:`Reference`, or a path to a reference file.
        orthogonality_every: compute orthogonality on every k-th snapshot only (it is the
            costly measure); the final snapshot always has it.
        sparsity_eps: see :func:`filterwatch.functional.sparsity`.
        alert_rules: thresholds of the change alerts.
        reference_device: where the fit-start reference weights live (``"cpu"`` by default).
    """

    def __init__(
        self,
        *,
        reference: Reference | str | Path | None = None,
        orthogonality_every: int = 1,
        sparsity_eps: float = 0.01,
        alert_rules: AlertRules | None = None,
        reference_device: str | torch.device = "cpu",
    ) -> None:
        every = orthogonality_every
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise InputError(f"`orthogonality_every` expected an integer >= 1, got {orthogonality_every!r}")
        _check_eps(sparsity_eps, "sparsity_eps")
        if reference is not None and not isinstance(reference, Reference | str | Path):
            raise InputError(f"`reference` expected a Reference, a reference file path or None, "
                             f"got {type(reference).__name__}")
        self.reference: Reference | None = (
            Reference.load(reference) if isinstance(reference, str | Path) else reference
        )
        self.user_reference = reference is not None
        self.orthogonality_every = orthogonality_every
        self.sparsity_eps = sparsity_eps
        self.reference_device = torch.device(reference_device)
        self.tracker = AlertTracker(alert_rules or AlertRules())
        self.history: list[Report] = []

    @property
    def alerts(self) -> list[Alert]:
        return self.tracker.alerts

    def ensure_reference(self, layers: Sequence[ConvLayer]) -> None:
        """Take the fit-start reference from ``layers`` unless one exists already."""
        if self.reference is not None:
            return
        state = {f"{layer.name}.weight": layer.kernel().to(self.reference_device)
                 for layer in layers if not layer.unavailable}
        ref = Reference.build(state, snapshot=True, select=LayerSelection.everything())
        ref.sources = ["weights at the start of monitoring"]
        self.reference = ref

    def measure(self, layers: Sequence[ConvLayer], step: int, *, final: bool = False,
                source: str = "") -> tuple[Report, list[Alert]]:
        """Measure one snapshot; appends to the history and returns the new alerts."""
        self.ensure_reference(layers)
        ortho = final or len(self.history) % self.orthogonality_every == 0
        report = analyze_layers(layers, source=source, sparsity_eps=self.sparsity_eps,
                                orthogonality=ortho, reference=self.reference, matching=_LENIENT,
                                step=step)
        self.history.append(report)
        return report, self.tracker.update(report)

    @staticmethod
    def scalars(report: Report, prefix: str = "filterwatch") -> dict[str, float]:
        """Flat ``{prefix/<layer>/<measure>: value}`` plus ``{prefix/model/<measure>}``."""
        out: dict[str, float] = {}
        for layer in report.layers:
            for m in SCALAR_MEASURES:
                v = layer.value(m)
                if v is not None:
                    out[f"{prefix}/{layer.name}/{m}"] = v
        for m, v in report.summary.get("mean", {}).items():
            if v is not None:
                out[f"{prefix}/model/{m}"] = float(v)
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
            "history": [r.to_json(indent=None) for r in self.history],
            "alerts": self.tracker.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        ref = state.get("reference")
        if ref is not None and not (self.user_reference and self.reference is not None):
            self.reference = Reference.from_tensors(dict(ref["tensors"]), json.loads(ref["meta"]),
                                                    "<checkpoint>")
            if self.reference_device.type != "cpu":
                self.reference.snapshot = {k: v.to(self.reference_device)
                                           for k, v in self.reference.snapshot.items()}
        self.history = [Report.from_json(text, where="checkpoint") for text in state.get("history", [])]
        self.tracker.load_state_dict(state.get("alerts", {}))

    def write_history(self, path: Path) -> None:
        """The history as JSON Lines (one report per line), written atomically."""
        write_text_atomic(path, "".join(r.to_json(indent=None) for r in self.history))


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
