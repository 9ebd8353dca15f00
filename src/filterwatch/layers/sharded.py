"""Sharded weights (DTensor / FSDP2 ``fully_shard``, and FSDP1): measured as if unsharded.

A layer whose weight is a ``DTensor`` is all-gathered when its kernel is read
(:meth:`filterwatch.ConvLayer.kernel`), measured, and released before the next layer, so
beyond the model itself memory holds at most one full layer. Because the gather is a
collective, **every rank** must run the same measurement (``analyze``, a snapshot) in the
same order; results are identical on all ranks and equal those of the unsharded model.
``FilterWatch`` does this by itself when it sees sharded parameters (only rank zero logs).

FSDP1 (``FullyShardedDataParallel``, flat parameters; what Lightning's ``FSDPStrategy``
uses): a layer's kernel is read by summoning only the FSDP unit that holds it
(``summon_full_params(unit, recurse=False, writeback=False)``), copying that one weight and
releasing the unit, so memory holds at most one unit (what FSDP itself gathers in forward)
plus one layer.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["fsdp1_units", "full_tensor", "has_sharded_parameters", "is_sharded", "summoned_weight"]


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


def _ensure_root_initialised(root: nn.Module) -> None:
    """Let the FSDP1 root finish its lazy initialisation before any of its units is summoned.

    Before the first forward (a snapshot at the start of training), summoning a nested unit
    would make that unit initialise itself as a root, and the real root's first forward then
    fails an internal assertion. Summoning the root itself (only its own parameters) runs the
    root's lazy initialisation the way its forward would."""
    if getattr(root, "_is_root", False) is None:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        with FSDP.summon_full_params(root, recurse=False, writeback=False):
            pass


def fsdp1_units(module: nn.Module) -> dict[nn.Module, nn.Module]:
    """Each module inside an FSDP1 unit -> its innermost FSDP1 unit (empty without FSDP1)."""
    roots = _fsdp1_roots(module)
    if not roots:
        return {}
    for root in roots:
        _ensure_root_initialised(root)
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    owner: dict[nn.Module, nn.Module] = {}

    def walk(m: nn.Module, unit: nn.Module | None) -> None:
        if isinstance(m, FSDP):
            unit = m
        elif unit is not None:
            owner[m] = unit
        for child in m.children():
            walk(child, unit)

    walk(module, None)
    return owner


def summoned_weight(unit: nn.Module, module: nn.Module) -> torch.Tensor:
    """A copy of ``module.weight`` in full, with only ``unit`` summoned (a collective)."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    with FSDP.summon_full_params(unit, recurse=False, writeback=False):
        weight = module.weight
        assert isinstance(weight, torch.Tensor)
        return weight.detach().clone()
