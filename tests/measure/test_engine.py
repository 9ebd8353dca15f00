"""The engine in float32 agrees with the engine in float64 on every kind of layer, and both
agree with the independent numpy implementation (tests/numpy_ref.py)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from filterwatch import LayerSelection, analyze, discover_layers
from filterwatch.measure import measure_layers
from tests import numpy_ref
from tests.models import mobilenet_like, random_layer, resnet18_like, sparse_layer, trained_like_layer

KEYS = ("sparsity", "n_sparse", "variance_entropy", "variance_entropy_norm",
        "variance_entropy_clean", "variance_entropy_clean_norm", "orthogonality", "dead_channels",
        "nonfinite", "weight_norm", "filter_l1_mean", "filter_l2_mean")


def _assert_same(net: nn.Module | dict, tol: float = 1e-6) -> None:  # type: ignore[type-arg]
    fused = analyze(net, select=LayerSelection.everything())
    ref = analyze(net, select=LayerSelection.everything(), precision="float64")
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
    assert report.layer("copies").variance_entropy == pytest.approx(0.0, abs=1e-12)
    assert report.layer("offset_copies").variance_entropy == pytest.approx(0.0, abs=1e-12)
    assert report.layer("zero").sparsity == pytest.approx(1.0)


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


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_engine_equals_the_numpy_implementation(precision: str) -> None:
    torch.manual_seed(0)
    net = resnet18_like(16)
    with torch.no_grad():
        net[1][0].weight[:, :5] = 0  # sparse filters: clean VE differs from VE
    report = analyze(net, precision=precision)  # type: ignore[arg-type]
    modules = dict(net.named_modules())
    for layer in report.layers:
        w = modules[layer.name].weight.detach().double().numpy()
        share, mask = numpy_ref.sparsity(w)
        f = numpy_ref.filters(w)
        assert layer.sparsity == pytest.approx(share, abs=1e-12)
        assert layer.variance_entropy == pytest.approx(numpy_ref.variance_entropy(f), abs=1e-6)
        assert layer.variance_entropy_clean == pytest.approx(numpy_ref.variance_entropy(f[~mask]), abs=1e-6)
        assert layer.orthogonality == pytest.approx(numpy_ref.orthogonality(w), abs=1e-6)
        assert layer.weight_norm == pytest.approx(float((w**2).sum() ** 0.5), rel=1e-6)


@pytest.mark.parametrize("scale", [1e-30, 1e-22, 1e-12, 1e12, 1e19, 1e30])
def test_scale_safe_from_1e_minus_30_to_1e30(scale: float) -> None:
    """float32 weights far from 1: every product is formed after an exact power-of-two
    scaling, so the answers are the float64 path's (and scale-invariant measures unchanged)."""
    base = trained_like_layer(64, 32, seed=5).float()
    base.view(-1, 9)[::4] *= 1e-4  # some sparse filters: clean VE differs from VE
    w = (base.double() * scale).float()
    got = analyze({"l.weight": w}).layer("l")
    want = analyze({"l.weight": w.double()}, precision="float64").layer("l")
    plain = analyze({"l.weight": base}).layer("l")
    for key in ("variance_entropy", "variance_entropy_clean", "orthogonality", "sparsity"):
        assert getattr(got, key) == pytest.approx(getattr(want, key), abs=1e-6), key
        assert getattr(got, key) == pytest.approx(getattr(plain, key), abs=1e-5), key
    for key in ("weight_norm", "filter_l1_mean", "filter_l2_mean"):
        assert getattr(got, key) == pytest.approx(getattr(want, key), rel=1e-6), key
    assert got.nonfinite == 0 and got.dead_channels == 0


def test_float64_weights_near_1e200() -> None:
    w = trained_like_layer(32, 16, seed=6) * 1e200
    got = analyze({"l.weight": w}).layer("l")
    plain = analyze({"l.weight": trained_like_layer(32, 16, seed=6)}, precision="float64").layer("l")
    assert got.variance_entropy == pytest.approx(plain.variance_entropy, abs=1e-9)
    assert got.orthogonality == pytest.approx(plain.orthogonality, abs=1e-6)
    assert got.weight_norm == pytest.approx(plain.weight_norm * 1e200, rel=1e-9)


@pytest.mark.parametrize("block", [1000, 8192, 65536])
def test_blocks_of_the_cpu_pass_add_up(monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    """The CPU pass goes over blocks of filters (the last one short, some of fewer filters
    than the float64 small-set path takes): every measure equals the float64 path's."""
    from filterwatch.functional import stats

    monkeypatch.setattr(stats, "_ROW_CHUNK", block)
    w = (trained_like_layer(160, 128, seed=7) + 0.05).float()  # 20,480 filters
    w.view(-1, 9)[5000:5300] *= 1e-4  # sparse filters inside one block
    w[3] = 0.0  # a dead channel in the first block
    _assert_same({"l.weight": w})
    w[150, 2, 1, 1] = float("nan")  # a non-finite value in a later block
    layer = analyze({"l.weight": w}).layer("l")
    assert layer.nonfinite == 1 and layer.sparsity is None
