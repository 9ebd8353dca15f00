"""TensorBoard histograms: the device-side binning (no host read) equals histc, and a
snapshot's histograms reach the host together, non-finite ones dropped."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from filterwatch.integrations.histograms import BINS, _counts_on_device, histogram_terms, histograms


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 3000), log_scale=st.floats(-6, 6))
def test_device_side_bins_equal_histc(seed: int, n: int, log_scale: float) -> None:
    v = torch.randn(n, generator=torch.Generator().manual_seed(seed)) * 10.0 ** log_scale
    lo, hi = torch.aminmax(v)
    want = torch.histc(v, bins=BINS, min=float(lo), max=float(hi)).double()
    got = _counts_on_device(v, lo, hi)
    assert float(got.sum()) == pytest.approx(n)
    # a value within float32 round-off of an edge may fall either side: off by a few at most
    assert (got - want).abs().sum() <= 2 * max(1, int(n * 1e-4))


def test_histograms_come_back_together_and_say_nothing_of_nonfinite_values() -> None:
    a = torch.tensor([0.0, 1.0, 1.0, 3.0])
    bad = torch.tensor([1.0, math.nan])
    same = torch.full((5,), 2.0)
    got = histograms([histogram_terms(a), None, histogram_terms(bad), histogram_terms(same),
                      histogram_terms(torch.zeros(0))])
    first, none, nan, flat, empty = got
    assert none is None and nan is None and empty is None
    assert first is not None
    assert [first.lo, first.hi, first.num, first.total, first.total_sq] == pytest.approx([0, 3, 4, 5, 11])
    assert sum(first.counts) == pytest.approx(4) and first.counts[-1] == pytest.approx(1)  # last bin closed
    assert flat is not None and flat.counts[0] == pytest.approx(5)  # one value: one bucket
    assert sum(flat.counts) == pytest.approx(5)
