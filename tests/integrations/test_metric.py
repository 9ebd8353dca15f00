"""FilterMetrics: a torchmetrics Metric over sufficient statistics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from filterwatch import FilterMetrics, InputError, analyze
from tests.models import mobilenet_like, resnet18_like

KEYS = ("sparsity", "variance_entropy", "variance_entropy_norm", "variance_entropy_clean",
        "dead_channels", "weight_norm", "filter_l1_mean", "filter_l2_mean")


def _close(a: object, b: object, keys: tuple[str, ...] = KEYS, tol: float = 1e-9) -> None:
    for la, lb in zip(a.layers, b.layers, strict=True):  # type: ignore[attr-defined]
        for key in keys:
            va, vb = getattr(la, key), getattr(lb, key)
            assert (va is None) == (vb is None), (la.name, key)
            if va is not None:
                assert va == pytest.approx(vb, rel=tol, abs=tol), (la.name, key)


def test_compute_equals_analyze() -> None:
    torch.manual_seed(0)
    net = resnet18_like(16)
    with torch.no_grad():
        net[1][0].weight[:8] = 0  # dead channels and sparse filters
    metric = FilterMetrics(net)
    metric.update(net)
    # the metric sums one layer at a time, analyze() batches layers of equal filter size:
    # the two passes agree to 1e-6 (sums in another order and precision)
    _close(metric.compute(), analyze(net), (*KEYS, "orthogonality"), tol=1e-6)


def test_row_shards_merged_equal_the_unsharded_model() -> None:
    """Each 'process' holds half of every layer's output channels; the states reduce with
    their dist_reduce_fx (merge_state applies exactly those reductions)."""
    torch.manual_seed(0)
    net = mobilenet_like()
    full = {k: v for k, v in net.state_dict().items() if v.ndim == 4}
    shards = [{k: v[i::2] for k, v in full.items()} for i in range(2)]
    metrics = [FilterMetrics(full, sharded=True) for _ in range(2)]
    for m, shard in zip(metrics, shards, strict=True):
        m.update(shard)
    metrics[0].merge_state(metrics[1])
    merged = metrics[0].compute()
    _close(merged, analyze(full), KEYS, tol=1e-6)
    assert merged.layer("0").orthogonality is None
    assert "sharded" in merged.layer("0").undefined["orthogonality"]


def test_sharded_sparsity_uses_the_global_peak() -> None:
    from filterwatch.measure import layer_stats

    torch.manual_seed(0)
    w = torch.randn(8, 4, 3, 3)
    w[0, 0, 0, 0] = 100.0  # the global peak lives in shard 0
    w[4:] *= 0.005         # shard 1's filters are sparse, but only relative to that peak
    full = {"c.weight": w}
    want = analyze(full).layer("c").sparsity
    assert want is not None and want >= 0.5
    m0, m1 = FilterMetrics(full, sharded=True), FilterMetrics(full, sharded=True)
    m0.update({"c.weight": w[:4]})
    local_only = layer_stats(w[4:], 0.01, orthogonality=False)
    assert int(local_only.n_sparse) == 0  # with its own peak, shard 1 would see no sparse filter
    # what update() does on rank 1 after the all-reduce(max) of the peaks:
    m1._accumulate(0, layer_stats(w[4:], 0.01, orthogonality=False, peak=w.abs().max().double()))
    m1.updates += 1
    m0.merge_state(m1)
    assert m0.compute().layer("c").sparsity == pytest.approx(want)


def test_pooling_two_models() -> None:
    torch.manual_seed(0)
    a, b = resnet18_like(8), resnet18_like(8)
    metric = FilterMetrics(a, orthogonality=False)
    metric.update(a)
    metric.update(b)
    pooled = metric.compute()
    both = {f"{k}": torch.cat([a.state_dict()[k], b.state_dict()[k]]) for k in a.state_dict()
            if a.state_dict()[k].ndim == 4}
    _close(pooled, analyze(both), ("variance_entropy", "variance_entropy_norm", "filter_l1_mean"),
           tol=1e-6)


def test_reset_and_errors() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3))
    metric = FilterMetrics(net)
    metric.update(net)
    metric.reset()
    assert int(metric.updates) == 0
    with pytest.raises(InputError, match="expected the layers the metric was built with"):
        metric.update(nn.Sequential(nn.Linear(2, 2), nn.Conv1d(1, 1, 3)))
