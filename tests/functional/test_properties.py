"""Hypothesis property tests: invariances of the measures."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from filterwatch.functional import orthogonality, sparsity, variance_entropy

shapes = st.tuples(
    st.integers(2, 12), st.integers(1, 6), st.sampled_from([(3, 3), (5, 5), (3,), (1, 3, 3)])
)


@st.composite
def weights(draw: st.DrawFn) -> torch.Tensor:
    c_out, c_in, k = draw(shapes)
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(c_out, c_in, *k, generator=g, dtype=torch.float64)
    if draw(st.booleans()):  # make some filters sparse
        w.view(c_out * c_in, -1)[:: draw(st.integers(2, 4))] *= 1e-4
    return w


@settings(max_examples=60, deadline=None)
@given(w=weights(), seed=st.integers(0, 2**31 - 1))
def test_filter_permutation_invariance(w: torch.Tensor, seed: int) -> None:
    """Shuffling kernel slices changes no filter measure; shuffling output channels changes
    none either (orthogonality is a sum over all pairs)."""
    flat = w.reshape(w.shape[0] * w.shape[1], *w.shape[2:])
    perm = torch.randperm(flat.shape[0], generator=torch.Generator().manual_seed(seed))
    shuffled = flat[perm].reshape(w.shape)
    assert sparsity(shuffled).value == sparsity(w).value
    assert sparsity(shuffled).mask.tolist() == sparsity(w).mask[perm].tolist()
    assert variance_entropy(shuffled).entropy == pytest.approx(variance_entropy(w).entropy, abs=1e-9)
    out_perm = torch.randperm(w.shape[0], generator=torch.Generator().manual_seed(seed + 1))
    assert orthogonality(w[out_perm]) == pytest.approx(orthogonality(w), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(w=weights(), scale=st.floats(1e-3, 1e3))
def test_positive_global_scaling_invariance(w: torch.Tensor, scale: float) -> None:
    scaled = w * scale
    assert sparsity(scaled).mask.tolist() == sparsity(w).mask.tolist()
    assert variance_entropy(scaled).entropy == pytest.approx(variance_entropy(w).entropy, abs=1e-9)
    assert orthogonality(scaled) == pytest.approx(orthogonality(w), abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(w=weights())
def test_ranges(w: torch.Tensor) -> None:
    k = w[0, 0].numel()
    ve = variance_entropy(w).entropy
    assert 0.0 <= ve <= torch.log10(torch.tensor(float(k))).item() + 1e-12
    assert 0.0 <= sparsity(w).value <= 1.0
    assert -1e-12 <= orthogonality(w) <= 1.0 + 1e-12


@settings(max_examples=40, deadline=None)
@given(w=weights(), sign_seed=st.integers(0, 2**31 - 1))
def test_sign_flip_of_output_filters_keeps_sparsity_and_orthogonality(
    w: torch.Tensor, sign_seed: int
) -> None:
    g = torch.Generator().manual_seed(sign_seed)
    signs = torch.randint(0, 2, (w.shape[0],), generator=g).double() * 2 - 1
    flipped = w * signs.view(-1, *([1] * (w.ndim - 1)))
    assert sparsity(flipped).value == sparsity(w).value
    assert orthogonality(flipped) == pytest.approx(orthogonality(w), abs=1e-9)
