"""Alerts during training: a layer that *changed* for the worse relative to where it started.

Absolute values are judged by the gate; during training what matters is change: a layer that
became much sparser, collapsed, turned random-like, lost whole channels, blew up or grew NaNs. Each
alert fires once when its condition starts to hold, and again only after it cleared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import InputError
from ..report import LayerReport, Report
from ..report.registry import get

__all__ = ["Alert", "AlertRules", "AlertTracker"]


@dataclass(frozen=True)
class AlertRules:
    """Thresholds of the training-time alerts (all relative to the layer's first snapshot).

    Attributes:
        sparsity_increase: sparsity rose by at least this much (absolute share).
        collapse_ratio: VE fell to at most this fraction of its starting value.
        random_like: ``None`` (default): the layer's VE entered the band that random layers of
            its size reach (``LayerReport.random_like``) from clearly below it; a number: the
            fixed rule, normalised VE reached it while it started below ``random_like - 0.05``.
        spectral_growth: the condition number or the Lipschitz bound grew by this factor
            (spectral measures only).
        weight_growth: the weight's Frobenius norm grew by this factor (a blow-up).
    """

    sparsity_increase: float = 0.2
    collapse_ratio: float = 0.5
    random_like: float | None = None
    spectral_growth: float = 10.0
    weight_growth: float = 10.0

    def __post_init__(self) -> None:
        for name in ("sparsity_increase", "collapse_ratio"):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                raise InputError(f"`{name}` expected a number in (0, 1), got {v!r}")
        for name in ("spectral_growth", "weight_growth"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not v > 1:
                raise InputError(f"`{name}` expected a number > 1, got {v!r}; hint: 10 is 10x")
        if self.random_like is not None and (isinstance(self.random_like, bool) or not isinstance(
                self.random_like, int | float) or not self.random_like > 0):
            raise InputError(f"`random_like` expected a positive number or None (the random band "
                             f"of each layer's size), got {self.random_like!r}")


@dataclass(frozen=True)
class Alert:
    """One alert: at ``step``, ``layer`` became ``kind`` (value now vs at the start)."""

    step: int | None
    layer: str
    kind: str
    value: float
    baseline: float | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Check = Callable[[LayerReport, LayerReport, AlertRules], tuple[float, str] | None]


def _nonfinite(now: LayerReport, start: LayerReport, rules: AlertRules) -> tuple[float, str] | None:
    if now.nonfinite:
        return float(now.nonfinite), f"{now.nonfinite} non-finite weight value(s) appeared"
    return None


def _sparse(now: LayerReport, start: LayerReport, rules: AlertRules) -> tuple[float, str] | None:
    if now.sparsity is None or start.sparsity is None:
        return None
    if now.sparsity - start.sparsity >= rules.sparsity_increase:
        return now.sparsity, (f"became sparse: {now.sparsity:.0%} of filters ~0 "
                              f"(was {start.sparsity:.0%}); too strong weight decay or dead ReLUs?")
    return None


def _collapsed(now: LayerReport, start: LayerReport, rules: AlertRules) -> tuple[float, str] | None:
    ve, ve0 = now.variance_entropy, start.variance_entropy
    if ve is None or ve0 is None or ve0 <= 0:
        return None
    if ve <= rules.collapse_ratio * ve0:
        return ve, f"collapsed: variance entropy {ve:.3f} (was {ve0:.3f}); filters converge to few patterns"
    return None


def _random_like(now: LayerReport, start: LayerReport, rules: AlertRules) -> tuple[float, str] | None:
    v, v0 = now.variance_entropy_norm, start.variance_entropy_norm
    if v is None or v0 is None:
        return None
    if rules.random_like is None:  # the band of random layers of this size, from below it
        if not (now.random_like is True and start.random_like is False and now.random_band):
            return None
        where = f"inside the random band {now.random_band[0]:.3f}-{now.random_band[1]:.3f}"
    elif v0 >= rules.random_like - 0.05 or v < rules.random_like:
        return None
    else:
        where = f">= {rules.random_like:g}"
    return v, f"turned random-like: normalised VE {v:.3f} (was {v0:.3f}), {where}; learning rate too high?"


def _random_like_holds(now: LayerReport, start: LayerReport, rules: AlertRules) -> bool:
    """Once fired, the random-like alert holds until VE/H_T fell a tenth of the way back to
    where it started (a layer at its band's edge would otherwise fire at every snapshot)."""
    v, v0, band = now.variance_entropy_norm, start.variance_entropy_norm, now.random_band
    if v is None or v0 is None:
        return False
    edge = band[0] if rules.random_like is None and band else (rules.random_like or 1.0)
    return v >= edge - 0.1 * (edge - v0)


def _dead(now: LayerReport, start: LayerReport, rules: AlertRules) -> tuple[float, str] | None:
    if now.dead_channels and now.dead_channels > (start.dead_channels or 0):
        return float(now.dead_channels), (f"{now.dead_channels} of {now.shape[0]} output channels "
                                          "are all zero")
    return None


def _grew(key: str, what: str, hint: str, factor: str = "spectral_growth") -> Check:
    """A measure grew by the factor ``rules.<factor>`` (10x) from the layer's start (a
    relative 1e-6 below it counts: float32 weights scaled by 10 grew 10x)."""

    def check(now: LayerReport, start: LayerReport, rules: AlertRules) -> tuple[float, str] | None:
        v, v0 = getattr(now, key), getattr(start, key)
        if v is None or v0 is None or v0 <= 0 or v < getattr(rules, factor) * v0 * (1.0 - 1e-6):
            return None
        return v, f"{what} grew {v / v0:.0f}x: {v:.3g} (was {v0:.3g}); {hint}"

    return check


# alert kind -> (the registry measure it watches, its check)
_CHECKS: dict[str, tuple[str, Check]] = {
    "nonfinite": (get("nonfinite").key, _nonfinite),
    "sparse": (get("sparsity").key, _sparse),
    "collapsed": (get("variance_entropy").key, _collapsed),
    "random_like": (get("variance_entropy_norm").key, _random_like),
    "dead_channels": (get("dead_channels").key, _dead),
    "ill_conditioned": (get("condition_number").key, _grew(
        "condition_number", "condition number", "heavy pruning or collapse makes the layer fragile")),
    "lipschitz_growth": (get("lipschitz_bound").key, _grew(
        "lipschitz_bound", "Lipschitz bound", "the layer amplifies perturbations more and more")),
    "blew_up": (get("weight_norm").key, _grew(
        "weight_norm", "weight norm", "a learning rate too high, missing normalisation, or a "
        "fp16 loss scale out of hand?", factor="weight_growth")),
}


# alert kind -> while it is active, whether it still holds though its check no longer fires
_HOLDS: dict[str, Callable[[LayerReport, LayerReport, AlertRules], bool]] = {
    "random_like": _random_like_holds,
}


@dataclass
class AlertTracker:
    """Compares each new report with the first one and emits alerts on transitions."""

    rules: AlertRules = field(default_factory=AlertRules)
    baseline: dict[str, LayerReport] = field(default_factory=dict)
    active: set[tuple[str, str]] = field(default_factory=set)
    alerts: list[Alert] = field(default_factory=list)

    def update(self, report: Report) -> list[Alert]:
        """New alerts raised by ``report`` (also appended to :attr:`alerts`)."""
        new: list[Alert] = []
        for layer in report.layers:
            start = self.baseline.setdefault(layer.name, layer)
            if start.shape != layer.shape:  # model surgery: start over for this layer
                self.baseline[layer.name] = start = layer
            for kind, (measure, check) in _CHECKS.items():
                hit = check(layer, start, self.rules)
                key = (layer.name, kind)
                holds = _HOLDS.get(kind)
                if hit is None and key in self.active and holds and holds(layer, start, self.rules):
                    continue
                if hit is None:
                    self.active.discard(key)
                elif key not in self.active:
                    self.active.add(key)
                    base = start.value(measure)
                    new.append(Alert(report.step, layer.name, kind, hit[0], base,
                                     f"{layer.name}: {hit[1]}"))
        self.alerts.extend(new)
        return new

    def state_dict(self) -> dict[str, Any]:
        """Plain data (for checkpoints loaded with ``weights_only=True``)."""
        return {
            "baseline": {k: asdict(v) for k, v in self.baseline.items()},
            "active": sorted([list(k) for k in self.active]),
            "alerts": [a.to_dict() for a in self.alerts],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.baseline = {k: LayerReport(**v) for k, v in state.get("baseline", {}).items()}
        self.active = {(str(a), str(b)) for a, b in state.get("active", [])}
        self.alerts = [Alert(**a) for a in state.get("alerts", [])]
