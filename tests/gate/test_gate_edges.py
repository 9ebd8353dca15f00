"""Issue 13, items 3-5: a gate that cannot be fooled by a foreign reference, an unreadable
checkpoint or a bad baseline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from filterwatch import analyze
from filterwatch.errors import InputError
from filterwatch.reference import Matching, Reference
from filterwatch.testing import assert_filters_healthy
from tests.conftest import small_cnn
from tests.golden_helpers import _run


def _other_network() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 8, 5), nn.ReLU(), nn.Conv2d(8, 8, 5))


@pytest.fixture
def foreign_reference(tmp_path: Path) -> Path:
    path = tmp_path / "foreign.safetensors"
    Reference.build(_other_network()).save(path)  # same layer names (0, 2), 5x5 kernels
    return path


@pytest.fixture
def unrelated_reference(tmp_path: Path) -> Path:
    path = tmp_path / "unrelated.safetensors"
    net = nn.Module()
    net.encoder = nn.Conv2d(3, 8, 3)  # type: ignore[assignment]
    Reference.build(net).save(path)
    return path


@pytest.mark.parametrize("which", ["foreign_reference", "unrelated_reference"])
def test_check_refuses_a_reference_of_another_network(checkpoints: dict[str, Path], which: str,
                                                      request: pytest.FixtureRequest) -> None:
    ref = request.getfixturevalue(which)
    code, out, err = _run("check", str(checkpoints["pt"]), "--reference", str(ref), "-q")
    assert code == 2, out
    assert err.startswith("filterwatch: error: ") and err.count("\n") == 1
    with pytest.raises(InputError):
        assert_filters_healthy(small_cnn(), reference=ref)


def test_allow_unmatched_covers_names_not_kernel_sizes(checkpoints: dict[str, Path],
                                                       unrelated_reference: Path,
                                                       foreign_reference: Path) -> None:
    code, _, _ = _run("check", str(checkpoints["pt"]), "--reference", str(unrelated_reference),
                      "--allow-unmatched", "-q")
    assert code in (0, 1)  # measured; no drift rule can apply, and it says so
    code, _, err = _run("check", str(checkpoints["pt"]), "--reference", str(foreign_reference),
                        "--allow-unmatched", "-q")
    assert code == 2 and "kernels" in err
    lenient = Matching(allow_unmatched=True, allow_kernel_change=True)  # what the monitors use
    report = analyze(small_cnn(), reference=Reference.load(foreign_reference), matching=lenient)
    assert report.layers[0].drift is None and "kernels" in report.layers[0].undefined["drift"]


def test_a_checkpoint_of_meta_weights_does_not_pass(tmp_path: Path) -> None:
    path = tmp_path / "meta.pt"
    with torch.device("meta"):
        net = small_cnn()
    torch.save(net.state_dict(), path)
    code, out, _ = _run("check", str(path), "-q")
    assert code == 1
    assert "not measured" in out and "PASSED" not in out
    code, out, _ = _run("check", str(path), "-q", "--format", "json")
    data = json.loads(out)
    assert data["passed"] is False
    assert all(v["value"] is None for v in data["violations"])


def _baseline(tmp_path: Path, name: str, payload: object | bytes) -> Path:
    path = tmp_path / name
    if isinstance(payload, bytes):
        path.write_bytes(payload)
    else:
        path.write_text(json.dumps(payload))
    return path


def test_a_baseline_of_another_architecture_is_refused(checkpoints: dict[str, Path],
                                                       tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    net = nn.Sequential(nn.Conv2d(3, 16, 5), nn.ReLU(), nn.Conv2d(16, 32, 5))  # same names
    analyze(net).save(other)
    code, _, err = _run("check", str(checkpoints["pt"]), "--baseline", str(other), "-q")
    assert code == 2 and "layer shapes" in err and "`0`" in err


@pytest.mark.parametrize("payload, words", [
    ({"schema_version": 1, "layers": [5]}, "layers[0]: expected a layer object"),
    ({"schema_version": 1, "layers": "x"}, "`layers` expected a list"),
    ({"schema_version": 1, "layers": [{"name": "0", "shape": [16, 3, 3, 3], "kernel_size": [3, 3],
      "groups": 1, "kind": "conv2d", "n_filters": 48, "depth": 0, "depth_norm": 0.0,
      "sparsity": "high"}]}, "`sparsity` expected a number or null"),
    (b"\xff\xfe\x00garbage", "UTF-8"),
])
def test_a_malformed_baseline_is_an_input_error(checkpoints: dict[str, Path], tmp_path: Path,
                                                payload: object, words: str) -> None:
    path = _baseline(tmp_path, "bad.json", payload)
    code, _, err = _run("check", str(checkpoints["pt"]), "--baseline", str(path), "-q")
    assert code == 2, err
    assert words in err and err.count("\n") == 1


def test_baseline_messages_read_plainly(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    base = tmp_path / "base.json"
    analyze(small_cnn()).save(base)
    worse = small_cnn()
    with torch.no_grad():
        worse[2].weight[:, 5:12] = 0  # more sparse filters than the baseline had
    torch.save(worse.state_dict(), tmp_path / "worse.pt")
    (tmp_path / "none.toml").write_text("[tool.filterwatch.gate]\nmax-sparsity = false\n")
    code, out, _ = _run("check", str(tmp_path / "worse.pt"), "--baseline", str(base), "-q",
                        "--config", str(tmp_path / "none.toml"))
    assert code == 1
    line = next(line for line in out.splitlines() if "baseline" in line and "FAIL" in line)
    assert "worse than the baseline's" in line and "± tolerance" not in line
