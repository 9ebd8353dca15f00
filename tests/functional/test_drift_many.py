"""drift_many: many filter sets in one pass give exactly what drift() gives, set by set."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

from filterwatch import Reference, analyze
from filterwatch.errors import UndefinedMeasureError
from filterwatch.functional import drift, drift_basis, scratch_memory
from filterwatch.functional.drift_many import drift_counts_fixed, drift_from_counts, drift_many
from filterwatch.layers import discover_layers
from filterwatch.reference import ReferencePlan
from tests.models import random_layer, trained_like_layer


def _assert_same(currents: list[torch.Tensor], refs: list) -> list[bool]:  # type: ignore[type-arg]
    """Every set equals drift(): same counts, same value; returns which the batch took."""
    with scratch_memory():
        got = drift_many(currents, refs)
    taken = []
    for g, cur, ref in zip(got, currents, refs, strict=True):
        try:
            want = drift(cur, ref)
        except UndefinedMeasureError:
            assert g is None
            taken.append(False)
            continue
        taken.append(g is not None)
        if g is not None:
            assert g.counts is not None and want.counts is not None
            assert torch.equal(g.counts, want.counts)
            assert g.value == pytest.approx(want.value, rel=1e-12, abs=1e-12)
            assert torch.allclose(g.components, want.components, rtol=1e-12, atol=1e-12)
    return taken


def _moved_sets(seed: int, log_scale: float, sizes: list[tuple[int, int]]
                ) -> tuple[list, list[torch.Tensor]]:  # type: ignore[type-arg]
    """References of trained-like layers, and the layers moved a little and scaled."""
    refs, currents = [], []
    for j, (c_out, c_in) in enumerate(sizes):
        ref = trained_like_layer(c_out, c_in, rank=min(3, c_out), noise=0.1, seed=seed + j)
        cur = (ref + 0.05 * random_layer(c_out, c_in, seed=seed + 100 + j)) * 10.0 ** log_scale
        refs.append(drift_basis(ref))
        currents.append(cur.float())
    return refs, currents


@settings(max_examples=20, deadline=None)
@example(seed=0, log_scale=0.0, sizes=[(2, 1), (2, 1)])  # a 2-filter reference: edges at 0
@given(seed=st.integers(0, 10_000), log_scale=st.floats(-30, 30),
       sizes=st.lists(st.sampled_from([(2, 1), (8, 1), (16, 4), (64, 32), (96, 1)]), min_size=1, max_size=6))
def test_batch_counts_equal_drift_counts(seed: int, log_scale: float, sizes: list[tuple[int, int]]) -> None:
    refs, currents = _moved_sets(seed, log_scale, sizes)
    taken = _assert_same(currents, refs)
    if abs(log_scale) < 10:  # in the float range's middle the batch takes every set
        assert all(taken)


def test_sets_on_bin_edges_and_other_kernel_sizes() -> None:
    gen = torch.Generator().manual_seed(0)
    quantised = [torch.randint(-3, 4, (n, 9), generator=gen).float() / 4 for n in (512, 40, 4096)]
    refs = [drift_basis(q) for q in quantised]
    currents = [torch.randint(-3, 4, (n, 9), generator=gen).float() / 4 for n in (300, 4096, 7)]
    assert all(_assert_same(currents, refs))
    fives = [torch.randn(32, 8, 5, 5, generator=gen) for _ in range(3)]
    assert all(_assert_same([f + 0.1 for f in fives], [drift_basis(f) for f in fives]))
    doubles = [torch.randn(16, 4, 3, 3, generator=gen, dtype=torch.float64) for _ in range(2)]
    assert all(_assert_same([d * 1.5 for d in doubles], [drift_basis(d) for d in doubles]))


def test_sets_the_batch_leaves_to_drift() -> None:
    """NaN/Inf (drift() raises), values near the float range's ends and a tiny filter among
    normal ones are left to drift(); the others in the batch are still taken."""
    torch.manual_seed(0)
    base = [torch.randn(32, 8, 3, 3) for _ in range(5)]
    refs = [drift_basis(b) for b in base]
    nan, huge, tiny = base[1].clone(), base[2] * 1e30, base[3].clone()
    nan.view(-1)[7] = math.nan
    tiny[0, 0] = 1e-25
    taken = _assert_same([base[0] * 0.9, nan, huge, tiny, base[4] + 0.2], refs)
    assert taken == [True, False, False, False, True]


def test_large_sets_on_a_cpu_and_what_drift_refuses_are_left_to_drift() -> None:
    torch.manual_seed(0)
    big, small = torch.randn(256, 128, 3, 3), torch.randn(16, 8, 3, 3)  # big: more than 2^18 values
    ref = drift_basis(small)
    odd = [torch.zeros(0, 8, 3, 3), small.long(), torch.randn(16, 8, 5, 5)]  # empty, int, K=25
    got = drift_many([big * 1.1, small * 1.1, *odd],
                     [drift_basis(big), ref, ref, ref, ref])
    assert got[0] is None and got[1] is not None and got[2:] == [None, None, None]
    assert drift_many([], []) == []


def test_compare_many_equals_compare_layer_by_layer() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 16, 3), nn.Conv2d(16, 32, 5),
                        nn.Conv2d(32, 32, 3, groups=32), nn.Conv2d(32, 8, 3))
    reference = Reference.build(net)
    with torch.no_grad():
        for m in net:
            m.weight.add_(0.05 * torch.randn_like(m.weight))
        net[4].weight[0, 0, 0, 0] = math.nan
    layers = discover_layers(net)
    plan = ReferencePlan(layers, reference)
    items = [(i, layer.kernel()) for i, layer in enumerate(layers)]
    many = plan.compare_many(items)
    for i, weight in items:
        one = plan.compare(i, weight)
        assert many[i]._replace(counts=None) == one._replace(counts=None)
        assert (many[i].counts is None) == (one.counts is None)
        if one.counts is not None:
            assert torch.equal(many[i].counts, one.counts)
    report = analyze(net, reference=reference)  # the engine takes the batch
    assert [r.drift for r in report.layers] == [many[i].drift for i, _ in items]
    assert "non-finite" in report.layers[4].undefined["drift"]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), log_scale=st.floats(-9, 9),  # inside the safe window
       sizes=st.lists(st.sampled_from([(8, 1), (16, 4), (64, 32), (96, 1)]), min_size=1, max_size=5))
def test_fixed_counts_for_a_captured_snapshot_equal_drift(seed: int, log_scale: float,
                                                          sizes: list[tuple[int, int]]) -> None:
    """The capturable counting (float64 positions, fixed-size histograms, no host read)
    gives drift()'s counts on weights away from exact bin edges."""
    refs, currents = _moved_sets(seed, log_scale, sizes)
    got = drift_from_counts(drift_counts_fixed([c.reshape(-1, 9) for c in currents], refs), refs)
    for g, cur, ref in zip(got, currents, refs, strict=True):
        want = drift(cur, ref)
        assert g is not None and torch.equal(g.counts, want.counts)
        assert g.value == pytest.approx(want.value, rel=1e-12, abs=1e-12)


def test_fixed_counts_leave_what_drift_must_take_to_it() -> None:
    torch.manual_seed(0)
    ws = [torch.randn(16, 8, 3, 3) for _ in range(4)]
    refs = [drift_basis(w) for w in ws]
    cur = [w.clone() for w in ws]
    cur[0][0, 0, 0, 0] = math.nan
    cur[1][1] *= 1e-25  # a tiny filter among normal ones: drift() rescales it
    cur[2] *= 1e30  # beyond the safe exponent window
    got = drift_from_counts(drift_counts_fixed([c.reshape(-1, 9) for c in cur], refs), refs)
    assert got[:3] == [None, None, None] and got[3] is not None
    assert torch.equal(got[3].counts, drift(cur[3], refs[3]).counts)
