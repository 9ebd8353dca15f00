"""Hostile checkpoint files, round three: views larger than their storage, mappings that
contain themselves or nest deeply, shard indexes naming weights no shard holds, quantized and
integer weights, and device files. Each is a one-line InputError (exit 2), or measured."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import filterwatch
from filterwatch import InputError
from filterwatch.layers import load_state_dict


def test_a_zero_stride_view_is_refused_before_it_is_materialised(tmp_path: Path) -> None:
    path = tmp_path / "view.pt"
    huge = torch.zeros(1).expand(20000, 20000, 3, 3)  # 14 GB declared over 4 bytes
    torch.save({"conv.weight": huge}, path)
    assert path.stat().st_size < 4096
    with pytest.raises(InputError, match="expected at most the 4 bytes its storage holds"):
        load_state_dict(path)
    small = tmp_path / "small.pt"  # a small broadcast is harmless: measured
    torch.save({"conv.weight": torch.randn(1, 1, 3, 3).expand(8, 4, 3, 3)}, small)
    assert filterwatch.analyze(small).layers[0].n_filters == 32


@pytest.mark.parametrize("shape", ["self", "deep"])
def test_a_mapping_that_contains_itself_or_nests_deeply_is_one_line(tmp_path: Path, shape: str) -> None:
    path = tmp_path / f"{shape}.pt"
    state: dict[str, object] = {"conv.weight": torch.randn(8, 4, 3, 3)}
    if shape == "self":
        state["again"] = state
    else:
        inner: dict[str, object] = {}
        state["deep"] = inner
        for _ in range(5000):
            inner["x"] = inner = {}
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(50000)  # pickling 5,000 levels needs it; loading must not
    try:
        torch.save(state, path)
    finally:
        sys.setrecursionlimit(limit)
    done = subprocess.run([sys.executable, "-m", "filterwatch", "scan", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert ("contains itself" if shape == "self" else "nested more than") in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_shard_index_naming_weights_no_shard_holds_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"a.weight": torch.randn(8, 4, 3, 3)}, str(tmp_path / "model-1.safetensors"))
    index = {"weight_map": {"a.weight": "model-1.safetensors", "b.weight": "model-1.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(InputError, match=r"names 1 weight\(s\) that no shard holds \(b.weight\)"):
        load_state_dict(tmp_path)


def test_quantized_and_integer_weights_are_measured_not_skipped(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates quantize_per_tensor
        zero = torch.quantize_per_tensor(torch.zeros(8, 4, 3, 3), 0.1, 0, torch.qint8)
    path = tmp_path / "q.pt"
    torch.save({"dead.weight": zero, "int.weight": (torch.randn(8, 4, 3, 3) * 20).to(torch.int8)}, path)
    report = filterwatch.analyze(path)
    dead, ints = report.layer("dead"), report.layer("int")
    assert dead.kind == "tensor (dequantized)" and dead.sparsity == pytest.approx(1.0)
    assert ints.kind == "tensor (int8 as float)" and ints.sparsity == pytest.approx(0.0)
    from filterwatch.gate import evaluate, rules_from_mapping

    assert not evaluate(report, rules_from_mapping({})).passed  # the all-zero layer fails


def test_a_device_file_is_not_called_an_empty_file() -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    with pytest.raises(InputError) as caught:
        load_state_dict("/dev/null")
    assert "an empty file" not in str(caught.value) and "not a regular file" in str(caught.value)
