"""One-pass per-filter statistics as a Triton kernel (private; GPU fast path of the engine).

One read of an ``(n, K)`` filter matrix gives, per filter, its peak ``max|f|`` and L2 norm,
and per persistent program (a few per multiprocessor, each walking every grid-th block of
``BLOCK`` rows) partial sums of ``|f|``, of non-finite values, and of the shifted first and
second moments ``Σ(f - c)`` and ``Σ(f - c)(f - c)ᵀ`` (an exact fp32 ``tl.dot`` per block, no
TF32, accumulated in float64). The partials are added by torch in a fixed order, so the
result is deterministic. Used automatically for CUDA tensors with ``K <= 64`` when Triton is
installed; everywhere else the torch path runs. On a CPU the kernel runs under Triton's
interpreter (``TRITON_INTERPRET=1``), which is how CI tests it. Triton itself is imported
the first time a kernel is wanted, never by ``import filterwatch``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Any

import torch

from ..functional.stats import RowStats

__all__: list[str] = []

MAX_K = 64


@functools.cache
def have_triton() -> bool:
    """Whether Triton is installed (looked up without importing it)."""
    return importlib.util.find_spec("triton") is not None


def triton_usable(t: torch.Tensor) -> bool:
    """Whether the kernel can run on ``t``: Triton present, CUDA (or the interpreter), K <= 64."""
    if os.environ.get("FILTERWATCH_TRITON", "1") == "0" or not have_triton():
        return False
    on_device = t.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"
    return on_device and t.shape[-1] <= MAX_K


@functools.cache
def _kernel() -> Any:
    import triton
    import triton.language as tl

    @triton.jit
    def row_stats_kernel(f_ptr, shift_ptr, peak_ptr, l2_ptr, part_ptr, s1_ptr, s2_ptr,  # type: ignore[no-untyped-def]
                         n, stride, n_blocks, K: tl.constexpr, KP: tl.constexpr, BLOCK: tl.constexpr,
                         S2: tl.constexpr):
        # a persistent program: it walks every grid-th block of rows and keeps its partial
        # sums in registers (the K x K moments in float64), then writes them once
        pid = tl.program_id(0)
        cols = tl.arange(0, KP)
        cmask = cols < K
        shift = tl.load(shift_ptr + cols, mask=cmask, other=0.0)
        acc_abs = tl.zeros((BLOCK,), dtype=tl.float64)
        acc_bad = tl.zeros((BLOCK,), dtype=tl.float32)
        acc_s1 = tl.zeros((KP,), dtype=tl.float64)
        acc_s2 = tl.zeros((KP, KP), dtype=tl.float64)
        for blk in tl.range(pid, n_blocks, tl.num_programs(0)):
            rows = blk * BLOCK + tl.arange(0, BLOCK)
            rmask = rows < n
            m = rmask[:, None] & cmask[None, :]
            x = tl.load(f_ptr + rows[:, None] * stride + cols[None, :], mask=m, other=0.0).to(tl.float32)
            a = tl.abs(x)
            acc_bad += tl.sum(tl.where(m & ((x != x) | (a == float("inf"))), 1.0, 0.0), axis=1)
            tl.store(peak_ptr + rows, tl.max(a, axis=1), mask=rmask)
            tl.store(l2_ptr + rows, tl.sqrt(tl.sum(x * x, axis=1)), mask=rmask)
            acc_abs += tl.sum(a, axis=1).to(tl.float64)
            c = tl.where(m, x - shift[None, :], 0.0)
            acc_s1 += tl.sum(c, axis=0).to(tl.float64)
            if S2 == 0:  # Σccᵀ of the block as an exact fp32 product
                acc_s2 += tl.dot(tl.trans(c), c, input_precision="ieee").to(tl.float64)
            elif S2 == 1:  # the same as element-wise multiply-adds (no padded product)
                acc_s2 += tl.sum(c[:, :, None] * c[:, None, :], axis=0).to(tl.float64)
        tl.store(part_ptr + pid * 2, tl.sum(acc_abs, axis=0))
        tl.store(part_ptr + pid * 2 + 1, tl.sum(acc_bad, axis=0).to(tl.float64))
        tl.store(s1_ptr + pid * KP + cols, acc_s1)
        tl.store(s2_ptr + pid * KP * KP + cols[:, None] * KP + cols[None, :], acc_s2)

    return row_stats_kernel


@functools.cache
def _programs(device: torch.device) -> int:
    """Persistent programs per launch: a few per streaming multiprocessor (8 when interpreted)."""
    if device.type != "cuda":
        return 8
    return 4 * torch.cuda.get_device_properties(device).multi_processor_count


def _next_pow2(x: int) -> int:
    return 1 << (max(x, 1) - 1).bit_length()


# How the kernel sums the second moments Σccᵀ: "dot" (an fp32 tl.dot on the padded K x K
# tile), "fma" (element-wise multiply-adds, K <= 16), "gemm" (not in the kernel: one float64
# product by cuBLAS afterwards, a second read). `make gpu-check` times all three; the default
# stays "dot" until a record shows another one faster.
S2_MODES = {"dot": 0, "fma": 1, "gemm": 2}


def _s2_mode(kp: int) -> str:
    mode = os.environ.get("FILTERWATCH_TRITON_S2", "dot")
    if mode not in S2_MODES:
        raise ValueError(f"`FILTERWATCH_TRITON_S2` expected one of {', '.join(S2_MODES)}, got {mode!r}")
    return "dot" if mode == "fma" and kp > 16 else mode


def triton_row_stats(f: torch.Tensor) -> RowStats:
    """Per-filter peaks and L2 norms, ``|f|`` sum, non-finite count and raw float64 moments
    ``s1 = Σf`` and ``s2 = Σffᵀ`` of an ``(n, K)`` filter matrix, in one read (two with
    ``FILTERWATCH_TRITON_S2=gemm``)."""
    n, k = f.shape
    f = f.contiguous()
    kp = max(16, _next_pow2(k))
    mode = _s2_mode(kp)
    # fma: a (BLOCK, KP, KP) product per block, kept small enough for the registers
    block = 32 if mode == "fma" else max(16, min(128, 8192 // kp))
    n_blocks = -(-n // block)
    dev = f.device
    grid = max(1, min(n_blocks, _programs(dev)))
    shift = f[: min(n, 4096)].float().mean(dim=0)  # a cheap centre: keeps fp32 sums accurate
    shift_p = torch.zeros(kp, dtype=torch.float32, device=dev)
    shift_p[:k] = shift
    peak = torch.empty(n, dtype=torch.float32, device=dev)
    l2 = torch.empty(n, dtype=torch.float32, device=dev)
    part = torch.empty(grid, 2, dtype=torch.float64, device=dev)
    s1p = torch.empty(grid, kp, dtype=torch.float64, device=dev)
    s2p = torch.empty(grid, kp, kp, dtype=torch.float64, device=dev)
    _kernel()[(grid,)](f, shift_p, peak, l2, part, s1p, s2p, n, f.stride(0), n_blocks,
                       K=k, KP=kp, BLOCK=block, S2=S2_MODES[mode], num_warps=2)  # best of a sweep on an H200
    s1c = s1p.sum(dim=0)[:k]
    if mode == "gemm":  # centred on the same shift as s1c
        centred = f.to(torch.float64) - shift_p[:k].to(torch.float64)
        s2c = centred.T @ centred
    else:
        s2c = s2p.sum(dim=0)[:k, :k]
    m = shift_p[:k].to(torch.float64)
    return RowStats(
        row_peak=peak, row_l2=l2.to(torch.float64),
        abs_sum=part[:, 0].sum(),
        nonfinite=part[:, 1].sum(),
        s1=s1c + n * m,
        s2=s2c + torch.outer(s1c, m) + torch.outer(m, s1c) + n * torch.outer(m, m),
    )
