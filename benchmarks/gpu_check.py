"""`make gpu-check`: the CUDA tests and the GPU benchmark, in at most 5 minutes on one GPU.

1. runs tests/gpu (the Triton kernel against float64 with TF32 off; a snapshot captured as a
   CUDA graph and replayed against the eager one, recapture, fallback; FilterWatch and
   FilterGate on CUDA; Lightning's FSDPStrategy on one GPU);
2. times `analyze` on ResNet-50 shapes (the paper's measures), and a monitor's snapshot
   (every conv layer, drift and relative change against the fit-start weights) of ResNet-50
   and of a 50-layer stack, eager and replayed from the captured graph, with the host syncs a
   replayed snapshot makes (CUDA's sync debug mode);
3. the statistics pass alone on a large filter matrix, as bandwidth and as a share of the
   device's measured copy bandwidth: the Triton kernel with each way of summing the second
   moments (FILTERWATCH_TRITON_S2 = dot, fma, gemm), a launch-shape sweep, and the batched
   torch pass;
4. writes OUT/<date>_<device>.json and .md (OUT: --out, default ./gpu-check), the record
   kept under benchmarks/gpu/, and OUT/gpu_profile.txt.

CI never runs this (it has no GPU). `--dry-run` runs every step it can on the CPU with small
sizes (no tests, no bandwidth; the graph through its CPU stand-in), so the script is checked
before GPU time is spent on it: `PYTHONPATH=src python3 benchmarks/gpu_check.py --dry-run`.
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


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _cuda_time(fn: Any, repeats: int, device: str = "cuda") -> list[float]:
    for _ in range(3):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)


def _copy_bandwidth() -> float:
    x = torch.empty(1 << 28, dtype=torch.float32, device="cuda")  # 1 GiB
    y = torch.empty_like(x)
    t = _cuda_time(lambda: y.copy_(x), 10)[5]
    return 2 * x.numel() * 4 / t / 1e12  # read + write, TB/s


def _stats_bandwidth(rows: int = 1 << 25) -> dict[str, Any]:
    """The per-filter statistics pass over ``rows`` 3x3 filters: the Triton kernel with each
    way of summing the second moments, and the batched torch pass (without orthogonality)."""
    import os

    from filterwatch.functional.batched import group_stats_update
    from filterwatch.measure import _triton_stats as ts

    f = torch.randn(rows, 9, device="cuda")
    assert ts.triton_usable(f)
    by_mode = {}
    for mode in ts.S2_MODES:
        os.environ["FILTERWATCH_TRITON_S2"] = mode
        t = _cuda_time(lambda: ts.triton_row_stats(f), 10)[5]
        by_mode[mode] = {"seconds": t, "tbps": f.numel() * 4 / t / 1e12}
    os.environ.pop("FILTERWATCH_TRITON_S2", None)
    best = min(by_mode, key=lambda m: by_mode[m]["seconds"])
    w = f.view(rows // 512, 512, 3, 3)[: min(rows // 512, 4096)]
    t = _cuda_time(lambda: group_stats_update([w], 0.01, orthogonality=False), 10)[5]
    return {"rows": rows, "seconds": by_mode["dot"]["seconds"], "tbps": by_mode["dot"]["tbps"],
            "by_s2_mode": by_mode, "fastest_s2_mode": best,
            "batched_torch_tbps": w.numel() * 4 / t / 1e12}


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
                                          S2=0, num_warps=warps)
                t = _cuda_time(run, 5)[2]
                out[f"block={block} warps={warps} programs={programs}"] = f.numel() * 4 / t / 1e12
    return out


def _resnet50(device: str) -> dict[str, float]:
    from tests.models import resnet50_like

    import filterwatch

    torch.manual_seed(0)
    model = resnet50_like().to(device)
    select = filterwatch.LayerSelection(kernel_sizes=["3x3"])
    repeats = 20 if device == "cuda" else 2
    out = {}
    for name, kwargs in (("paper measures", {}), ("without orthogonality", {"orthogonality": False})):
        times = _cuda_time(lambda kw=kwargs: filterwatch.analyze(model, select=select, **kw), repeats, device)
        out[name] = times[len(times) // 2] * 1000
    if device == "cuda":  # the exact operator norms take half a minute on a CPU: not in a dry run
        times = _cuda_time(lambda: filterwatch.analyze(model, select=select, spectral=True), 3, device)
        out["with spectral measures"] = times[len(times) // 2] * 1000
    else:
        out["with spectral measures"] = float("nan")
    cpu = filterwatch.analyze(model.cpu(), select=select)
    dev = filterwatch.analyze(model.to(device), select=select)
    out["max |gpu - cpu| VE"] = max(abs(a.variance_entropy - b.variance_entropy)
                                   for a, b in zip(dev.layers, cpu.layers, strict=True))
    return out


def _snapshots(model: torch.nn.Module, device: str) -> dict[str, Any]:
    """A monitor's snapshot of ``model`` (its default selection, against the fit-start
    weights): eager, replayed from the captured graph, the replay alone, the largest
    difference between the two, and the host syncs of a replayed snapshot."""
    import warnings

    from filterwatch.layers import LayerSelection, discover_layers
    from filterwatch.measure import MeasureOptions
    from filterwatch.measure.graph import SnapshotGraph, eager_capture
    from filterwatch.reference import Reference

    model = model.to(device)
    layers = discover_layers(model, select=LayerSelection())
    ref = Reference.build(model, snapshot=True)
    eager, fast = MeasureOptions(reference=ref), MeasureOptions(reference=ref, cuda_graph=True)
    if device != "cuda":  # the dry run: the graph's CPU stand-in, through the same packing
        fast._graph = SnapshotGraph(eager_capture, devices=("cpu",))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    repeats = 20 if device == "cuda" else 2
    out: dict[str, Any] = {"layers": len(layers)}
    out["snapshot eager"] = _cuda_time(lambda: eager.run(layers), repeats, device)[repeats // 2] * 1000
    out["snapshot replayed"] = _cuda_time(lambda: fast.run(layers), repeats, device)[repeats // 2] * 1000
    graph = fast._graph
    assert graph is not None and graph.off is None, graph and graph.off
    replay = graph._replay
    assert replay is not None
    out["replay alone"] = _cuda_time(replay, repeats, device)[repeats // 2] * 1000
    a, b = fast.run(layers), eager.run(layers)
    worst = 0.0
    for la, lb in zip(a.layers, b.layers, strict=True):
        for key in ("sparsity", "variance_entropy", "orthogonality", "weight_norm", "drift",
                    "relative_change"):
            va, vb = getattr(la, key), getattr(lb, key)
            if isinstance(va, float) and isinstance(vb, float):
                worst = max(worst, abs(va - vb) / max(1.0, abs(vb)))
    out[_DIFF] = worst
    out["captures"] = graph.captures
    if device == "cuda":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode(1)
            try:
                fast.run(layers)
            finally:
                torch.cuda.set_sync_debug_mode(0)
        out["host syncs of a replayed snapshot"] = sum("synchroniz" in str(w.message) for w in caught)
        out["host syncs with the TensorBoard extras"] = _syncs_with_tensorboard(fast, layers)
    return out


def _syncs_with_tensorboard(options: Any, layers: Any) -> dict[str, int]:
    """Host syncs of a replayed snapshot whose kernels also feed the TensorBoard sink (its
    histograms: one transfer for all layers; filter images only on image snapshots)."""
    import tempfile
    import warnings

    from torch.utils.tensorboard import SummaryWriter

    from filterwatch.integrations.tensorboard import TensorBoardSink
    from filterwatch.monitor import Snapshot

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        writer = SummaryWriter(tmp)
        sink = TensorBoardSink(writer, images_every=2)
        for label in ("image snapshot", "plain snapshot"):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode(1)
                try:
                    report = options.run(layers, on_kernel=sink.collector())
                    sink.write(Snapshot(report, [report]))
                finally:
                    torch.cuda.set_sync_debug_mode(0)
            out[label] = sum("synchroniz" in str(w.message) for w in caught)
        writer.close()
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


_DIFF = "max |replayed - eager| (relative)"


def _record_name(date: str, device: str) -> str:
    """``<date>_<device>``, e.g. ``2026-11-26_H200`` (the record's file names)."""
    short = device.replace("NVIDIA ", "").split()[0] if device != "cpu" else "cpu-dry-run"
    return f"{date[:10]}_{''.join(c if c.isalnum() or c in '-_' else '-' for c in short)}"


def _markdown(result: dict[str, Any]) -> str:
    r, stats = result["resnet50_ms"], result.get("stats_pass", {})
    snap, fifty = result["resnet50_snapshot_ms"], result["fifty_layers_snapshot_ms"]

    def pct(x: float | None) -> str:
        return "-" if x is None else format(x, ".0%")

    lines = [
        f"# gpu-check {result['date']}: {result['device']}",
        "",
        f"torch {result['torch']}, triton {result['triton']}; tests: {result['tests']['summary']}",
        "",
        "| check | value | target |",
        "|---|---:|---|",
        f"| ResNet-50 3x3 layers, paper measures (analyze) | {r['paper measures']:.2f} ms | "
        "<= 1 ms (stretch 0.3) |",
        f"| the same without orthogonality | {r['without orthogonality']:.2f} ms | |",
        f"| the same with the spectral measures | {r['with spectral measures']:.1f} ms | report |",
        f"| max VE difference GPU vs CPU | {r['max |gpu - cpu| VE']:.1e} | < 1e-5 |",
        f"| ResNet-50 monitor snapshot ({snap['layers']} layers), eager | "
        f"{snap['snapshot eager']:.2f} ms | |",
        f"| the same, replayed from the captured graph | {snap['snapshot replayed']:.2f} ms | <= 1 ms |",
        f"| the graph's replay alone (device work + one copy) | {snap['replay alone']:.3f} ms | |",
        f"| 50-layer snapshot, eager / replayed | {fifty['snapshot eager']:.2f} / "
        f"{fifty['snapshot replayed']:.2f} ms | within 2x of ResNet-50 |",
        f"| replayed vs eager, largest relative difference | {max(d[_DIFF] for d in (snap, fifty)):.1e} | "
        "<= 1e-6 |",
        f"| host syncs of a replayed snapshot | {snap.get('host syncs of a replayed snapshot', '-')} | "
        "the one final copy |",
    ]
    if stats:
        lines += [
            f"| statistics pass, Triton ({stats['rows']} filters; s2 by tile product) | "
            f"{stats['tbps']:.2f} TB/s | |",
            "| the same by s2 mode (dot / fma / gemm) | "
            + " / ".join(f"{v['tbps']:.2f}" for v in stats["by_s2_mode"].values())
            + f" TB/s (fastest: {stats['fastest_s2_mode']}) | |",
            f"| batched torch pass | {stats['batched_torch_tbps']:.2f} TB/s | |",
            f"| share of measured copy bandwidth ({result['copy_tbps']:.2f} TB/s) | "
            f"{pct(stats['share_of_copy'])} (fastest mode {pct(stats['fastest_share_of_copy'])}) | >= 50 % |",
            f"| share of nominal peak | {pct(stats['share_of_nominal'])} | |",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="gpu-check")
    parser.add_argument("--dry-run", action="store_true",
                        help="run what can run on the CPU, small, to check the script itself")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not torch.cuda.is_available() and not args.dry_run:
        print("gpu-check: no CUDA device here; nothing to check (--dry-run checks the script)",
              file=sys.stderr)
        return 2
    device = "cpu" if args.dry_run else "cuda"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": name, "torch": torch.__version__, "python": platform.python_version(),
        "dry_run": args.dry_run,
    }
    try:
        import triton
        result["triton"] = triton.__version__
    except ImportError:
        result["triton"] = None
    print(f"gpu-check on {name}, torch {torch.__version__}, triton {result['triton']}", flush=True)
    if device == "cuda":
        tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu",
                                "-o", "addopts=", str(ROOT / "tests" / "gpu")],
                               capture_output=True, text=True, cwd=ROOT, timeout=200)
        print(tests.stdout[-4000:], tests.stderr[-2000:], flush=True)
        result["tests"] = {"returncode": tests.returncode, "summary": tests.stdout.strip().splitlines()[-1:]}
    else:
        result["tests"] = {"returncode": 0, "summary": ["not run (dry run)"]}
    from tests.models import fifty_layers, resnet50_like

    torch.manual_seed(0)
    result["resnet50_ms"] = _resnet50(device)
    result["resnet50_snapshot_ms"] = _snapshots(resnet50_like(), device)
    result["fifty_layers_snapshot_ms"] = _snapshots(fifty_layers(), device)
    print(json.dumps({k: result[k] for k in ("resnet50_ms", "resnet50_snapshot_ms",
                                              "fifty_layers_snapshot_ms")}, indent=1), flush=True)
    if device == "cuda":
        result["copy_tbps"] = _copy_bandwidth()
        stats = _stats_bandwidth()
        stats["share_of_copy"] = stats["tbps"] / result["copy_tbps"]
        stats["fastest_share_of_copy"] = (stats["by_s2_mode"][stats["fastest_s2_mode"]]["tbps"]
                                          / result["copy_tbps"])
        nominal = next((v for k, v in NOMINAL_TBPS.items() if k in name), None)
        stats["share_of_nominal"] = None if nominal is None else stats["tbps"] / nominal
        result["stats_pass"] = stats
        sweep = _kernel_sweep(torch.randn(1 << 25, 9, device="cuda"))
        result["kernel_sweep_tbps"] = sweep
        best = max(sweep, key=sweep.__getitem__)
        print(f"best kernel launch: {best}: {sweep[best]:.2f} TB/s", flush=True)
        _profile(out)
    stem = _record_name(result["date"], name)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = _markdown(result)
    (out / f"{stem}.md").write_text(text)
    print(text)
    return 0 if result["tests"]["returncode"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
