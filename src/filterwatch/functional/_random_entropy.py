"""H_T(n, K): the variance entropy that random filters reach, used to normalise VE (private).

For ``K = 9`` (3x3 kernels) this is exactly the logistic curve fitted by the authors of
"CNN Filter DB" (and used by ``torchconvquality``). For other kernel sizes the same kind of
curve was fitted by ``tools/fit_random_entropy.py``: per n, the minimum VE over 200 sets of
i.i.d. Gaussian filters, then a logistic in ``log2 n`` (for K = 9 that procedure lands within
0.01 of the authors' curve for n >= 16). Kernel sizes missing from the table get a Monte Carlo
estimate of the same statistic at that exact n, with a fixed seed, cached per ``(n, K)``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

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
_MC_TRIALS = 64
_MC_MAX_N = 16384  # beyond this the curve is flat to 4 decimals


def _logistic(n: int, params: tuple[float, float, float, float]) -> float:
    L, k, x0, b = params
    return L / (1.0 + math.exp(-k * (math.log2(n) - x0))) + b


@lru_cache(maxsize=1024)
def _monte_carlo(n: int, k: int) -> float:
    gen = torch.Generator().manual_seed(1000003 * k + n)
    rows = min(n, _MC_MAX_N)
    x = torch.randn(_MC_TRIALS, rows, k, generator=gen, dtype=torch.float64)
    x = x - x.mean(dim=1, keepdim=True)
    lam = torch.linalg.svdvals(x) ** 2
    p = lam / lam.sum(dim=1, keepdim=True)
    h = -torch.special.xlogy(p, p).sum(dim=1) / math.log(10.0)
    return float(h.min().item())


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
    return _monte_carlo(n, k)
