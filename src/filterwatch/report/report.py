"""The Report: per-layer measures plus a model summary, and its JSON form (the CI contract)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from .._atomic import write_text_atomic
from ..errors import InputError
from .registry import select

__all__ = ["SCHEMA_VERSION", "LayerReport", "Report", "summarize"]

SCHEMA_VERSION = 1


@dataclass
class LayerReport:
    """Measures of one conv layer. A measure is ``None`` where undefined, with the reason in
    ``undefined[measure]``."""

    name: str
    shape: list[int]
    kernel_size: list[int]
    groups: int | None
    kind: str
    n_filters: int
    depth: int
    depth_norm: float
    sparsity: float | None = None
    n_sparse: int | None = None
    variance_entropy: float | None = None
    variance_entropy_norm: float | None = None
    variance_entropy_clean: float | None = None
    variance_entropy_clean_norm: float | None = None
    orthogonality: float | None = None
    dead_channels: int | None = None
    dead_channel_indices: list[int] = field(default_factory=list)
    nonfinite: int | None = None
    weight_norm: float | None = None
    filter_l1_mean: float | None = None
    filter_l2_mean: float | None = None
    drift: float | None = None
    drift_components: list[float] | None = None
    drift_noise: float | None = None
    drift_ratio: float | None = None
    relative_change: float | None = None
    weight_growth: float | None = None
    spectral_norm: float | None = None
    condition_number: float | None = None
    stable_rank: float | None = None
    effective_rank: float | None = None
    lipschitz_bound: float | None = None
    lipschitz: float | None = None
    init_bound_ratio: float | None = None
    fresh_init: str | None = None
    random_band: list[float] | None = None
    random_like: bool | None = None
    sparse_rms_ratio: float | None = None
    undefined: dict[str, str] = field(default_factory=dict)

    def value(self, measure: str) -> float | None:
        """The value of ``measure`` as a float, or ``None`` where undefined."""
        v = getattr(self, measure)
        return None if v is None else float(v)


@dataclass
class Report:
    """Per-layer filter measures of one model, with a model-level summary.

    ``summary["mean"]`` holds filter-weighted means over the layers where a measure is defined
    (``summary["total"]`` the totals of the counts: dead channels, non-finite values);
    ``summary["worst"]`` the three worst layers per measure (the registry,
    :data:`filterwatch.report.MEASURES`, says which direction is worse).
    """

    layers: list[LayerReport]
    source: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    filterwatch_version: str = ""
    created: str = ""
    step: int | None = None
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not self.summary:
            self.summary = summarize(self.layers)

    def layer(self, name: str) -> LayerReport:
        """The report of the layer called ``name``."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        names = ", ".join(layer.name for layer in self.layers[:10])
        raise KeyError(f"`name` expected one of the report's layers ({names}...), got {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: header keys first, then the summary, then the layers."""
        order = ("schema_version", "filterwatch_version", "created", "source", "step",
                 "settings", "summary", "layers")
        return {k: _clean_json(getattr(self, k)) for k in order}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False) + "\n"

    def save(self, path: str | Path) -> None:
        """Write the JSON atomically (temporary file, then rename)."""
        write_text_atomic(Path(path), self.to_json())

    @classmethod
    def from_dict(cls, data: Any, where: str = "report") -> Report:
        if not isinstance(data, dict):
            raise InputError(f"{where}: expected a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise InputError(
                f"{where}: `schema_version` expected {SCHEMA_VERSION}, got {version!r}; "
                "hint: regenerate the report with this filterwatch version"
            )
        raw_layers = data.get("layers")
        if not isinstance(raw_layers, list):
            raise InputError(f"{where}: `layers` expected a list, got {type(raw_layers).__name__}")
        layers = [_layer_from_dict(d, f"{where}: layers[{i}]") for i, d in enumerate(raw_layers)]
        step = data.get("step")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            raise InputError(f"{where}: `step` expected an integer or null, got {step!r}")
        for key in ("settings", "summary"):
            if not isinstance(data.get(key, {}), dict):
                raise InputError(f"{where}: `{key}` expected an object, got {type(data[key]).__name__}")
        return cls(
            layers=layers,
            source=str(data.get("source", "")),
            settings=dict(data.get("settings", {})),
            summary=dict(data.get("summary", {})),
            filterwatch_version=str(data.get("filterwatch_version", "")),
            created=str(data.get("created", "")),
            step=step,
        )

    @classmethod
    def from_json(cls, text: str, where: str = "report") -> Report:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: expected JSON, got a parse error ({exc})") from None
        return cls.from_dict(data, where)

    @classmethod
    def load(cls, path: str | Path) -> Report:
        return cls.from_json(read_report_text(path, "path"), where=str(path))


