"""analyze(): per-layer measures, undefined reasons, summary, Report JSON."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from filterwatch import LayerSelection, NoConvLayersError, Report, analyze
from filterwatch.functional import orthogonality, sparsity, variance_entropy
from filterwatch.report import SCHEMA_VERSION
from tests.models import mobilenet_like, resnet18_like

REQUIRED_KEYS = {
    "name", "shape", "kernel_size", "groups", "n_filters", "depth", "sparsity",
    "variance_entropy", "variance_entropy_norm", "variance_entropy_clean", "orthogonality",
    "dead_channels", "nonfinite",
}


@pytest.mark.parametrize("precision,tol", [("float64", 1e-12), ("float32", 1e-6)])
def test_values_equal_the_functional_measures(precision: str, tol: float) -> None:
    torch.manual_seed(0)
    net = resnet18_like(16)
    report = analyze(net, precision=precision)  # type: ignore[arg-type]
    for layer in report.layers:
        w = dict(net.named_modules())[layer.name].weight
        assert layer.sparsity == pytest.approx(sparsity(w).value, abs=1e-12)
        assert layer.variance_entropy == pytest.approx(variance_entropy(w).entropy, abs=tol)
        assert layer.orthogonality == pytest.approx(orthogonality(w), abs=tol)


def test_report_json_has_the_contract_keys_and_round_trips(tmp_path) -> None:  # type: ignore[no-untyped-def]
    report = analyze(mobilenet_like())
    data = json.loads(report.to_json())
    assert data["schema_version"] == SCHEMA_VERSION
    for layer in data["layers"]:
        assert REQUIRED_KEYS <= set(layer)
    path = tmp_path / "r.json"
    report.save(path)
    again = Report.load(path)
    assert again.to_dict() == report.to_dict()
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left


def test_summary_weighted_means_and_worst() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(4, 8, 3), nn.Conv2d(8, 16, 3))
    with torch.no_grad():
        net[1].weight[:, :4] = 0  # half of layer 1's filters sparse
    report = analyze(net)
    s = report.summary
    assert s["n_filters"] == 32 + 128
    assert s["mean"]["sparsity"] == pytest.approx((0 * 32 + 0.5 * 128) / 160)
    assert s["worst"]["sparsity"][0] == {"layer": "1", "value": 0.5}
    ve = [layer.variance_entropy for layer in report.layers]
    assert s["worst"]["variance_entropy"][0]["value"] == min(ve)


def test_nonfinite_layer_reports_nulls_with_reasons() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3))
    with torch.no_grad():
        net[1].weight[0, 0, 0, 0] = float("nan")
        net[1].weight[1, 0, 0, 0] = float("inf")
    report = analyze(net)
    bad = report.layer("1")
    assert bad.nonfinite == 2
    for key in ("sparsity", "variance_entropy", "orthogonality", "weight_norm"):
        assert getattr(bad, key) is None
        assert "2 non-finite" in bad.undefined[key]
    assert report.layer("0").sparsity is not None
    json.loads(report.to_json())  # still valid JSON (no NaN)


def test_c_out_1_and_tiny_layers() -> None:
    report = analyze(nn.Sequential(nn.Conv2d(4, 1, 3)))
    layer = report.layer("0")
    assert layer.orthogonality is None and "C_out = 1" in layer.undefined["orthogonality"]
    assert layer.variance_entropy is not None


def test_dead_channels() -> None:
    net = nn.Sequential(nn.Conv2d(3, 6, 3))
    with torch.no_grad():
        net[0].weight[[1, 4]] = 0
    layer = analyze(net).layer("0")
    assert layer.dead_channels == 2 and layer.dead_channel_indices == [1, 4]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    net = resnet18_like(8)
    ref = analyze(net.to(dtype).float())
    got = analyze(net.to(dtype))
    assert next(net.parameters()).dtype == dtype  # model untouched
    for a, b in zip(ref.layers, got.layers, strict=True):
        assert a.variance_entropy == pytest.approx(b.variance_entropy, abs=1e-12)


def test_conv_kinds_all_measured() -> None:
    net = nn.Sequential(nn.Conv1d(4, 8, 5), nn.Conv3d(2, 4, 3), nn.ConvTranspose2d(4, 6, 3))
    report = analyze(net)
    assert [layer.kernel_size for layer in report.layers] == [[5], [3, 3, 3], [3, 3]]
    assert all(layer.variance_entropy is not None for layer in report.layers)
    assert report.layer("2").shape == [6, 4, 3, 3]


def test_pointwise_layers_on_request() -> None:
    net = nn.Sequential(nn.Conv2d(4, 8, 1))
    with pytest.raises(NoConvLayersError, match="include_pointwise=True"):
        analyze(net)
    layer = analyze(net, select=LayerSelection(include_pointwise=True)).layer("0")
    assert layer.variance_entropy == pytest.approx(0.0) and layer.variance_entropy_norm is None


def test_no_conv_layers() -> None:
    with pytest.raises(NoConvLayersError, match="got Sequential with none"):
        analyze(nn.Sequential(nn.Linear(3, 3)))


def test_lazy_and_meta_layers_are_reported_not_crashed() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.LazyConv2d(8, 3))
    report = analyze(net)
    lazy = report.layer("1")
    assert lazy.sparsity is None and "forward pass" in lazy.undefined["sparsity"]
    assert report.layer("0").sparsity is not None


def test_model_is_left_as_found() -> None:
    net = resnet18_like(8).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    analyze(net)
    assert net.training
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_random_network_is_random_like() -> None:
    torch.manual_seed(0)
    report = analyze(nn.Sequential(nn.Conv2d(64, 128, 3), nn.Conv2d(128, 128, 3)))
    assert report.summary["mean"]["variance_entropy_norm"] == pytest.approx(1.0, abs=0.02)
    assert report.summary["mean"]["variance_entropy"] == pytest.approx(math.log10(9), abs=0.01)


def test_bad_report_json() -> None:
    from filterwatch import InputError

    with pytest.raises(InputError, match="`schema_version` expected 1, got 99"):
        Report.from_json(json.dumps({"schema_version": 99, "layers": []}))
    with pytest.raises(InputError, match="expected JSON"):
        Report.from_json("{not json")
    with pytest.raises(InputError, match="`layers` expected a list, got NoneType"):
        Report.from_json(json.dumps({"schema_version": 1}))
