"""Train a small CNN on scikit-learn's digits, save it, scan it.

Trains for a few seconds on 2 CPU cores, writes ``runs/demo/digits_cnn.pt`` plus a copy
whose second conv layer has 30 % of its filters zeroed, then runs ``filterwatch scan`` on
both so you can see what a healthy and a damaged layer look like.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torch import nn

OUT = Path("runs/demo")


def build_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(64, 10),
    )


def train(model: nn.Module, epochs: int = 8) -> float:
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"where the checkpoints go (default {OUT})")
    out = parser.parse_args().out
    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    model = build_cnn()
    acc = train(model)
    print(f"trained a small CNN on sklearn digits: train accuracy {acc:.3f}")
    healthy, damaged = out / "digits_cnn.pt", out / "digits_cnn_damaged.pt"
    torch.save(model.state_dict(), healthy)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    w = state["2.weight"]
    w.view(-1, 9)[torch.randperm(w.shape[0] * w.shape[1])[: int(0.3 * w.shape[0] * w.shape[1])]] = 0
    torch.save(state, damaged)
    for path in (healthy, damaged):
        print(f"\n$ filterwatch scan {path}")
        subprocess.run([sys.executable, "-m", "filterwatch", "scan", str(path)], check=True)


if __name__ == "__main__":
    main()
