"""Find convolution layers in a Module or a bare state_dict and give their kernels.

Every layer is described by a :class:`ConvLayer` whose :meth:`ConvLayer.kernel` returns the
weight in the canonical ``(C_out, C_in/groups, *kernel)`` layout, also for transposed convs
(PyTorch stores those as ``(C_in, C_out/groups, *kernel)``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.parameter import UninitializedParameter

from ..errors import InputError, NoConvLayersError
from . import sharded
from .facts import LayerFacts
from .selection import LayerSelection, check_selection, format_kernel_size
from .wrapped import effective_weights

__all__ = ["ConvLayer", "discover_layers", "layer_from_module", "select_layers", "strip_wrapper_prefix"]

_INNER_WRAPPERS = ("_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module")
_LEADING_WRAPPERS = ("module",)  # DDP's: a user's own submodule may be called "module" deeper in


def strip_wrapper_prefix(name: str) -> str:
    """Remove the names added by wrappers: DDP's ``module.`` in front; ``torch.compile``'s
    ``_orig_mod``, FSDP1's ``_fsdp_wrapped_module`` and activation checkpointing's
    ``_checkpoint_wrapped_module`` anywhere.

    Example:
        >>> strip_wrapper_prefix("module._orig_mod.layer1.0.conv1")
        'layer1.0.conv1'
        >>> strip_wrapper_prefix("_fsdp_wrapped_module.body._fsdp_wrapped_module")
        'body'
    """
    parts = [p for p in name.split(".") if p not in _INNER_WRAPPERS]
    while parts and parts[0] in _LEADING_WRAPPERS:
        parts = parts[1:]
    return ".".join(parts)


@dataclass(frozen=True)
class ConvLayer:
    """One convolution layer found in a model or state_dict.

    Attributes:
        name: module path without wrapper prefixes (``layer1.0.conv1``).
        shape: canonical weight shape ``(C_out, C_in/groups, *kernel)``.
        kernel_size: spatial size, e.g. ``(3, 3)``.
        groups: conv groups, ``None`` when unknown (a bare state_dict).
        kind: module class name, or ``"tensor"`` for a state_dict entry.
        transposed: whether the source weight was stored transposed (ConvTranspose).
        depth: index among all conv layers of the model, in order of appearance.
        depth_norm: ``depth / (number of conv layers - 1)``, in ``[0, 1]``.
        unavailable: why the kernel cannot be read (lazy, meta); empty when it can.
    """

    name: str
    shape: tuple[int, ...]
    kernel_size: tuple[int, ...]
    groups: int | None
    kind: str
    transposed: bool
    depth: int
    depth_norm: float
    unavailable: str = ""
    _tensor: torch.Tensor | None = field(default=None, repr=False, compare=False)
    _fetch: Callable[[], torch.Tensor] | None = field(default=None, repr=False, compare=False)

    @property
    def n_filters(self) -> int:
        """Number of kernel slices: ``C_out * C_in/groups``."""
        return self.shape[0] * self.shape[1]

    @property
    def kernel_numel(self) -> int:
        """``K``, the number of values in one kernel slice."""
        k = 1
        for s in self.kernel_size:
            k *= s
        return k

    @property
    def sharded(self) -> bool:
        """Whether reading the kernel gathers it from shards (FSDP, DTensor): such kernels are
        measured one at a time, while each is in hand."""
        return self._fetch is not None or (self._tensor is not None and sharded.is_sharded(self._tensor))

    def kernel(self) -> torch.Tensor:
        """The detached weight in ``(C_out, C_in/groups, *kernel)`` layout (a view, no copy
        for ordinary convs; the whole tensor, all-gathered, for a sharded DTensor weight:
        every rank must then read the kernels in the same order)."""
        if self.unavailable or self._tensor is None:
            raise InputError(f"layer `{self.name}`: kernel not available ({self.unavailable})")
        if self._fetch is not None:  # FSDP1: this layer's unit is summoned just for the copy
            w = self._fetch()
        else:
            w = sharded.full_tensor(self._tensor.detach())  # a DTensor shard is all-gathered
        if self.transposed:
            g = self.groups or 1
            c_in, c_out_g = w.shape[0], w.shape[1]
            w = w.reshape(g, c_in // g, c_out_g, *w.shape[2:]).transpose(1, 2)
            w = w.reshape(g * c_out_g, c_in // g, *w.shape[3:])
        return w


class _Entry(NamedTuple):
    """What discovery learns about one conv weight before it becomes a ConvLayer."""

    name: str
    kernel_size: tuple[int, ...]
    groups: int | None
    kind: str
    transposed: bool = False
    tensor: torch.Tensor | None = None
    shape: tuple[int, ...] | None = None  # None: from the tensor
    unavailable: str = ""
    fetch: Callable[[], torch.Tensor] | None = None


_LAZY = "lazy module not materialised yet; run one forward pass first"
_META = "weight is on the meta device; load real weights first"


def _module_entry(name: str, module: nn.modules.conv._ConvNd, weight: torch.Tensor | None,
                  unit: nn.Module | None = None) -> _Entry:
    base = _Entry(strip_wrapper_prefix(name), tuple(module.kernel_size), module.groups,
                  type(module).__name__, bool(module.transposed), weight)
    if weight is None or isinstance(weight, UninitializedParameter):
        return base._replace(tensor=None, unavailable=_LAZY,
                             shape=(module.out_channels, 0, *module.kernel_size))
    if unit is not None:  # FSDP1: the shape comes from the module, the kernel on demand
        shape = (module.out_channels, module.in_channels // module.groups, *module.kernel_size)
        base = base._replace(shape=shape, fetch=functools.partial(sharded.summoned_weight, unit, module))
    return base._replace(unavailable=_unavailable(weight))


def _module_entries(model: nn.Module) -> Iterable[_Entry]:
    units = sharded.fsdp1_units(model)  # conv module -> the FSDP1 unit that holds its flat shard
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            yield _module_entry(name, module, module.weight, units.get(module))


def layer_from_module(
    name: str, module: nn.Module, weight: torch.Tensor, depth: int = 0, total: int = 1
) -> ConvLayer:
    """A :class:`ConvLayer` for ``module`` with an explicit ``weight`` (e.g. the effective kernel
    seen by a forward hook, with parametrizations applied)."""
    if not isinstance(module, nn.modules.conv._ConvNd):
        raise InputError(f"`module` expected a conv module, got {type(module).__name__} ({name})")
    return _make_layer(_module_entry(name, module, weight), depth, total)


def _unavailable(t: torch.Tensor) -> str:
    """Why a kernel cannot be measured ("" when it can)."""
    if t.is_meta:
        return _META
    if t.numel() == 0:
        return f"the kernel is empty (shape {list(t.shape)})"
    return ""


def _state_dict_entries(state: Mapping[str, object], selection: LayerSelection) -> Iterable[_Entry]:
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    # what the file said beyond the tensors (an ONNX graph: groups, ConvTranspose)
    groups = state.groups if isinstance(state, LayerFacts) else {}
    said_transposed = state.transposed if isinstance(state, LayerFacts) else set()
    wrapped = effective_weights(tensors)
    for key, value in tensors.items():
        if key in wrapped:  # pruning / weight_norm / spectral_norm parts: the rebuilt kernel
            name, value, _ = wrapped[key]
        elif key.endswith("weight"):
            name = key[: -len("weight")].rstrip(".")
        else:
            continue
        if value.ndim < 3:
            continue
        measured, how = _as_float(value)
        if measured is None:
            continue
        value = measured
        if value.layout != torch.strided:  # sparse weights: measure the dense kernel
            value = value.to_dense()
        name = strip_wrapper_prefix(name)
        transposed = selection.is_transposed(name) or name in said_transposed
        kind = "tensor" + "".join(f" ({x})" for x in (how, "transposed" if transposed else "") if x)
        yield _Entry(name, tuple(int(s) for s in value.shape[2:]), groups.get(name), kind,
                     transposed=transposed, tensor=value, unavailable=_unavailable(value))


def _as_float(value: torch.Tensor) -> tuple[torch.Tensor | None, str]:
    """A weight to measure: float as it is; quantized (qint8...) dequantized; int8/uint8
    weights (their scale stored elsewhere) as float32, since every measure is invariant to a
    layer's scale. ``None`` for what is no weight (wider integers are indices or counts)."""
    if value.is_quantized:
        return value.dequantize(), "dequantized"
    if value.is_floating_point():
        return value, ""
    if value.dtype in (torch.int8, torch.uint8):
        return value.to(torch.float32), f"{str(value.dtype).removeprefix('torch.')} as float"
    return None, ""


