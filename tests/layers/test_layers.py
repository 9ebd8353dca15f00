"""Layer discovery from modules and bare state_dicts."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch import nn

from filterwatch import InputError, discover_layers
from filterwatch.layers import LayerSelection, parse_kernel_size, strip_wrapper_prefix
from tests.models import mobilenet_like, resnet18_like


def _zoo() -> nn.Module:
    return nn.ModuleDict({
        "c1": nn.Conv1d(2, 4, 5),
        "c2": nn.Conv2d(4, 6, 3),
        "c3": nn.Conv3d(2, 4, 3),
        "t1": nn.ConvTranspose1d(4, 6, 3),
        "t2": nn.ConvTranspose2d(4, 6, 3, groups=2),
        "t3": nn.ConvTranspose3d(2, 4, 3),
        "grouped": nn.Conv2d(8, 12, 3, groups=4),
        "depthwise": nn.Conv2d(8, 8, 3, groups=8),
        "pointwise": nn.Conv2d(8, 16, 1),
        "linear": nn.Linear(4, 4),
    })


def test_every_conv_kind_is_found_with_canonical_shapes() -> None:
    layers = {layer.name: layer for layer in discover_layers(_zoo(), select=LayerSelection.everything())}
    assert set(layers) == {"c1", "c2", "c3", "t1", "t2", "t3", "grouped", "depthwise", "pointwise"}
    assert layers["c1"].shape == (4, 2, 5) and layers["c1"].kernel_size == (5,)
    assert layers["c3"].shape == (4, 2, 3, 3, 3)
    assert layers["t1"].shape == (6, 4, 3) and layers["t1"].transposed
    assert layers["t2"].shape == (6, 2, 3, 3) and layers["t2"].groups == 2
    assert layers["grouped"].shape == (12, 2, 3, 3) and layers["grouped"].n_filters == 24
    assert layers["depthwise"].shape == (8, 1, 3, 3)
    for layer in layers.values():
        assert tuple(layer.kernel().shape) == layer.shape


def test_transposed_kernel_puts_output_channels_first() -> None:
    conv = nn.ConvTranspose2d(4, 6, 3, groups=2, bias=False)
    layer = discover_layers(conv)[0]
    k = layer.kernel()
    # output channel j of group g is weight[g*2:(g+1)*2, j - g*3]: check one explicitly
    assert torch.equal(k[4], conv.weight[2:4, 1].detach())
    assert torch.equal(k[0], conv.weight[0:2, 0].detach())


def test_pointwise_left_out_by_default_and_depth_counts_all() -> None:
    layers = discover_layers(resnet18_like(8))
    all_layers = discover_layers(resnet18_like(8), select=LayerSelection.everything())
    assert len(all_layers) == 20 and len(layers) == 17
    assert [layer.depth for layer in all_layers] == list(range(20))
    assert all_layers[-1].depth_norm == pytest.approx(1.0) and all_layers[0].depth_norm == pytest.approx(0.0)
    assert all(layer.kernel_size != (1, 1) for layer in layers)


def test_selection_by_kernel_size_and_globs() -> None:
    net = resnet18_like(8)
    sevens = discover_layers(net, select=LayerSelection(kernel_sizes=["7x7"]))
    assert {layer.kernel_size for layer in sevens} == {(7, 7)}
    assert len(discover_layers(net, select=LayerSelection(kernel_sizes=["1x1"]))) == 3  # explicit size wins
    inc = discover_layers(net, select=LayerSelection(include=["1.*"]))
    assert [layer.name for layer in inc] == ["1.0", "1.3"]
    exc = discover_layers(net, select=LayerSelection(exclude=["*.3", "0"]))
    assert all(not layer.name.endswith(".3") and layer.name != "0" for layer in exc)


def test_mobilenet_depthwise_groups() -> None:
    layers = discover_layers(mobilenet_like())
    assert [layer.groups for layer in layers] == [1, 32, 64, 128, 128]


def test_state_dict_discovery() -> None:
    sd = _zoo().state_dict()
    sd["some.embedding.weight"] = torch.randn(10, 4)
    sd["int.weight"] = torch.zeros(2, 2, 3, dtype=torch.int64)
    names = [layer.name for layer in discover_layers(sd, select=LayerSelection.everything())]
    assert names == ["c1", "c2", "c3", "t1", "t2", "t3", "grouped", "depthwise", "pointwise"]
    layer = discover_layers(sd)[0]
    assert layer.groups is None and layer.kind == "tensor"


def test_compile_and_ddp_prefixes_are_removed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3))
    compiled = torch.compile(net)
    assert [layer.name for layer in discover_layers(compiled)] == ["0", "1"]
    sd = {f"module._orig_mod.{k}": v for k, v in net.state_dict().items()}
    assert [layer.name for layer in discover_layers(sd)] == ["0", "1"]
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(net)
        assert [layer.name for layer in discover_layers(ddp)] == ["0", "1"]
    finally:
        dist.destroy_process_group()


def test_lazy_and_meta_layers_are_listed_as_unavailable() -> None:
    lazy = nn.Sequential(nn.LazyConv2d(8, 3))
    (layer,) = discover_layers(lazy)
    assert "forward pass" in layer.unavailable
    with pytest.raises(InputError, match="not available"):
        layer.kernel()
    lazy(torch.randn(1, 3, 8, 8))
    (layer,) = discover_layers(lazy)
    assert not layer.unavailable and layer.shape == (8, 3, 3, 3)
    with torch.device("meta"):
        meta = nn.Conv2d(3, 8, 3)
    assert "meta device" in discover_layers(meta)[0].unavailable


def test_bad_sources_and_kernel_sizes() -> None:
    with pytest.raises(InputError, match=r"`source` expected an nn\.Module or a state_dict"):
        discover_layers([1, 2])  # type: ignore[arg-type]
    with pytest.raises(InputError, match="`kernel_size` expected"):
        parse_kernel_size("3by3")
    assert parse_kernel_size((3, 3)) == (3, 3)
    assert strip_wrapper_prefix("module.module.x") == "x"
