"""A state dict that knows more than its tensors: what a file format says about each layer
that a plain ``{name: tensor}`` cannot (an ONNX graph names each conv's groups and whether
it is a ConvTranspose). Discovery reads these facts; everything else sees a plain dict."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

__all__ = ["LayerFacts"]


class LayerFacts(dict[str, torch.Tensor]):
    """``{"<layer>.weight": tensor}`` plus, per layer name, its ``groups`` and whether it is
    ``transposed``.

    Example:
        >>> state = LayerFacts({"dw.weight": torch.zeros(8, 1, 3, 3)}, groups={"dw": 8})
        >>> state.groups, sorted(state)
        ({'dw': 8}, ['dw.weight'])
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor], groups: Mapping[str, int] | None = None,
                 transposed: Iterable[str] = ()) -> None:
        super().__init__(tensors)
        self.groups: dict[str, int] = dict(groups or {})
        self.transposed: set[str] = set(transposed)
