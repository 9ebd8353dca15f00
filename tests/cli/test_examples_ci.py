"""The CI example runs end to end: trains, gates, writes the job summary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_check_model_script(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    env = {**os.environ, "PY": sys.executable, "OUT": str(tmp_path / "ci"),
           "GITHUB_STEP_SUMMARY": str(summary)}
    done = subprocess.run(["bash", str(ROOT / "examples/ci/check_model.sh")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "## filterwatch gate :white_check_mark: PASSED" in summary.read_text()
    assert (tmp_path / "ci" / "filterwatch.xml").read_text().startswith("<?xml")
