"""Match a model's layer names to a reference's: exact, wrapper prefixes, explicit map, order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import InputError

__all__ = ["Matching", "check_matching", "match_layers", "parse_layer_map"]


@dataclass(frozen=True)
class Matching:
    """How a model's layer names are matched to a per-layer reference's.

    Attributes:
        layer_map: model layer name -> reference layer name, tried first.
        by_order: pair the layers left over in order when their shapes agree.
        allow_unmatched: layers without a reference layer (by name) get a null drift with a
            reason instead of an error.
        allow_kernel_change: a layer whose kernel size differs from its reference layer's
            (model surgery during training) gets a null drift with a reason instead of an
            error. Separate from ``allow_unmatched``: a reference from another network is
            still refused.

    Example:
        >>> m = Matching(layer_map=parse_layer_map(["conv1=stem.conv"]), allow_unmatched=True)
        >>> m.layer_map, m.allow_unmatched, m.allow_kernel_change
        ({'stem.conv': 'conv1'}, True, False)
    """

    layer_map: Mapping[str, str] = field(default_factory=dict)
    by_order: bool = False
    allow_unmatched: bool = False
    allow_kernel_change: bool = False


def check_matching(matching: object) -> Matching:
    if matching is None:
        return Matching()
    if not isinstance(matching, Matching):
        raise InputError(f"`matching` expected a filterwatch.reference.Matching or None, got "
                         f"{type(matching).__name__}; hint: Matching(allow_unmatched=True)")
    return matching


def parse_layer_map(items: Sequence[str]) -> dict[str, str]:
    """``["old=new", ...]`` (reference name = model name) -> ``{"new": "old"}``.

    Example:
        >>> parse_layer_map(["backbone.conv1=encoder.conv1"])
        {'encoder.conv1': 'backbone.conv1'}
    """
    out: dict[str, str] = {}
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise InputError(f"`--map` expected OLD=NEW (reference name = model name), got {item!r}")
        out[new.strip()] = old.strip()
    return out


def _common_prefix(names: Sequence[str]) -> str:
    """The longest dotted prefix shared by every name (``"model."``), or ``""``."""
    if len(names) < 2:
        return ""
    parts = [n.split(".") for n in names]
    prefix: list[str] = []
    for segs in zip(*parts, strict=False):
        if len(set(segs)) != 1:
            break
        prefix.append(segs[0])
    # keep at least one segment of every name
    while prefix and any(len(p) <= len(prefix) for p in parts):
        prefix.pop()
    return ".".join(prefix) + "." if prefix else ""


def _strip(names: Sequence[str]) -> dict[str, str]:
    prefix = _common_prefix(names)
    return {n[len(prefix):]: n for n in names}


def _unmatched_error(model: Sequence[str], ref: Sequence[str]) -> InputError:
    def show(names: Sequence[str]) -> str:
        return ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")

    return InputError(
        f"`reference` expected a layer for every model layer, got unmatched names: model has "
        f"[{show(model)}], reference has [{show(ref)}]; hint: use --map OLD=NEW, "
        "--match-by-order (same shapes, same order), or --allow-unmatched"
    )


def match_layers(
    model: Sequence[str],
    reference: Sequence[str],
    *,
    mapping: Mapping[str, str] | None = None,
    by_order: bool = False,
    shapes: tuple[Mapping[str, Sequence[int]], Mapping[str, Sequence[int]]] | None = None,
    allow_unmatched: bool = False,
) -> dict[str, str]:
    """Map each model layer name to a reference layer name.

    Tried in order: ``mapping`` (model name -> reference name), exact names, names with the
    prefix shared by all names on each side removed (``model.``, ``backbone.``), and with
    ``by_order`` the remaining layers pair up in order when their shapes agree.

    Raises:
        InputError: some model layers stay unmatched (unless ``allow_unmatched``); the message
            lists the unmatched names on both sides.

    Example:
        >>> match_layers(["model.conv1", "model.conv2"], ["conv1", "conv2"])
        {'model.conv1': 'conv1', 'model.conv2': 'conv2'}
    """
    ref_set = set(reference)
    out: dict[str, str] = {}
    for name in model:
        target = (mapping or {}).get(name)
        if target is not None:
            if target not in ref_set:
                raise InputError(f"`--map` names reference layer {target!r}, which the reference lacks")
            out[name] = target
        elif name in ref_set:
            out[name] = name
    rest_m = [n for n in model if n not in out]
    used = set(out.values())
    rest_r = [n for n in reference if n not in used]
    if rest_m and rest_r:
        stripped_r = _strip(rest_r)
        for short, full in _strip(rest_m).items():
            if short in stripped_r:
                out[full] = stripped_r[short]
    rest_m = [n for n in model if n not in out]
    used = set(out.values())
    rest_r = [n for n in reference if n not in used]
    if rest_m and by_order and len(rest_m) == len(rest_r):
        if shapes is not None:
            bad = [(m, r) for m, r in zip(rest_m, rest_r, strict=True)
                   if list(shapes[0][m]) != list(shapes[1][r])]
            if bad:
                m, r = bad[0]
                raise InputError(
                    f"--match-by-order expected equal shapes, got {m} {list(shapes[0][m])} vs "
                    f"reference {r} {list(shapes[1][r])}"
                )
        out.update(zip(rest_m, rest_r, strict=True))
        rest_m = []
    if rest_m and not allow_unmatched:
        raise _unmatched_error(rest_m, rest_r)
    return out
