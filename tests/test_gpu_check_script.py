"""`make gpu-check` is prepared on the CPU: its dry run goes through every step that can run
without a GPU (the snapshot graph through its CPU stand-in) and writes the record's files with
the keys the GPU record keeps, so GPU time is not spent on a broken script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_writes_the_record(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run",
                           "--out", str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    [record] = tmp_path.glob("*_cpu-dry-run.json")
    result = json.loads(record.read_text())
    assert result["dry_run"] is True and result["tests"]["returncode"] == 0
    assert result["resnet50_ms"]["paper measures"] > 0
    for key in ("resnet50_snapshot_ms", "fifty_layers_snapshot_ms"):
        snap = result[key]
        assert snap["captures"] == 1 and snap["max |replayed - eager| (relative)"] <= 1e-6
    assert record.with_suffix(".md").read_text().startswith("# gpu-check ")
