"""Spectral health of a conv layer: the singular values of its matrix, and its operator norm.

**The layer's matrix** is ``C_out x (C_in/groups)·K``, block-diagonal over the groups; its
singular values come from the eigenvalues of the smaller Gram matrix of each block, in
float64. From them: ``spectral_norm`` (σ_max), ``condition_number`` (σ_max / σ_min; undefined
when the matrix is rank-deficient to round-off), ``stable_rank`` (‖W‖_F² / σ_max²) and
``effective_rank`` (Roy & Vetterli: exp of the entropy of σ / Σσ).

**The convolution as an operator.** With circular padding on an ``n``-point input, the
operator is diagonalised by the DFT: its singular values are those of the ``C_out x C_in``
matrices ``F(ω) = Σ_p W_p e^{-i⟨ω, p⟩}`` at the ``n`` frequencies (Sedghi, Gupta & Long,
ICLR 2019); :func:`conv_operator_norm` evaluates them exactly at a given input size.

``lipschitz_bound`` is a **certified upper bound valid for every input size**, zero or
circular padding, any stride and dilation: the supremum of ``‖F(ω)‖`` over the whole torus
bounds all of them (a zero-padded or strided convolution is a compression of a circular one
on a larger input; dilation only reparametrises ω). ``F`` is a trigonometric polynomial of
degree ``d_i = (k_i - 1)/2`` per axis (after centring the kernel, which changes no singular
value). At the maximiser ω* of ``g(ω) = |u*ᴴ F(ω) v*|²`` the gradient vanishes, and
Bernstein's inequality bounds its second derivatives by ``4 d_i d_j sup g``; so on a grid of
``N_i`` points per axis the nearest grid point keeps ``g ≥ S²(1 - 2(Σ_i π d_i / N_i)²)``:

    sup_ω ‖F(ω)‖  ≤  max_grid ‖F(ω)‖ / sqrt(1 - 2 (Σ_i π d_i / N_i)²)

The grid is chosen so that this factor is at most 1.05 (3x3 kernels: 30 x 30). The grid
maximum is computed in float64 without a complex product per frequency: the Gram matrices
``A(ω) = F(ω)ᴴF(ω)`` are trigonometric sums of the spatial Gram kernel
``G_δ = Σ_p W_pᵀ W_{p+δ}`` (one real GEMM per lag of one half-space), built a chunk of
frequencies at a time by two real GEMMs; a few power steps find where the maximum lies, the
exact eigenvalues of the best few set a level, one batched Cholesky factorisation of
``t·I - A(ω)`` proves every other frequency below it (with Rump's rounding margin), and only
the few frequencies it cannot settle get exact eigenvalues. For a 1x1 kernel the bound
is the matrix norm exactly. This is the rigorous sampling bound of the DFT approach; the Gram
iteration of Delattre et al. (ICML 2023) bounds the same supremum from the kernel alone, at
a cost that grows with the kernel's support at every iteration.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import torch

from ..errors import InputError, UndefinedMeasureError
from ._filters import _check_weight, _require_finite

__all__ = ["MatrixSpectrum", "conv_operator_norm", "lipschitz_bound", "matrix_spectrum"]

_MAX_FACTOR = 1.05  # the certificate's worst ratio of bound to grid maximum
_SAFETY = 1.0 + 1e-9  # round-off margin on float64 eigenvalues
_CHUNK_BYTES = 1 << 27  # frequencies' matrices built at once (128 MiB)


class MatrixSpectrum(NamedTuple):
    """Result of :func:`matrix_spectrum` (``condition_number`` is None with ``reason`` when
    the matrix is rank-deficient to round-off)."""

    spectral_norm: float
    condition_number: float | None
    stable_rank: float
    effective_rank: float
    reason: str = ""


def _groups(weight: torch.Tensor, groups: int) -> tuple[torch.Tensor, float]:
    """``(G, C_out/G, C_in/G, *k)`` float64 blocks of a ``(C_out, C_in/G, *k)`` weight, scaled
    by a power of two to a peak in [0.5, 1), and that scale: every spectral measure is
    homogeneous, and a Gram matrix of weights near 1e200 (or 1e-200) would overflow (or
    underflow) before the eigensolver sees it. Divide a norm by the scale to undo it."""
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or weight.shape[0] % groups:
        raise InputError(f"`groups` expected a positive divisor of C_out = {weight.shape[0]}, got {groups!r}")
    w = weight.detach().to(torch.float64)
    peak = float(w.abs().max()) if w.numel() else 0.0
    scale = math.ldexp(1.0, -math.frexp(peak)[1]) if peak > 0 and math.isfinite(peak) else 1.0
    return (w * scale).reshape(groups, weight.shape[0] // groups, *weight.shape[1:]), scale


def _gram_eigenvalues(m: torch.Tensor) -> torch.Tensor:
    """Eigenvalues (ascending, >= 0) of the smaller Gram matrix of each ``(..., r, c)`` matrix:
    the squared singular values."""
    gram = m @ m.mH if m.shape[-2] <= m.shape[-1] else m.mH @ m
    values: torch.Tensor = torch.linalg.eigvalsh(gram)
    return values.clamp_min(0.0)


def _singular_values(weight: torch.Tensor, groups: int) -> torch.Tensor:
    blocks, scale = _groups(weight, groups)
    mats = blocks.reshape(groups, blocks.shape[1], -1)
    return _gram_eigenvalues(mats).sqrt().reshape(-1) / scale


def matrix_spectrum(weight: torch.Tensor, groups: int = 1) -> MatrixSpectrum:
    """Singular-value measures of the layer's matrix ``C_out x (C_in/groups)·K``.

    Raises:
        UndefinedMeasureError: the weight is all zero, or not finite.

    Example:
        >>> import torch
        >>> s = matrix_spectrum(torch.eye(4).reshape(4, 4, 1, 1) * 3)
        >>> round(s.spectral_norm, 9), round(s.condition_number, 9), round(s.stable_rank, 9)
        (3.0, 1.0, 4.0)
        >>> matrix_spectrum(torch.ones(4, 2, 3, 3)).condition_number is None   # rank 1
        True
    """
    w = _check_weight(weight)
    _require_finite(w, "the spectrum of the layer matrix")
    sigma = _singular_values(w, groups)
    top = float(sigma.max())
    if top == 0.0:
        raise UndefinedMeasureError("spectral measures are undefined for an all-zero weight")
    stable = float((sigma / top).square().sum())  # ||W||_F^2 / σ_max^2, without overflow
    p = sigma / sigma.sum()
    effective = math.exp(float(-torch.special.xlogy(p, p).sum()))
    rows, cols = w.shape[0] // groups, w[0].numel()
    eps = torch.finfo(w.dtype).eps
    # σ_min from a float64 Gram is accurate to about sqrt(eps64 · size) · σ_max
    tol = top * max(max(rows, cols) * eps, math.sqrt(torch.finfo(torch.float64).eps * max(rows, cols)))
    low = float(sigma.min())
    if low <= tol:
        reason = (f"condition number is undefined: the matrix is rank-deficient to round-off "
                  f"(σ_min = {low:.3g} <= {tol:.3g})")
        return MatrixSpectrum(top, None, stable, effective, reason)
    return MatrixSpectrum(top, top / low, stable, effective)


def _spatial(weight: torch.Tensor) -> int:
    return weight.ndim - 2


_SMALL_GRAM = 48  # below this size, exact eigenvalues of every frequency are cheap anyway
_SCOUT_STEPS = 6  # power steps at every frequency, to find where the maximum is
_REFINE_TOP = 8  # the most promising frequencies, whose exact eigenvalues set the level


def _lag_grams(block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The spatial Gram kernel ``G_δ = Σ_p W_pᵀ W_{p+δ}`` (``ci x ci``) of one group's kernel
    ``(co, ci, *k)`` at the lags ``δ`` of one half-space (δ = 0 first; ``G_{-δ} = G_δᵀ``):
    ``(lags (L, d), grams (L, ci, ci))``, one real GEMM per lag over the taps it pairs."""
    kernel = tuple(block.shape[2:])
    taps = block.permute(*range(2, block.ndim), 0, 1)  # (*k, co, ci): W_p
    ci = int(block.shape[1])
    lags, grams = [], []
    for lag in itertools.product(*(range(1 - k, k) for k in kernel)):
        if lag < (0,) * len(lag):  # lexicographically negative: the transpose of another
            continue
        first = tuple(slice(max(0, -d), k - max(0, d)) for d, k in zip(lag, kernel, strict=True))
        second = tuple(slice(max(0, d), k - max(0, -d)) for d, k in zip(lag, kernel, strict=True))
        a, b = taps[first].reshape(-1, ci), taps[second].reshape(-1, ci)
        lags.append(lag)
        grams.append(a.T @ b)
    return (torch.tensor(lags, dtype=block.dtype, device=block.device), torch.stack(grams))


