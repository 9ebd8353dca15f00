"""Sharded weights (DTensor, FSDP2 ``fully_shard``): gather one layer at a time.

A layer whose weight is a ``DTensor`` is all-gathered when its kernel is read
(:meth:`filterwatch.ConvLayer.kernel`), measured, and released before the next layer, so
beyond the model itself memory holds at most one full layer. Because the gather is a
collective, **every rank** must run the same measurement (``analyze``, a snapshot) in the
same order; results are identical on all ranks and equal those of the unsharded model.
``FilterWatch`` does this by itself when it sees sharded parameters (only rank zero logs).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["full_tensor", "has_sharded_parameters", "is_sharded"]


def is_sharded(t: torch.Tensor) -> bool:
    """Whether ``t`` is a DTensor (sharded or replicated across a device mesh)."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch without distributed
        return False
    return isinstance(t, DTensor)


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor: all-gathered for a DTensor (a collective), ``t`` itself otherwise."""
    return t.full_tensor() if is_sharded(t) else t  # type: ignore[attr-defined]


def has_sharded_parameters(module: nn.Module) -> bool:
    """Whether any parameter of ``module`` is a DTensor (FSDP2 ``fully_shard``, TP)."""
    return any(is_sharded(p) for p in module.parameters())
