"""How measures evolved over a run: a layer x snapshot table of a list of reports."""

from __future__ import annotations

from collections.abc import Sequence

from .registry import get
from .report import LayerReport, Report

__all__ = ["history_table"]


def history_table(history: Sequence[Report], measure: str = "variance_entropy") -> str:
    """One row per layer, one column per snapshot step: how ``measure`` evolved.

    Example:
        >>> import torch, filterwatch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3))
        >>> r = filterwatch.analyze(net); r.step = 0
        >>> print(history_table([r], "sparsity"))
        sparsity    step 0
        0            0.000
    """
    m = get(measure)
    names: list[str] = []
    for r in history:
        names += [layer.name for layer in r.layers if layer.name not in names]
    width = max([len(measure), *(len(n) for n in names)])
    cols = [f"step {r.step}" for r in history]
    lines = [f"{measure:<{width}}  " + "  ".join(f"{c:>8}" for c in cols)]
    for name in names:
        cells = []
        for r in history:
            layer: LayerReport | None = next((x for x in r.layers if x.name == name), None)
            cells.append(f"{m.format(None if layer is None else layer.value(measure)):>8}")
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)
