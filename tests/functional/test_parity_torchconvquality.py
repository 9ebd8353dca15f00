"""Parity with the authors' reference implementation, torchconvquality 0.3.0 (float64, 1e-5).

Deliberate differences (also in the README):
- non-contiguous weights: torchconvquality calls ``.view`` and fails; filterwatch reshapes;
- ``0 * log 0``: torchconvquality yields NaN when an eigenvalue is exactly 0 (exact duplicate
  filters); filterwatch takes 0, as the definition says;
- round-off variance (<= 1e-12 of the filters' energy) counts as 0, so copies give VE = 0;
- clean VE with fewer than 2 non-sparse filters: 0 (empty set) or NaN (one filter) there,
  ``None`` plus a reason here;
- ``C_out = 1``: a division by zero there, ``None`` plus a reason here.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

torchconvquality = pytest.importorskip("torchconvquality")

from filterwatch import analyze  # noqa: E402
from tests.models import random_layer, sparse_layer, trained_like_layer  # noqa: E402

KEYS = (
    "sparsity",
    "variance_entropy",
    "variance_entropy_norm",
    "variance_entropy_clean",
    "variance_entropy_clean_norm",
    "orthogonality",
)


def _zero_some(w: torch.Tensor) -> torch.Tensor:
    w = w.clone()
    w[::3] = 0.0  # whole output channels zero: sparse filters and zero rows
    return w


WEIGHTS = {
    "random": lambda: random_layer(64, 32, seed=1),
    "random_wide": lambda: random_layer(128, 64, seed=2),
    "trained_like": lambda: trained_like_layer(64, 32, seed=3),
    "trained_like_rank1": lambda: trained_like_layer(32, 16, rank=1, noise=0.01, seed=4),
    "sparse": lambda: sparse_layer(64, 32, share=0.4, seed=5),
    "partly_zero": lambda: _zero_some(trained_like_layer(48, 16, seed=6)),
    "depthwise": lambda: random_layer(96, 1, seed=7),
}


def _model_with(w: torch.Tensor) -> nn.Module:
    conv = nn.Conv2d(w.shape[1], w.shape[0], 3, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(w)
    return nn.Sequential(conv)


@pytest.mark.parametrize("name", sorted(WEIGHTS))
def test_same_numbers_as_torchconvquality(name: str) -> None:
    w = WEIGHTS[name]()
    model = _model_with(w)
    theirs = torchconvquality.measure_quality(model)["0"]
    ours = analyze(model).layer("0")
    for key in KEYS:
        assert getattr(ours, key) == pytest.approx(float(theirs[key]), abs=1e-5), key
    assert ours.n_filters == theirs["n"]


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_zero_layer_matches_where_defined() -> None:
    model = _model_with(torch.zeros(8, 4, 3, 3, dtype=torch.float64))
    theirs = torchconvquality.measure_quality(model)["0"]
    ours = analyze(model).layer("0")
    for key in ("sparsity", "variance_entropy", "variance_entropy_norm", "orthogonality"):
        assert getattr(ours, key) == pytest.approx(float(theirs[key]), abs=1e-5), key
    # every filter is sparse: the reference reports 0 for the VE of an empty set (and a
    # divide-by-zero warning); here it is undefined, with a reason
    assert theirs["variance_entropy_clean"] == pytest.approx(0.0)
    assert ours.variance_entropy_clean is None
    assert "fewer than 2 filters" in ours.undefined["variance_entropy_clean"]


def test_non_contiguous_weight_is_a_deliberate_difference() -> None:
    w = random_layer(16, 16).transpose(0, 1)
    with pytest.raises(RuntimeError):
        torchconvquality.measure_conv_weight_quality(w)
    ours = analyze({"conv.weight": w}).layer("conv")
    theirs = torchconvquality.measure_conv_weight_quality(w.contiguous())
    assert ours.variance_entropy == pytest.approx(theirs["variance_entropy"], abs=1e-5)
