"""Fuzzing: every functional measure over random shapes, dtypes and memory layouts; random and
hostile bytes for every file reader."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filterwatch import InputError, Reference, UndefinedMeasureError, load_state_dict
from filterwatch.functional import (
    dead_channels,
    drift,
    drift_basis,
    filter_norms,
    nonfinite_count,
    orthogonality,
    relative_change,
    sparsity,
    variance_entropy,
)

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
LAYOUTS = ["contiguous", "channels_last", "transposed_view", "strided_view"]


@st.composite
def weights(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight in some dtype and layout, the same values as a contiguous float64 tensor)."""
    c_out, c_in = draw(st.integers(1, 12)), draw(st.integers(1, 6))
    spatial = draw(st.sampled_from([(1,), (3,), (1, 1), (3, 3), (5, 5), (2, 3), (3, 3, 3)]))
    dtype = draw(st.sampled_from(DTYPES))
    layout = draw(st.sampled_from(LAYOUTS))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    base = torch.randn(c_out * 2, c_in * 2, *spatial, generator=g) * draw(st.floats(1e-3, 1e2))
    if draw(st.booleans()):
        base[:, : c_in] = 0.0
    w = base[:c_out, :c_in].to(dtype)
    if layout == "channels_last" and w.ndim == 4:
        w = w.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed_view":
        w = base.to(dtype).transpose(0, 1)[:c_out, :c_in]
    elif layout == "strided_view":
        w = base.to(dtype)[::2, ::2][:c_out, :c_in]
    return w, w.to(torch.float64).contiguous()


def _same(fn, w: torch.Tensor, ref: torch.Tensor) -> None:  # type: ignore[no-untyped-def]
    before = w.clone()
    try:
        got = fn(w)
    except UndefinedMeasureError as exc:
        with pytest.raises(UndefinedMeasureError):
            fn(ref)
        assert str(exc)
        return
    want = fn(ref)
    assert torch.equal(w, before)  # the input is never modified
    if isinstance(got, float):
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-9, abs=1e-9)
    elif isinstance(got, torch.Tensor):
        assert torch.allclose(got.double(), want.double(), rtol=1e-9, atol=1e-9)
    elif isinstance(got, tuple):
        assert got[0] == pytest.approx(want[0], rel=1e-9, abs=1e-9)
    else:
        assert got == want


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=weights())
def test_every_measure_any_shape_dtype_layout(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    w, ref = pair
    _same(lambda x: sparsity(x).value, w, ref)
    _same(lambda x: sparsity(x).mask, w, ref)
    _same(lambda x: variance_entropy(x).entropy, w, ref)
    _same(orthogonality, w, ref)
    _same(lambda x: filter_norms(x, p=1), w, ref)
    _same(dead_channels, w, ref)
    _same(nonfinite_count, w, ref)
    _same(lambda x: relative_change(x, ref), w, ref)
    if w.shape[0] * w.shape[1] >= 2:
        basis = drift_basis(ref)
        _same(lambda x: drift(x, basis).value, w, ref)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(min_size=0, max_size=2048),
       prefix=st.sampled_from([b"", b"\x80\x02", b"\x80\x04\x95", b"PK\x03\x04", b"\x10" + bytes(7) + b"{"]),
       suffix=st.sampled_from([".pt", ".pth", ".ckpt", ".safetensors", ".bin"]))
def test_random_bytes_never_crash_the_loaders(data: bytes, prefix: bytes, suffix: str) -> None:
    """Random bytes, also behind a pickle, zip or safetensors header."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"file{suffix}"
        path.write_bytes(prefix + data)
        with pytest.raises(InputError):
            load_state_dict(path)
        with pytest.raises(InputError):
            Reference.load(path)


@settings(max_examples=40, deadline=None)
@given(cut=st.floats(0.0, 0.999))
def test_truncated_files_at_any_point(cut: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, ref = Path(tmp) / "m.pt", Path(tmp) / "r.safetensors"
        state = {"c.weight": torch.randn(8, 4, 3, 3)}
        torch.save(state, ckpt)
        Reference.build(state).save(ref)
        for path, loader in ((ckpt, load_state_dict), (ref, Reference.load)):
            raw = path.read_bytes()
            path.write_bytes(raw[: int(cut * len(raw))])
            with pytest.raises(InputError):
                loader(path)


def test_checkpoint_with_wrong_dtypes_or_shapes(tmp_path: Path) -> None:
    ints = tmp_path / "ints.pt"
    torch.save({"conv.weight": torch.zeros(4, 3, 3, 3, dtype=torch.int32)}, ints)
    with pytest.raises(InputError, match="expected conv weights"):
        load_state_dict(ints)
    flat = tmp_path / "flat.pt"
    torch.save({"conv.weight": torch.zeros(4, 27)}, flat)
    with pytest.raises(InputError, match="expected conv weights"):
        load_state_dict(flat)
