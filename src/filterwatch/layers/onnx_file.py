"""Conv weights of an ONNX file, read with the ``onnx`` package (``filterwatch[onnx]``);
nothing in the file is run.

Every ``Conv`` and ``ConvTranspose`` node, in graph order (which is execution order, so depth
is right), gives its weight input, found wherever the exporter put it: an initializer, a
``Constant`` node, or either behind a chain of ``Identity`` nodes (or ``Cast``/``Reshape`` of
an initializer's own shape). Quantized weights are measured dequantized: ``QLinearConv``
(weight, scale, zero point; per tensor or per output channel) and a ``DequantizeLinear`` of
int8/uint8 weights feeding a ``Conv``. ``ConvInteger`` has no weight scale: it is refused
with a line that names quantization, so a quantized model never passes with nothing
measured. External data is read only from inside the model's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from .facts import LayerFacts

__all__ = ["load_onnx"]

_CONVS = ("Conv", "ConvTranspose", "QLinearConv")
_PASS_THROUGH = ("Identity", "Cast")


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise InputError("ONNX files expected the `onnx` package, got it not installed; hint: "
                         "pip install 'filterwatch[onnx]'") from None
    return onnx


def _tensors(graph: Any) -> Any:
    """Every tensor a graph stores: initializers and attribute tensors, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def _check_external(model: Any, folder: Path, path: Path) -> None:
    """External data must lie inside the model's folder (no absolute paths, no ``..``)."""
    root = folder.resolve()
    for tensor in _tensors(model.graph):
        if tensor.data_location != 1:  # TensorProto.EXTERNAL
            continue
        where = {e.key: e.value for e in tensor.external_data}.get("location", "")
        target = (folder / where).resolve()
        if not where or Path(where).is_absolute() or not target.is_relative_to(root):
            raise InputError(f"{path}: its tensor {tensor.name!r} keeps its data in {where!r}, outside "
                             f"the model's folder; hint: external data must sit next to the model")
        if not target.is_file():
            raise InputError(f"{path}: its tensor {tensor.name!r} keeps its data in {where!r}, which is "
                             "missing")


def _read(path: Path) -> Any:
    onnx = _import_onnx()
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends: a corrupt or foreign file
        raise InputError(f"{path}: expected an ONNX model, got a file onnx cannot parse "
                         f"({type(exc).__name__})") from None
    _check_external(model, path.parent, path)
    try:
        onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
    except OSError as exc:
        raise InputError(f"{path}: its external data cannot be read ({exc})") from None
    return model


class _Graph:
    """Where each value name of the main graph comes from: initializers, Constant nodes and
    the nodes that produce it."""

    def __init__(self, model: Any, path: Path) -> None:
        from onnx import numpy_helper

        self.path = path
        self.numpy_helper = numpy_helper
        self.initializers = {t.name: t for t in model.graph.initializer}
        self.producer = {out: node for node in model.graph.node for out in node.output}

    def constant(self, name: str, depth: int = 0) -> torch.Tensor | None:
        """The value of ``name`` if it is a constant (through pass-through nodes), else None."""
        if depth > 64:
            return None
        if name in self.initializers:
            return self._tensor(self.initializers[name])
        node = self.producer.get(name)
        if node is None:
            return None
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    return self._tensor(attr.t)
            return None
        if node.op_type in _PASS_THROUGH and node.input:
            value = self.constant(node.input[0], depth + 1)
            if value is not None and node.op_type == "Cast" and value.is_floating_point():
                return value.to(torch.float32)
            return value
        if node.op_type == "DequantizeLinear":
            return self._dequantized(node, depth)
        return None

    def _tensor(self, proto: Any) -> torch.Tensor:
        return torch.from_numpy(self.numpy_helper.to_array(proto).copy())

    def _dequantized(self, node: Any, depth: int) -> torch.Tensor | None:
        values = [self.constant(n, depth + 1) if n else None for n in node.input]
        x, scale = values[0], values[1] if len(values) > 1 else None
        zero = values[2] if len(values) > 2 else None
        if x is None or scale is None:
            return None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        return _dequantize(x, scale, zero, axis)

    def name_of(self, node: Any, weight_name: str) -> str:
        """The layer's name: the weight's own name (``features.0.weight`` from torch's
        exporter) without ``.weight``, else the node's name, else its output's."""
        base = weight_name.removesuffix(".weight") if weight_name.endswith(".weight") else ""
        return base or node.name or node.output[0]


def _dequantize(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, axis: int) -> torch.Tensor:
    """``(x - zero) * scale``, per tensor or along ``axis`` (ONNX's DequantizeLinear)."""
    xf = x.to(torch.float64)
    z = torch.zeros(()) if zero is None else zero.to(torch.float64)
    s = scale.to(torch.float64)
    if s.ndim == 1 and s.numel() > 1:
        shape = [1] * xf.ndim
        shape[axis % xf.ndim] = -1
        s, z = s.reshape(shape), (z.reshape(shape) if z.ndim == 1 else z)
    return ((xf - z) * s).to(torch.float32)


def load_onnx(path: Path) -> LayerFacts:
    """The conv weights of an ONNX model as ``{"<layer>.weight": tensor}``, in graph order,
    with each layer's groups (the node's ``group`` attribute) and which are ConvTranspose.

    Raises:
        InputError: not an ONNX model, external data outside its folder, a ``ConvInteger``
            (quantized without a weight scale), or a conv whose weight is not a constant.
    """
    model = _read(path)
    graph = _Graph(model, path)
    state: dict[str, torch.Tensor] = {}
    groups: dict[str, int] = {}
    transposed: set[str] = set()
    for node in model.graph.node:
        if node.op_type == "ConvInteger":
            raise InputError(
                f"{path}: node {node.name or node.output[0]!r} is a quantized conv (ConvInteger) "
                "without a weight scale, which filterwatch cannot dequantize; hint: measure the "
                "float model, or export with QLinearConv or DequantizeLinear")
        if node.op_type not in _CONVS:
            continue
        index = 3 if node.op_type == "QLinearConv" else 1
        if len(node.input) <= index:
            continue
        weight = graph.constant(node.input[index])
        if weight is None:
            raise InputError(
                f"{path}: the weight of {node.op_type} node {node.name or node.output[0]!r} is "
                "computed in the graph, not stored; hint: fold constants before export "
                "(onnxsim, or torch.onnx.export(..., do_constant_folding=True))")
        if node.op_type == "QLinearConv":
            scale, zero = graph.constant(node.input[4]), graph.constant(node.input[5])
            if scale is None:
                raise InputError(f"{path}: QLinearConv node {node.name!r} has no constant weight scale")
            weight = _dequantize(weight, scale, zero, 0)
        elif not weight.is_floating_point():
            raise InputError(
                f"{path}: the weight of {node.op_type} node {node.name or node.output[0]!r} is "
                f"{weight.dtype} without a dequantization; hint: measure the float model")
        name = graph.name_of(node, node.input[index])
        key = f"{name}.weight"
        while key in state:  # a weight shared by two nodes, or two nameless nodes
            key = f"{name}.{len(state)}.weight"
        state[key] = weight
        layer = key.removesuffix(".weight")
        groups[layer] = next((int(a.i) for a in node.attribute if a.name == "group"), 1)
        if node.op_type == "ConvTranspose":
            transposed.add(layer)
    return LayerFacts(state, groups, transposed)
