"""The fused engine agrees with the float64 reference path on every kind of layer."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from filterwatch import analyze, discover_layers
from filterwatch.engine import measure_layers

from .models import mobilenet_like, random_layer, resnet18_like, sparse_layer, trained_like_layer

KEYS = ("sparsity", "n_sparse", "variance_entropy", "variance_entropy_norm",
        "variance_entropy_clean", "variance_entropy_clean_norm", "orthogonality", "dead_channels",
        "nonfinite", "weight_norm", "filter_l1_mean", "filter_l2_mean")


def _assert_same(net: nn.Module | dict, tol: float = 1e-6) -> None:  # type: ignore[type-arg]
    fused = analyze(net, engine="fused", include_pointwise=True)
    ref = analyze(net, engine="reference", include_pointwise=True)
    for a, b in zip(fused.layers, ref.layers, strict=True):
        for key in KEYS:
            va, vb = getattr(a, key), getattr(b, key)
            if vb is None or va is None:
                assert va is vb, (a.name, key, va, vb)
                assert a.undefined.get(key) == b.undefined.get(key), (a.name, key)
            else:
                assert va == pytest.approx(vb, rel=tol, abs=tol), (a.name, key)
        assert a.dead_channel_indices == b.dead_channel_indices


def test_resnet_and_mobilenet_shapes() -> None:
    torch.manual_seed(0)
    _assert_same(resnet18_like(16))
    _assert_same(mobilenet_like())


def test_every_conv_kind_and_dtype() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(4, 8, 5), nn.Conv3d(2, 4, 3), nn.ConvTranspose2d(4, 6, 3, groups=2),
                        nn.Conv2d(8, 16, 3, groups=4), nn.Conv2d(3, 1, 3), nn.Conv2d(3, 8, 1))
    _assert_same(net)
    _assert_same(net.half(), tol=1e-5)
    _assert_same(net.to(torch.bfloat16), tol=1e-5)


def test_degenerate_layers() -> None:
    pattern = torch.randn(1, 1, 3, 3)
    state = {
        "zero.weight": torch.zeros(8, 4, 3, 3),
        "copies.weight": pattern.repeat(16, 8, 1, 1),
        "offset_copies.weight": (pattern + 5.0).repeat(16, 8, 1, 1),
        "sparse.weight": sparse_layer(32, 16).float(),
        "one.weight": torch.randn(1, 1, 3, 3),
        "half_dead.weight": torch.cat([torch.zeros(4, 8, 3, 3), torch.randn(4, 8, 3, 3)]),
    }
    _assert_same(state)
    report = analyze(state)
    assert report.layer("copies").variance_entropy == 0.0
    assert report.layer("offset_copies").variance_entropy == 0.0
    assert report.layer("zero").sparsity == 1.0


def test_nonfinite_layers_fall_back_with_reasons() -> None:
    w = random_layer(8, 4).float()
    w[0, 0, 0, 0] = float("nan")
    w[1, 0, 0, 0] = float("inf")
    layer = analyze({"bad.weight": w, "good.weight": random_layer(8, 4).float()}).layer("bad")
    assert layer.nonfinite == 2 and layer.sparsity is None
    assert "2 non-finite" in layer.undefined["variance_entropy"]


def test_big_layer_with_offset_keeps_precision() -> None:
    """Float32 GEMMs over centred 4096-row chunks, accumulated in float64: still 1e-6."""
    w = (trained_like_layer(256, 256, seed=3) + 0.3).float()
    _assert_same({"big.weight": w})


def test_orthogonality_off() -> None:
    (layer,) = measure_layers(discover_layers(nn.Conv2d(3, 8, 3)), orthogonality=False)
    assert layer.orthogonality is None and "not computed" in layer.undefined["orthogonality"]


@settings(max_examples=30, deadline=None)
@given(c_out=st.integers(1, 40), c_in=st.integers(1, 8), k=st.sampled_from([1, 3, 5]),
       seed=st.integers(0, 10_000), scale=st.floats(1e-3, 1e3))
def test_fused_equals_reference_property(c_out: int, c_in: int, k: int, seed: int, scale: float) -> None:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(c_out, c_in, k, k, generator=g) * scale
    w.view(-1, k * k)[:: 3] *= 1e-4
    _assert_same({"l.weight": w})


def test_sampled_orthogonality_is_within_its_bound() -> None:
    from filterwatch.engine import orthogonality_sampled

    w = random_layer(256, 64).float()
    exact = analyze({"l.weight": w}).layer("l").orthogonality
    est, bound = orthogonality_sampled(w.reshape(256, -1), pairs=4000, seed=0)
    assert abs(est - exact) <= bound
    assert bound == pytest.approx(math.sqrt(math.log(2 / 0.05) / (2 * 4000)))
