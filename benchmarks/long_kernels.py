"""Long kernels on a busy machine: how long ``analyze`` takes for audio front ends (256-512
taps) while other torch jobs run (issue 35, item 5).

The layers: a 512-tap front end of 1024 filters (CREPE's first conv), a 256-tap layer and a
300-tap one (between the random-entropy table's rows). ``--busy N`` starts N processes that
multiply 1024x1024 matrices for the whole run. Before the table, sizes without a fitted
H_T curve drew 64 float64 SVDs per layer at run time: 112.6 s here with 2 busy processes.

Run: ``.venv/bin/python benchmarks/long_kernels.py --busy 2``
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time

import torch

from filterwatch import analyze

_BUSY = "import torch\nx = torch.randn(1024, 1024)\nwhile True:\n    x = (x @ x).clamp_(-1, 1)\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=2, help="busy processes beside the scan")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    state = {"front.weight": torch.randn(1024, 1, 512, generator=g),
             "mid.weight": torch.randn(64, 32, 256, generator=g),
             "odd.weight": torch.randn(48, 16, 300, generator=g)}
    busy = [subprocess.Popen([sys.executable, "-c", _BUSY]) for _ in range(args.busy)]
    try:
        time.sleep(1.0)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            analyze(state)
            times.append(time.perf_counter() - t0)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    print(f"analyze of 3 long-kernel layers beside {args.busy} busy process(es): best {min(times):.2f} s, "
          f"worst {max(times):.2f} s ({platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
