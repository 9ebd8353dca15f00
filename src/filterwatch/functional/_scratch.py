"""Scratch memory that the CPU passes over one layer reuse while a snapshot runs (private)."""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator

import torch

__all__ = ["scratch_memory"]


class _Scratch(threading.local):
    """Memory that the passes over one layer reuse while a snapshot runs (see
    :func:`scratch_memory`): a fresh ``(n, K)`` tensor per layer costs page faults on a CPU
    that take as long as the pass that fills it."""

    active = False

    def __init__(self) -> None:
        self.buffers: dict[tuple[str, torch.dtype], torch.Tensor] = {}


_SCRATCH = _Scratch()
_KEEP_BYTES = 4 << 20  # a buffer up to this size outlives its scratch_memory block


@contextlib.contextmanager
def scratch_memory() -> Iterator[None]:
    """Within this block, the CPU passes of the measures (statistics, drift) write into
    buffers that are reused from layer to layer: a fresh buffer per layer costs page faults
    that take as long as the pass itself. When the block ends, buffers of up to 4 MiB each
    are kept for the next block (the small layers' passes, snapshot after snapshot, then
    fault no page in: at most ``_KEEP_BYTES`` times the few slots) and larger ones are freed. A snapshot
    (``analyze``, the monitors) runs in one such block; wrap a loop of functional calls
    over many layers in one to get the same.

    Example:
        >>> import torch
        >>> from filterwatch.functional import drift, drift_basis, scratch_memory
        >>> layers = [torch.randn(64, 32, 3, 3) for _ in range(3)]
        >>> bases = [drift_basis(w) for w in layers]
        >>> with scratch_memory():
        ...     values = [drift(w, b).value for w, b in zip(layers, bases)]
        >>> max(abs(v) for v in values) < 1e-12
        True
    """
    outer = _SCRATCH.active
    _SCRATCH.active = True
    try:
        yield
    finally:
        _SCRATCH.active = outer
        if not outer:
            _SCRATCH.buffers = {key: buf for key, buf in _SCRATCH.buffers.items()
                                if buf.numel() * buf.element_size() <= _KEEP_BYTES}


def _scratch(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
             slot: str = "main") -> torch.Tensor | None:
    """A reused CPU buffer of this shape to write into (one per ``slot`` and dtype), or None
    outside :func:`scratch_memory` or off the CPU (then the caller allocates)."""
    if not _SCRATCH.active or device.type != "cpu":
        return None
    numel = math.prod(shape)
    buf = _SCRATCH.buffers.get((slot, dtype))
    if buf is None or buf.numel() < numel:
        buf = _SCRATCH.buffers[(slot, dtype)] = torch.empty(numel, dtype=dtype)
    return buf[:numel].view(shape)

