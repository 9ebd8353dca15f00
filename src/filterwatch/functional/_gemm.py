"""``a @ b.T`` on the CPU through oneDNN where torch ships it (private).

torch's CPU build multiplies float32 matrices with MKL, which on AMD processors runs its
AVX2 code; torch's own oneDNN build dispatches on the instruction set instead (AVX-512
where the CPU has it) and is reachable through ``torch.ops.mkldnn._linear_pointwise``,
the op torch's compiler emits for a linear layer (``x @ w.T``, IEEE float32 products and
sums, no reduced precision). Measured on a 2-core AMD EPYC (torch 2.13): orthogonality's
Gram matrices of ResNet-50's 3x3 layers take 15 ms instead of 29 ms.

The op is private to torch, so it is probed once (it must exist and give ``a @ b.T`` on a
small case) and every failure falls back to ``torch.mm`` for good; ``FILTERWATCH_ONEDNN=0``
turns it off.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import torch

__all__: list[str] = []

_Op = Callable[..., torch.Tensor]
_PLAIN = (torch.Tensor, torch.nn.Parameter)
# oneDNN compiles a kernel for each new shape (0.4-1 ms, once per process) and is no faster
# than MKL on small products (64x64x576 gains nothing; 128x512x4608 takes 1.4 ms instead of
# 3.2). ResNet-50's orthogonality at thresholds of 0 / 8 / 32 M / never: 20.1 / 20.2 / 22.0 /
# 38.4 ms, so 8 M keeps the gain while small layers skip the compile
_MIN_MACS = 8 * 2**20


@functools.cache
def _onednn_linear() -> _Op | None:
    """torch's oneDNN linear op, if present and right on a probe; else None."""
    available: bool = torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
    if os.environ.get("FILTERWATCH_ONEDNN", "1") == "0" or not available:
        return None
    try:
        op: _Op = torch.ops.mkldnn._linear_pointwise
        a = torch.arange(12, dtype=torch.float32).reshape(3, 4)
        b = torch.arange(8, dtype=torch.float32).reshape(2, 4).flip(0)
        got = op(a, b, None, "none", [], "")
        if not torch.equal(got, a @ b.T):  # small integers: exact in any order
            return None
    except Exception:  # any failure of a private op means "not here"
        return None
    return op


def _mm_nt(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b.T`` for 2-D ``a (m, k)`` and ``b (n, k)``: oneDNN for large products of plain
    float32 CPU tensors where available, ``torch.mm`` everywhere else (small products, other
    devices and dtypes, tensor subclasses, tensors that need gradients)."""
    macs = int(a.shape[0]) * int(b.shape[0]) * int(a.shape[1])
    plain = macs >= max(_MIN_MACS, 1) and all(
        type(t) in _PLAIN and t.dtype == torch.float32 and t.device.type == "cpu"
        and not t.requires_grad for t in (a, b))
    op = _onednn_linear() if plain else None
    return a @ b.T if op is None else op(a, b, None, "none", [], "")
