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


@pytest.mark.slow
def test_pruning_spectrum_example_shows_the_condition_number_rising(tmp_path: Path) -> None:
    out = tmp_path / "pruning.png"
    done = subprocess.run([sys.executable, str(ROOT / "examples/pruning_spectrum.py"), "--epochs", "3",
                           "--output", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.strip().endswith(tuple("0123456789"))
            and "%" in line]
    conds = [float(r[3]) for r in rows]
    assert conds[-1] > conds[0]  # sparser: worse conditioned (inf when rank-deficient)
    assert out.read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
@pytest.mark.parametrize("bad", [False, True])
def test_hugging_face_example_watches_and_the_gate_stops_the_bad_run(tmp_path: Path, bad: bool) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "examples/finetune_hf_convnext.py"),
                           "--out", str(tmp_path), *(["--bad"] if bad else [])],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert ("the gate stopped training at step" in done.stdout) is bad
    assert "each logged once through the Trainer" in done.stdout
    run = tmp_path / ("bad" if bad else "good")
    assert list(run.rglob("*.filterwatch")) and list(run.rglob("filterwatch_history.jsonl"))


def test_scan_spectral_adds_the_spectral_columns(checkpoints: dict[str, Path]) -> None:
    from tests.golden_helpers import _run

    code, out, _ = _run("scan", str(checkpoints["pt"]), "--spectral", "-q")
    assert code == 0 and "cond" in out and "Lip bound" in out and "Lipschitz bound of the conv stack" in out
    code, out, _ = _run("scan", str(checkpoints["pt"]), "--input-size", "8x8", "-q", "--format", "json")
    assert code == 0 and '"lipschitz":' in out and '"input_size": [' in out


@pytest.mark.slow
def test_zoo_study_example_draws_the_shift_matrix(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "examples/zoo_study.py"), "--out", str(tmp_path),
                           "--per-group", "1", "--epochs", "2"], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "scanned 6 checkpoints" in done.stdout and "0 failed" in done.stdout
    table = [line.split() for line in done.stdout.splitlines()
             if line.startswith(("digits", "parity", "random"))]
    assert [row[0] for row in table] == ["digits", "parity", "random"]
    assert (tmp_path / "shift_by_task.png").read_bytes().startswith(b"\x89PNG")
