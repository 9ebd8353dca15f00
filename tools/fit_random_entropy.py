"""Fit H_T(n), the entropy that random filters reach, for kernel sizes other than 3x3.

The authors of "CNN Filter DB" fitted, for K = 9, a logistic curve in log2(n) to the lower
envelope ("min distribution") of the variance entropy of random filter sets. This script
repeats that procedure for other K so that normalised VE means the same thing at any kernel
size:

1. for n = 2^1.5 ... 2^15 (half-octave steps) draw ``TRIALS`` sets of n i.i.d. standard
   normal filters of length K (the entropy is scale-free, so Kaiming scaling is irrelevant);
2. take the minimum variance entropy over the trials at each n;
3. fit ``L / (1 + exp(-k (log2 n - x0))) + b`` by least squares (scipy's curve_fit).

The output is the table in ``src/filterwatch/functional/_random_entropy.py``. Run it with
``python tools/fit_random_entropy.py 3 5 7 ...`` (needs numpy and scipy; seed fixed).
For K = 9 it gives a curve within about 0.01 of the authors' one (the check printed last).
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.optimize import curve_fit

TRIALS = 200
SEED = 0


def _ve(x: np.ndarray) -> float:
    xc = x - x.mean(0)
    lam = np.linalg.svd(xc, compute_uv=False) ** 2
    p = lam / lam.sum()
    p = p[p > 0]
    return float(-(p * np.log10(p)).sum())


def _logistic(log2n: np.ndarray, L: float, k: float, x0: float, b: float) -> np.ndarray:
    return L / (1 + np.exp(-k * (log2n - x0))) + b


def fit(k: int) -> tuple[float, float, float, float]:
    rng = np.random.default_rng(SEED + k)
    log2n = np.arange(1.5, 15.01, 0.5)
    mins = []
    for e in log2n:
        n = max(2, round(2**e))
        trials = TRIALS if n <= 4096 else 20
        mins.append(min(_ve(rng.standard_normal((n, k))) for _ in range(trials)))
    top = np.log10(k)
    p0 = (top + 0.3, 0.9, 2.3, -0.3)
    params, _ = curve_fit(_logistic, log2n, np.array(mins), p0=p0, maxfev=20000)
    return tuple(float(v) for v in params)  # type: ignore[return-value]


if __name__ == "__main__":
    ks = [int(a) for a in sys.argv[1:]] or [9]
    for k in ks:
        L, kk, x0, b = fit(k)
        print(f"    {k}: ({L:.8f}, {kk:.8f}, {x0:.8f}, {b:.8f}),")
    if 9 in ks:
        L, kk, x0, b = fit(9)
        grid = np.log2(np.array([4, 16, 64, 256, 1024, 16384]))
        ours = _logistic(grid, L, kk, x0, b)
        theirs = _logistic(grid, 1.2618047, 0.88767525, 2.30436435, -0.31050834)
        print("# K=9 check, ours - authors':", np.round(ours - theirs, 4))
