"""Gate rules: thresholds from ``[tool.filterwatch.gate]`` in pyproject.toml or a TOML file.

Defaults flag what is clearly broken, not what is merely degenerate by the paper's
definitions (good production models have layers with up to 44 % sparse filters, 3 % dead
output channels, depthwise layers with VE 0.18 and orthogonality 0.14). They come from the
calibration table (``benchmarks/calibration.py``, README "How the defaults were chosen"):
each limit is the midpoint between the worst healthy value and the least damage that must
fail (half the output channels dead, three quarters of the filters sparse, one pattern).
Stricter limits are a project's opt-in, globally or per layer with
``[[tool.filterwatch.gate.layer]]`` tables that have a ``pattern`` glob.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..layers import LayerSelection
from ..report.registry import select

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["RENAMED_RULES", "GateConfig", "GateRules", "LayerOverride", "load_rules", "rules_from_mapping"]


@dataclass(frozen=True)
class GateRules:
    """Limits one layer must satisfy. ``None`` switches a rule off.

    Attributes:
        max_sparsity: most share of sparse filters (default 0.6).
        min_variance_entropy: least VE of 3x3 kernels (default 0.1: collapsed to one
            pattern); for other kernels it scales with VE's range, ``× log10 K / log10 9``.
        dwarfed_sparse_rms: sparse filters whose RMS is at least this share of the layer's
            hold real weights that a few very large ones dwarf (``sparse_rms_ratio``; zeroed
            or decayed filters are near 0): a layer with more sparse filters than
            ``max_sparsity`` allows, all such, is degenerate but may work, so its sparsity and
            VE beyond their limits are warnings, not failures.
        max_variance_entropy_norm: most normalised VE (random-like); off by default.
        min_orthogonality: least orthogonality; off by default (depthwise layers are low).
        max_dead_channel_share: most share of all-zero output channels (default 0.25; the
            measure ``dead_channels`` counts them; ``max-dead-channels``, its old name, works).
        max_drift: most drift from the reference (default 2.0, beyond the paper's outliers
            of about 1.35); applied only to layers with at least ``drift_min_filters``.
        max_drift_ratio: most drift over its noise floor (what sampling alone gives at the
            layer's size), for layers of any size.
        max_weight_growth: most RMS of the weights over the reference's RMS (a blow-up);
            references written before filterwatch kept the scale skip it, with a note.
        drift_min_filters: smaller layers are too noisy for a drift limit (see README).
        allow_nonfinite: NaN/Inf weights pass (default false).
        max_condition_number: most condition number of the layer's matrix (a rank-deficient
            layer fails it); off by default. Turns on the spectral measures.
        max_lipschitz_bound: most certified Lipschitz bound of a layer; off by default.
            Turns on the spectral measures.
    """

    max_sparsity: float | None = 0.6
    min_variance_entropy: float | None = 0.1
    dwarfed_sparse_rms: float | None = 0.1
    max_variance_entropy_norm: float | None = None
    min_orthogonality: float | None = None
    max_dead_channel_share: float | None = 0.25
    max_drift: float | None = 2.0
    max_drift_ratio: float | None = 9.6
    max_weight_growth: float | None = 4.3
    drift_min_filters: int = 1024
    allow_nonfinite: bool = False
    max_condition_number: float | None = None
    max_lipschitz_bound: float | None = None



@dataclass(frozen=True)
class LayerOverride:
    """Rules for the layers whose name matches ``pattern`` (later overrides win)."""

    pattern: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class GateConfig:
    """All of ``[tool.filterwatch.gate]``: default rules, which layers, per-layer overrides."""

    rules: GateRules = field(default_factory=GateRules)
    kernel_sizes: tuple[str, ...] | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    overrides: tuple[LayerOverride, ...] = ()
    source: str = "defaults"

    @property
    def select(self) -> LayerSelection:
        """The layers the gate checks (and ``check`` measures)."""
        return LayerSelection(self.kernel_sizes, self.include, self.exclude)

    def for_layer(self, name: str) -> GateRules:
        rules = self.rules
        for o in self.overrides:
            if fnmatch.fnmatchcase(name, o.pattern):
                rules = replace(rules, **o.values)
        return rules

    @property
    def needs_spectral(self) -> bool:
        """Whether a rule (default or per-layer) needs the spectral measures: a rule on a
        measure the registry marks ``spectral`` (the callbacks, ``check`` and
        ``assert_filters_healthy`` all turn them on from this)."""
        return any(self.needs(m.key) for m in select(spectral=True))

    def needs(self, measure: str) -> bool:
        """Whether a rule (default or per-layer) checks ``measure``.

        Example:
            >>> rules_from_mapping({"min-orthogonality": 0.5}).needs("orthogonality")
            True
        """
        keys = [k for k in (f"max_{measure}", f"min_{measure}") if k in _RULE_FIELDS]
        return any(getattr(self.rules, k) is not None for k in keys) or any(
            o.values.get(k) is not None for o in self.overrides for k in keys)


_RULE_KEYS = {f.name.replace("_", "-"): f for f in fields(GateRules)}
_RULE_FIELDS = frozenset(f.name for f in fields(GateRules))
# old names that still work: each says what it meant and which name replaces it
RENAMED_RULES = {"max-dead-channels": "max-dead-channel-share"}
_SELECT_KEYS = ("kernel-sizes", "include", "exclude", "layer")


def _allowed(f: Any) -> str:
    if f.name == "allow_nonfinite":
        return "true or false"
    if f.name == "drift_min_filters":
        return "an integer >= 0"
    if "sparsity" in f.name or "share" in f.name or "orthogonality" in f.name:
        return "a number in [0, 1], or false to switch the rule off"
    return "a number >= 0, or false to switch the rule off"


def _rule_value(key: str, value: Any, where: str) -> Any:
    f = _RULE_KEYS[key]
    bad = InputError(f"{where}: `{key}` expected {_allowed(f)}, got {value!r}")
    if f.name == "allow_nonfinite":
        if not isinstance(value, bool):
            raise bad
        return value
    if f.name == "drift_min_filters":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad
        return value
    if value is False:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad
    if value < 0 or ("[0, 1]" in _allowed(f) and value > 1):
        raise bad
    return float(value)


def _rules(table: Mapping[str, Any], where: str, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key in extra:
            continue
        if key in RENAMED_RULES:
            warnings.warn(f"{where}: `{key}` is now `{RENAMED_RULES[key]}` (the same share of output "
                          "channels); the old name still works", FutureWarning, stacklevel=4)
            key = RENAMED_RULES[key]
        if key not in _RULE_KEYS:
            allowed = ", ".join([*_RULE_KEYS, *extra])
            raise InputError(f"{where}: unknown key `{key}`; allowed keys: {allowed}")
        out[_RULE_KEYS[key].name] = _rule_value(key, value, where)
    return out


def _globs(value: Any, key: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where}: `{key}` expected a list of strings, got {value!r}")
    return tuple(value)


def rules_from_mapping(table: Mapping[str, Any], source: str = "config") -> GateConfig:
    """Validate a ``[tool.filterwatch.gate]`` table (keys in kebab-case).

    Example:
        >>> cfg = rules_from_mapping({"max-sparsity": 0.5, "layer": [
        ...     {"pattern": "head.*", "max-sparsity": False}]})
        >>> cfg.for_layer("body.0").max_sparsity, cfg.for_layer("head.1").max_sparsity
        (0.5, None)
    """
    where = f"{source} [tool.filterwatch.gate]"
    if not isinstance(table, Mapping):
        raise InputError(f"{where}: expected a table, got {type(table).__name__}")
    base = _rules(table, where, _SELECT_KEYS)
    kernel_sizes = None
    if "kernel-sizes" in table:
        kernel_sizes = _globs(table["kernel-sizes"], "kernel-sizes", where)
        LayerSelection(kernel_sizes)  # fails early on a bad size
    overrides = []
    layer_tables = table.get("layer", [])
    if not isinstance(layer_tables, list):
        raise InputError(
            f"{where}: `layer` expected an array of tables ([[...gate.layer]]), got {layer_tables!r}"
        )
    for i, lt in enumerate(layer_tables):
        lwhere = f"{source} [[tool.filterwatch.gate.layer]] #{i + 1}"
        if not isinstance(lt, Mapping) or not isinstance(lt.get("pattern"), str):
            raise InputError(f"{lwhere}: `pattern` expected a glob string, got {lt!r}")
        overrides.append(LayerOverride(lt["pattern"], _rules(lt, lwhere, ("pattern",))))
    return GateConfig(
        rules=GateRules(**base), kernel_sizes=kernel_sizes,
        include=_globs(table.get("include", []), "include", where),
        exclude=_globs(table.get("exclude", []), "exclude", where),
        overrides=tuple(overrides), source=source,
    )


def load_rules(config: str | Path | None = None, search_from: Path | None = None) -> GateConfig:
    """Rules from ``config`` (a pyproject.toml or a TOML file whose top level is the gate
    table or has ``[tool.filterwatch.gate]``), else from ``pyproject.toml`` in
    ``search_from`` (default: the current folder), else the defaults."""
    if config is None:
        candidate = (search_from or Path.cwd()) / "pyproject.toml"
        if not candidate.is_file():
            return GateConfig()
        path, required = candidate, False
    else:
        path, required = Path(config), True
        if not path.is_file():
            raise InputError(f"`--config` expected an existing TOML file, got {str(path)!r}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: expected valid TOML, got a parse error ({exc})") from None
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise InputError(f"{path}: `tool` expected a table, got {type(tool).__name__}; hint: "
                         "write the rules under [tool.filterwatch.gate]")
    ours = tool.get("filterwatch", {})
    if not isinstance(ours, dict):
        raise InputError(f"{path}: `tool.filterwatch` expected a table, got {type(ours).__name__}; "
                         "hint: write the rules under [tool.filterwatch.gate]")
    table = ours.get("gate")
    if table is None:
        others = sorted(k for k in ours if k != "gate")
        if others:  # [tool.filterwatch.gates] and the like: say so, don't silently use defaults
            close = difflib.get_close_matches("gate", others, n=1)
            warnings.warn(
                f"{path}: [tool.filterwatch] has no `gate` table but has "
                f"{', '.join(f'`{k}`' for k in others)}"
                + (f"; did you mean [tool.filterwatch.gate] instead of [tool.filterwatch.{close[0]}]?"
                   if close else "") + " The default rules apply.", UserWarning, stacklevel=2)
        if not required or path.name == "pyproject.toml" or ours:
            return GateConfig(source=f"{path} (no [tool.filterwatch.gate]: defaults)")
        table = data
    return rules_from_mapping(table, str(path))
