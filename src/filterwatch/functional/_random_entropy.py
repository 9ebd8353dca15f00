"""H_T(n, K) and the random band: the variance entropy that random filters reach (private).

``H_T(n, K)``, the divisor of normalised VE: for ``K = 9`` (3x3 kernels) exactly the logistic
curve fitted by the authors of "CNN Filter DB" (and used by ``torchconvquality``); for other
fitted sizes the same kind of curve (``tools/fit_random_entropy.py``: per n, the minimum VE
over 200 sets of i.i.d. Gaussian filters, then a logistic in ``log2 n``); for the other sizes
of the table below, that minimum as tabulated.

The *random band* is where random layers of ``n`` filters of ``K`` values sit: the deficit
``D = log10 K - VE`` of i.i.d. filters is, to second order, John's sphericity statistic over
``2 ln 10``, a scaled chi-square (mean ``(K+2)(K-1)/(2 K (n-1) ln 10)``). Its mean and standard
deviation are tabulated (``tools/random_entropy_table.py``, 200 draws per cell, n = 2 ... 16384,
51 kernel sizes from 2 to 512) and turned into quantiles with the Wilson-Hilferty form of the
matching scaled chi-square. Between grid rows the deficit is interpolated on a log-log scale,
beyond the grid it falls as ``1/(n-1)`` (John's limit); between tabulated kernel sizes (and
above 512) the ratio to John's mean is interpolated (held) at the same ``K/(n-1)``.
Nothing is drawn at run time.
"""

from __future__ import annotations

import bisect
import math
from functools import lru_cache
from statistics import NormalDist
from typing import NamedTuple

from ._random_table import TABLE

__all__: list[str] = []

# K -> (L, k, x0, b) of  H_T(n) = L / (1 + exp(-k (log2 n - x0))) + b
_AUTHORS_K9 = (1.2618047, 0.88767525, 2.30436435, -0.31050834)
_FITTED: dict[int, tuple[float, float, float, float]] = {
    2: (0.34822804, 0.95971762, 3.68578322, -0.04902897),
    3: (0.61059128, 1.00172735, 2.86972583, -0.13708873),
    4: (1.57994294, 0.70287200, 0.79628581, -0.97816305),
    5: (2.07998654, 0.65441170, 0.30497371, -1.38057159),
    6: (1.31950064, 0.84500336, 1.81775020, -0.54374831),
    7: (1.53091214, 0.78393778, 1.49895409, -0.68707814),
    8: (1.23700162, 0.87300054, 2.15209897, -0.33700377),
    9: _AUTHORS_K9,
    15: (1.84504225, 0.73624956, 1.71103197, -0.66892035),
    16: (2.03370820, 0.72266110, 1.54196915, -0.82969301),
    25: (1.89250123, 0.72596360, 2.17432161, -0.49410505),
    27: (1.95995925, 0.71118446, 2.16359144, -0.52741634),
    49: (2.07268252, 0.67167709, 2.65342436, -0.37893822),
    64: (2.16085392, 0.64482058, 2.85487255, -0.34874404),
    81: (2.29287786, 0.61744747, 2.94492484, -0.37614217),
    121: (2.42938110, 0.58200716, 3.24743158, -0.33321625),
    125: (2.42894108, 0.58131899, 3.29077807, -0.31840620),
}
_KS = sorted(TABLE)
_MEAN, _SD, _MIN = 1, 2, 3  # columns of a table row
_P_MIN = 0.005  # the quantile that stands in for "the lowest of 200 draws" between table sizes
P_BAND = 1e-3   # random layers fall outside [lo, hi] with this probability on each side


class RandomBand(NamedTuple):
    """Where random layers of one size sit, in normalised VE (VE/H_T) units.

    Attributes:
        lo: the ``P_BAND`` quantile: random layers fall below it once in 1,000.
        hi: the ``1 - P_BAND`` quantile.
        sd: the standard deviation of VE/H_T over random layers (the sampling noise of a
            layer of that many filters).
    """

    lo: float
    hi: float
    sd: float

    def tells_from(self, edge: float) -> bool:
        """Whether VE can tell this size of layer from random: a layer at ``edge`` (the most
        random-looking trained layers) reads below ``lo`` but for a ``P_BAND`` chance."""
        return self.lo - _Z * self.sd >= edge


_Z = NormalDist().inv_cdf(1.0 - P_BAND)


def _logistic(n: int, params: tuple[float, float, float, float]) -> float:
    L, k, x0, b = params
    return L / (1.0 + math.exp(-k * (math.log2(n) - x0))) + b


def _john(n: float, k: int) -> float:
    """John's limit of the mean deficit (base 10): ``(K+2)(K-1) / (2 K (n-1) ln 10)``."""
    return (k + 2) * (k - 1) / (2.0 * k * (n - 1) * math.log(10.0))


