"""THE registry of measures: each measure is declared once, here.

Everything that lists measures is derived from :data:`MEASURES`: the report summary, the
scalars a monitor logs, the TensorBoard layout and heatmaps, the table columns, the gate's
rule groups, hints and baseline directions, and which measures the alerts may name.

A new measure touches four files (and their tests):

1. ``functional/<concept>.py``: the maths, a pure function of a kernel (torch only), tested
   against a numpy reference;
2. ``measure/engine.py`` (``_FROM_KERNEL`` measures) or, for a family that is off by default,
   the family's module (``measure/spectral.py``: ``spectral_values``): computed from the
   kernel the snapshot already holds;
3. ``report/report.py``: its ``LayerReport`` field (the JSON and Parquet column);
4. here: its :class:`Measure`, from which the scalars, charts, columns, gate rules and
   baseline follow. A measure of an optional family sets its flag (``spectral=True``): the
   ``analyze(spectral=True)`` option, the monitors' ``spectral_every`` and the gate's
   ``needs_spectral`` (a rule on it turns the family on in the callbacks, ``check`` and
   ``assert_filters_healthy``) follow from that flag.

A gate rule on it is a ``GateRules`` field ``max_<key>`` or ``min_<key>`` (``gate/rules.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["MEASURES", "Measure", "fill_hint", "get", "select"]

Worse = Literal["high", "low"]
GateKind = Literal["limit", "share", "flag"]


@dataclass(frozen=True)
class Measure:
    """What one measure is.

    Attributes:
        key: its name in the Report, the JSON and the logged scalars.
        label: short column header.
        worse: which direction is unhealthy (``"high"`` or ``"low"``).
        description: one line for humans.
        lo, hi: its range (``None``: unbounded); ``hi_log10_k`` makes ``hi`` ``log10 K``.
        integer: formatted as an integer.
        needs_reference: only defined against a reference.
        summary: filter-weighted mean and worst layers in the report summary.
        scalar: logged per layer during training.
        column: a column of the scan table (``"always"``, ``"reference"`` or ``None``).
        chart: a custom-scalars chart per layer (``"layers"``) or per layer and for the model
            mean (``"both"``).
        heatmap: a layer x step heatmap in TensorBoard.
        baseline: compared with a baseline report (``check --baseline``).
        gate: how the gate checks it: a ``limit`` on the value, a ``share`` of the output
            channels, a ``flag`` that must be 0; ``None``: not gated.
        gate_group: the rule group (one JUnit testcase per layer and group).
        hint: what a bad value usually means and what to try (``{value}`` is the value).
        healthy: the band where a value is unremarkable (``None``: no judgement, e.g. raw
            VE, whose range depends on the kernel size). Pictures shade it and colour outside
            it; the "worst" lines only name values outside it.
        random_band: the band's top is the layer's own: the lower edge of the VE/H_T that
            random layers of its filter count and kernel size reach (``LayerReport.random_band``),
            and no top where VE cannot tell a layer of that size from random
            (``random_like`` is ``None``); ``healthy[1]`` is then the most random-looking value
            of trained layers, which the random band must clear to tell them apart.
        other_side_hint: the hint for values beyond the healthy band's other end (VE/H_T
            below it: collapse), where the band has two meaningful sides.
        size_limited: a gate rule on it skips layers with fewer than ``drift_min_filters``
            filters (raw drift, whose noise grows as layers shrink; drift/noise accounts for it).
        view: the range pictures show for an unbounded measure (``None``: its range).
        spectral: computed only when spectral measures are asked for (``spectral=True``).
        fails_when_undefined: a gate rule on it fails where it is undefined with a reason
            (a rank-deficient matrix has no finite condition number).
    """

    key: str
    label: str
    worse: Worse
    description: str
    lo: float | None = 0.0
    hi: float | None = None
    hi_log10_k: bool = False
    integer: bool = False
    needs_reference: bool = False
    summary: bool = False
    scalar: bool = True
    column: Literal["always", "reference", "spectral"] | None = None
    chart: Literal["layers", "both"] | None = None
    heatmap: bool = False
    baseline: bool = False
    gate: GateKind | None = None
    gate_group: str = ""
    hint: str = ""
    healthy: tuple[float, float] | None = None
    view: tuple[float, float] | None = None
    spectral: bool = False
    fails_when_undefined: bool = False
    random_band: bool = False
    size_limited: bool = False
    other_side_hint: str = ""

    @property
    def gated_quantity(self) -> str:
        """What the gate compares: the value, or for a ``share`` rule the share of the output
        channels (``dead_channels`` counts them, ``dead_channel_share`` is the share).

        Example:
            >>> get("dead_channels").gated_quantity, get("sparsity").gated_quantity
            ('dead_channel_share', 'sparsity')
        """
        return f"{self.key.removesuffix('s')}_share" if self.gate == "share" else self.key

    @property
    def gate_rule(self) -> str:
        """The rule's attribute in :class:`~filterwatch.gate.GateRules` (``max_sparsity``,
        ``max_dead_channel_share``)."""
        if self.gate == "flag":
            return f"allow_{self.key}"
        return f"{'max' if self.worse == 'high' else 'min'}_{self.gated_quantity}"

    def bounds(self, k: int | None = None) -> tuple[float | None, float | None]:
        """The range for kernels of ``k`` values (``hi`` is ``log10 K`` for VE)."""
        if self.hi_log10_k:
            return self.lo, (math.log10(k) if k else None)
        return self.lo, self.hi

    def format(self, value: float | int | None, digits: int = 3) -> str:
        """The value as every table shows it: ``-`` where undefined, fixed decimals (never
        ``-0.000`` or an exponent below 10^6; larger values are exponents).

        Example:
            >>> get("drift").format(-1e-9), get("drift").format(4.759e-07), get("dead_channels").format(3)
            ('0.000', '0.000', '3')
        """
        if value is None:
            return "-"
        if self.integer:
            return str(int(value))
        if not math.isfinite(value) or abs(value) >= 1e6:
            return f"{value:.{digits}g}"
        text = f"{value:.{digits}f}"
        return text[1:] if text.startswith("-") and float(text) == 0.0 else text

    def _own_band(self, layer: Any) -> tuple[float, float] | None:
        """A ``random_band`` measure's band for ``layer``: up to its random band's lower
        edge, or without a top where VE cannot tell (``random_like`` is ``None``); ``None``
        for other measures and layers without a band."""
        band = getattr(layer, "random_band", None)
        if self.healthy is None or not self.random_band or band is None:
            return None
        return self.healthy[0], (math.inf if getattr(layer, "random_like", None) is None else band[0])

    def healthy_for(self, layer: Any = None) -> tuple[float, float] | None:
        """The healthy band of ``layer`` (a :class:`~filterwatch.report.LayerReport`): the
        registry's, or for a ``random_band`` measure one whose top is the layer's random band
        (none where VE cannot tell a layer of that size from random).

        Example:
            >>> from types import SimpleNamespace as L
            >>> m = get("variance_entropy_norm")
            >>> m.healthy_for(L(random_band=[1.001, 1.004], random_like=False))
            (0.25, 1.001)
            >>> m.healthy_for(L(random_band=[0.99, 1.1], random_like=None))
            (0.25, inf)
        """
        return self._own_band(layer) or self.healthy

    def is_healthy(self, value: float | None, layer: Any = None) -> bool:
        """Inside the healthy band of ``layer`` (undefined values and measures without a band
        are); a random band's lower edge itself is random-like."""
        own = self._own_band(layer)
        if value is None or (own is None and self.healthy is None):
            return True
        if own is not None:
            return own[0] <= value < own[1]
        assert self.healthy is not None
        return self.healthy[0] <= value <= self.healthy[1]


