"""The fine-tuning demo without Lightning: a hand-written loop with ``filterwatch.watch``.

Forward hooks snapshot the effective kernels every ``--every`` forward calls; TensorBoard
logs go to ``runs/plain_loop``. Run: ``.venv/bin/python examples/plain_loop.py [--bad]``.
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.tensorboard import SummaryWriter

import filterwatch
from filterwatch.report import to_table


def data(lo: int) -> tuple[torch.Tensor, torch.Tensor]:
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    keep = (y >= lo) & (y < lo + 5)
    return x[keep], y[keep] - lo


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float,
          l1: float = 0.0) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(32):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            if l1:
                loss = loss + l1 * sum(m.weight.abs().sum() for m in model.modules()
                                       if isinstance(m, nn.Conv2d))
            loss.backward()
            opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bad", action="store_true")
    parser.add_argument("--every", type=int, default=10, help="snapshot every N forward calls")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(64, 5))
    train(model, *data(0), epochs=5, lr=3e-3)  # pretrain on 0-4
    model[-1] = nn.Linear(64, 5)
    writer = SummaryWriter("runs/plain_loop" + ("_bad" if args.bad else ""))
    with filterwatch.watch(model, every_n_calls=args.every, writer=writer) as w:
        train(model, *data(5), epochs=5, lr=6e-2 if args.bad else 1e-3, l1=2e-3 if args.bad else 0.0)
    writer.close()
    print(to_table(w.history[-1]))
    for alert in w.alerts:
        print(f"alert at call {alert.step}: {alert.message}")
    print(f"{len(w.history)} snapshots, monitor time {w.overhead_s:.2f} s; "
          "tensorboard --logdir runs")


if __name__ == "__main__":
    main()
