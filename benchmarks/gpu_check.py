"""`make gpu-check`: the CUDA tests and the GPU benchmark, in at most 5 minutes on one GPU.

1. runs tests/gpu (Triton kernel vs float64 with TF32 off, FilterWatch and FilterGate on
   CUDA, Lightning's FSDPStrategy on one GPU);
2. times `analyze` on ResNet-50 shapes on the GPU (target: <= 2 ms) and the statistics
   pass alone on a large filter matrix, as bandwidth and as a share of the device's
   measured copy bandwidth (and of its nominal peak where the device is known);
3. writes everything to OUT/gpu_check.json and OUT/gpu_check.md (OUT: --out, default
   ./gpu-check).

CI never runs this (it has no GPU). Run it where a GPU is at hand, e.g.
`make gpu-check` or `PYTHONPATH=src python3 benchmarks/gpu_check.py --out DIR`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

NOMINAL_TBPS = {"H100 80GB HBM3": 3.35, "H100": 3.35, "H200": 4.8, "A100": 2.0}


def _cuda_time(fn: Any, repeats: int) -> list[float]:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)


def _copy_bandwidth() -> float:
    x = torch.empty(1 << 28, dtype=torch.float32, device="cuda")  # 1 GiB
    y = torch.empty_like(x)
    t = _cuda_time(lambda: y.copy_(x), 10)[5]
    return 2 * x.numel() * 4 / t / 1e12  # read + write, TB/s


def _stats_bandwidth() -> dict[str, float]:
    from filterwatch.measure._triton_stats import triton_row_stats, triton_usable

    f = torch.randn(1 << 25, 9, device="cuda")  # 32 M filters, 1.2 GB
    assert triton_usable(f)
    t = _cuda_time(lambda: triton_row_stats(f), 10)[5]
    return {"rows": f.shape[0], "seconds": t, "tbps": f.numel() * 4 / t / 1e12}


def _kernel_sweep(f: torch.Tensor) -> dict[str, float]:
    """TB/s of the statistics kernel for a few launch shapes (for tuning; informative only)."""
    from filterwatch.measure import _triton_stats as ts

    n, k = f.shape
    kp = max(16, ts._next_pow2(k))
    out = {}
    for block in (64, 128, 256):
        for warps in (2, 4, 8):
            for programs in (132, 528, 2112):
                n_blocks = -(-n // block)
                grid = min(n_blocks, programs)
                buf = dict(
                    shift=torch.zeros(kp, device=f.device), peak=torch.empty(n, device=f.device),
                    l2=torch.empty(n, device=f.device),
                    part=torch.empty(grid, 2, dtype=torch.float64, device=f.device),
                    s1=torch.empty(grid, kp, dtype=torch.float64, device=f.device),
                    s2=torch.empty(grid, kp, kp, dtype=torch.float64, device=f.device))

                def run(grid: int = grid, block: int = block, warps: int = warps,
                        n_blocks: int = n_blocks, buf: dict[str, torch.Tensor] = buf) -> None:
                    ts._kernel()[(grid,)](f, buf["shift"], buf["peak"], buf["l2"], buf["part"], buf["s1"],
                                          buf["s2"], n, f.stride(0), n_blocks, K=k, KP=kp, BLOCK=block,
                                          num_warps=warps)
                t = _cuda_time(run, 5)[2]
                out[f"block={block} warps={warps} programs={programs}"] = f.numel() * 4 / t / 1e12
    return out


def _resnet50() -> dict[str, float]:
    from tests.models import resnet50_like

    import filterwatch

    torch.manual_seed(0)
    model = resnet50_like().cuda()
    select = filterwatch.LayerSelection(kernel_sizes=["3x3"])
    out = {}
    for name, kwargs in (("paper measures", {}), ("without orthogonality", {"orthogonality": False})):
        times = _cuda_time(lambda kw=kwargs: filterwatch.analyze(model, select=select, **kw), 20)
        out[name] = times[len(times) // 2] * 1000
    times = _cuda_time(lambda: filterwatch.analyze(model, select=select, spectral=True), 3)
    out["with spectral measures"] = times[len(times) // 2] * 1000
    cpu = filterwatch.analyze(model.cpu(), select=select)
    gpu = filterwatch.analyze(model.cuda(), select=select)
    out["max |gpu - cpu| VE"] = max(abs(a.variance_entropy - b.variance_entropy)
                                   for a, b in zip(gpu.layers, cpu.layers, strict=True))
    return out


def _profile(out: Path) -> None:
    """Where one analyze() of ResNet-50 shapes spends its time (CPU and CUDA), for the record."""
    from tests.models import resnet50_like
    from torch.profiler import ProfilerActivity, profile

    import filterwatch

    model = resnet50_like().cuda()
    select = filterwatch.LayerSelection(kernel_sizes=["3x3"])
    for _ in range(3):
        filterwatch.analyze(model, select=select)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        filterwatch.analyze(model, select=select)
        torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="cpu_time_total", row_limit=40)
    (out / "gpu_profile.txt").write_text(table)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="gpu-check")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device here; nothing to check", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    name = torch.cuda.get_device_name()
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": name, "torch": torch.__version__, "python": platform.python_version(),
    }
    try:
        import triton
        result["triton"] = triton.__version__
    except ImportError:
        result["triton"] = None
    print(f"gpu-check on {name}, torch {torch.__version__}, triton {result['triton']}", flush=True)
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu",
                            "-o", "addopts=", str(ROOT / "tests" / "gpu")],
                           capture_output=True, text=True, cwd=ROOT, timeout=240)
    print(tests.stdout[-4000:], tests.stderr[-2000:], flush=True)
    result["tests"] = {"returncode": tests.returncode, "summary": tests.stdout.strip().splitlines()[-1:]}
    result["copy_tbps"] = _copy_bandwidth()
    stats = _stats_bandwidth()
    stats["share_of_copy"] = stats["tbps"] / result["copy_tbps"]
    nominal = next((v for k, v in NOMINAL_TBPS.items() if k in name), None)
    stats["share_of_nominal"] = None if nominal is None else stats["tbps"] / nominal
    result["stats_pass"] = stats
    sweep = _kernel_sweep(torch.randn(1 << 25, 9, device="cuda"))
    result["kernel_sweep_tbps"] = sweep
    best = max(sweep, key=sweep.__getitem__)
    print(f"best kernel launch: {best}: {sweep[best]:.2f} TB/s", flush=True)
    result["resnet50_ms"] = _resnet50()
    _profile(out)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
    r = result["resnet50_ms"]
    lines = [
        f"# gpu-check {result['date']}: {name}",
        "",
        f"torch {result['torch']}, triton {result['triton']}; tests: {result['tests']['summary']}",
        "",
        "| check | value | target |",
        "|---|---:|---|",
        f"| ResNet-50 3x3 layers, paper measures | {r['paper measures']:.2f} ms | <= 2 ms |",
        f"| the same without orthogonality | {r['without orthogonality']:.2f} ms | |",
        f"| the same with the spectral measures | {r['with spectral measures']:.1f} ms | report |",
        f"| max VE difference GPU vs CPU | {r['max |gpu - cpu| VE']:.1e} | < 1e-5 |",
        f"| statistics pass ({stats['rows']} filters) | {stats['tbps']:.2f} TB/s | |",
        f"| share of measured copy bandwidth ({result['copy_tbps']:.2f} TB/s) | "
        f"{stats['share_of_copy']:.0%} | |",
        f"| share of nominal peak | "
        f"{'-' if stats['share_of_nominal'] is None else format(stats['share_of_nominal'], '.0%')} | |",
    ]
    (out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if tests.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