def fill_hint(hint: str, value: float | None) -> str:
    """A hint with its ``{value}`` filled in (as is where there is no value).

    Example:
        >>> fill_hint(get("weight_growth").hint, 44.2).split(":")[0]
        "the weights grew 44x the reference's scale"
    """
    return hint.format(value=value) if "{value" in hint and value is not None else hint


_COLLAPSE_HINT = ("the filters collapsed to a few patterns; check the learning rate, "
                  "normalisation and regularisation strength")

# Order matters: it is the order of the summary, the table columns and the charts.
MEASURES: tuple[Measure, ...] = (
    Measure("sparsity", "sparsity", "high", "share of filters with every |w| < 1% of the layer max",
            hi=1.0, summary=True, column="always", chart="both", heatmap=True, baseline=True,
            gate="limit", gate_group="sparsity",
            hint="sparse filters often come from too strong weight decay or dead ReLUs upstream",
            healthy=(0.0, 0.1)),
    Measure("variance_entropy", "VE", "low", "variance entropy, 0 = collapsed, log10 K = random",
            hi_log10_k=True, summary=True, column="always", chart="both", heatmap=True,
            baseline=True, gate="limit", gate_group="variance_entropy", hint=_COLLAPSE_HINT),
    Measure("variance_entropy_norm", "VE/H_T", "high", "VE over random filters' VE; >1 random-like",
            summary=True, column="always", chart="both", heatmap=True, gate="limit",
            gate_group="variance_entropy",
            hint="random-like filters: VE/H_T inside the band that random layers of this size "
                 "reach; the layer may not have trained (frozen, no gradient, or a learning rate "
                 "so high it scrambles the weights)",
            healthy=(0.25, 0.98), view=(0.0, 1.2), random_band=True, other_side_hint=_COLLAPSE_HINT),
    Measure("variance_entropy_clean", "VE clean", "low", "VE without the sparse filters",
            hi_log10_k=True, summary=True, column="always", chart="both", baseline=True,
            hint=_COLLAPSE_HINT),
    Measure("orthogonality", "orth", "low", "1 - mean |cosine| between output filters",
            hi=1.0, summary=True, column="always", chart="both", heatmap=True, baseline=True,
            gate="limit", gate_group="orthogonality",
            hint="output filters are near-parallel (redundant channels); consider pruning or an "
                 "orthogonality regulariser"),
    Measure("dead_channels", "dead", "high", "output channels whose filters are all zero",
            integer=True, summary=True, column="always", chart="layers", gate="share",
            gate_group="dead_channels", baseline=True,
            hint="whole output channels are zero: pruned, or killed by L1 or dead ReLUs",
            healthy=(0.0, 0.0)),
    Measure("nonfinite", "nonfinite", "high", "NaN/Inf values in the weight", integer=True,
            summary=True, column="always", chart="layers", baseline=True, gate="flag",
            gate_group="nonfinite",
            hint="NaN/Inf weights: training diverged; lower the learning rate, clip gradients, "
                 "check fp16 loss scaling", healthy=(0.0, 0.0)),
    Measure("drift", "drift", "high", "symmetric KL of filter distributions vs the reference",
            needs_reference=True, summary=True, column="reference", chart="both",
            baseline=True, gate="limit", gate_group="drift", size_limited=True,
            hint="the filters moved far from the reference distribution: catastrophic forgetting "
                 "or a broken fine-tune", view=(0.0, 2.0)),
    Measure("drift_noise", "noise", "high", "drift that sampling alone gives at this size",
            needs_reference=True, column="reference", scalar=False),  # drift_ratio is charted
    Measure("drift_ratio", "drift/noise", "high",
            "drift over its noise floor: 1 = what sampling alone gives; compare layers by this",
            needs_reference=True, summary=True, column="reference", chart="both", heatmap=True,
            healthy=(0.0, 3.0), view=(0.0, 30.0), gate="limit", gate_group="drift_ratio",
            hint="the layer's filters moved well beyond what sampling noise explains: expected "
                 "while fine-tuning early layers a little, alarming if large or in many layers"),
    Measure("relative_change", "rel change", "high", "||W - W_ref|| / ||W_ref||",
            needs_reference=True, summary=True, column="reference", chart="both",
            view=(0.0, 1.0)),
    Measure("weight_growth", "growth", "high", "RMS of the weights over the reference's RMS "
            "(its layer, or its group of layers): 1 = the same scale", needs_reference=True,
            summary=True, column="reference", chart="layers", view=(0.0, 20.0), gate="limit",
            gate_group="weight_growth", healthy=(0.0, 3.0),
            hint="the weights grew {value:.0f}x the reference's scale: learning rate too high "
                 "(or weight decay missing)?"),
    Measure("spectral_norm", "σ_max", "high", "largest singular value of the layer's matrix "
            "C_out x (C_in/groups)·K", spectral=True, column="spectral", chart="layers"),
    Measure("condition_number", "cond", "high", "σ_max / σ_min of the layer's matrix; null when "
            "rank-deficient", spectral=True, column="spectral", chart="layers", gate="limit",
            gate_group="spectral", fails_when_undefined=True,
            hint="an ill-conditioned layer (heavy pruning, collapse) makes the model fragile; "
                 "prune less, or fine-tune after pruning"),
    Measure("stable_rank", "srank", "low", "||W||_F² / σ_max²: how many directions carry energy",
            spectral=True, column="spectral", chart="layers"),
    Measure("effective_rank", "erank", "low", "exp of the entropy of σ / Σσ (Roy & Vetterli)",
            spectral=True, column="spectral", chart="layers"),
    Measure("lipschitz_bound", "Lip bound", "high", "certified upper bound of the conv's operator "
            "norm for every input size, padding and stride", spectral=True, column="spectral",
            chart="both", gate="limit", gate_group="spectral",
            hint="a large Lipschitz constant amplifies input perturbations; consider spectral "
                 "normalisation or weight decay"),
    Measure("lipschitz", "Lip @size", "high", "exact operator norm, circular padding, stride 1, at "
            "the given input size", spectral=True, column="spectral"),
    Measure("variance_entropy_clean_norm", "VE clean/H_T", "high", "clean VE over H_T(n)",
            scalar=False),
    Measure("weight_norm", "norm", "high", "Frobenius norm of the weight", chart="layers"),
    Measure("init_bound_ratio", "max|w|·√fan_in", "high",
            "largest |w| over PyTorch's default-init bound 1/sqrt(fan_in): <= 1 for a fresh "
            "default init, above 1 once trained", chart="layers"),
    Measure("filter_l1_mean", "L1", "high", "mean L1 norm of the filters", scalar=False),
    Measure("filter_l2_mean", "L2", "high", "mean L2 norm of the filters", scalar=False),
)

_BY_KEY = {m.key: m for m in MEASURES}


def get(key: str) -> Measure:
    """The measure called ``key``.

    Example:
        >>> get("sparsity").worse, get("sparsity").gate_rule
        ('high', 'max_sparsity')
    """
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"`key` expected one of {', '.join(_BY_KEY)}, got {key!r}") from None


def select(**flags: object) -> tuple[Measure, ...]:
    """The measures whose attributes equal ``flags`` (in registry order).

    Example:
        >>> [m.key for m in select(heatmap=True)]
        ['sparsity', 'variance_entropy', 'variance_entropy_norm', 'orthogonality', 'drift_ratio']
    """
    return tuple(m for m in MEASURES if all(getattr(m, k) == v for k, v in flags.items()))