def _tabulated(n: float, k: int, col: int) -> float:
    """A deficit column of the table at a tabulated ``k``, interpolated in ``log n``: linearly
    where ``n <= K`` (the rank ``n - 1`` caps VE near ``log10(n - 1)``, so the deficit falls
    like ``log10(K / (n - 1))``), on a log scale beyond (a power law, ``1/(n-1)`` once
    ``n >> K``); John's ``1/(n-1)`` beyond the last row."""
    rows = TABLE[k]
    top = math.log10(k)

    def deficit(r: tuple[int, float, float, float]) -> float:
        return max(top - r[col] if col == _MIN else r[col], 1e-300)

    if n >= rows[-1][0]:
        return deficit(rows[-1]) * (rows[-1][0] - 1) / (n - 1)
    ns = [r[0] for r in rows]
    j = max(1, bisect.bisect_left(ns, n))
    a, b = rows[j - 1], rows[j]
    t = (math.log(n) - math.log(a[0])) / (math.log(b[0]) - math.log(a[0]))
    if b[0] <= k and col != _SD:
        return (1 - t) * deficit(a) + t * deficit(b)
    return math.exp((1 - t) * math.log(deficit(a)) + t * math.log(deficit(b)))


def _deficit(n: int, k: int, col: int) -> float:
    """A deficit statistic at any ``k``: tabulated, or between two tabulated sizes its ratio
    to John's mean interpolated in ``log K`` at the same ``K/(n-1)``."""
    if k in TABLE:
        return _tabulated(n, k, col)
    top = _KS[-1]
    if k > top and n <= top:  # fewer filters than the largest size: the rank n - 1 rules
        base = _tabulated(n, top, col)  # VE barely moves with K; its spread shrinks as 1/sqrt(K)
        return base * math.sqrt(top / k) if col == _SD else base + math.log10(k / top)
    i = bisect.bisect_left(_KS, k)
    pair = [_KS[max(0, i - 1)], _KS[min(len(_KS) - 1, i)]]

    def ratio(kk: int) -> float:
        nn = max(2.0, 1.0 + (n - 1) * kk / k)  # the same K/(n-1)
        return _tabulated(nn, kk, col) / _john(nn, kk)

    lo_k, hi_k = pair
    if lo_k == hi_k:
        return ratio(lo_k) * _john(n, k)
    t = (math.log(k) - math.log(lo_k)) / (math.log(hi_k) - math.log(lo_k))
    return ((1 - t) * ratio(lo_k) + t * ratio(hi_k)) * _john(n, k)


def _chi2_quantile(mean: float, sd: float, p: float) -> float:
    """The ``p`` quantile of the scaled chi-square with this mean and sd (Wilson-Hilferty)."""
    if not sd > 1e-9 * mean:  # no spread to speak of (n = 2: VE is always 0)
        return mean
    nu = 2.0 * mean * mean / (sd * sd)
    s = sd * sd / (2.0 * mean)
    z = NormalDist().inv_cdf(p)
    c = 2.0 / (9.0 * nu)
    return s * nu * max(0.0, 1.0 - c + z * math.sqrt(c)) ** 3


@lru_cache(maxsize=4096)
def random_entropy_threshold(n: int, k: int) -> float:
    """H_T(n, K): the VE random filters reach for ``n`` filters of ``k`` values.

    May be ``<= 0`` for tiny ``n`` (the fitted curves go below zero for ``n <= 2``): callers
    treat normalised VE as undefined there.
    """
    if n < 2 or k < 2:
        return 0.0
    params = _FITTED.get(k)
    if params is not None:
        return _logistic(n, params)
    if k in TABLE:
        return math.log10(k) - _deficit(n, k, _MIN)
    mean, sd = _deficit(n, k, _MEAN), _deficit(n, k, _SD)
    return math.log10(k) - _chi2_quantile(mean, sd, 1.0 - _P_MIN)


@lru_cache(maxsize=4096)
def random_band(n: int, k: int) -> RandomBand | None:
    """Where random layers of ``n`` filters of ``k`` values sit in VE/H_T, or ``None`` where
    normalised VE is undefined (``k < 2`` or ``H_T(n) <= 0``).

    Example:
        >>> band = random_band(32, 9)
        >>> round(band.lo, 2), round(band.hi, 2), band.tells_from(0.98)
        (0.99, 1.09, False)
        >>> random_band(4096, 9).tells_from(0.98)
        True
    """
    h_t = random_entropy_threshold(n, k)
    if k < 2 or h_t <= 0.0:
        return None
    top = math.log10(k)
    mean, sd = _deficit(n, k, _MEAN), _deficit(n, k, _SD)
    lo = (top - _chi2_quantile(mean, sd, 1.0 - P_BAND)) / h_t
    hi = (top - _chi2_quantile(mean, sd, P_BAND)) / h_t
    return RandomBand(lo, hi, sd / h_t)
