"""`filterwatch reference build|show` and `scan --reference`: golden files and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from filterwatch import Reference
from tests.conftest import small_cnn
from tests.golden_helpers import _check_golden, _run, _scrub


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    before, after = tmp_path / "before.pt", tmp_path / "after.pt"
    torch.save(small_cnn(0).state_dict(), before)
    torch.save({f"model.{k}": v for k, v in small_cnn(1).state_dict().items()}, after)
    return before, after


def test_build_show_and_scan(pair: tuple[Path, Path], tmp_path: Path) -> None:
    before, after = pair
    ref = tmp_path / "ref.safetensors"
    code, out, err = _run("reference", "build", str(before), "-o", str(ref), "--snapshot")
    assert code == 0 and out == ""
    assert _scrub(err, tmp_path) == (
        "filterwatch: built a layer reference of 3 groups (592 filters) from 1 file(s) "
        "in <t> s; wrote <tmp>/ref.safetensors\n"
    )
    code, out, _ = _run("reference", "show", str(ref))
    assert code == 0
    text = _scrub(out, tmp_path)
    text = "\n".join(line for line in text.splitlines() if not line.startswith("created"))
    _check_golden("reference_show.txt", text + "\n")
    code, out, _ = _run("scan", str(after), "--reference", str(ref), "-q")
    assert code == 0
    _check_golden("scan_reference_table.txt", out)
    code, out, _ = _run("scan", str(after), "--reference", str(ref), "--format", "json", "-q")
    layers = json.loads(out)["layers"]
    assert all(layer["drift"] > 0 and layer["relative_change"] > 0 for layer in layers)
    assert len(layers[0]["drift_components"]) == 9


def test_population_and_grouping(pair: tuple[Path, Path], tmp_path: Path) -> None:
    ref = tmp_path / "pop.safetensors"
    code, _, _ = _run("reference", "build", *map(str, pair), "-o", str(ref), "--group", "kernel", "-q")
    assert code == 0
    assert list(Reference.load(ref).groups) == ["kernel/3x3"]
    code, out, _ = _run("scan", str(pair[1]), "--reference", str(ref), "-q")
    assert code == 0 and "drift" in out


def test_random_init_reference_in_cli(pair: tuple[Path, Path]) -> None:
    code, out, _ = _run("scan", str(pair[0]), "--reference", "random-init", "-q", "--format", "json")
    assert code == 0
    assert all(layer["drift"] is not None for layer in json.loads(out)["layers"])


def test_reference_errors_golden(pair: tuple[Path, Path], tmp_path: Path) -> None:
    before, after = pair
    good = tmp_path / "good.safetensors"
    Reference.build(small_cnn()).save(good)
    other = tmp_path / "other.pt"
    torch.save({"enc.weight": torch.randn(4, 3, 3, 3), "dec.weight": torch.randn(4, 4, 5, 5)}, other)
    truncated = tmp_path / "trunc.safetensors"
    truncated.write_bytes(good.read_bytes()[:-50])
    cases = {
        "show_missing": ["reference", "show", str(tmp_path / "none.safetensors")],
        "show_checkpoint": ["reference", "show", str(before)],
        "show_truncated": ["reference", "show", str(truncated)],
        "build_no_output": ["reference", "build", str(before)],
        "build_bad_group": ["reference", "build", str(before), "-o", "x", "--group", "block"],
        "build_snapshot_population": ["reference", "build", str(before), str(after), "-o",
                                      str(tmp_path / "x.safetensors"), "--snapshot"],
        "no_action": ["reference"],
        "scan_unmatched": ["scan", str(other), "--reference", str(good)],
        "scan_bad_map": ["scan", str(other), "--reference", str(good), "--map", "zzz"],
        "scan_map_unknown": ["scan", str(other), "--reference", str(good), "--map", "q=enc"],
        "scan_map_kernel": ["scan", str(other), "--reference", str(good), "--map", "0=enc",
                            "--map", "2=dec"],
        "scan_map_without_reference": ["scan", str(before), "--map", "a=b"],
    }
    lines = []
    for name, argv in cases.items():
        code, out, err = _run(*argv)
        assert code == 2 and out == "" and err.count("\n") == 1, (name, err)
        lines.append(f"[{name}] exit {code}: {_scrub(err, tmp_path)}")
    _check_golden("reference_errors.txt", "".join(lines))
    assert not (tmp_path / "x.safetensors").exists()


def test_allow_unmatched_and_match_by_order(tmp_path: Path) -> None:
    ref = tmp_path / "r.safetensors"
    Reference.build({"a.weight": torch.randn(4, 3, 3, 3), "b.weight": torch.randn(8, 4, 3, 3)}).save(ref)
    model = tmp_path / "m.pt"
    torch.save({"x.weight": torch.randn(4, 3, 3, 3), "y.weight": torch.randn(8, 4, 3, 3)}, model)
    code, out, _ = _run("scan", str(model), "--reference", str(ref), "--match-by-order", "-q",
                        "--format", "json")
    assert code == 0 and all(layer["drift"] is not None for layer in json.loads(out)["layers"])
    code, out, _ = _run("scan", str(model), "--reference", str(ref), "--allow-unmatched", "-q",
                        "--format", "json")
    assert code == 0 and all(layer["drift"] is None for layer in json.loads(out)["layers"])
