"""`filterwatch zoo scan` over a synthetic zoo, against the notebook's way, in one run.

The zoo: N ResNet-18-shaped checkpoints (`tests/models.resnet18_like`, random Kaiming init,
float32 `.pt` files, about 45 MB and 1.22 M 3x3 filters each) and a manifest with a meta
column. Reported, each configuration in its own process (so peak memory is its own):
- `zoo scan` with 1 and 2 workers: models/s, 3x3 filters/s, filters/s per worker-core, the
  peak resident memory of a worker (the largest child's; with 1 worker the process itself);
- the notebook's approach: every 3x3 filter of the zoo in one float32 array (loaded with
  torch.load), then one PCA (the covariance's eigendecomposition): its time and peak memory;
- the time each would take to reach the paper's 1.4 billion filters at the measured rate,
  and the notebook's memory for them (1.4 G x 9 x 4 bytes).

Run from the repository root: `.venv/bin/python benchmarks/zoo_scan.py [--models 240]`
(the notebook's array holds the first `--notebook-models`, 80 by default: 240 would not fit);
it writes benchmarks/results_zoo.md. Everything is written into a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAPER_FILTERS = 1.4e9


def _make_zoo(folder: Path, models: int) -> tuple[Path, int]:
    sys.path.insert(0, str(ROOT))
    import torch
    from tests.models import resnet18_like

    lines = ["path,arch"]
    filters = 0
    for i in range(models):
        torch.manual_seed(i)
        state = resnet18_like().state_dict()
        torch.save(state, folder / f"r18_{i:03d}.pt")
        lines.append(f"r18_{i:03d}.pt,resnet18")
        filters += sum(w.shape[0] * w.shape[1] for w in state.values()
                       if w.ndim == 4 and w.shape[2:] == (3, 3))
    (folder / "zoo.csv").write_text("\n".join(lines) + "\n")
    return folder / "zoo.csv", filters


def _scan(manifest: str, out: str, workers: int) -> dict[str, Any]:
    from filterwatch import zoo

    start = time.perf_counter()
    result = zoo.scan([manifest], out, workers=workers, kernel_sizes=["3x3"])
    seconds = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"seconds": seconds, "models": result.scanned, "filters": result.filters,
            "failed": len(result.failed), "peak_worker_mb": children if workers > 1 else own}


def _notebook(manifest: str, models: int) -> dict[str, Any]:
    import numpy as np
    import torch

    start = time.perf_counter()
    folder = Path(manifest).parent
    parts = []
    for line in Path(manifest).read_text().splitlines()[1:models + 1]:
        state = torch.load(folder / line.split(",")[0], weights_only=True)
        parts += [w.reshape(-1, 9).numpy() for w in state.values() if w.ndim == 4 and w.shape[2:] == (3, 3)]
    x = np.concatenate(parts)
    np.linalg.eigh(np.cov(x, rowvar=False))
    return {"seconds": time.perf_counter() - start, "filters": int(x.shape[0]), "models": models,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child(kind: str, manifest: str, out: str, workers: int) -> dict[str, Any]:
    """``workers``: the scan's, or the notebook's number of models."""
    call = (f"z._scan({manifest!r}, {out!r}, {workers})" if kind == "scan"
            else f"z._notebook({manifest!r}, {workers})")
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import zoo_scan as z; "
            f"print(json.dumps({call}))")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=240)
    parser.add_argument("--notebook-models", type=int, default=80,
                        help="the notebook's one array holds this many (all 240 would need ~35 GB here)")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results_zoo.md"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "models"
        folder.mkdir()
        manifest, filters = _make_zoo(folder, args.models)
        print(f"zoo: {args.models} ResNet-18-shaped checkpoints, {filters:,} 3x3 filters", flush=True)
        runs = {}
        for workers in (1, 2):
            runs[workers] = _child("scan", str(manifest), str(Path(tmp) / f"zoo{workers}"), workers)
            print(f"{workers} worker(s): {runs[workers]}", flush=True)
        notebook = _child("notebook", str(manifest), "", min(args.notebook_models, args.models))
        print(f"notebook: {notebook}", flush=True)
    cores = os.cpu_count() or 1
    rows = []
    for workers, r in runs.items():
        rate = r["filters"] / r["seconds"]
        per_core = rate / cores  # one worker runs cores threads, n workers cores / n each
        rows.append(f"| zoo scan, {workers} worker(s) | {r['models'] / r['seconds']:.2f} | "
                    f"{rate / 1e6:.2f} M | {per_core / 1e6:.2f} M | {r['peak_worker_mb']:.0f} MB | "
                    f"{PAPER_FILTERS / rate / 60:.0f} min | bounded |")
    nb_rate = notebook["filters"] / notebook["seconds"]
    rows.append(f"| notebook (one array, one PCA; {notebook['models']} models) | "
                f"{notebook['models'] / notebook['seconds']:.2f} | "
                f"{nb_rate / 1e6:.2f} M | - | {notebook['peak_mb']:.0f} MB | "
                f"{PAPER_FILTERS / nb_rate / 60:.0f} min (PCA only, no measures) | "
                f"{PAPER_FILTERS * 9 * 4 / 2**30:.0f} GiB for 1.4 G filters |")
    speedup = runs[1]["seconds"] / runs[2]["seconds"]
    text = "\n".join([
        f"Zoo scan, {args.models} ResNet-18-shaped checkpoints ({filters:,} 3x3 filters); "
        f"{platform.machine()}, {cores} cores, {time.strftime('%Y-%m-%d')}. "
        f"2 workers vs 1: {speedup:.2f}x.",
        "",
        "| method | models/s | filters/s | per worker-core | peak memory (a worker) | time to 1.4 G filters "
        "| memory for 1.4 G |",
        "|---|---:|---:|---:|---:|---:|---|",
        *rows,
    ]) + "\n"
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
