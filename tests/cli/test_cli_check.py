"""`filterwatch check`: golden files for every format and every exit code; JUnit parses."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

from tests.golden_helpers import _check_golden, _run, _scrub
from tests.models import trained_like_layer
from tests.trained import damaged, trained_state


@pytest.fixture
def models(tmp_path: Path) -> dict[str, Path]:
    files = {"healthy": tmp_path / "healthy.pt", "sparse": tmp_path / "sparse.pt",
             "nan": tmp_path / "nan.pt", "synthetic": tmp_path / "synthetic.pt"}
    torch.save(trained_state(), files["healthy"])
    torch.save(damaged(0.3), files["sparse"])
    torch.save(damaged(0.0, nan=True), files["nan"])
    # golden files need numbers that do not depend on training (platform-exact RNG only)
    synthetic = {"0.weight": trained_like_layer(32, 1, seed=1),
                 "2.weight": trained_like_layer(64, 32, seed=2),
                 "5.weight": trained_like_layer(64, 64, seed=3)}
    synthetic["2.weight"].view(-1, 9)[: int(0.3 * 64 * 32)] = 0.0
    torch.save(synthetic, files["synthetic"])
    (tmp_path / "gate.toml").write_text("[tool.filterwatch.gate]\nmax-sparsity = 0.25\n")
    return files


def _scrub_json(text: str, tmp: Path) -> str:
    data = json.loads(_scrub(text, tmp))
    data["report"] = "<report: see scan_json.json>"  # its numbers are covered elsewhere
    return json.dumps(data, indent=2) + "\n"


@pytest.mark.parametrize("fmt", ["table", "json", "markdown", "junit"])
def test_formats_golden(models: dict[str, Path], tmp_path: Path, fmt: str) -> None:
    code, out, err = _run("check", str(models["synthetic"]), "--config",
                          str(tmp_path / "gate.toml"), "--format", fmt)
    assert code == 1
    assert "gate FAILED with 2 violation(s)" in err  # 30 % sparse, and 19 of 64 channels dead
    text = _scrub_json(out, tmp_path) if fmt == "json" else _scrub(out, tmp_path)
    _check_golden(f"check_{fmt}.{ {'table': 'txt', 'markdown': 'md', 'junit': 'xml'}.get(fmt, fmt) }", text)


def test_exit_codes(models: dict[str, Path], tmp_path: Path) -> None:
    cfg = str(tmp_path / "gate.toml")
    assert _run("check", str(models["healthy"]), "--config", cfg, "-q")[0] == 0
    assert _run("check", str(models["sparse"]), "-q", "--config", cfg)[0] == 1
    assert _run("check", str(models["sparse"]), "-q")[0] == 0  # defaults: 30 % is allowed
    assert _run("check", str(models["nan"]), "-q")[0] == 1
    code, out, err = _run("check", str(tmp_path / "missing.pt"))
    assert code == 2 and out == "" and err.count("\n") == 1


def test_json_lists_violations(models: dict[str, Path]) -> None:
    code, out, _ = _run("check", str(models["nan"]), "--format", "json", "-q")
    data = json.loads(out)
    assert code == 1 and data["passed"] is False
    (v,) = data["violations"]
    assert {k: v[k] for k in ("layer", "measure", "value", "limit")} == {
        "layer": "2", "measure": "nonfinite", "value": 1.0, "limit": 0.0}


def test_junit_has_one_testcase_per_layer_and_rule_group(models: dict[str, Path], tmp_path: Path) -> None:
    code, out, _ = _run("check", str(models["sparse"]), "--config", str(tmp_path / "gate.toml"),
                        "--format", "junit", "-q")
    assert code == 1
    suite = ET.fromstring(out)
    cases = suite.findall("testcase")
    names = [(c.get("classname"), c.get("name")) for c in cases]
    assert len(names) == len(set(names)) == 3 * 9  # 9 rule groups
    failed = [(c.get("classname"), c.get("name")) for c in cases if c.find("failure") is not None]
    assert failed == [("filterwatch.2", "sparsity")]
    assert suite.get("tests") == "27" and suite.get("failures") == "1"


def test_baseline_mode(models: dict[str, Path], tmp_path: Path) -> None:
    base = tmp_path / "baseline.json"
    assert _run("scan", str(models["healthy"]), "--format", "json", "-o", str(base), "-q")[0] == 0
    code, out, _ = _run("check", str(models["sparse"]), "--baseline", str(base), "-q")
    assert code == 1 and "baseline" in out
    assert _run("check", str(models["sparse"]), "--baseline", str(base), "--tolerance", "0.5", "-q")[0] == 0
    check_json = tmp_path / "check.json"
    _run("check", str(models["healthy"]), "--format", "json", "-o", str(check_json), "-q")
    assert _run("check", str(models["healthy"]), "--baseline", str(check_json), "-q")[0] == 0


def test_error_paths_golden(models: dict[str, Path], tmp_path: Path) -> None:
    bad_cfg = tmp_path / "bad.toml"
    bad_cfg.write_text("[tool.filterwatch.gate]\nmax-sparsty = 0.2\n")
    bad_value = tmp_path / "bad_value.toml"
    bad_value.write_text("[tool.filterwatch.gate]\nmin-variance-entropy = -1\n")
    not_json = tmp_path / "notes.json"
    not_json.write_text("{oops")
    cases = {
        "missing_config": ["check", str(models["healthy"]), "--config", str(tmp_path / "x.toml")],
        "unknown_key": ["check", str(models["healthy"]), "--config", str(bad_cfg)],
        "bad_value": ["check", str(models["healthy"]), "--config", str(bad_value)],
        "tolerance_without_baseline": ["check", str(models["healthy"]), "--tolerance", "0.1"],
        "bad_baseline": ["check", str(models["healthy"]), "--baseline", str(not_json)],
        "missing_baseline": ["check", str(models["healthy"]), "--baseline", str(tmp_path / "b.json")],
        "bad_format": ["check", str(models["healthy"]), "--format", "xml"],
    }
    lines = []
    for name, argv in cases.items():
        code, out, err = _run(*argv)
        assert code == 2 and out == "" and err.count("\n") == 1, (name, err)
        lines.append(f"[{name}] exit {code}: {_scrub(err, tmp_path)}")
    _check_golden("check_errors.txt", "".join(lines))
