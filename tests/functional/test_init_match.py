"""The evidence behind "untrained": weights as a fresh initialisation leaves them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from torch import nn

from filterwatch.functional.init_match import _gaussian_peak_range, init_bound_ratio, init_match


def _match(w: torch.Tensor, fan_in: int, fan_out: int) -> str | None:
    a = w.detach().double().numpy().ravel()  # numpy computes the statistics, independently
    found = init_match(a.size, fan_in, fan_out, float(a.mean()), float(np.sqrt((a * a).mean())),
                       float(np.abs(a).max()))
    return None if found is None else found.name


def _fans(w: torch.Tensor) -> tuple[int, int]:
    k = math.prod(w.shape[2:])
    return w.shape[1] * k, w.shape[0] * k


shapes = st.tuples(st.integers(4, 96), st.integers(2, 64), st.sampled_from([1, 3, 5]))


@settings(max_examples=60, deadline=None)
@given(shape=shapes, seed=st.integers(0, 10_000),
       init=st.sampled_from(["default", "kaiming_normal", "kaiming_normal_fan_out", "xavier_normal",
                             "kaiming_uniform", "xavier_uniform"]))
def test_fresh_inits_are_recognised(shape: tuple[int, int, int], seed: int, init: str) -> None:
    c_out, c_in, k = shape
    torch.manual_seed(seed)
    w = nn.Conv2d(c_in, c_out, k).weight.detach()
    if init != "default":
        fn, kwargs = {"kaiming_normal": (nn.init.kaiming_normal_, {}),
                      "kaiming_normal_fan_out": (nn.init.kaiming_normal_, {"mode": "fan_out"}),
                      "xavier_normal": (nn.init.xavier_normal_, {}),
                      "kaiming_uniform": (nn.init.kaiming_uniform_, {"nonlinearity": "relu"}),
                      "xavier_uniform": (nn.init.xavier_uniform_, {})}[init]
        fn(w, **kwargs)
    assert _match(w, *_fans(w)) is not None  # (which one may be ambiguous where fans coincide)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, seed=st.integers(0, 10_000), factor=st.sampled_from([0.8, 1.15, 1.5, 3.0]))
def test_rescaled_weights_are_not_taken_for_their_init(shape: tuple[int, int, int], seed: int,
                                                       factor: float) -> None:
    """The default init off its scale by 15 % or more (as training moves it) is not the default
    init any more; it may match another init only where that one has its scale (Xavier-uniform
    at some fans), for shapes of at least 2,000 values (tiny layers cannot tell such scales
    apart)."""
    c_out, c_in, k = shape
    if c_out * c_in * k * k < 2000:
        return
    torch.manual_seed(seed)
    w = nn.Conv2d(c_in, c_out, k).weight.detach() * factor
    fan_in, fan_out = _fans(w)
    a = w.double().numpy().ravel()
    found = init_match(a.size, fan_in, fan_out, float(a.mean()), float(np.sqrt((a * a).mean())),
                       float(np.abs(a).max()))
    if found is None:
        return
    assert not found.name.startswith("PyTorch default")
    want_rms = found.value(fan_in, fan_out) / (math.sqrt(3.0) if found.family == "uniform" else 1.0)
    assert want_rms == pytest.approx(factor / math.sqrt(3.0 * fan_in), rel=0.1)


def test_trained_digits_weights_are_not_fresh() -> None:
    """The case of issue 22: a BatchNorm CNN trained with SGD keeps VE/H_T near 1, but its
    weights left the default init's bound."""
    from tests.calibration_models import trained

    model = trained("bn_sgd")
    for name, w in model.state.items():
        if name.endswith("weight") and w.dim() == 4:
            assert _match(w, *_fans(w)) is None, name
            assert init_bound_ratio(float(w.abs().max()), _fans(w)[0]) > 1.0


def test_an_offset_mean_is_not_fresh() -> None:
    torch.manual_seed(0)
    w = nn.Conv2d(64, 64, 3).weight.detach()
    assert _match(w, 576, 576) is not None
    assert _match(w + 0.2 * w.std(), 576, 576) is None


def test_gaussian_peak_range_agrees_with_scipy() -> None:
    for n in (10, 1000, 10**6):
        lo, hi = _gaussian_peak_range(n)
        # P(max |z| <= x) = (2 Phi(x) - 1)^n  =>  x = Phi^-1((1 + p^(1/n)) / 2)
        want = [sps.norm.ppf((1 + p ** (1 / n)) / 2) for p in (1e-4, 1 - 1e-4)]
        assert (lo, hi) == pytest.approx(want, rel=1e-6)


def test_degenerate_inputs_give_no_match() -> None:
    assert init_match(1, 9, 9, 0.0, 0.1, 0.1) is None
    assert init_match(100, 9, 9, 0.0, 0.0, 0.0) is None
    assert init_match(100, 9, 9, 0.0, math.nan, 0.1) is None
    assert init_bound_ratio(0.5, 16) == pytest.approx(2.0)
