"""Speed and peak memory of filterwatch against what users would otherwise run, in one run.

Models: ResNet-18/50-, MobileNet- (3x3 depthwise), MobileNetV2- (18 small 3x3 layers, 17
depthwise) and ConvNeXt-T-shaped (7x7 depthwise) conv stacks built from plain nn.Conv2d
(tests/models.py), random Kaiming init, float32.

Measures ("paper"): sparsity, VE (raw, normalised, clean) and orthogonality of the 3x3
nn.Conv2d layers (the layers torchconvquality measures; for ConvNeXt, which has none, every
non-1x1 layer). Methods:
  filterwatch          analyze(), the fused engine (default)
  filterwatch-ref      analyze(precision="float64"), the same engine with float64 products
  torchconvquality     torchconvquality.measure_quality (the authors' library)
  numpy-naive          a per-layer numpy implementation of the paper's pipeline (SVD, GEMM)
  weightwatcher        weightwatcher.WeightWatcher().analyze(), only when installed
Drift (layer by layer, reference = the model, current = a perturbed copy):
  filterwatch-drift    drift_basis + drift (torch): build the reference and compare
  filterwatch-drift-only  drift against a reference built beforehand, as the monitor does it:
                       layers of up to 2^18 values in one batch (drift_many), larger ones alone
  numpy-drift          sklearn PCA + np.histogram + the KL sum, as in a notebook

Every method runs in its own subprocess (so peak RSS is its own); time is the median of
--repeats runs after one warm-up. Run from the repository root:

  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_measures.py

(the two variables slow numpy's BLAS on these machines; unset them for this command only).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("resnet18", "resnet50", "mobilenet", "mobilenetv2", "convnext")
METHODS = ("filterwatch", "filterwatch-ref", "torchconvquality", "numpy-naive", "weightwatcher",
           "filterwatch-drift", "filterwatch-drift-only", "numpy-drift")


def _model(name: str) -> Any:
    sys.path.insert(0, str(ROOT))
    import torch
    from tests import models

    torch.manual_seed(0)
    build = {"resnet18": models.resnet18_like, "resnet50": models.resnet50_like,
             "mobilenet": models.mobilenet_like, "mobilenetv2": models.mobilenetv2_like,
             "convnext": models.convnext_like}[name]
    return build().eval()


def _kernel_sizes(name: str) -> list[str] | None:
    return None if name == "convnext" else ["3x3"]


def _numpy_naive(weights: list[Any]) -> list[tuple[float, float, float]]:
    import numpy as np

    out = []
    for w in weights:
        f = w.reshape(w.shape[0] * w.shape[1], -1).astype(np.float64)
        t = 0.01 * np.abs(f).max() or 1.0
        sparse = (np.abs(f) < t).all(axis=1)
        s = np.linalg.svd(f - f.mean(0), compute_uv=False) ** 2
        p = s / s.sum() if s.sum() else s
        p = p[p > 0]
        ve = float(-(p * np.log10(p)).sum())
        clean = f[~sparse]
        sc = np.linalg.svd(clean - clean.mean(0), compute_uv=False) ** 2 if len(clean) > 1 else s
        rows = w.reshape(w.shape[0], -1).astype(np.float64)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        norms[norms == 0] = 1
        u = rows / norms
        orth = 1 - np.abs(u @ u.T - np.eye(len(u))).sum() / (len(u) * (len(u) - 1))
        out.append((float(sparse.mean()), ve + float(sc.sum()) * 0, float(orth)))
    return out


def _numpy_drift(pairs: list[tuple[Any, Any]]) -> float:
    import numpy as np
    from sklearn.decomposition import PCA

    total = 0.0
    for ref, cur in pairs:
        def scale(f: Any) -> Any:
            peak = np.abs(f).max(axis=1, keepdims=True)
            peak[peak == 0] = 1
            return f / peak

        r, c = scale(ref), scale(cur)
        pca = PCA(n_components=r.shape[1]).fit(r)
        rc, cc = pca.transform(r), pca.transform(c)
        lo, hi = rc.min(), rc.max()
        cc = np.clip(cc, lo, hi)
        for i in range(r.shape[1]):
            p, _ = np.histogram(rc[:, i], bins=70, range=(lo, hi))
            q, _ = np.histogram(cc[:, i], bins=70, range=(lo, hi))
            p = p / p.sum()
            q = q / q.sum()
            p[p == 0] = np.finfo(np.float32).eps
            q[q == 0] = np.finfo(np.float32).eps
            p, q = p / p.sum(), q / q.sum()
            sym_kl = np.sum(p * np.log(p / q)) + np.sum(q * np.log(q / p))
            total += pca.explained_variance_ratio_[i] * sym_kl
    return total


def _job(model_name: str, method: str) -> Callable[[], Any] | None:
    import torch

    import filterwatch
    from filterwatch.functional import drift, drift_basis, scratch_memory
    from filterwatch.functional.drift_many import drift_many

    model = _model(model_name)
    ks = _kernel_sizes(model_name)
    select = filterwatch.LayerSelection(kernel_sizes=ks)
    layers = filterwatch.discover_layers(model, select=select)
    if method == "filterwatch":
        return lambda: filterwatch.analyze(model, select=select)
    if method == "filterwatch-ref":
        return lambda: filterwatch.analyze(model, select=select, precision="float64")
    if method == "torchconvquality":
        import torchconvquality

        if model_name == "convnext":
            return None
        return lambda: torchconvquality.measure_quality(model)
    if method == "numpy-naive":
        weights = [layer.kernel().numpy() for layer in layers]
        return lambda: _numpy_naive(weights)
    if method == "weightwatcher":
        try:
            import weightwatcher
        except ImportError:
            return None
        return lambda: weightwatcher.WeightWatcher(model=model).analyze()
    g = torch.Generator().manual_seed(1)
    pairs_t = [(layer.kernel().reshape(-1, layer.kernel_numel),
                layer.kernel().reshape(-1, layer.kernel_numel)
                + 0.02 * torch.randn(layer.n_filters, layer.kernel_numel, generator=g))
               for layer in layers]
    if method == "filterwatch-drift":

        def build_and_drift() -> float:
            with scratch_memory():
                return sum(drift(c, drift_basis(r)).value for r, c in pairs_t)

        return build_and_drift
    if method == "filterwatch-drift-only":  # the monitor's case: the reference is built once,
        bases = [drift_basis(r) for r, _ in pairs_t]  # small layers are compared in one batch
        currents = [c for _, c in pairs_t]  # (drift_many), large ones one by one (drift)

        def drift_only() -> float:
            with scratch_memory():
                batch = drift_many(currents, bases)
                return sum((r if r is not None else drift(c, b)).value
                           for r, c, b in zip(batch, currents, bases, strict=True))

        return drift_only
    pairs_n = [(r.double().numpy(), c.double().numpy()) for r, c in pairs_t]
    return lambda: _numpy_drift(pairs_n)


def _one(model_name: str, method: str, repeats: int) -> dict[str, Any]:
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    job = _job(model_name, method)
    if job is None:
        return {"skipped": True}
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    job()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        job()
        times.append(time.perf_counter() - start)
    rss2 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"time_s": statistics.median(times), "peak_rss_mb": rss2 / 1024,
            "extra_rss_mb": max(0, rss2 - rss1) / 1024, "setup_rss_mb": (rss1 - rss0) / 1024}


def _blas() -> str:
    try:
        import numpy  # noqa: F401
        from threadpoolctl import threadpool_info

        infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        return ", ".join(f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, "
                         f"{i.get('num_threads')} threads)" for i in infos) or "unknown"
    except ImportError:
        return "threadpoolctl not installed"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "METHOD"))
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results.md"))
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_one(*args.one, args.repeats)))
        return
    import torch

    results: dict[str, dict[str, Any]] = {}
    total = len(MODELS) * len(METHODS)
    for i, model_name in enumerate(MODELS):
        for j, method in enumerate(METHODS):
            sys.stderr.write(f"\r[{i * len(METHODS) + j + 1}/{total}] {model_name} {method:<20}")
            sys.stderr.flush()
            done = subprocess.run([sys.executable, __file__, "--one", model_name, method,
                                   "--repeats", str(args.repeats)], capture_output=True, text=True,
                                  cwd=ROOT, timeout=1800)
            if done.returncode != 0:
                results[f"{model_name}/{method}"] = {"error": done.stderr.strip().splitlines()[-1]}
            else:
                results[f"{model_name}/{method}"] = json.loads(done.stdout.strip().splitlines()[-1])
    sys.stderr.write("\n")
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), numpy BLAS: {_blas()}; "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}; "
        f"{time.strftime('%Y-%m-%d')}. Median of {args.repeats} runs; peak RSS of the "
        "method's own process (extra = grown during the runs).",
        "",
        "| model | method | time | vs filterwatch | peak RSS (extra) |",
        "|---|---|---:|---:|---:|",
    ]
    for model_name in MODELS:
        for method in METHODS:
            r = results[f"{model_name}/{method}"]
            base_key = "filterwatch-drift" if "drift" in method else "filterwatch"
            base = results[f"{model_name}/{base_key}"].get("time_s")
            if "error" in r:
                lines.append(f"| {model_name} | {method} | error: {r['error'][:60]} | | |")
            elif r.get("skipped"):
                lines.append(f"| {model_name} | {method} | n/a (not installed / no 3x3) | | |")
            else:
                ratio = f"{r['time_s'] / base:.1f}x" if base else ""
                if method == "filterwatch-drift-only":
                    ratio = "(reference prebuilt)"
                if method == "numpy-drift":
                    only = results[f"{model_name}/filterwatch-drift-only"].get("time_s")
                    ratio += f"; {r['time_s'] / only:.1f}x vs prebuilt" if only else ""
                lines.append(f"| {model_name} | {method} | {r['time_s'] * 1000:.1f} ms | {ratio} | "
                             f"{r['peak_rss_mb']:.0f} MB ({r['extra_rss_mb']:.0f}) |")
    text = "\n".join(lines) + "\n"
    Path(args.output).write_text(text)
    Path(args.output).with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
