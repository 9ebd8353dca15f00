"""The batched pass (many layers of one filter size at once) equals the per-layer pass, reads
nothing on the host off the CPU, and costs a number of operations that does not grow with
the number of layers (issue 26)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from filterwatch.functional import scratch_memory
from filterwatch.functional.batched import group_stats_update
from filterwatch.functional.group_stats import LayerValues, group_values, layer_stats_compute
from filterwatch.functional.stats import layer_stats_update
from filterwatch.layers import LayerSelection, discover_layers
from filterwatch.measure.engine import measure_layers, reports_from_stats
from filterwatch.measure.options import MeasureOptions


def _zoo(k: tuple[int, ...] = (3, 3), seed: int = 0) -> list[torch.Tensor]:
    """Every kind of kernel the suite covers, of one filter size."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, *k, generator=g)

    sparse = r(16, 16)
    sparse[:8] *= 1e-4  # half the filters below 1 % of the peak
    dead = r(12, 6)
    dead[[2, 7]] = 0
    nan = r(8, 4)
    nan.view(-1)[5] = math.nan
    inf = r(8, 4)
    inf.view(-1)[0] = math.inf
    copies = r(1, 1).repeat(8, 4, *([1] * len(k)))  # VE 0
    scaled_copies = r(1, 1) * torch.linspace(0.5, 2.0, 32).reshape(8, 4, *([1] * len(k)))
    return [r(64, 32), r(64, 32) + 0.3, r(32, 1), r(96, 1), sparse, dead, nan, inf, copies,
            scaled_copies, torch.zeros(4, 4, *k), r(1, 8), r(1, 1), r(16, 8) * 1e-30,
            r(16, 8) * 1e25, r(96, 96)]


def _assert_values_close(got: list[LayerValues], want: list[LayerValues], tol: float = 1e-6) -> None:
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert (a.n, a.k, a.c_out, a.nonfinite, a.n_sparse, a.dead_indices) == \
               (b.n, b.k, b.c_out, b.nonfinite, b.n_sparse, b.dead_indices), i
        for field in ("variance_entropy", "variance_entropy_clean", "weight_norm", "filter_l1_mean",
                      "filter_l2_mean", "ortho_abs", "weight_sum", "peak"):
            va, vb = getattr(a, field), getattr(b, field)
            if vb is not None and math.isinf(vb):
                assert va == vb, (i, field, va, vb)
                continue
            if vb is None or math.isnan(vb):
                assert va is None or math.isnan(va), (i, field, va, vb)
                continue
            # a sum is as exact as the magnitudes it adds: weight_sum against Σ|w|
            scale = b.filter_l1_mean * b.n if field == "weight_sum" else max(1.0, abs(vb))
            if field == "ortho_abs":
                scale = max(1.0, b.c_out * (b.c_out - 1))  # orthogonality = 1 - this / pairs
            assert abs(va - vb) <= tol * scale, (i, field, va, vb)


@pytest.mark.parametrize("k", [(3, 3), (5,), (3, 3, 3), (1, 1)])
def test_batched_equals_per_layer_on_every_kind_of_layer(k: tuple[int, ...]) -> None:
    """Layers of fewer than 8192 filters: both passes sum in float64."""
    weights = _zoo(k)
    want = layer_stats_compute([layer_stats_update(w, 0.01) for w in weights])
    with scratch_memory():
        got = group_values([group_stats_update(weights, 0.01, small=True)])[0]
    _assert_values_close(got, want)


