"""Random-like and freshly initialised, judged with the sampling noise of each layer's size
(issue 35, item 1), and "outside the healthy ranges" listing every layer (item 6)."""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from filterwatch import analyze
from filterwatch.monitor import AlertTracker
from filterwatch.report import Report, to_table
from filterwatch.report.registry import get
from tests import calibration_models as cm

VE_NORM = get("variance_entropy_norm")


def test_a_trained_32_filter_first_layer_is_not_called_random_like() -> None:
    """Its VE/H_T (about 1.0-1.06) is what random layers of 32 filters give too: VE cannot
    tell, so it is neither red nor random-like nor fresh."""
    report = analyze(cm.trained("plain").state)
    first = report.layer("0")
    assert first.n_filters == 32 and first.variance_entropy_norm is not None
    assert first.random_like is None and first.random_band is not None
    assert first.random_band[0] < 1.0 < first.random_band[1]
    assert VE_NORM.is_healthy(first.variance_entropy_norm, first)
    assert first.fresh_init is None
    assert "VE/H_T" not in to_table(report).split("outside the healthy ranges")[1].splitlines()[0]


def test_a_layer_drawn_from_lecun_normal_is_called_fresh_and_named_with_its_init() -> None:
    torch.manual_seed(0)
    w = torch.randn(48, 32, 3, 3) / math.sqrt(32 * 9)  # LeCun-normal: σ = 1/sqrt(fan_in)
    trained = cm.trained("plain").state
    state = {"0.weight": trained["0.weight"], "2.weight": trained["2.weight"], "new.weight": w}
    report = analyze(state)
    assert report.layer("new").fresh_init == "LeCun-normal"
    assert report.layer("2").fresh_init is None
    note = report.summary["notes"][0]
    assert "new as LeCun-normal leaves them" in note and "1 of 3 layers" in note


def test_gaussian_values_with_structure_are_not_fresh() -> None:
    """A trained-looking layer (few patterns) whose values happen to have LeCun-normal's RMS
    and peak: the init's fingerprint alone said "fresh" (a text-orientation classifier)."""
    g = torch.Generator().manual_seed(1)
    basis, coef = torch.randn(3, 9, generator=g), torch.randn(64 * 32, 3, generator=g)
    w = (coef @ basis + 0.3 * torch.randn(64 * 32, 9, generator=g)).reshape(64, 32, 3, 3)
    sigma = 1 / math.sqrt(32 * 9)
    w = w / w.square().mean().sqrt() * sigma
    layer = analyze(nn.Sequential(nn.Conv2d(32, 64, 3))).layers[0]  # the fresh twin
    assert layer.fresh_init is not None
    with torch.no_grad():
        net = nn.Sequential(nn.Conv2d(32, 64, 3))
        net[0].weight.copy_(w)
    got = analyze(net).layers[0]
    assert got.fresh_init is None and got.random_like is False
    assert got.variance_entropy_norm is not None and got.variance_entropy_norm < got.random_band[0]  # type: ignore[index]


def test_a_wide_random_layer_is_random_like_and_the_alert_says_so() -> None:
    g = torch.Generator().manual_seed(2)
    basis, coef = torch.randn(2, 9, generator=g), torch.randn(128 * 64, 2, generator=g)
    structured = (coef @ basis + 0.05 * torch.randn(128 * 64, 9, generator=g)).reshape(128, 64, 3, 3)
    start = analyze({"c.weight": structured})
    now = analyze({"c.weight": torch.randn(128, 64, 3, 3, generator=g)})
    assert start.layers[0].random_like is False and now.layers[0].random_like is True
    assert not VE_NORM.is_healthy(now.layers[0].variance_entropy_norm, now.layers[0])
    tracker = AlertTracker()
    tracker.update(start)
    kinds = {a.kind: a.message for a in tracker.update(now)}
    assert "random_like" in kinds and "random band" in kinds["random_like"]


def test_outside_the_healthy_ranges_lists_every_layer_outside() -> None:
    state = {f"c{i}.weight": torch.randn(16, 8, 3, 3) for i in range(5)}
    for i in range(4):
        state[f"c{i}.weight"].view(-1, 9)[: 100 + 10 * i] = 0.0  # 100-128 of 128 filters sparse
    line = next(x for x in to_table(analyze(state)).splitlines() if x.startswith("outside the healthy"))
    assert "sparsity in 4 layers: 1.000 at c3, 0.938 at c2, 0.859 at c1, and 1 more" in line


def test_a_layer_at_its_bands_edge_alerts_once() -> None:
    """The --bad demo's layer read 1.003, 1.001, 1.003, ... around its band's edge (1.002):
    one alert, not one per crossing."""
    start = analyze({"c.weight": cm.trained("bn_sgd").state["10.weight"]}).layers[0]
    lo = analyze({"c.weight": torch.randn(128, 128, 3, 3)}).layers[0].random_band[0]  # type: ignore[index]
    tracker = AlertTracker()
    tracker.update(Report([start]))
    fired = []
    for v in (lo + 1e-4, lo - 1e-4, lo + 1e-4, lo - 2e-4, lo + 1e-4):
        now = dataclasses.replace(start, variance_entropy_norm=v, random_like=v >= lo,
                                  random_band=[lo, lo + 1e-3])
        fired += [a.kind for a in tracker.update(Report([now]))]
    assert fired.count("random_like") == 1


def test_a_small_layer_is_called_fresh_only_on_evidence_that_can_tell() -> None:
    """The plain loop's trained 32-filter first layer (relative change 0.17-0.77) matched
    LeCun-normal: at 288 values a normal init's RMS allows 22 % and VE cannot tell 32
    filters from random. A uniform init's hard bound still tells."""
    torch.manual_seed(3)
    normal = torch.randn(32, 1, 3, 3) / 3.0  # σ = 1/sqrt(fan_in): LeCun-normal's values
    default = nn.Conv2d(1, 32, 3).weight.detach()  # PyTorch's default: uniform within ±1/3
    report = analyze({"normal.weight": normal, "default.weight": default})
    assert report.layer("normal").random_like is None and report.layer("normal").fresh_init is None
    assert report.layer("default").fresh_init == "PyTorch default (uniform ±1/sqrt(fan_in))"
