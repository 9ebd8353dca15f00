"""`check --baseline`: a layer lost since the baseline fails, dead channels count as a
regression (as a share of the output channels), and a NaN tolerance is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from filterwatch import analyze
from filterwatch.gate import compare_to_baseline


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {f"l{i}.weight": torch.randn(128, 16, 3, 3) for i in range(4)}


def test_layers_lost_since_the_baseline_fail() -> None:
    baseline = analyze(_state())
    report = analyze({"l0.weight": _state()["l0.weight"]})
    verdict = compare_to_baseline(report, baseline, 0.05)
    assert not verdict.passed
    assert sorted(v.layer for v in verdict.violations) == ["l1", "l2", "l3"]
    assert "is gone from this model" in verdict.violations[0].message


def test_dead_channels_appearing_are_a_regression() -> None:
    baseline = analyze(_state())
    state = _state()
    state["l2.weight"][:115] = 0.0
    verdict = compare_to_baseline(analyze(state), baseline, 0.05)
    measures = {v.measure for v in verdict.violations if v.layer == "l2"}
    assert "dead_channel_share" in measures and "sparsity" in measures


def test_a_nan_tolerance_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    ckpt = tmp_path / "m.safetensors"
    save_file(_state(), str(ckpt))
    base = tmp_path / "base.json"
    analyze(ckpt).save(base)
    done = subprocess.run([sys.executable, "-m", "filterwatch", "check", str(ckpt), "--baseline",
                           str(base), "--tolerance", "nan"], capture_output=True, text=True)
    assert done.returncode == 2 and "expected a finite number >= 0, got nan" in done.stderr