def _make_layer(e: _Entry, depth: int, total: int) -> ConvLayer:
    shape = e.shape
    if shape is None:
        assert e.tensor is not None
        shape = tuple(int(s) for s in e.tensor.shape)
        if e.transposed:
            g = e.groups or 1
            shape = (shape[1] * g, shape[0] // g, *shape[2:])
    return ConvLayer(
        name=e.name, shape=shape, kernel_size=e.kernel_size, groups=e.groups, kind=e.kind,
        transposed=e.transposed, depth=depth, depth_norm=depth / (total - 1) if total > 1 else 0.0,
        unavailable=e.unavailable, _tensor=e.tensor, _fetch=e.fetch,
    )


def discover_layers(
    source: nn.Module | Mapping[str, torch.Tensor], *, select: LayerSelection | None = None
) -> list[ConvLayer]:
    """List the selected conv layers of a module or state_dict, in order of appearance.

    From a module: every ``Conv{1,2,3}d``, ``ConvTranspose{1,2,3}d`` and lazy variant (lazy
    ones before their first forward are listed with ``unavailable`` set). From a state_dict:
    every floating tensor of 3+ dims whose key ends in ``weight``. ``depth`` counts all conv
    layers, selected or not, so it means the same whatever the selection.

    Args:
        source: an ``nn.Module`` (possibly wrapped by ``torch.compile`` or DDP) or a state_dict.
        select: which layers (default: every layer except 1x1 ones).

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 1))
        >>> [(layer.name, layer.kernel_size) for layer in discover_layers(net)]
        [('0', (3, 3))]
        >>> [layer.name for layer in discover_layers(net, select=LayerSelection.everything())]
        ['0', '2']
    """
    selection = check_selection(select)
    if isinstance(source, nn.Module):
        entries = list(_module_entries(source))
    elif isinstance(source, Mapping):
        entries = list(_state_dict_entries(source, selection))
    else:
        raise InputError(
            f"`source` expected an nn.Module or a state_dict (mapping of name to tensor), got "
            f"{type(source).__name__}; hint: use filterwatch.load_state_dict(path) for files"
        )
    layers = [_make_layer(e, i, len(entries)) for i, e in enumerate(entries)]
    return [layer for layer in layers if selection.accepts(layer.name, layer.kernel_size)]


def select_layers(source: nn.Module | Mapping[str, torch.Tensor], select: LayerSelection,
                  what: str, everything: list[ConvLayer] | None = None) -> list[ConvLayer]:
    """The selected layers of ``source``; raises NoConvLayersError when there are none.
    ``everything``: its layers as ``discover_layers(source, select=LayerSelection.everything(
    select.transposed))`` lists them, when the caller has them already."""
    if everything is None:
        everything = discover_layers(source, select=LayerSelection.everything(select.transposed))
    if not everything:
        raise NoConvLayersError(
            f"`source` expected a model with conv layers, got {what} with none; "
            "hint: filterwatch measures Conv1d/2d/3d and ConvTranspose weights"
        )
    layers = [layer for layer in everything if select.accepts(layer.name, layer.kernel_size)]
    if not layers:
        found = sorted({format_kernel_size(layer.kernel_size) for layer in everything})
        raise NoConvLayersError(
            f"`select` (kernel sizes, include, exclude) expected to choose some of the "
            f"{len(everything)} conv layers of {what}, got none (kernel sizes present: "
            f"{', '.join(found)}); hint: 1x1 layers need include_pointwise=True or kernel size 1x1"
        )
    return layers


_PLAIN_FORWARDS = frozenset(c.forward for c in (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d))


def has_own_forward(module: nn.Module) -> bool:
    """Whether a conv module's class replaces ``forward`` (e.g. weight standardisation): it
    may convolve with a kernel other than its ``weight`` parameter."""
    return type(module).forward not in _PLAIN_FORWARDS


def own_forward_convs(model: nn.Module) -> list[str]:
    """The names of the conv layers of ``model`` whose class has its own ``forward``."""
    return [strip_wrapper_prefix(name) for name, m in model.named_modules()
            if isinstance(m, nn.modules.conv._ConvNd) and has_own_forward(m)]
