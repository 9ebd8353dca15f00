"""Tabulate the variance entropy of random filters: the band that random layers reach.

For every kernel size ``K`` in :data:`KS` and ``n`` filters on a half-octave grid from 2 to
16384, draw ``TRIALS`` sets of ``n`` i.i.d. standard normal filters of ``K`` values (VE is
scale-free, so the init's scale does not matter) and record, of the deficit
``D = log10 K - VE``:

* its mean and standard deviation (the random band: ``filterwatch.functional.random_band``
  turns them into quantiles with a scaled chi-square, which ``D`` follows: John's sphericity
  statistic, since ``D ≈ U / (2 ln 10)`` with ``U = K tr(S²)/tr(S)² - 1``);
* the lowest VE over the trials (the statistic the authors' ``H_T(n)`` fits, used as H_T for
  the sizes without a fitted curve, see ``tools/fit_random_entropy.py``).

The spectrum of ``n`` centred normal filters is that of a Wishart matrix with ``m = n - 1``
degrees of freedom (of ``K x K``, or for ``m < K`` the ``m x m`` one with ``K``), drawn here by
Bartlett's decomposition in float64: the cost does not grow with ``n``. Kernel sizes above
512 are not tabulated (callers interpolate at the same ``K/(n-1)``). Beyond the grid the
deficit falls as ``1/(n - 1)`` (John's limit), so callers scale the last row. Seeded; writes
``src/filterwatch/functional/_random_table.py``.

Run: ``.venv/bin/python tools/random_entropy_table.py`` (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch

KS = (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 20, 21, 24, 25, 27, 28, 30, 31,
      32, 35, 36, 40, 45, 48, 49, 50, 60, 63, 64, 75, 80, 81, 96, 100, 121, 125, 128, 144, 160,
      169, 196, 225, 251, 256, 320, 343, 400, 441, 512)
GRID = sorted({max(2, round(2 ** (j / 2))) for j in range(2, 29)})  # 2 ... 16384
TRIALS = 200
SEED = 0
OUT = Path(__file__).resolve().parents[1] / "src" / "filterwatch" / "functional" / "_random_table.py"


def _ve(n: int, k: int, trials: int, gen: torch.Generator) -> torch.Tensor:
    """VE (base 10) of ``trials`` sets of ``n`` standard normal filters of ``k`` values: the
    eigenvalues of Wishart matrices by Bartlett's decomposition ``W = L Lᵀ``, ``L`` lower
    triangular with ``L_ii² ~ χ²(dof - i)`` and standard normal entries below the diagonal."""
    m = n - 1
    p, dof = min(k, m), max(k, m)
    low = torch.randn(trials, p, p, generator=gen, dtype=torch.float64).tril(-1)
    shape = (dof - torch.arange(p, dtype=torch.float64)) / 2.0  # χ²(ν) = 2·Gamma(ν/2)
    gamma = torch._standard_gamma(shape.expand(trials, p).contiguous(), generator=gen)
    low = low + torch.diag_embed((2.0 * gamma).sqrt())
    lam = torch.linalg.eigvalsh(low @ low.transpose(1, 2)).clamp_min(0.0)
    q = lam / lam.sum(dim=1, keepdim=True)
    return -torch.special.xlogy(q, q).sum(dim=1) / math.log(10.0)


def main() -> int:
    gen = torch.Generator().manual_seed(SEED)
    rows: dict[int, list[tuple[int, float, float, float]]] = {}
    t0 = time.perf_counter()
    for k in KS:
        top = math.log10(k)
        rows[k] = []
        for n in GRID:
            ve = _ve(n, k, TRIALS, gen)
            d = top - ve
            rows[k].append((n, float(d.mean()), float(d.std()), float(ve.min())))
        print(f"K={k}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    lines = [
        "# ruff: noqa: E501",
        '"""Variance entropy of random filters, tabulated by ``tools/random_entropy_table.py``',
        "(generated: do not edit).",
        "``TABLE[K]`` lists ``(n, mean D, sd D, min VE)`` over",
        f"{TRIALS} draws of n i.i.d. normal filters of K values, ``D = log10 K - VE``.",
        '"""',
        "",
        "# fmt: off",
        "TABLE: dict[int, tuple[tuple[int, float, float, float], ...]] = {",
    ]
    for k, rs in rows.items():
        cells = ", ".join(f"({n}, {m:.6g}, {s:.6g}, {h:.6g})" for n, m, s, h in rs)
        lines.append(f"    {k}: ({cells}),")
    lines += ["}", "# fmt: on", ""]
    OUT.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {OUT} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
