"""The kernels a state_dict's wrapped conv layers convolve with (private).

A state_dict saved from a model under ``torch.nn.utils.prune``, ``weight_norm`` or
``spectral_norm`` holds no ``<layer>.weight``: it holds the parts the wrapper combines at
forward time. :func:`effective_weights` rebuilds each effective kernel from its parts:

- pruning: ``weight_orig * weight_mask``;
- weight_norm: ``weight_g * weight_v / ||weight_v||`` (the old hook), or
  ``parametrizations.weight.original0`` (g) and ``original1`` (v) (the parametrization);
- spectral_norm: ``weight_orig / σ`` with ``σ = uᵀ W v`` from the saved ``weight_u`` and
  ``weight_v`` (the old hook), or ``parametrizations.weight.original`` with
  ``parametrizations.weight.0._u`` / ``._v`` (the parametrization).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

__all__: list[str] = []

_PARAM = "parametrizations.weight."


def _weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    if g.numel() == 1:  # weight_norm(dim=None): one g for the whole tensor
        norm: torch.Tensor = torch.linalg.vector_norm(v)
    else:  # the norm of each output filter (dim=0)
        norm = torch.linalg.vector_norm(v.reshape(v.shape[0], -1), dim=1)
        norm = norm.reshape(-1, *([1] * (v.ndim - 1)))
    return v * (g / norm)


def _spectral(w: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    mat = w.reshape(w.shape[0], -1)
    if mat.shape[0] != u.numel() or mat.shape[1] != v.numel():  # dim=1 (transposed convs)
        mat = w.transpose(0, 1).reshape(w.shape[1], -1)
    sigma = torch.dot(u.reshape(-1).to(mat), mat @ v.reshape(-1).to(mat))
    return w / sigma


def effective_weights(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[str, torch.Tensor, str]]:
    """``{key of the main part: (layer name, effective kernel, how it was rebuilt)}`` for the
    wrapped layers of ``state`` whose parts are all present."""
    out: dict[str, tuple[str, torch.Tensor, str]] = {}
    for key, value in state.items():
        if key.endswith("weight_orig"):
            prefix = key[: -len("weight_orig")]
            mask, u, v = (state.get(prefix + s) for s in ("weight_mask", "weight_u", "weight_v"))
            if mask is not None:
                out[key] = (prefix.rstrip("."), value * mask.to(value), "pruned: weight_orig * weight_mask")
            elif u is not None and v is not None:
                out[key] = (prefix.rstrip("."), _spectral(value, u, v), "spectral_norm: weight_orig / sigma")
        elif key.endswith("weight_g"):
            prefix = key[: -len("weight_g")]
            v = state.get(prefix + "weight_v")
            if v is not None and v.ndim >= 3:
                out[key] = (prefix.rstrip("."), _weight_norm(value, v), "weight_norm: g * v / ||v||")
        elif key.endswith(_PARAM + "original0"):
            prefix = key[: -len(_PARAM + "original0")]
            v = state.get(prefix + _PARAM + "original1")
            if v is not None and v.ndim >= 3:
                out[key] = (prefix.rstrip("."), _weight_norm(value, v),
                                           "weight_norm parametrization: g * v / ||v||")
        elif key.endswith(_PARAM + "original"):
            prefix = key[: -len(_PARAM + "original")]
            u, v = (state.get(prefix + _PARAM + "0." + s) for s in ("_u", "_v"))
            if u is not None and v is not None:
                out[key] = (prefix.rstrip("."), _spectral(value, u, v),
                                           "spectral_norm parametrization: weight / sigma")
    return out