def _frequencies(sizes: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """The DFT grid of ``sizes`` with the last axis halved (``ω`` and ``-ω`` give conjugate
    matrices, so the same singular values): ``(F, d)`` angles ``2π m / N``."""
    axes = [torch.arange(n, dtype=torch.float64, device=device) * (2 * math.pi / n) for n in sizes[:-1]]
    axes.append(torch.arange(sizes[-1] // 2 + 1, dtype=torch.float64, device=device)
                * (2 * math.pi / sizes[-1]))
    return torch.cartesian_prod(*axes).reshape(-1, len(sizes))


class _GramSpectrum:
    """``A(ω) = F(ω)ᴴF(ω) = Σ_δ G_δ e^{-i⟨ω, δ⟩}`` of one group's kernel, built on demand for
    any batch of frequencies: ``Re A = G_0 + Σ cos(⟨ω,δ⟩)(G_δ + G_δᵀ)`` and
    ``Im A = Σ sin(⟨ω,δ⟩)(G_δᵀ - G_δ)`` over one half of the lags, two real GEMMs, far
    cheaper than a complex Gram product per frequency and never more than a chunk in memory."""

    def __init__(self, block: torch.Tensor) -> None:
        lags, grams = _lag_grams(block)
        self.n = int(grams.shape[-1])
        self.lags = lags[1:]
        self.g0 = grams[0].reshape(1, -1)
        rest = grams[1:]
        self.sym = (rest + rest.mT).reshape(len(rest), self.n * self.n)
        self.anti = (rest.mT - rest).reshape(len(rest), self.n * self.n)

    def at(self, omega: torch.Tensor) -> torch.Tensor:
        """``(len(omega), n, n)`` complex128 matrices."""
        shape = (omega.shape[0], self.n, self.n)
        theta = omega @ self.lags.T  # (F, L)
        re = torch.addmm(self.g0, torch.cos(theta), self.sym)
        im = torch.sin(theta) @ self.anti
        return torch.complex(re, im).reshape(shape)


def _chunks(spectrum: _GramSpectrum, omega: torch.Tensor) -> list[torch.Tensor]:
    per = max(1, _CHUNK_BYTES // (16 * spectrum.n**2))
    return [omega[i:i + per] for i in range(0, omega.shape[0], per)]


def _rayleigh(grams: torch.Tensor, x: torch.Tensor, steps: int) -> torch.Tensor:
    """The Rayleigh quotients ``(F,)`` after ``steps`` power iterations from ``x``
    ``(F, n, 1)``: each a lower bound of its matrix's largest eigenvalue."""
    for _ in range(steps):
        x = grams @ x
        x = x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-300)
    return (x.mH @ grams @ x).real.reshape(-1)


def _proven_below(grams: torch.Tensor, t: float) -> torch.Tensor:
    """Where floating-point Cholesky of ``t·I - A`` succeeds: there ``λ_max(A) < t + c`` with
    ``c`` from Rump's test (see :func:`_cholesky_margin`)."""
    shifted = -grams
    shifted.diagonal(dim1=-2, dim2=-1).add_(t)
    proven: torch.Tensor = torch.linalg.cholesky_ex(shifted).info == 0
    return proven


def _cholesky_margin(n: int, t: float) -> float:
    """Rump (2006): if floating-point Cholesky of ``M - c·I`` runs to completion with
    ``c >= γ_{n+1}/(1 - γ_{n+1}) · tr(M)``, then ``M`` is positive definite. Here ``M - cI``
    is ``t·I - A`` (A positive semidefinite, so ``tr(M) <= n (t + c)``); a factor 4 covers
    complex arithmetic and the rounding of the shift."""
    u = torch.finfo(torch.float64).eps / 2
    gamma = (n + 1) * u / (1 - (n + 1) * u)
    k = 4 * gamma / (1 - gamma) * n
    return k * t / (1 - k)


def _exact_top(grams: torch.Tensor) -> float:
    """The largest eigenvalue of a batch of Hermitian matrices, from all their eigenvalues."""
    return float(torch.linalg.eigvalsh(grams)[..., -1].max())


def _certified_top(spectrum: _GramSpectrum, omega: torch.Tensor) -> float:
    """The largest eigenvalue of ``A(ω)`` over the frequencies ``omega``, certified from above,
    without the eigenvalues of every matrix. A few power steps at every frequency find where
    the maximum lies; the exact eigenvalues of the most promising few give a level ``L``
    (power iteration alone converges too slowly at the edge of a wide layer's spectrum: 60
    steps left it 0.1 % low, and every frequency above it failed the test); one batched
    Cholesky factorisation of ``t·I - A(ω)`` at ``t`` just above ``L`` *proves* ``λ_max < t``
    (plus Rump's margin) wherever it succeeds; only the frequencies where it fails get exact
    eigenvalues."""
    n = spectrum.n
    chunks = _chunks(spectrum, omega)
    if n <= _SMALL_GRAM:
        return max(_exact_top(spectrum.at(c)) for c in chunks)
    gen = torch.Generator(device=omega.device).manual_seed(0)
    start = torch.randn(n, 1, dtype=torch.float64, generator=gen, device=omega.device)
    start = torch.complex(start, torch.zeros_like(start))
    scout = torch.cat([_rayleigh(spectrum.at(c), start.expand(c.shape[0], n, 1), _SCOUT_STEPS)
                       for c in chunks])
    best = omega[torch.topk(scout, min(_REFINE_TOP, scout.numel())).indices]
    lower = _exact_top(spectrum.at(best))
    if not lower > 0.0:  # all zero: exact everywhere
        return max(_exact_top(spectrum.at(c)) for c in chunks)
    t = lower * (1.0 + 1e-9)
    top = t + _cholesky_margin(n, t)
    for c in chunks:
        grams = spectrum.at(c)
        failed = ~_proven_below(grams, t)
        if bool(failed.any()):  # not proven below t there: exact eigenvalues of those few
            top = max(top, _exact_top(grams[failed]) * _SAFETY)
    return top


def _max_over_frequencies(blocks: torch.Tensor, sizes: tuple[int, ...]) -> float:
    """max over the DFT grid of ``sizes`` (and over the groups) of σ_max(F(ω)), float64,
    certified from above (see :func:`_certified_top`)."""
    if blocks.shape[1] < blocks.shape[2]:  # the smaller side: σ(F) = σ(Fᵀ)
        blocks = blocks.transpose(1, 2)
    omega = _frequencies(sizes, blocks.device)
    return math.sqrt(max(_certified_top(_GramSpectrum(block), omega) for block in blocks))


def conv_operator_norm(weight: torch.Tensor, input_size: tuple[int, ...] | int,
                       groups: int = 1) -> float:
    """The exact operator norm of the layer's kernel as a stride-1 convolution with circular
    padding on an input of ``input_size`` (one size per spatial axis), from the FFT.

    Raises:
        InputError: ``input_size`` does not fit the kernel (fewer points than taps, or the
            wrong number of axes).
        UndefinedMeasureError: the weight is not finite.

    Example:
        >>> import torch
        >>> w = torch.zeros(1, 1, 3, 3); w[0, 0, 1, 1] = 2.0   # 2 x identity
        >>> round(conv_operator_norm(w, (8, 8)), 6)
        2.0
    """
    w = _check_weight(weight)
    _require_finite(w, "the operator norm")
    sizes = (input_size,) * _spatial(w) if isinstance(input_size, int) else tuple(input_size)
    kernel = tuple(w.shape[2:])
    fits = len(sizes) == len(kernel) and all(isinstance(n, int) and n >= k
                                             for n, k in zip(sizes, kernel, strict=True))
    if not fits:
        raise InputError(f"`input_size` expected {len(kernel)} sizes >= the kernel {kernel}, "
                         f"got {input_size!r}")
    blocks, scale = _groups(w, groups)
    return _max_over_frequencies(blocks, sizes) * _SAFETY / scale


def _grid(kernel: tuple[int, ...]) -> tuple[tuple[int, ...], float]:
    """Points per axis and the certificate factor 1 / sqrt(1 - 2 (Σ π d_i / N_i)²)."""
    degrees = [(k - 1) / 2 for k in kernel]
    total = sum(degrees)
    if total == 0:
        return tuple(1 for _ in kernel), 1.0
    # N_i = c · d_i makes Σ π d_i / N_i = π · (#axes with d_i > 0) / c: choose c for the factor
    axes = sum(1 for d in degrees if d > 0)
    c = math.pi * axes / math.sqrt((1 - 1 / _MAX_FACTOR**2) / 2)
    sizes = tuple(max(k, math.ceil(c * d)) if d > 0 else 1 for k, d in zip(kernel, degrees, strict=True))
    slack = sum(math.pi * d / n for d, n in zip(degrees, sizes, strict=True))
    return sizes, 1.0 / math.sqrt(1.0 - 2.0 * slack**2)


def lipschitz_bound(weight: torch.Tensor, groups: int = 1) -> float:
    """A certified upper bound of the convolution's operator norm (its Lipschitz constant in
    the L2 norm) for **every** input size, zero or circular padding, any stride and
    dilation; at most 5 % above the supremum it bounds (see the module docstring).

    Raises:
        UndefinedMeasureError: the weight is not finite.

    Example:
        >>> import torch
        >>> w = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(0))
        >>> exact = conv_operator_norm(w, (64, 64))
        >>> bound = lipschitz_bound(w)
        >>> exact <= bound <= 1.07 * exact
        True
    """
    w = _check_weight(weight)
    _require_finite(w, "the Lipschitz bound")
    sizes, factor = _grid(tuple(w.shape[2:]))
    blocks, scale = _groups(w, groups)
    return _max_over_frequencies(blocks, sizes) * factor * _SAFETY / scale
