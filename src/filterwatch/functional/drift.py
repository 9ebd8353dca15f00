"""Distribution drift between two filter sets: the "distribution shift" of CNN Filter DB.

1. every filter is scaled by its own peak, ``f / max|f|`` (a zero filter is divided by 1);
2. a centred PCA basis of the *reference* set's scaled filters (``K`` components) and the
   reference's explained-variance ratios ``w_i``; every basis vector is signed so that its
   largest-magnitude entry is positive (two builds of one reference are identical);
3. the coefficients of both sets in that basis, after subtracting the reference mean;
4. per component, a 70-bin histogram over one common range: the global min and max of the
   reference's coefficients over all components, fixed when the reference is made. Values of
   the other set outside that range are clipped into the edge bins;
5. empty bins get float32 epsilon (1.1920929e-07), then each histogram is renormalised;
6. ``D = Σ_i w_i · (KL(P_i‖Q_i) + KL(Q_i‖P_i))`` in nats. 0 means no shift.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ..errors import InputError, UndefinedMeasureError
from ._binning import Frame, _row_peaks, bin_counts, coefficient_range
from ._filters import _check_weight, _rows_to_unit_peak, _safe_scale, _scaled, _transposed, filter_matrix
from ._scratch import _scratch
from .entropy import _variance_entropy_update_t

__all__ = ["DriftBasis", "DriftResult", "drift", "drift_basis", "drift_noise_floor", "peak_scale"]

BINS = 70
EMPTY_BIN = 1.1920929e-07  # float32 epsilon, as in the paper's code


class DriftBasis(NamedTuple):
    """What a reference keeps of a filter set to measure drift against it.

    Attributes:
        mean: ``(K,)`` mean of the peak-scaled reference filters.
        basis: ``(K, K)`` principal directions, one per row, by decreasing variance.
        explained: ``(K,)`` explained-variance ratios ``w_i`` (all 0 for a constant set).
        lo, hi: the histogram range (global min/max of the reference coefficients).
        hist: ``(K, bins)`` histogram counts of the reference coefficients.
        n: number of reference filters.
    """

    mean: torch.Tensor
    basis: torch.Tensor
    explained: torch.Tensor
    lo: float
    hi: float
    hist: torch.Tensor
    n: int


class DriftResult(NamedTuple):
    """Result of :func:`drift`: the total ``value``, the weighted per-component terms
    ``components`` (``(K,)``, summing to ``value``: which basis direction moved), and the
    histogram ``counts`` ``(K, bins)`` of the compared set's coefficients (on the reference's
    bins; row 0 is the first principal component)."""

    value: float
    components: torch.Tensor
    counts: torch.Tensor | None = None


def peak_scale(filters: torch.Tensor) -> torch.Tensor:
    """Scale each row by its own max |value| (zero rows stay zero).

    Example:
        >>> import torch
        >>> peak_scale(torch.tensor([[2.0, -4.0], [0.0, 0.0]])).tolist()
        [[0.5, -1.0], [0.0, 0.0]]
    """
    peak = filters.abs().amax(dim=1, keepdim=True)
    return filters / torch.where(peak == 0, torch.ones_like(peak), peak)


def _working_filters(x: torch.Tensor, arg: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Accept a conv weight (3+ dims) or an ``(n, K)`` filter matrix: its filters in their
    working precision (float64 stays float64, float32 is a view, fp16/bf16 are upcast) and
    their peaks. Raises on NaN/Inf (seen in the peaks: no extra pass); weights near the ends
    of the float range are scaled by a power of two (drift is scale-invariant per filter)."""
    if isinstance(x, torch.Tensor) and x.ndim == 2:
        x = x.unsqueeze(1)  # (n, 1, K) is a valid weight layout
    f = filter_matrix(_check_weight(x, arg))
    if f.dtype != torch.float64:
        f = f.to(torch.float32)
    peak = _row_peaks(f)
    top = float(peak.max())
    if not math.isfinite(top) or not bool(torch.isfinite(peak).all()):
        bad = int((~torch.isfinite(f)).sum())
        raise UndefinedMeasureError(
            f"drift is undefined: `{arg}` holds {bad} non-finite value(s) (NaN/Inf)")
    scale = _safe_scale(top)
    if scale != 1.0:
        f, peak = _scaled(f, scale), _scaled(peak, scale)
    return _rows_to_unit_peak(f, peak)  # then a tiny filter among normal ones


def _sign_fix(basis: torch.Tensor) -> torch.Tensor:
    idx = basis.abs().argmax(dim=1, keepdim=True)
    signs = torch.sign(basis.gather(1, idx))
    return basis * torch.where(signs == 0, torch.ones_like(signs), signs)


