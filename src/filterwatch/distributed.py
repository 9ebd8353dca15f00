"""Sharded weights (DTensor / FSDP2 ``fully_shard``, and FSDP1): measured as if unsharded.

A layer whose weight is a ``DTensor`` is all-gathered when its kernel is read
(:meth:`filterwatch.ConvLayer.kernel`), measured, and released before the next layer, so
beyond the model itself memory holds at most one full layer. Because the gather is a
collective, **every rank** must run the same measurement (``analyze``, a snapshot) in the
same order; results are identical on all ranks and equal those of the unsharded model.
``FilterWatch`` does this by itself when it sees sharded parameters (only rank zero logs).

FSDP1 (``FullyShardedDataParallel``, flat parameters) is handled by
:func:`full_parameters`, which summons the full parameters for the measurement (read-only,
``writeback=False``). That holds the whole unsharded model for the duration of a snapshot,
not one layer: FSDP1 gathers per wrapped unit, and the measurement does not yet walk units.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import torch
from torch import nn

__all__ = ["full_parameters", "full_tensor", "has_sharded_parameters", "is_sharded"]


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


def _fsdp1_roots(module: nn.Module) -> list[nn.Module]:
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    except ImportError:  # pragma: no cover
        return []
    roots: list[nn.Module] = []
    for m in module.modules():
        if isinstance(m, FSDP) and not any(m in set(r.modules()) for r in roots):
            roots.append(m)
    return roots


def has_sharded_parameters(module: nn.Module) -> bool:
    """Whether ``module`` holds DTensor parameters (FSDP2, TP) or FSDP1 flat parameters."""
    return bool(_fsdp1_roots(module)) or any(is_sharded(p) for p in module.parameters())


@contextmanager
def full_parameters(module: nn.Module) -> Iterator[None]:
    """Within the block, FSDP1-wrapped parts of ``module`` expose their full parameters
    (read-only). A no-op for other modules. A collective: every rank must enter it."""
    roots = _fsdp1_roots(module)
    if not roots:
        yield
        return
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    with ExitStack() as stack:
        for root in roots:
            stack.enter_context(FSDP.summon_full_params(root, writeback=False, recurse=True))
        yield
