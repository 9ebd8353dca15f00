"""Spectral measures on ResNet-shaped 3x3 layers against what a user would otherwise run, in one run.

  filterwatch-matrix   matrix_spectrum: σ_max, condition number, stable and effective rank of
                       each layer matrix (float64 Gram eigenvalues of the smaller side)
  numpy-svd            np.linalg.svd(compute_uv=False) of each reshaped float64 layer matrix
  filterwatch-bound    lipschitz_bound: the certified bound for every input size
  filterwatch-exact32  conv_operator_norm at 32x32: the exact circular norm (torch FFT + float64
                       Gram eigenvalues, batched)
  sedghi-numpy-32      Sedghi et al. as published: np.fft.fft2 of the kernel at 32x32, then a
                       batched np.linalg.svd of every frequency's C_out x C_in matrix

Run from the repository root (the numpy BLAS variables unset for this command only):

  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_spectral.py
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _weights(model: str) -> list[torch.Tensor]:
    from tests import models

    from filterwatch import LayerSelection, discover_layers

    torch.manual_seed(0)
    net = {"resnet18": models.resnet18_like, "resnet50": models.resnet50_like}[model]()
    layers = discover_layers(net, select=LayerSelection(kernel_sizes=["3x3"]))
    return [layer.kernel().detach() for layer in layers]


def _sedghi(w: np.ndarray, n: int = 32) -> float:
    spectrum = np.fft.fft2(w, (n, n), axes=(2, 3))  # (co, ci, n, n)
    mats = spectrum.transpose(2, 3, 0, 1).reshape(n * n, w.shape[0], w.shape[1])
    return float(np.linalg.svd(mats, compute_uv=False).max())


def _time(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resnet50", choices=("resnet18", "resnet50"))
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    from filterwatch.functional.spectral import conv_operator_norm, lipschitz_bound, matrix_spectrum

    weights = _weights(args.model)
    arrays = [w.double().numpy() for w in weights]
    methods: dict[str, Callable[[], Any]] = {
        "filterwatch-matrix": lambda: [matrix_spectrum(w) for w in weights],
        "numpy-svd": lambda: [np.linalg.svd(a.reshape(a.shape[0], -1), compute_uv=False) for a in arrays],
        "filterwatch-bound": lambda: [lipschitz_bound(w) for w in weights],
        "filterwatch-exact32": lambda: [conv_operator_norm(w, (32, 32)) for w in weights],
        "sedghi-numpy-32": lambda: [_sedghi(a) for a in arrays],
    }
    exact = [conv_operator_norm(w, (32, 32)) for w in weights]
    sedghi = [_sedghi(a) for a in arrays]
    bounds = [lipschitz_bound(w) for w in weights]
    agree = max(abs(a - b) / b for a, b in zip(exact, sedghi, strict=True))
    slack = max(b / e for b, e in zip(bounds, exact, strict=True))
    print(f"{args.model}: {len(weights)} 3x3 layers; torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads; best of {args.repeats} after a warm-up")
    print(f"exact@32 vs Sedghi: max relative difference {agree:.1e}; bound / exact@32: at most {slack:.3f}")
    print("| method | time | vs filterwatch |")
    print("|---|---:|---:|")
    times = {name: _time(fn, args.repeats) for name, fn in methods.items()}
    base = {"numpy-svd": "filterwatch-matrix", "sedghi-numpy-32": "filterwatch-exact32"}
    for name, t in times.items():
        ratio = f"{t / times[base[name]]:.1f}x" if name in base else ""
        print(f"| {name} | {t:.2f} s | {ratio} |")


if __name__ == "__main__":
    main()
