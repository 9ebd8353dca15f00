"""The paper's question on a small zoo: do the filters of models trained for different tasks
(and of untrained ones) differ in distribution?

Builds a zoo of small CNNs of two architectures on scikit-learn's digits (8x8 images): some
trained to read the digit, some to tell even from odd, some left at their random init; writes
a manifest with `task` and `arch` columns; scans it with `filterwatch.zoo.scan` (both CPU
cores) and prints and draws the shift matrix by task (`zoo.open(...).shift(by="task")`).

    .venv/bin/python examples/zoo_study.py --out runs/zoo_study
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torch import nn

from filterwatch import zoo
from filterwatch.zoo.picture import shift_png


def _cnn(widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    c = 1
    for w in widths:
        layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU()]
        c = w
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))


ARCHS = {"small": lambda: _cnn((16, 32)), "wide": lambda: _cnn((32, 32, 64))}


def _train(model: nn.Module, task: str, epochs: int, seed: int) -> None:
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target) % 2 if task == "parity" else torch.tensor(d.target)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()


def build_zoo(folder: Path, per_group: int, epochs: int) -> Path:
    """Checkpoints of every (architecture, task), ``per_group`` seeds each, and a manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["path,task,arch"]
    for arch, make in ARCHS.items():
        for task in ("digits", "parity", "random"):
            for seed in range(per_group):
                torch.manual_seed(seed)
                model = make()
                if task != "random":
                    _train(model, task, epochs, seed)
                name = f"{arch}_{task}_{seed}.pt"
                torch.save(model.state_dict(), folder / name)
                lines.append(f"{name},{task},{arch}")
    (folder / "zoo.csv").write_text("\n".join(lines) + "\n")
    return folder / "zoo.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/zoo_study", help="where the zoo and the picture go")
    parser.add_argument("--per-group", type=int, default=3, help="models per (architecture, task)")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    out = Path(args.out)
    manifest = build_zoo(out / "models", args.per_group, args.epochs)
    result = zoo.scan([manifest], out / "zoo", workers=2, kernel_sizes=["3x3"])
    print(f"scanned {result.scanned} checkpoints ({result.filters:,} 3x3 filters), "
          f"{result.skipped} already in the zoo, {len(result.failed)} failed")
    shift = zoo.open(out / "zoo").shift(by="task")
    print(shift.to_table(), end="")
    (out / "shift_by_task.png").write_bytes(shift_png(shift))  # the matrix and its boxplot
    print(f"wrote {out / 'shift_by_task.png'}")


if __name__ == "__main__":
    main()