def test_batched_equals_per_layer_on_large_layers() -> None:
    """Layers of 8192 filters and more: both passes sum float32 chunks in float64."""
    weights = [w.repeat(1, 8192 // w.shape[1] // w.shape[0] + 1, 1, 1) for w in _zoo()
               if w.shape[0] > 1 and w[0, 0, 0, 0] != 0 and not w.isinf().any()]
    want = layer_stats_compute([layer_stats_update(w, 0.01) for w in weights])
    with scratch_memory():
        got = group_values([group_stats_update(weights, 0.01)])[0]
    _assert_values_close(got, want, tol=1e-5)


def test_a_single_float64_filter_is_left_as_it_was() -> None:
    w = torch.randn(1, 1, 3, 3, dtype=torch.float64)
    before = w.clone()
    layer_stats_update(w, 0.01)
    group_stats_update([w], 0.01)
    assert torch.equal(w, before)


def test_float64_weights_and_no_orthogonality() -> None:
    weights = [w.to(torch.float64) for w in _zoo()]
    want = layer_stats_compute([layer_stats_update(w, 0.05, orthogonality=False) for w in weights])
    got = group_values([group_stats_update(weights, 0.05, orthogonality=False)])[0]
    _assert_values_close(got, want)
    assert all(v.ortho_abs is None for v in got)


def test_known_values_through_the_batch() -> None:
    """Duplicated filters give VE 0, zeroed filters are sparse, dead channels are found."""
    copies = torch.randn(1, 1, 3, 3).repeat(8, 4, 1, 1)
    zeroed = torch.randn(16, 8, 3, 3)
    zeroed[3] = 0
    v = group_values([group_stats_update([copies, zeroed], 0.01, small=True)])[0]
    assert v[0].variance_entropy == 0.0
    assert v[1].n_sparse == 8 and v[1].dead_indices == [3]


def test_off_the_cpu_nothing_is_read_on_the_host() -> None:
    """Meta tensors have no values: any .item(), bool(), boolean-mask index or data-sized
    output raises. The batched pass runs through, so a CUDA graph can capture it."""
    weights = [torch.empty(s, device="meta") for s in
               ((64, 32, 3, 3), (32, 1, 3, 3), (32, 1, 3, 3), (600, 600, 3, 3))]
    for small in (True, False):
        g = group_stats_update(weights, 0.01, small=small)
        assert g.s2.shape == (4, 9, 9) and g.dead.shape == (728,) and g.ortho_abs is not None
        assert g.peak.device.type == "meta"


@settings(max_examples=8, deadline=None)
@given(order=st.permutations(range(6)), split=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_order_and_batching_do_not_change_a_layer(order: list[int], split: int, seed: int) -> None:
    """A layer's numbers do not depend on which layers share its batch, nor on their order."""
    weights = _zoo(seed=seed)[:6]
    alone = [group_values([group_stats_update([w], 0.01, small=True)])[0][0] for w in weights]
    shuffled = [weights[i] for i in order]
    parts = [shuffled[:split], shuffled[split:]]
    batched = [v for part in parts for v in group_values([group_stats_update(part, 0.01, small=True)])[0]]
    _assert_values_close(batched, [alone[i] for i in order], tol=1e-9)


def _model(layers: int) -> nn.Sequential:
    shapes = ((64, 64, 1), (32, 32, 1), (32, 32, 32), (96, 96, 96), (64, 32, 1), (16, 16, 1))
    return nn.Sequential(*[nn.Conv2d(c_in, c_out, 3, groups=g, bias=False)
                           for _ in range(layers // len(shapes)) for c_out, c_in, g in shapes])


def test_engine_batched_equals_engine_per_layer() -> None:
    torch.manual_seed(0)
    net = _model(12)
    with torch.no_grad():
        net[0].weight[:5] = 0
        net[4].weight[:, :3] *= 1e-4
    layers = discover_layers(net)
    batched = measure_layers(layers)
    per_layer = reports_from_stats(layers, [layer_stats_update(layer.kernel(), 0.01) for layer in layers])
    for a, b in zip(batched, per_layer, strict=True):
        for key in ("sparsity", "variance_entropy", "variance_entropy_norm", "variance_entropy_clean",
                    "orthogonality", "dead_channels", "weight_norm", "filter_l1_mean", "filter_l2_mean",
                    "init_bound_ratio"):
            va, vb = getattr(a, key), getattr(b, key)
            assert va == pytest.approx(vb, rel=1e-6, abs=1e-6), (a.name, key)
        assert a.fresh_init == b.fresh_init and a.dead_channel_indices == b.dead_channel_indices


class _Count(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.ops += 1
        return func(*args, **(kwargs or {}))


def _ops(layers: int) -> int:
    chosen = discover_layers(_model(layers), select=LayerSelection())
    options = MeasureOptions()
    options.run(chosen)  # layouts are made once per set of shapes
    with _Count() as count:
        options.run(chosen)
    return count.ops


def test_operations_barely_grow_with_the_layer_count() -> None:
    """48 small layers of 6 shapes cost at most twice the tensor operations of 6."""
    few, many = _ops(6), _ops(48)
    assert many <= 2 * few, (few, many)


def test_small_scratch_buffers_outlive_a_snapshot_and_large_ones_do_not() -> None:
    """Snapshot after snapshot, the small layers' buffers are reused (no fresh pages to fault
    in); a large buffer is freed when its block ends."""
    from filterwatch.functional._scratch import _KEEP_BYTES, _SCRATCH, _scratch

    cpu = torch.device("cpu")
    with scratch_memory():
        small = _scratch((64, 9), torch.float32, cpu, "test-small")
        large = _scratch((_KEEP_BYTES // 4 + 1,), torch.float32, cpu, "test-large")
        assert small is not None and large is not None
    kept = set(_SCRATCH.buffers)
    assert ("test-small", torch.float32) in kept and ("test-large", torch.float32) not in kept
    with scratch_memory():
        again = _scratch((64, 9), torch.float32, cpu, "test-small")
        assert again is not None and again.data_ptr() == small.data_ptr()
    assert _scratch((64, 9), torch.float32, cpu, "test-small") is None  # outside a block


def test_engine_batched_equals_per_layer_on_other_layouts() -> None:
    """Transposed, grouped, 1-D and 3-D convs, channels-last and half-precision weights."""
    torch.manual_seed(1)
    net = nn.ModuleList([nn.ConvTranspose2d(16, 24, 3, groups=2), nn.Conv2d(32, 32, 3, groups=4),
                         nn.Conv1d(8, 16, 5), nn.Conv3d(4, 8, 3), nn.Conv2d(16, 16, 3).half(),
                         nn.Conv2d(16, 32, 3).to(memory_format=torch.channels_last),
                         nn.Conv2d(16, 8, 3).to(torch.bfloat16)])
    layers = discover_layers(net)
    batched = measure_layers(layers)
    per_layer = reports_from_stats(layers, [layer_stats_update(layer.kernel(), 0.01) for layer in layers])
    assert len(batched) == 7
    for a, b in zip(batched, per_layer, strict=True):
        for key in ("sparsity", "variance_entropy", "variance_entropy_clean", "orthogonality",
                    "weight_norm", "filter_l1_mean", "filter_l2_mean", "dead_channels"):
            assert getattr(a, key) == pytest.approx(getattr(b, key), rel=1e-6, abs=1e-6), (a.name, key)
