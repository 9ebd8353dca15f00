"""The Hugging Face callbacks under DDP: 2 CPU processes on gloo (torch.distributed.run)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from filterwatch import analyze
from tests.hf_helpers import DWCONV

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).parents[1] / "hf_ddp_script.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(tmp_path: Path, *args: str) -> dict[int, dict]:  # type: ignore[type-arg]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--master-port", str(_free_port()), str(SCRIPT), "--out", str(tmp_path),
                           *args], capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return {r: json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)}


def test_computed_once_and_logged_from_the_main_process(tmp_path: Path) -> None:
    ranks = _run(tmp_path)
    assert ranks[0]["world"] == 2
    assert ranks[0]["history_steps"] == ranks[0]["logged_steps"] == [0, 2, 4, 6, 8]
    assert ranks[1]["history_steps"] == ranks[1]["logged_steps"] == []  # no work, no logs
    final = analyze(tmp_path / "final.pt")
    for measure in ("sparsity", "variance_entropy", "orthogonality"):
        got = ranks[0]["last"][f"filterwatch/{DWCONV}/{measure}"]
        assert got == pytest.approx(final.layer(DWCONV).value(measure), rel=1e-6, abs=1e-7)


def test_the_gate_stops_every_process_at_the_same_step(tmp_path: Path) -> None:
    ranks = _run(tmp_path, "--gate")
    assert ranks[0]["gate_stopped"] == ranks[1]["gate_stopped"] == 3
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 3
