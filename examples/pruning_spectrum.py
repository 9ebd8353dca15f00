"""Pruning and the spectrum: magnitude-prune a digits CNN from 0 to 90 % and watch the
condition number rise with sparsity ("Lipschitz Constant Meets Condition Number").

Trains a small CNN on scikit-learn's digits (a few seconds on 2 CPU cores), then for each
pruning rate zeroes that share of the smallest-magnitude weights of every conv layer
(``torch.nn.utils.prune.l1_unstructured``, no fine-tuning) and measures test accuracy, the
share of zero weights, the worst layer's condition number and the product of the layers'
certified Lipschitz bounds (``filterwatch.analyze(spectral=True)``). Prints a table and
writes ``docs/pruning_spectrum.png``. Run: ``.venv/bin/python examples/pruning_spectrum.py``.
"""

from __future__ import annotations

import argparse
import copy
import math
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn.utils import prune

import filterwatch

RATES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9)


def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def build() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(64, 10))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for i in range(0, len(y), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64]).backward()
            opt.step()


def measure(model: nn.Module, rate: float, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    pruned = copy.deepcopy(model)
    convs = [m for m in pruned if isinstance(m, nn.Conv2d)]
    if rate > 0:
        for conv in convs:
            prune.l1_unstructured(conv, "weight", amount=rate)
            prune.remove(conv, "weight")
    with torch.no_grad():
        accuracy = float((pruned(x).argmax(1) == y).float().mean())
    report = filterwatch.analyze(pruned, spectral=True)
    zeros = sum(int((c.weight == 0).sum()) for c in convs) / sum(c.weight.numel() for c in convs)
    conds = [layer.condition_number for layer in report.layers]
    return {"rate": rate, "accuracy": accuracy, "zero_weights": zeros,
            "condition_number": math.inf if any(c is None for c in conds) else max(c for c in conds if c),
            "lipschitz_bound": float(report.settings["lipschitz_bound_product"] or math.nan)}


def plot(rows: list[dict[str, float]], out: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.2), dpi=100, layout="constrained")
    rates = [100 * r["rate"] for r in rows]
    for i, (key, label, log) in enumerate((("accuracy", "test accuracy", False),
                                           ("condition_number", "worst layer condition number", True),
                                           ("lipschitz_bound", "Lipschitz bound (product)", False))):
        ax = fig.add_subplot(1, 3, i + 1)
        values = [r[key] if math.isfinite(r[key]) else math.nan for r in rows]
        ax.plot(rates, values, marker="o")
        deficient = [x for x, r in zip(rates, rows, strict=True) if not math.isfinite(r[key])]
        if deficient:  # no finite condition number: a layer lost its full rank
            ax.axvspan(min(deficient) - 2, max(deficient) + 2, color="#fdecea")
            ax.text(min(deficient), ax.get_ylim()[1], " rank-\n deficient", va="top", fontsize=8,
                    color="#b71c1c")
        ax.set_xlabel("weights pruned (%)")
        ax.set_title(label, fontsize=10)
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    out.parent.mkdir(exist_ok=True)
    fig.savefig(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--output", default="docs/pruning_spectrum.png")
    args = parser.parse_args(argv)
    x_train, y_train, x_test, y_test = data()
    model = build()
    print(f"training a digits CNN for {args.epochs} epochs ...")
    train(model, x_train, y_train, args.epochs)
    model.eval()
    rows = []
    print(f"{'pruned':>7}  {'accuracy':>8}  {'zeros':>6}  {'worst cond':>10}  {'Lip bound':>9}")
    for rate in RATES:
        row = measure(model, rate, x_test, y_test)
        rows.append(row)
        print(f"{rate:>7.0%}  {row['accuracy']:>8.3f}  {row['zero_weights']:>6.0%}  "
              f"{row['condition_number']:>10.1f}  {row['lipschitz_bound']:>9.2f}")
    plot(rows, Path(args.output))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
