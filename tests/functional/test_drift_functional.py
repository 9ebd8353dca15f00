"""Drift: against the notebook numpy pipeline, and its properties."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from filterwatch import InputError, UndefinedMeasureError
from filterwatch.functional import DriftBasis, drift, drift_basis, drift_noise_floor
from tests import numpy_ref
from tests.models import random_layer, sparse_layer, trained_like_layer

PAIRS = {
    "trained_vs_random": lambda: (trained_like_layer(64, 32, seed=1), random_layer(64, 32, seed=2)),
    "trained_vs_trained": lambda: (trained_like_layer(64, 32, seed=1),
                                   trained_like_layer(64, 32, seed=1, noise=0.2)),
    "random_vs_sparse": lambda: (random_layer(32, 32, seed=3), sparse_layer(32, 32, seed=4)),
    "different_sizes": lambda: (trained_like_layer(64, 16, seed=5),
                                trained_like_layer(16, 8, rank=2, seed=6)),
}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_matches_numpy_pipeline(name: str) -> None:
    ref_w, cur_w = PAIRS[name]()
    got = drift(cur_w, drift_basis(ref_w))
    want, terms = numpy_ref.drift(ref_w.reshape(-1, 9).numpy(), cur_w.reshape(-1, 9).numpy())
    assert got.value == pytest.approx(want, abs=1e-6)
    assert got.components.numpy() == pytest.approx(terms, abs=1e-6)
    assert float(got.components.sum()) == pytest.approx(got.value, abs=1e-12)


def test_identity_and_symmetry() -> None:
    a, b = trained_like_layer(32, 16, seed=1), random_layer(32, 16, seed=2)
    assert drift(a, drift_basis(a)).value == pytest.approx(0.0)
    # symmetric in the histograms: swapping P and Q in one basis gives the same value
    basis = drift_basis(a)
    from filterwatch.functional.drift import _drift_compute

    q = drift(b, basis).counts
    assert q is not None
    assert _drift_compute(basis.hist, q, basis.explained).value == pytest.approx(
        _drift_compute(q, basis.hist, basis.explained).value, abs=1e-12
    )


def test_basis_is_deterministic_and_signed() -> None:
    w = trained_like_layer(32, 16, seed=3)
    one, two = drift_basis(w), drift_basis(w.clone())
    assert torch.equal(one.basis, two.basis) and torch.equal(one.hist, two.hist)
    rows = one.basis
    assert (rows.gather(1, rows.abs().argmax(1, keepdim=True)) > 0).all()
    assert float(one.explained.sum()) == pytest.approx(1.0)
    assert one.hist.sum(dim=1).tolist() == [32 * 16] * 9


def test_peak_scaling_makes_drift_scale_free() -> None:
    a, b = trained_like_layer(32, 16, seed=1), random_layer(32, 16, seed=2)
    assert drift(b * 7.5, drift_basis(a)).value == pytest.approx(drift(b, drift_basis(a)).value)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_drift_grows_along_interpolation_to_random(seed: int) -> None:
    ref = trained_like_layer(64, 32, rank=2, noise=0.02, seed=seed)
    other = random_layer(64, 32, seed=seed + 1)
    other = other * ref.norm() / other.norm()  # same energy: neither side dominates early
    basis = drift_basis(ref)
    steps = (0.0, 0.05, 0.1, 0.2, 0.4)
    values = [drift((1 - t) * ref + t * other, basis).value for t in steps]
    assert values[0] == pytest.approx(0.0)
    # beyond the histograms' sampling noise (seed 910 read 0.065 then 0.061 at t = 0.05, 0.1)
    noise = drift_noise_floor(basis, 64 * 32)
    assert all(b > a - noise for a, b in itertools.pairwise(values)), values
    assert values[-1] > values[1] + noise
    assert drift(other, basis).value > values[-1]  # the far end is farther still


def test_degenerate_references() -> None:
    zero = drift_basis(torch.zeros(4, 4, 3, 3))
    assert float(zero.explained.sum()) == pytest.approx(0.0)
    assert drift(random_layer(4, 4), zero).value == pytest.approx(0.0)  # no variance to weigh
    with pytest.raises(UndefinedMeasureError, match="at least 2 filters"):
        drift_basis(torch.randn(1, 1, 3, 3))
    with pytest.raises(InputError, match="expected filters of 9 values"):
        drift(torch.randn(4, 4, 5, 5), drift_basis(random_layer(4, 4)))
    nan = random_layer(4, 4)
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(UndefinedMeasureError, match="non-finite"):
        drift(nan, drift_basis(random_layer(4, 4)))


def test_filter_matrix_input_is_accepted() -> None:
    w = trained_like_layer(8, 8, seed=2)
    assert drift(w.reshape(-1, 9), drift_basis(w.reshape(-1, 9))).value == pytest.approx(0.0)


def test_noise_floor_matches_same_distribution_draws() -> None:
    """Two samples of one distribution have drift > 0 from sampling alone; the estimate is
    close to the measured average (within a factor of 2)."""
    from filterwatch.functional import drift_noise_floor

    g = torch.Generator().manual_seed(0)
    for n in (512, 4096):
        measured = sum(
            drift(torch.randn(n, 9, generator=g, dtype=torch.float64),
                  drift_basis(torch.randn(n, 9, generator=g, dtype=torch.float64))).value
            for _ in range(6)) / 6
        estimate = drift_noise_floor(drift_basis(torch.randn(n, 9, generator=g, dtype=torch.float64)), n)
        assert measured / 2 < estimate < measured * 2, (n, measured, estimate)
    ref = drift_basis(torch.randn(512, 9, generator=g))
    assert drift_noise_floor(ref, 512) == drift_noise_floor(ref, 512)  # fixed seed: deterministic
    assert drift_noise_floor(ref, 64) > drift_noise_floor(ref, 512)    # smaller sets, more noise


def _float64_counts(current: torch.Tensor, basis: DriftBasis) -> torch.Tensor:
    """The counts of the pipeline as written, all in float64 (peak-scale, centre, project,
    bin), for the fused float32 path to equal."""
    f = current.reshape(-1, basis.basis.shape[1]).double()
    peak = f.abs().amax(dim=1, keepdim=True)
    coef = (f / torch.where(peak == 0, torch.ones_like(peak), peak) - basis.mean) @ basis.basis.T
    bins = basis.hist.shape[1]
    pos = ((coef - basis.lo) * (bins / (basis.hi - basis.lo))).floor().clamp(0, bins - 1).long()
    return torch.stack([torch.bincount(col, minlength=bins) for col in pos.T]).double()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), log_scale=st.floats(-30, 30))
def test_fused_float32_counts_equal_float64_counts(seed: int, log_scale: float) -> None:
    """The float32 GEMM path recomputes positions near bin edges in float64: its histogram
    counts are exactly those of float64 arithmetic, at any weight scale."""
    ref = trained_like_layer(64, 32, rank=3, noise=0.1, seed=seed)
    cur = (ref + 0.05 * random_layer(64, 32, seed=seed + 1)) * 10.0 ** log_scale
    basis = drift_basis(ref.double())
    got = drift(cur.float(), basis).counts
    assert got is not None
    assert torch.equal(got, _float64_counts(cur.float(), basis))


def test_positions_on_bin_edges_are_binned_as_in_float64() -> None:
    """Filters built so that many coefficients fall on or next to bin edges (quantised
    weights): the fused path still counts them as float64 does."""
    gen = torch.Generator().manual_seed(0)
    ref = torch.randint(-3, 4, (512, 9), generator=gen).float() / 4
    cur = torch.randint(-3, 4, (4096, 9), generator=gen).float() / 4
    basis = drift_basis(ref)
    got = drift(cur, basis).counts
    assert got is not None
    assert torch.equal(got, _float64_counts(cur, basis))
    assert drift(ref, basis).value == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), log_scale=st.floats(-30, 30))
def test_float32_reference_agrees_with_float64(seed: int, log_scale: float) -> None:
    """A float32 reference is built from float32 moments (float64 sums) and one float32
    product: its basis, weights and range agree with the float64 build, the range is the
    float64 min/max of its own coefficients, and its histograms count as float64 does."""
    ref = (trained_like_layer(64, 32, rank=3, noise=0.1, seed=seed) * 10.0 ** log_scale).float()
    b32, b64 = drift_basis(ref), drift_basis(ref.double())
    assert b32.basis.dtype == torch.float64
    assert (b32.basis - b64.basis).abs().max() < 1e-4
    assert (b32.explained - b64.explained).abs().max() < 1e-6
    assert b32.lo == pytest.approx(b64.lo, rel=1e-5) and b32.hi == pytest.approx(b64.hi, rel=1e-5)
    f = ref.reshape(-1, 9).double()
    peak = f.abs().amax(dim=1, keepdim=True)
    coef = (f / torch.where(peak == 0, torch.ones_like(peak), peak) - b32.mean) @ b32.basis.T
    assert b32.lo == pytest.approx(float(coef.min()), rel=1e-12, abs=1e-300)
    assert b32.hi == pytest.approx(float(coef.max()), rel=1e-12, abs=1e-300)
    assert torch.equal(b32.hist, _float64_counts(ref, b32))