def drift_basis(reference: torch.Tensor, bins: int = BINS) -> DriftBasis:
    """Build the basis, range and histograms of a reference filter set.

    Args:
        reference: a conv weight ``(C_out, C_in/groups, *k)`` or a filter matrix ``(n, K)``
            (for a population: the filters of many layers or checkpoints, concatenated).
        bins: histogram bins per component (70 in the paper).

    Raises:
        UndefinedMeasureError: fewer than 2 filters, or non-finite values.
    """
    if bins < 2:
        raise InputError(f"`bins` expected an integer >= 2, got {bins!r}")
    f, peak = _working_filters(reference, "reference")
    n = int(f.shape[0])
    if n < 2:
        raise UndefinedMeasureError(f"drift needs a reference of at least 2 filters, got {n}")
    # the scaled filters' moments in their own precision (shifted, float64 sums), as VE
    scaled_t = _transposed(f, _scratch((int(f.shape[1]), n), f.dtype, f.device, "moments"))
    scaled_t.div_(torch.where(peak == 0, torch.ones_like(peak), peak)[None, :])
    sums = _variance_entropy_update_t(scaled_t)
    mean = sums.s1 / n
    evals, evecs = torch.linalg.eigh((sums.s2 - n * torch.outer(mean, mean)) / (n - 1))
    order = torch.argsort(evals, descending=True)
    lam = evals[order].clamp_min(0.0)
    basis = _sign_fix(evecs[:, order].T.contiguous())
    total = float(lam.sum())
    explained = lam / total if total > 0 else torch.zeros_like(lam)
    lo, hi = coefficient_range(f, peak, mean, basis)
    if hi - lo <= 0.0:
        lo, hi = lo - 0.5, hi + 0.5  # np.histogram's convention for a degenerate range
    hist = bin_counts(f, peak, Frame(mean, basis, lo, hi, bins))  # as drift() will bin
    return DriftBasis(mean, basis, explained, lo, hi, hist, n)


def _normalised(counts: torch.Tensor) -> torch.Tensor:
    p = counts / counts.sum(dim=-1, keepdim=True).clamp_min(1.0)
    p = torch.where(p == 0, torch.full_like(p, EMPTY_BIN), p)
    return p / p.sum(dim=-1, keepdim=True)


def _symmetric_kl(ref_counts: torch.Tensor, cur_counts: torch.Tensor) -> torch.Tensor:
    """``KL(P‖Q) + KL(Q‖P)`` per histogram (the last dimension holds the bins)."""
    p, q = _normalised(ref_counts), _normalised(cur_counts)
    return ((p - q) * (p.log() - q.log())).sum(dim=-1)


def _drift_compute(ref_counts: torch.Tensor, cur_counts: torch.Tensor,
                   explained: torch.Tensor) -> DriftResult:
    sym_kl = _symmetric_kl(ref_counts, cur_counts)
    components = explained.to(sym_kl) * sym_kl
    return DriftResult(float(components.sum()), components, cur_counts)


def drift(current: torch.Tensor, reference: DriftBasis) -> DriftResult:
    """Symmetric-KL drift of a filter set from a reference distribution, in nats.

    The paper's figures put most between-group values under 0.3 and outliers up to about
    1.35; robust vs normally trained CIFAR-10 models differ by about 0.62.

    Args:
        current: a conv weight or ``(n, K)`` filter matrix with the reference's ``K``.
        reference: from :func:`drift_basis`.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> w = torch.randn(64, 16, 3, 3)
        >>> ref = drift_basis(w)
        >>> abs(drift(w, ref).value) < 1e-12
        True
        >>> drift(w.sign() * w.abs().sqrt(), ref).value > 0.05
        True
    """
    f, peak = _working_filters(current, "current")
    k = int(reference.basis.shape[0])
    if f.shape[1] != k:
        raise InputError(
            f"`current` expected filters of {k} values (the reference's), got "
            f"{f.shape[1]}; hint: compare layers of the same kernel size"
        )
    frame = Frame(reference.mean.to(f.device, torch.float64),
                  reference.basis.to(f.device, torch.float64), reference.lo,
                  reference.hi, int(reference.hist.shape[1]))
    counts = bin_counts(f, peak, frame)
    return _drift_compute(reference.hist.to(counts), counts, reference.explained)


def drift_noise_floor(reference: DriftBasis, n: int, draws: int = 16, seed: int = 0) -> float:
    """The drift expected from sampling alone: two sets drawn from the *same* distribution
    (the reference's histograms), of ``reference.n`` and ``n`` filters, have on average this
    much drift. Histogram KL is biased upwards for small sets (about 7 at 64 filters, 0.05 at
    4,096 for 3x3), so compare a layer's drift with this before reading it as a shift.

    Counts are drawn as independent Poisson variables per bin (the multinomial's large-n
    limit), ``draws`` times with a fixed seed, so the value is deterministic.

    Example:
        >>> import torch
        >>> ref = drift_basis(torch.randn(4096, 9, generator=torch.Generator().manual_seed(0)))
        >>> 0.02 < drift_noise_floor(ref, 4096) < 0.1
        True
    """
    if n < 1:
        raise InputError(f"`n` expected a positive number of filters, got {n!r}")
    gen = torch.Generator().manual_seed(seed)
    hist = reference.hist.to("cpu", torch.float64)
    p = hist / hist.sum(dim=1, keepdim=True).clamp_min(1.0)
    explained = reference.explained.to("cpu", torch.float64)
    a = torch.poisson((reference.n * p).expand(draws, *p.shape), generator=gen)
    b = torch.poisson((n * p).expand(draws, *p.shape), generator=gen)
    return float((_symmetric_kl(a, b) * explained).sum(dim=-1).mean())  # (draws, K) terms
