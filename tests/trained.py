"""A small CNN trained for real on sklearn's digits (cached per test session)."""

from __future__ import annotations

import functools

import torch
from sklearn.datasets import load_digits
from torch import nn


@functools.lru_cache(maxsize=1)
def trained_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(64, 10),
    )
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(4):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def damaged(share: float = 0.3, layer: str = "2.weight", nan: bool = False) -> dict[str, torch.Tensor]:
    """The trained weights with ``share`` of one layer's filters zeroed (or a NaN)."""
    state = {k: v.clone() for k, v in trained_state().items()}
    w = state[layer]
    flat = w.view(-1, w.shape[-1] * w.shape[-2])
    g = torch.Generator().manual_seed(1)
    flat[torch.randperm(flat.shape[0], generator=g)[: int(share * flat.shape[0])]] = 0.0
    if nan:
        w[0, 0, 0, 0] = float("nan")
    return state
