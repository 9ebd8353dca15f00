"""``_mm_nt``: oneDNN's ``a @ b.T`` on the CPU, and its fallbacks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from filterwatch.functional import _gemm
from filterwatch.functional._gemm import _mm_nt, _onednn_linear
from filterwatch.functional.orthogonality import _orthogonality_update


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch: pytest.MonkeyPatch):
    """Each test probes afresh and leaves a fresh probe behind; oneDNN takes products of any
    size here (in use, only large ones: small ones are faster through torch.mm)."""
    monkeypatch.setattr(_gemm, "_MIN_MACS", 0)
    _onednn_linear.cache_clear()
    yield
    _onednn_linear.cache_clear()


def test_small_products_take_torch_mm(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    op = _onednn_linear()
    if op is None:
        pytest.skip("torch has no oneDNN linear op here")
    monkeypatch.setattr(_gemm, "_onednn_linear", lambda: (lambda *args: calls.append(1) or op(*args)))
    monkeypatch.setattr(_gemm, "_MIN_MACS", 1000)
    _mm_nt(torch.randn(8, 10), torch.randn(9, 10))   # 720 multiply-adds: torch.mm
    assert calls == []
    _mm_nt(torch.randn(10, 10), torch.randn(10, 10))  # 1000: oneDNN
    assert calls == [1]


def _exact(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a.double() @ b.double().T


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 70), n=st.integers(1, 70), k=st.integers(1, 300), seed=st.integers(0, 99),
       transposed=st.booleans())
def test_agrees_with_float64_to_float32_roundoff(m: int, n: int, k: int, seed: int,
                                                 transposed: bool) -> None:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(m, k, generator=g)
    b = torch.randn(k, n, generator=g).T if transposed else torch.randn(n, k, generator=g)
    got = _mm_nt(a, b)
    assert got.shape == (m, n) and got.dtype == torch.float32
    bound = 4 * k * torch.finfo(torch.float32).eps * (a.abs().double() @ b.abs().double().T)
    assert bool(((got.double() - _exact(a, b)).abs() <= bound + 1e-30).all())


def test_other_dtypes_subclasses_grad_and_empty_take_torch_mm() -> None:
    a64 = torch.randn(5, 7, dtype=torch.float64)
    assert torch.equal(_mm_nt(a64, a64), a64 @ a64.T)
    leaf = torch.randn(4, 3, requires_grad=True)
    out = _mm_nt(leaf, leaf)
    out.sum().backward()  # autograd still works: the product went through torch.mm
    assert leaf.grad is not None
    empty = torch.zeros(0, 3)
    assert _mm_nt(empty, torch.ones(2, 3)).shape == (0, 2)


def test_switch_and_missing_onednn_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    a = torch.randn(6, 9)
    monkeypatch.setenv("FILTERWATCH_ONEDNN", "0")
    assert _onednn_linear() is None
    assert torch.equal(_mm_nt(a, a), a @ a.T)
    _onednn_linear.cache_clear()
    monkeypatch.delenv("FILTERWATCH_ONEDNN")
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert _onednn_linear() is None


def test_a_wrong_or_failing_private_op_is_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """The op is private to torch: one that raises or returns a wrong product is refused."""

    class FakeOps:
        def __init__(self, op):
            self._linear_pointwise = op

    def wrong(a, b, *_):
        return a @ b.T + 1

    def raising(*_):
        raise RuntimeError("not built with oneDNN")

    for op in (wrong, raising):
        _onednn_linear.cache_clear()
        monkeypatch.setattr(torch.ops, "mkldnn", FakeOps(op))
        assert _onednn_linear() is None
    a = torch.randn(8, 5)
    assert torch.equal(_mm_nt(a, a), a @ a.T)


@pytest.mark.parametrize("onednn", ["1", "0"])
def test_orthogonality_sum_is_the_same_either_way(monkeypatch: pytest.MonkeyPatch, onednn: str) -> None:
    monkeypatch.setenv("FILTERWATCH_ONEDNN", onednn)
    rows = torch.randn(300, 72, generator=torch.Generator().manual_seed(3))
    rows[7] = 0.0  # a zero row adds 1 through the diagonal either way
    exact = _orthogonality_update(rows.double())
    assert float(_orthogonality_update(rows)) == pytest.approx(float(exact), rel=1e-6)
    if onednn == "0":
        assert _gemm._onednn_linear() is None
