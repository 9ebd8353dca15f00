"""Long kernels scan as fast as any, even on a busy machine (issue 35, item 5): the random
band and H_T of 256-512-tap kernels come from the table, with no draw at run time (before,
a 512-tap audio front end took 125-206 s beside other torch jobs)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from filterwatch import analyze

_BUSY = "import torch\nx = torch.randn(1024, 1024)\nwhile True:\n    x = (x @ x).clamp_(-1, 1)\n"


@pytest.mark.slow
def test_a_512_tap_layer_scans_in_seconds_while_other_jobs_run() -> None:
    g = torch.Generator().manual_seed(0)
    state = {"front.weight": torch.randn(1024, 1, 512, generator=g),
             "mid.weight": torch.randn(64, 32, 256, generator=g),
             "odd.weight": torch.randn(48, 16, 300, generator=g)}  # 300 taps: between table rows
    busy = [subprocess.Popen([sys.executable, "-c", _BUSY]) for _ in range(2)]
    try:
        time.sleep(1.0)  # let them load torch and start multiplying
        t0 = time.perf_counter()
        report = analyze(state)
        seconds = time.perf_counter() - t0
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert all(lr.variance_entropy_norm is not None and lr.random_band is not None for lr in report.layers)
    assert seconds < 30.0, f"{seconds:.1f} s"
