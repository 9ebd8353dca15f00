"""Functional measures against the independent numpy reference and known values."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch

from filterwatch import InputError, UndefinedMeasureError
from filterwatch.functional import (
    dead_channels,
    filter_norms,
    nonfinite_count,
    orthogonality,
    random_entropy_threshold,
    relative_change,
    sparsity,
    variance_entropy,
)
from tests import numpy_ref
from tests.models import random_layer, sparse_layer, trained_like_layer

LAYERS = {
    "random": lambda: random_layer(32, 16),
    "trained": lambda: trained_like_layer(32, 16),
    "sparse": lambda: sparse_layer(32, 16),
    "depthwise": lambda: random_layer(64, 1),
    "5x5": lambda: random_layer(16, 8, k=5),
}


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_matches_numpy_reference(kind: str) -> None:
    w = LAYERS[kind]()
    wn = w.numpy()
    ref_sp, ref_mask = numpy_ref.sparsity(wn)
    got = sparsity(w)
    assert got.value == pytest.approx(ref_sp, abs=0)
    assert got.mask.numpy().tolist() == ref_mask.tolist()
    f = numpy_ref.filters(wn)
    assert variance_entropy(w).entropy == pytest.approx(numpy_ref.variance_entropy(f), abs=1e-9)
    clean = variance_entropy(w, mask=~got.mask).entropy
    assert clean == pytest.approx(numpy_ref.variance_entropy(f[~ref_mask]), abs=1e-9)
    assert orthogonality(w) == pytest.approx(numpy_ref.orthogonality(wn), abs=1e-9)


def test_sparse_layer_is_sparse_where_expected() -> None:
    r = sparsity(sparse_layer(32, 16, share=0.4))
    assert r.value == pytest.approx(0.4, abs=1 / 512)
    assert r.indices.numel() == int(r.mask.sum())


def test_zeroed_filters_count_as_sparse() -> None:
    w = random_layer(8, 4)
    w[2, 1] = 0
    w[5] = 0
    r = sparsity(w)
    assert sorted(r.indices.tolist()) == [2 * 4 + 1, 20, 21, 22, 23]
    assert r.value == pytest.approx(5 / 32)


def test_zero_layer() -> None:
    w = torch.zeros(8, 4, 3, 3)
    r = sparsity(w)
    assert r.value == pytest.approx(1.0) and r.threshold == pytest.approx(1.0)
    assert variance_entropy(w).entropy == pytest.approx(0.0)
    with pytest.raises(UndefinedMeasureError, match="fewer than 2"):
        variance_entropy(w, mask=~r.mask)
    # Each zero row adds |0 - 1| = 1 through the diagonal (as torchconvquality does), so an
    # all-zero layer scores 1 - 1/(C_out - 1): near-orthogonal. dead_channels is what flags it.
    assert orthogonality(w) == pytest.approx(1 - 1 / 7)
    assert dead_channels(w).all()


def test_duplicated_filters_have_zero_ve() -> None:
    pattern = torch.randn(1, 1, 3, 3)
    assert variance_entropy(pattern.repeat(37, 5, 1, 1)).entropy == pytest.approx(0.0)
    scaled = torch.randn(37, 5, 1, 1) * pattern  # scaled copies: one direction
    assert variance_entropy(scaled).entropy < 1e-10


@pytest.mark.parametrize("n_out,n_in", [(64, 16), (128, 64), (256, 64)])
def test_kaiming_layers_have_normalised_ve_near_one(n_out: int, n_in: int) -> None:
    ve = variance_entropy(random_layer(n_out, n_in, seed=n_out))
    assert ve.entropy == pytest.approx(math.log10(9), abs=0.01)
    assert ve.normalized == pytest.approx(1.0, abs=0.02)


def test_normalised_uses_authors_curve_for_3x3() -> None:
    for n in (3, 16, 512, 65536):
        assert random_entropy_threshold(n, 9) == pytest.approx(numpy_ref.h_t9(n), abs=1e-12)


@pytest.mark.parametrize("k", [3, 5, 25, 49, 11])
def test_random_layers_normalise_to_about_one_for_other_kernels(k: int) -> None:
    """K=11 has no fitted curve: the tabulated minimum of 200 draws."""
    torch.manual_seed(k)
    w = torch.randn(64, 32, k) if k in (3, 5, 11) else torch.randn(64, 32, int(k**0.5), int(k**0.5))
    ve = variance_entropy(w)
    assert ve.normalized == pytest.approx(1.0, abs=0.03)


def test_untabulated_threshold_is_deterministic_and_below_random() -> None:
    """K = 17 has no fitted curve nor table row: H_T from the interpolated random band."""
    a = random_entropy_threshold(300, 17)
    random_entropy_threshold.cache_clear()
    assert random_entropy_threshold(300, 17) == a
    assert 0 < a < math.log10(17)


def test_normalised_undefined_for_tiny_n() -> None:
    ve = variance_entropy(torch.randn(2, 1, 3, 3))
    assert ve.normalized is None and "H_T" in ve.reason


def test_orthogonality_known_values() -> None:
    eye = torch.eye(6).reshape(6, 6, 1, 1).repeat(1, 1, 3, 3)
    assert orthogonality(eye) == pytest.approx(1.0)
    assert orthogonality(torch.ones(5, 3, 3, 3)) == pytest.approx(0.0, abs=1e-12)
    w = random_layer(256, 64)
    expected = 1 - math.sqrt(2 / (math.pi * 64 * 9))
    assert orthogonality(w) == pytest.approx(expected, abs=0.005)


def test_orthogonality_c_out_1_is_undefined() -> None:
    with pytest.raises(UndefinedMeasureError, match="C_out = 1"):
        orthogonality(torch.randn(1, 8, 3, 3))


def test_orthogonality_blocks_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """The upper-block-triangle Gram sum equals the whole matrix, whatever the block size."""
    w = random_layer(300, 8)
    module = importlib.import_module("filterwatch.functional.orthogonality")
    monkeypatch.setattr(module, "_MIN_BLOCK", 1000)   # one block: the plain Gram matrix
    full = orthogonality(w)
    monkeypatch.setattr(module, "_MIN_BLOCK", 7)
    monkeypatch.setattr(module, "_BLOCKS", 13)        # uneven blocks, last one short
    assert orthogonality(w) == pytest.approx(full, abs=1e-12)


def test_norms_dead_nonfinite_relative_change() -> None:
    w = torch.zeros(3, 2, 3, 3)
    w[0, 0, 0, 0] = -3.0
    w[2, 1, 1, 1] = 4.0
    assert filter_norms(w, p=1).tolist() == [3.0, 0, 0, 0, 0, 4.0]
    assert filter_norms(w).tolist() == [3.0, 0, 0, 0, 0, 4.0]
    assert dead_channels(w).tolist() == [False, True, False]
    w[1, 0, 0, 0] = float("nan")
    w[1, 0, 0, 1] = float("-inf")
    assert nonfinite_count(w) == 2
    a = torch.ones(2, 2, 3)
    assert relative_change(a * 1.5, a) == pytest.approx(0.5)
    for w in (torch.zeros(1, 1, 2), torch.ones(1, 1, 2)):
        with pytest.raises(UndefinedMeasureError, match="all zero"):
            relative_change(w, torch.zeros(1, 1, 2))
    with pytest.raises(InputError, match="expected shape"):
        relative_change(a, torch.ones(2, 2, 4))


@pytest.mark.parametrize("scale", [1e-30, 1e-12, 1.0, 1e12, 1e30])
def test_relative_change_equals_the_float64_value_at_every_scale(scale: float) -> None:
    """Float32 squares with float64 sums (chunks of 4096 and a short tail) where they are
    safe, float64 where they would overflow or underflow: always the float64 answer."""
    g = torch.Generator().manual_seed(3)
    ref = torch.randn(130, 70, 3, 3, generator=g, dtype=torch.float64)  # 81,900 values
    cur = ref + 0.05 * torch.randn(ref.shape, generator=g, dtype=torch.float64)
    want = float(torch.linalg.vector_norm(cur - ref) / torch.linalg.vector_norm(ref))
    got = relative_change((cur * scale).float(), (ref * scale).float())
    assert got == pytest.approx(want, rel=1e-6)
    assert relative_change(cur.half(), ref.half()) == pytest.approx(want, rel=2e-2)  # fp16 input
    nan = cur.float().clone()
    nan[0, 0, 0, 0] = float("nan")
    assert math.isnan(relative_change(nan, ref.float()))


@pytest.mark.parametrize("fn", [sparsity, variance_entropy, orthogonality])
def test_nonfinite_weights_are_undefined(fn) -> None:  # type: ignore[no-untyped-def]
    w = torch.randn(4, 4, 3, 3)
    w[0, 0, 0, 0] = float("nan")
    with pytest.raises(UndefinedMeasureError, match="1 non-finite"):
        fn(w)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_inputs_match_float64_of_same_values(dtype: torch.dtype) -> None:
    w = trained_like_layer(16, 8).to(dtype)
    w64 = w.double()
    assert sparsity(w).value == sparsity(w64).value
    assert variance_entropy(w).entropy == pytest.approx(variance_entropy(w64).entropy, abs=1e-12)
    assert orthogonality(w) == pytest.approx(orthogonality(w64), abs=1e-12)
    assert w.dtype == dtype  # input untouched


def test_inputs_are_not_modified_and_views_work() -> None:
    w = random_layer(16, 8)
    before = w.clone()
    view = w.transpose(0, 1)  # non-contiguous (torchconvquality's .view() cannot do this)
    sparsity(view), variance_entropy(view), orthogonality(view)
    assert torch.equal(w, before)
    assert variance_entropy(view).entropy == pytest.approx(
        variance_entropy(view.contiguous()).entropy, abs=1e-12
    )


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((2, 2, 3, 3)), "expected a torch.Tensor, got ndarray"),
        (torch.zeros(4, 9), "at least 3 dims"),
        (torch.zeros(2, 2, 3, dtype=torch.int64), "floating-point"),
        (torch.zeros(2, 2, 3, device="meta"), "meta device"),
        (torch.zeros(0, 2, 3), "non-empty"),
    ],
)
def test_bad_inputs_have_clear_errors(bad: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        sparsity(bad)  # type: ignore[arg-type]


def test_bad_arguments() -> None:
    w = torch.randn(2, 2, 3, 3)
    with pytest.raises(InputError, match="`eps` expected a number in"):
        sparsity(w, eps=2.0)
    with pytest.raises(InputError, match="`mask` expected a bool tensor of shape"):
        variance_entropy(w, mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(InputError, match="`p` expected a positive"):
        filter_norms(w, p=0)
