"""Spectral measures against independent references: numpy SVD of the layer matrices, and the
explicit operator matrix of the convolution (the conv applied to every basis input)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from filterwatch import analyze
from filterwatch.errors import UndefinedMeasureError
from filterwatch.functional.spectral import conv_operator_norm, lipschitz_bound, matrix_spectrum

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _operator(w: torch.Tensor, n: int, padding: str, stride: int = 1, dilation: int = 1,
              groups: int = 1, transposed: bool = False) -> np.ndarray:
    """The matrix of the convolution on an input of ``n`` points per axis, column by column
    (the conv of every basis input), in float64."""
    d = w.ndim - 2
    c_in = w.shape[1] * groups if not transposed else w.shape[0]
    eye = torch.eye(c_in * n**d, dtype=torch.float64).reshape(-1, c_in, *([n] * d))
    w = w.double()
    if transposed:
        out = getattr(F, f"conv_transpose{d}d")(eye, w, stride=stride, groups=groups)
    elif padding == "circular":
        span = [dilation * (k - 1) for k in w.shape[2:]]
        pad = [p for s in reversed(span) for p in (s // 2, s - s // 2)]
        out = _CONV[d](F.pad(eye, pad, mode="circular"), w, stride=stride, dilation=dilation, groups=groups)
    else:
        out = _CONV[d](eye, w, stride=stride, dilation=dilation, groups=groups,
                       padding=[dilation * (k - 1) // 2 for k in w.shape[2:]])
    return out.reshape(eye.shape[0], -1).T.numpy()


def _norm(m: np.ndarray) -> float:
    return float(np.linalg.norm(m, 2))


@pytest.mark.parametrize("shape, groups", [((8, 3, 3, 3), 1), ((12, 4, 3, 3), 3), ((6, 1, 5, 5), 6),
                                          ((5, 7, 1, 1), 1), ((4, 2, 3), 1), ((4, 2, 3, 3, 3), 1)])
def test_matrix_measures_equal_numpy_svd(shape: tuple[int, ...], groups: int) -> None:
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    blocks = w.double().numpy().reshape(groups, shape[0] // groups, -1)
    sigma = np.concatenate([np.linalg.svd(b, compute_uv=False) for b in blocks])
    got = matrix_spectrum(w, groups)
    assert got.spectral_norm == pytest.approx(sigma.max(), rel=1e-10)
    assert got.condition_number == pytest.approx(sigma.max() / sigma.min(), rel=1e-6)
    assert got.stable_rank == pytest.approx((sigma**2).sum() / sigma.max() ** 2, rel=1e-10)
    p = sigma / sigma.sum()
    assert got.effective_rank == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-10)


def test_rank_deficient_matrix_has_no_condition_number() -> None:
    w = torch.randn(4, 1, 1, 1) * torch.randn(1, 8, 3, 3)  # rank 1
    got = matrix_spectrum(w)
    assert got.condition_number is None and "rank-deficient" in got.reason
    assert got.stable_rank == pytest.approx(1.0)
    with pytest.raises(UndefinedMeasureError, match="all-zero"):
        matrix_spectrum(torch.zeros(2, 2, 3, 3))


@pytest.mark.parametrize("shape", [(4, 3, 3, 3), (2, 5, 5, 5), (6, 2, 2, 2), (3, 3, 1, 1)])
@pytest.mark.parametrize("n", [5, 8, 11])
def test_circular_norm_is_exact_and_the_bound_holds_for_every_padding_and_stride(
        shape: tuple[int, ...], n: int) -> None:
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(n))
    bound = lipschitz_bound(w)
    circular = _norm(_operator(w, n, "circular"))
    assert conv_operator_norm(w, (n, n)) == pytest.approx(circular, rel=1e-8)
    for padding in ("circular", "zeros"):
        for stride in (1, 2):
            assert _norm(_operator(w, n, padding, stride)) <= bound
    assert _norm(_operator(w, n, "zeros", dilation=2)) <= bound  # dilation: the same bound


def test_bound_holds_in_1d_3d_grouped_and_transposed() -> None:
    g = torch.Generator().manual_seed(3)
    w1 = torch.randn(4, 3, 5, generator=g)
    assert _norm(_operator(w1, 16, "zeros")) <= lipschitz_bound(w1)
    assert conv_operator_norm(w1, 16) == pytest.approx(_norm(_operator(w1, 16, "circular")), rel=1e-8)
    w3 = torch.randn(3, 2, 3, 3, 3, generator=g)
    assert _norm(_operator(w3, 5, "circular")) <= lipschitz_bound(w3)
    wg = torch.randn(6, 2, 3, 3, generator=g)
    assert _norm(_operator(wg, 7, "zeros", groups=3)) <= lipschitz_bound(wg, groups=3)
    assert conv_operator_norm(wg, (7, 7), groups=3) == pytest.approx(
        _norm(_operator(wg, 7, "circular", groups=3)), rel=1e-8)
    wt = torch.randn(3, 4, 3, 3, generator=g)  # ConvTranspose2d(3, 4, 3): weight (C_in, C_out, k)
    assert _norm(_operator(wt, 6, "zeros", transposed=True)) <= lipschitz_bound(wt)


def test_the_bound_is_tight_on_large_inputs() -> None:
    w = torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(0))
    exact = conv_operator_norm(w, (96, 96))
    assert exact <= lipschitz_bound(w) <= 1.06 * exact


@settings(max_examples=25, deadline=None)
@given(c_out=st.integers(1, 6), c_in=st.integers(1, 5), k=st.integers(1, 4), n=st.integers(4, 9),
       log_scale=st.floats(-20, 20), seed=st.integers(0, 1000))
def test_bound_is_never_below_the_true_norm(c_out: int, c_in: int, k: int, n: int,
                                            log_scale: float, seed: int) -> None:
    w = torch.randn(c_out, c_in, k, k, generator=torch.Generator().manual_seed(seed)) * 10.0**log_scale
    bound = lipschitz_bound(w)
    for padding in ("circular", "zeros"):
        assert _norm(_operator(w, max(n, k), padding)) <= bound * (1 + 1e-12)
    assert lipschitz_bound(w * 4.0) == pytest.approx(4.0 * bound, rel=1e-9)  # 1-homogeneous


def test_analyze_spectral_on_every_kind_of_conv() -> None:
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 8, 3, stride=2),
                        nn.Conv2d(8, 8, 3, dilation=2), nn.ConvTranspose2d(8, 4, 3))
    report = analyze(net, spectral=True, input_size=(12, 12))
    for layer in report.layers:
        assert layer.lipschitz_bound is not None and layer.spectral_norm is not None
        assert layer.lipschitz is not None and layer.lipschitz <= layer.lipschitz_bound
    depthwise = report.layer("1")
    w = net[1].weight.detach()  # 8 groups of 1 x 9: the per-group norms are the filters' norms
    assert depthwise.spectral_norm == pytest.approx(float(w.double().reshape(8, -1).norm(dim=1).max()),
                                                    rel=1e-9)
    c1d = analyze(nn.Sequential(nn.Conv1d(2, 4, 5)), spectral=True).layers[0]
    assert c1d.condition_number is not None
    assert analyze(net).layers[0].lipschitz_bound is None  # off by default


def test_gate_fails_rank_deficient_layers_and_bounds(tmp_path: object) -> None:
    from filterwatch.gate import evaluate, rules_from_mapping

    w = torch.randn(4, 1, 1, 1) * torch.randn(1, 8, 3, 3)
    report = analyze({"a.weight": w, "b.weight": torch.randn(8, 8, 3, 3)}, spectral=True)
    verdict = evaluate(report, rules_from_mapping({"max-condition-number": 1e6}))
    (v,) = verdict.violations
    assert v.layer == "a" and v.value is None and "rank-deficient" in v.message
    big = evaluate(report, rules_from_mapping({"max-lipschitz-bound": 1e-3}))
    assert {v.layer for v in big.violations} == {"a", "b"}


def test_alert_when_the_condition_number_grows_tenfold() -> None:
    from filterwatch.monitor import AlertRules, AlertTracker

    start = analyze({"a.weight": torch.randn(8, 8, 3, 3, generator=torch.Generator().manual_seed(0))},
                    spectral=True)
    w = torch.randn(8, 8, 3, 3, generator=torch.Generator().manual_seed(0))
    w[0] *= 1e-4  # one direction almost gone: ill-conditioned
    now = analyze({"a.weight": w}, spectral=True)
    start.step, now.step = 0, 10
    tracker = AlertTracker(AlertRules())
    tracker.update(start)
    kinds = {a.kind for a in tracker.update(now)}
    assert "ill_conditioned" in kinds


@pytest.mark.parametrize("trained", [False, True])
def test_certified_maximum_of_wide_layers_equals_the_exact_one(trained: bool) -> None:
    """Past 48 channels the grid maximum is certified (power-iteration scouting, exact
    eigenvalues of the best few, one batched Cholesky test) instead of computing every
    frequency's eigenvalues: it must never be below the exact maximum, nor noticeably above."""
    from filterwatch.functional import spectral

    g = torch.Generator().manual_seed(4)
    w = torch.randn(64, 56, 3, 3, generator=g, dtype=torch.float64)
    if trained:  # a peaked spectrum: smooth filters, one strong direction
        smooth = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
        w = w * torch.outer(smooth, smooth)
        w[:8] += 3.0 * w[8:16]
    spectrum = spectral._GramSpectrum(w)  # ci <= co: the side the certificate works on
    omega = spectral._frequencies((12, 12), w.device)
    exact = float(torch.linalg.eigvalsh(spectrum.at(omega))[..., -1].max())
    got = spectral._certified_top(spectrum, omega)
    assert exact <= got <= exact * (1 + 1e-8)
    # and the matrices are those of the FFT of the kernel (Sedghi et al.)
    f = torch.fft.fft2(w, s=(12, 12))[:, :, 3, 5]  # F(ω) at m = (3, 5): (co, ci)
    a = spectrum.at(omega[3 * 7 + 5][None])[0]
    assert torch.linalg.eigvalsh(a) == pytest.approx(torch.linalg.eigvalsh(f.mH @ f), rel=1e-9)
