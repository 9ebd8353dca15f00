"""The random band: where random layers of each size sit, from the table and John's limit,
against direct simulation (an independent numpy draw of i.i.d. filters)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from filterwatch.functional import random_band, random_entropy_threshold


def _numpy_ve(n: int, k: int, draws: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(draws):
        x = rng.standard_normal((n, k))
        lam = np.linalg.svd(x - x.mean(0), compute_uv=False) ** 2
        p = lam[lam > 0] / lam.sum()
        out.append(-(p * np.log10(p)).sum())
    return np.array(out)


@pytest.mark.parametrize("n,k", [(32, 9), (200, 9), (48, 3), (300, 11), (96, 17), (60, 512)])
def test_band_matches_simulated_random_layers(n: int, k: int) -> None:
    """17 is not tabulated (interpolated at the same K/(n-1)); 512 taps: no draw at run time."""
    ratio = _numpy_ve(n, k, 600, seed=n + k) / random_entropy_threshold(n, k)
    band = random_band(n, k)
    assert band is not None
    assert band.sd == pytest.approx(ratio.std(), rel=0.2)
    assert band.lo == pytest.approx(np.quantile(ratio, 0.001), abs=4 * band.sd)
    assert (ratio >= band.lo).mean() >= 0.99 and (ratio <= band.hi).mean() >= 0.99
    assert band.lo < np.median(ratio) < band.hi


def test_john_limit_beyond_the_table() -> None:
    """Far beyond the grid the mean deficit is John's (K+2)(K-1)/(2K(n-1) ln 10)."""
    n, k = 1_000_000, 9
    band = random_band(n, k)
    assert band is not None
    h_t = random_entropy_threshold(n, k)
    centre = (math.log10(k) - (k + 2) * (k - 1) / (2 * k * (n - 1) * math.log(10))) / h_t
    assert band.lo < centre < band.hi and band.hi - band.lo < 1e-4


@settings(max_examples=40, deadline=None)
@given(n=st.integers(3, 200_000), k=st.integers(2, 2000))
def test_band_is_ordered_and_narrows_with_n(n: int, k: int) -> None:
    band, wider = random_band(n, k), random_band(max(3, n // 4), k)
    if band is None or wider is None:
        return
    assert band.lo <= band.hi and band.sd >= 0
    assert band.hi * random_entropy_threshold(n, k) <= math.log10(k) + 1e-9
    if k <= 512:  # the table's sizes and those between (beyond 512 it is an extrapolation)
        assert band.hi - band.lo <= (wider.hi - wider.lo) * 1.05 + 1e-9


def test_few_filters_cannot_tell_many_can() -> None:
    assert not random_band(32, 9).tells_from(0.98)  # type: ignore[union-attr]
    assert random_band(4096, 9).tells_from(0.98)  # type: ignore[union-attr]


def test_no_draws_at_run_time_for_long_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 35: 256-512-tap kernels drew float64 SVDs at run time (125-206 s on a busy box)."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a random draw at run time")

    monkeypatch.setattr(torch.linalg, "svdvals", refuse)
    monkeypatch.setattr(torch, "randn", refuse)
    random_entropy_threshold.cache_clear()
    random_band.cache_clear()
    for k in (256, 400, 512, 640, 1024, 3000):
        assert random_entropy_threshold(1024, k) > 0 and random_band(1024, k) is not None
