"""ONNX files wherever a checkpoint is accepted (issue 28, item 6): weights from
initializers, Constant nodes and Identity chains, quantized convs dequantized (or refused with
a line naming quantization), external data only from the model's folder, and an export that
equals the same weights saved as a state_dict."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from filterwatch import analyze
from filterwatch.errors import InputError
from filterwatch.layers import load_state_dict
from tests.golden_helpers import _run

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _weights() -> list[np.ndarray]:
    g = np.random.default_rng(0)
    shapes = ((8, 3, 3, 3), (16, 8, 3, 3), (16, 1, 3, 3))
    return [g.standard_normal(shape).astype(np.float32) for shape in shapes]


def _model(nodes: list, initializers: list, path: Path, **save: object) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", [x], [y], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, str(path), **save)
    return path


def _convs(weights: list[np.ndarray], source: str) -> tuple[list, list]:
    """Three convs whose weights come from initializers, Constant nodes or Identity chains."""
    nodes, inits, x = [], [], "x"
    for i, w in enumerate(weights):
        name = f"conv{i}.weight"
        groups = 16 if w.shape[1] == 1 else 1
        if source == "initializer":
            inits.append(numpy_helper.from_array(w, name))
        elif source == "constant":
            nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(w)))
        else:  # initializer -> Identity -> Identity
            inits.append(numpy_helper.from_array(w, f"raw{i}"))
            nodes += [helper.make_node("Identity", [f"raw{i}"], [f"mid{i}"]),
                      helper.make_node("Identity", [f"mid{i}"], [name])]
        out = "y" if i == len(weights) - 1 else f"h{i}"
        nodes.append(helper.make_node("Conv", [x, name], [out], name=f"Conv_{i}", group=groups))
        x = out
    return nodes, inits


@pytest.mark.parametrize("source", ["initializer", "constant", "identity"])
def test_conv_weights_wherever_the_exporter_put_them(tmp_path: Path, source: str) -> None:
    weights = _weights()
    path = _model(*_convs(weights, source), tmp_path / "m.onnx")
    state = load_state_dict(path)
    assert list(state) == ["conv0.weight", "conv1.weight", "conv2.weight"]  # graph order
    for got, want in zip(state.values(), weights, strict=True):
        assert torch.equal(got, torch.from_numpy(want))


def test_an_export_equals_the_same_weights_as_a_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 32, 3), nn.ReLU(),
                          nn.Conv2d(32, 32, 3, groups=32), nn.ReLU(), nn.Conv2d(32, 8, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, 32, 32),), str(tmp_path / "m.onnx"), dynamo=False)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    reports = []
    for name in ("m.onnx", "m.pt"):
        code, out, err = _run("scan", str(tmp_path / name), "--format", "json", "-q")
        assert code == 0, err
        reports.append(json.loads(out)["layers"])
    for a, b in zip(*reports, strict=True):
        assert a["name"] == b["name"] and a["shape"] == b["shape"]
        for key in ("sparsity", "variance_entropy", "orthogonality", "weight_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9)


def _quantized(per_channel: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    w = _weights()[1]
    scale = (np.abs(w).reshape(16, -1).max(axis=1) / 127).astype(np.float32) if per_channel else \
        np.array(np.abs(w).max() / 127, dtype=np.float32)
    s = scale.reshape(-1, 1, 1, 1) if per_channel else scale
    zero = np.zeros(scale.shape, dtype=np.int8)
    q = np.clip(np.round(w / s), -127, 127).astype(np.int8)
    return q, scale, zero, q.astype(np.float32) * s


@pytest.mark.parametrize("per_channel", [False, True])
def test_dequantize_linear_weights_are_measured_dequantized(tmp_path: Path, per_channel: bool) -> None:
    q, scale, zero, want = _quantized(per_channel)
    inits = [numpy_helper.from_array(q, "wq"), numpy_helper.from_array(scale, "ws"),
             numpy_helper.from_array(zero, "wz")]
    nodes = [helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
             helper.make_node("Conv", ["x8", "w"], ["y"], name="qconv")]
    state = load_state_dict(_model(nodes, inits, tmp_path / "q.onnx"))
    assert list(state) == ["qconv.weight"]
    assert torch.allclose(state["qconv.weight"], torch.from_numpy(want))


def test_qlinearconv_is_dequantized_and_convinteger_refused(tmp_path: Path) -> None:
    q, scale, zero, want = _quantized(True)
    inits = [numpy_helper.from_array(q, "wq"), numpy_helper.from_array(scale, "ws"),
             numpy_helper.from_array(zero, "wz")]
    qlinear = helper.make_node("QLinearConv", ["x", "xs", "xz", "wq", "ws", "wz", "ys", "yz"], ["y"],
                               name="ql")
    state = load_state_dict(_model([qlinear], inits, tmp_path / "ql.onnx"))
    assert torch.allclose(state["ql.weight"], torch.from_numpy(want))
    integer = helper.make_node("ConvInteger", ["x", "wq", "xz", "wz"], ["y"], name="ci")
    path = _model([integer], inits, tmp_path / "ci.onnx")
    with pytest.raises(InputError, match=r"quantized conv \(ConvInteger\)"):
        load_state_dict(path)
    code, _, err = _run("scan", str(path), "-q")
    assert code == 2 and "quantized" in err and len(err.strip().splitlines()) == 1


def test_external_data_only_from_the_models_folder(tmp_path: Path) -> None:
    weights = _weights()
    folder = tmp_path / "model"
    folder.mkdir()
    path = _model(*_convs(weights, "initializer"), folder / "m.onnx", save_as_external_data=True,
                  all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    assert torch.equal(load_state_dict(path)["conv1.weight"], torch.from_numpy(weights[1]))
    model = onnx.load(str(path), load_external_data=False)
    for t in model.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = "../secret.bin"
    (tmp_path / "secret.bin").write_bytes((folder / "weights.bin").read_bytes())
    onnx.save_model(model, str(folder / "evil.onnx"))
    with pytest.raises(InputError, match="outside the model's folder"):
        load_state_dict(folder / "evil.onnx")


def test_weights_computed_in_the_graph_and_corrupt_files_are_refused(tmp_path: Path) -> None:
    w = _weights()[0]
    nodes = [helper.make_node("Mul", ["a", "b"], ["w"]),
             helper.make_node("Conv", ["x", "w"], ["y"], name="c")]
    inits = [numpy_helper.from_array(w, "a"), numpy_helper.from_array(np.ones_like(w), "b")]
    with pytest.raises(InputError, match="computed in the graph"):
        load_state_dict(_model(nodes, inits, tmp_path / "mul.onnx"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(InputError, match="ONNX"):
        load_state_dict(bad)


def test_reference_from_onnx_files_works_with_check(tmp_path: Path) -> None:
    weights = _weights()
    path = _model(*_convs(weights, "initializer"), tmp_path / "m.onnx")
    ref = tmp_path / "ref.safetensors"
    code, _, err = _run("reference", "build", str(path), "-o", str(ref), "-q")
    assert code == 0, err
    code, _, err = _run("check", str(path), "--reference", str(ref), "-q")
    assert code in (0, 1), err
    report = analyze(str(path))
    assert [layer.name for layer in report.layers] == ["conv0", "conv1", "conv2"]


def test_groups_and_transposed_convs_come_from_the_graph(tmp_path: Path) -> None:
    """What a state_dict cannot say, the graph does: a depthwise conv's groups and a
    ConvTranspose's layout, so the report has the module's own shape and groups."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 16, 3, groups=16),
                          nn.Conv2d(16, 32, 3, groups=4), nn.ConvTranspose2d(32, 8, 3, groups=2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, 16, 16),), str(tmp_path / "m.onnx"), dynamo=False)
    got, want = analyze(str(tmp_path / "m.onnx")), analyze(model)
    for a, b in zip(got.layers, want.layers, strict=True):
        assert (a.name, a.groups, a.shape) == (b.name, b.groups, b.shape)
        assert a.variance_entropy == pytest.approx(b.variance_entropy, rel=1e-9)
    assert "transposed" in got.layers[3].kind
