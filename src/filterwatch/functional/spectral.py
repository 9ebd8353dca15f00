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

The grid is chosen so that this factor is at most 1.05 (3x3 kernels: 30 x 30), and the grid
maximum comes from float64 eigenvalues with a round-off margin. For a 1x1 kernel the bound is
the matrix norm exactly. This is the rigorous sampling bound of the DFT approach; the Gram
iteration of Delattre et al. (ICML 2023) bounds the same supremum from the kernel alone, at
a cost that grows with the kernel's support at every iteration.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ..errors import InputError, UndefinedMeasureError
from ._filters import _check_weight

__all__ = ["MatrixSpectrum", "conv_operator_norm", "lipschitz_bound", "matrix_spectrum"]

_MAX_FACTOR = 1.05  # the certificate's worst ratio of bound to grid maximum
_SAFETY = 1.0 + 1e-9  # round-off margin on float64 eigenvalues
_CHUNK_BYTES = 1 << 27  # frequencies' matrices handled at once (128 MiB)


class MatrixSpectrum(NamedTuple):
    """Result of :func:`matrix_spectrum` (``condition_number`` is None with ``reason`` when
    the matrix is rank-deficient to round-off)."""

    spectral_norm: float
    condition_number: float | None
    stable_rank: float
    effective_rank: float
    reason: str = ""


def _groups(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """``(G, C_out/G, C_in/G, *k)`` float64 blocks of a ``(C_out, C_in/G, *k)`` weight."""
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or weight.shape[0] % groups:
        raise InputError(f"`groups` expected a positive divisor of C_out = {weight.shape[0]}, got {groups!r}")
    w = weight.detach().to(torch.float64)
    return w.reshape(groups, weight.shape[0] // groups, *weight.shape[1:])


def _gram_eigenvalues(m: torch.Tensor) -> torch.Tensor:
    """Eigenvalues (ascending, >= 0) of the smaller Gram matrix of each ``(..., r, c)`` matrix:
    the squared singular values."""
    gram = m @ m.mH if m.shape[-2] <= m.shape[-1] else m.mH @ m
    values: torch.Tensor = torch.linalg.eigvalsh(gram)
    return values.clamp_min(0.0)


def _singular_values(weight: torch.Tensor, groups: int) -> torch.Tensor:
    blocks = _groups(weight, groups)
    mats = blocks.reshape(groups, blocks.shape[1], -1)
    return _gram_eigenvalues(mats).sqrt().reshape(-1)


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
    if not bool(torch.isfinite(w).all()):
        raise UndefinedMeasureError("spectral measures are undefined: the weight holds NaN/Inf")
    sigma = _singular_values(w, groups)
    top = float(sigma.max())
    if top == 0.0:
        raise UndefinedMeasureError("spectral measures are undefined for an all-zero weight")
    fro2 = float(sigma.square().sum())
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
        return MatrixSpectrum(top, None, fro2 / top**2, effective, reason)
    return MatrixSpectrum(top, top / low, fro2 / top**2, effective)


def _spatial(weight: torch.Tensor) -> int:
    return weight.ndim - 2


def _max_over_frequencies(blocks: torch.Tensor, sizes: tuple[int, ...]) -> float:
    """max over the DFT grid of ``sizes`` (and over the groups) of σ_max(F(ω)), float64."""
    dims = tuple(range(3, 3 + len(sizes)))
    spectrum = torch.fft.rfftn(blocks, s=sizes, dim=dims)  # (G, co, ci, *freq)
    co, ci = spectrum.shape[1:3]
    mats = spectrum.permute(0, *dims, 1, 2).reshape(-1, co, ci)  # (G · freqs, co, ci)
    per = max(1, _CHUNK_BYTES // (16 * min(co, ci) ** 2 + 16 * co * ci))
    top = 0.0
    for start in range(0, mats.shape[0], per):
        top = max(top, float(_gram_eigenvalues(mats[start:start + per])[..., -1].max()))
    return math.sqrt(top)


def conv_operator_norm(weight: torch.Tensor, input_size: tuple[int, ...] | int,
                       groups: int = 1) -> float:
    """The exact operator norm of the layer's kernel as a stride-1 convolution with circular
    padding on an input of ``input_size`` (one size per spatial axis), from the FFT.

    Raises:
        InputError: ``input_size`` does not fit the kernel (fewer points than taps, or the
            wrong number of axes).

    Example:
        >>> import torch
        >>> w = torch.zeros(1, 1, 3, 3); w[0, 0, 1, 1] = 2.0   # 2 x identity
        >>> round(conv_operator_norm(w, (8, 8)), 6)
        2.0
    """
    w = _check_weight(weight)
    sizes = (input_size,) * _spatial(w) if isinstance(input_size, int) else tuple(input_size)
    kernel = tuple(w.shape[2:])
    fits = len(sizes) == len(kernel) and all(isinstance(n, int) and n >= k
                                             for n, k in zip(sizes, kernel, strict=True))
    if not fits:
        raise InputError(f"`input_size` expected {len(kernel)} sizes >= the kernel {kernel}, "
                         f"got {input_size!r}")
    return _max_over_frequencies(_groups(w, groups), sizes) * _SAFETY


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
    if not bool(torch.isfinite(w).all()):
        raise UndefinedMeasureError("the Lipschitz bound is undefined: the weight holds NaN/Inf")
    sizes, factor = _grid(tuple(w.shape[2:]))
    return _max_over_frequencies(_groups(w, groups), sizes) * factor * _SAFETY