def read_report_text(path: str | Path, arg: str) -> str:
    """The text of a JSON report file, or an :class:`InputError` naming ``arg``."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(
            f"`{arg}` expected a readable report file, got {str(p)!r} ({exc.strerror})"
        ) from None
    except UnicodeDecodeError:
        raise InputError(
            f"`{arg}` expected a UTF-8 JSON report, got {str(p)!r}, which holds other bytes; "
            "hint: pass a report written by `filterwatch scan --format json` or Report.save"
        ) from None


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# what each LayerReport field may hold in JSON (the dataclass's annotations, checked on load)
_FIELD_CHECKS: dict[str, tuple[str, Any]] = {
    "str": ("a string", lambda v: isinstance(v, str)),
    "str | None": ("a string or null", lambda v: v is None or isinstance(v, str)),
    "bool | None": ("true, false or null", lambda v: v is None or isinstance(v, bool)),
    "int": ("an integer", _is_int),
    "float": ("a number", _is_number),
    "int | None": ("an integer or null", lambda v: v is None or _is_int(v)),
    "float | None": ("a number or null", lambda v: v is None or _is_number(v)),
    "list[int]": ("a list of integers", lambda v: isinstance(v, list) and all(map(_is_int, v))),
    "list[float] | None": ("a list of numbers or null",
                           lambda v: v is None or (isinstance(v, list) and all(map(_is_number, v)))),
    "dict[str, str]": ("an object of strings", lambda v: isinstance(v, dict) and all(
        isinstance(a, str) and isinstance(b, str) for a, b in v.items())),
}


def _layer_from_dict(d: Any, where: str) -> LayerReport:
    """A LayerReport from untrusted JSON: every field's type is checked."""
    if not isinstance(d, dict):
        raise InputError(f"{where}: expected a layer object, got {type(d).__name__} {d!r:.40}")
    values = {}
    for f in fields(LayerReport):
        if f.name not in d:
            continue
        what, ok = _FIELD_CHECKS[str(f.type)]
        if not ok(d[f.name]):
            raise InputError(f"{where}: `{f.name}` expected {what}, got {d[f.name]!r:.40}")
        values[f.name] = d[f.name]
    try:
        return LayerReport(**values)
    except TypeError as exc:  # a required field is missing
        raise InputError(f"{where}: not a filterwatch layer report ({exc})") from None


def _clean_json(obj: Any) -> Any:
    """A JSON-ready copy: dataclasses as dicts of their fields, tuples as lists, non-finite
    floats as ``None`` (so the JSON stays standard). One walk, no deep copy first
    (``dataclasses.asdict`` made the history file the costliest sink of a snapshot)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, str | int | None):
        return obj
    if isinstance(obj, dict):
        return {k: _clean_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean_json(v) for v in obj]
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _clean_json(getattr(obj, f.name)) for f in fields(obj)}
    return obj


def summarize(layers: list[LayerReport], top: int = 3) -> dict[str, Any]:
    """Model summary: filter-weighted means of what averages, totals of the counts (dead
    channels, non-finite values: a mean of counts would mean nothing), and the ``top`` worst
    layers per measure."""
    means: dict[str, float | None] = {}
    totals: dict[str, int] = {}
    worst: dict[str, list[dict[str, Any]]] = {}
    for m in select(summary=True):
        pairs = [(layer, layer.value(m.key)) for layer in layers]
        defined = [(layer, v) for layer, v in pairs if v is not None]
        weight = sum(layer.n_filters for layer, _ in defined)
        if m.integer:
            totals[m.key] = int(sum(v for _, v in defined))
        else:
            means[m.key] = sum(layer.n_filters * v for layer, v in defined) / weight if weight else None
        ranked = sorted(defined, key=lambda lv: lv[1], reverse=m.worse == "high")
        worst[m.key] = [{"layer": layer.name, "value": v} for layer, v in ranked[:top]]
    return {
        "n_layers": len(layers),
        "n_filters": sum(layer.n_filters for layer in layers),
        "mean": means,
        "total": totals,
        "worst": worst,
        "notes": _notes(layers),
    }


def _notes(layers: list[LayerReport]) -> list[str]:
    """Plain statements about the whole model, as measured: that most layers, or some, hold
    weights as a fresh initialisation leaves them (``fresh_init``: the init's fingerprint in
    the mean, RMS and largest |w|, and a VE inside the random band of the layer's size;
    random-like VE alone is no evidence: wide layers trained briefly keep VE/H_T near 1).
    Each layer is named with its own init."""
    measured = [layer for layer in layers if layer.nonfinite == 0]
    fresh = [layer for layer in measured if layer.fresh_init is not None]
    if not fresh:
        return []
    by_init: dict[str, list[str]] = {}
    for layer in fresh:
        by_init.setdefault(str(layer.fresh_init), []).append(layer.name)
    ranked = sorted(by_init.items(), key=lambda kv: -len(kv[1]))
    named = "; ".join(f"{', '.join(names[:3])}{', ...' if len(names) > 3 else ''} as {init} "
                      f"leaves them" for init, names in ranked)
    evidence = f"mean, RMS and largest |w|: {named}; VE/H_T inside the random band of each size"
    if len(fresh) * 2 > len(measured):
        return [f"looks untrained: {len(fresh)} of {len(measured)} layers hold freshly initialised "
                f"weights ({evidence}); was the right checkpoint loaded?"]
    return [f"{len(fresh)} of {len(measured)} layers look freshly initialised ({evidence}); "
            "re-initialised, newly added, or not reached by training?"]
