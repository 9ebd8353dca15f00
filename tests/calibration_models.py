"""The calibration set: healthy models, and one layer of each damaged at several strengths.

Shared by ``benchmarks/calibration.py`` (the table the gate and alert defaults come from)
and ``tests/gate/test_calibration.py`` (the defaults still pass every healthy model and fail
every must-fail damage). Everything is trained here on scikit-learn's digits, seeded.

Healthy models (they must pass):
- ``plain``: 3 convs, ReLU, Adam (``tests/trained.py``'s recipe);
- ``bn_sgd``: 4 convs 32-64-128-128 with BatchNorm, SGD with momentum; wide layers trained
  briefly keep VE/H_T near 1, the case that must not be called "untrained";
- ``depthwise``: MobileNet-style depthwise-separable blocks with BatchNorm, Adam;
- ``production_like``: synthetic layers at the worst figures measured on working production
  CNNs (44 % sparse filters, 3 % dead output channels, raw VE 0.18 on a depthwise layer).

Damages (one layer at a time, the model's middle conv): output channels zeroed, filters
zeroed, collapsed to one pattern, NaN/Inf, weights x10 / x100, re-initialised, and a
checkpoint trained with a destructive learning rate.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from sklearn.datasets import load_digits
from torch import nn

State = dict[str, torch.Tensor]


class Trained(NamedTuple):
    name: str
    state: State
    accuracy: float  # on the held-out fifth of digits
    layer: str       # the conv the damages hit
    init: State      # the same model before training (its first snapshot)


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    cut = int(0.8 * len(x))
    return x[:cut], y[:cut], x[cut:], y[cut:]


def _plain() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(64, 10))


def _bn() -> nn.Module:
    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*block(1, 32), *block(32, 64), nn.MaxPool2d(2), *block(64, 128),
                         *block(128, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))


def _depthwise() -> nn.Module:
    def sep(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False), nn.BatchNorm2d(c_in),
                nn.ReLU(), nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                         *sep(32, 64), nn.MaxPool2d(2), *sep(64, 64),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def _train(model: nn.Module, opt: torch.optim.Optimizer, epochs: int, seed: int,
           classes: range | None = None) -> float:
    x, y, xv, yv = _digits()
    if classes is not None:  # a task of some digits only (the demo's pretrain / fine-tune split)
        keep, keep_v = (y >= classes.start) & (y < classes.stop), (yv >= classes.start) & (yv < classes.stop)
        x, y, xv, yv = x[keep], y[keep], xv[keep_v], yv[keep_v]
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            if torch.isfinite(loss):
                loss.backward()
                opt.step()
    model.eval()
    with torch.no_grad():
        return float((model(xv).argmax(1) == yv).float().mean())


def _state(model: nn.Module) -> State:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# name -> (builder, optimizer, epochs, the damaged layer)
_RECIPES: dict[str, tuple[Callable[[], nn.Module], Callable[[nn.Module], torch.optim.Optimizer],
                          int, str]] = {
    "plain": (_plain, lambda m: torch.optim.Adam(m.parameters(), lr=3e-3), 4, "2.weight"),
    "bn_sgd": (_bn, lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9), 2, "7.weight"),
    "depthwise": (_depthwise, lambda m: torch.optim.Adam(m.parameters(), lr=3e-3), 4, "10.weight"),
}


@functools.cache
def trained(name: str) -> Trained:
    """One of the healthy trained models (cached per process)."""
    build, optimizer, epochs, layer = _RECIPES[name]
    torch.manual_seed(0)
    model = build()
    init = _state(model)
    accuracy = _train(model, optimizer(model), epochs, seed=0)
    return Trained(name, _state(model), accuracy, layer, init)


@functools.lru_cache(maxsize=1)
def destructive_lr() -> Trained:
    """``bn_sgd`` trained with SGD at learning rate 3: the weights blow up (10-45x)."""
    torch.manual_seed(0)
    model = _bn()
    init = _state(model)
    accuracy = _train(model, torch.optim.SGD(model.parameters(), lr=3.0, momentum=0.9), 2, seed=0)
    return Trained("bn_sgd lr=3", _state(model), accuracy, "7.weight", init)


# fine-tunes of the plain CNN pretrained on digits 0-4, on digits 5-9 (the demo's recipe):
# name -> (optimizer, epochs, must the gate given the pretrained reference fail it)
FINETUNES: dict[str, tuple[Callable[[nn.Module], torch.optim.Optimizer], int, bool]] = {
    "Adam lr 1e-3 (the demo's)": (lambda m: torch.optim.Adam(m.parameters(), lr=1e-3), 12, False),
    "Adam lr 3e-3": (lambda m: torch.optim.Adam(m.parameters(), lr=3e-3), 12, False),
    "SGD lr 5 (wrecked)": (lambda m: torch.optim.SGD(m.parameters(), lr=5.0), 2, True),
}


@functools.cache
def pretrained() -> Trained:
    """The plain CNN pretrained on digits 0-4 (the demo's first phase)."""
    torch.manual_seed(0)
    model = _plain()
    init = _state(model)
    accuracy = _train(model, torch.optim.Adam(model.parameters(), lr=3e-3), 8, seed=0, classes=range(0, 5))
    return Trained("plain, pretrained on digits 0-4", _state(model), accuracy, "2.weight", init)


@functools.cache
def finetuned(name: str) -> Trained:
    """:func:`pretrained` fine-tuned on digits 5-9 by the recipe ``FINETUNES[name]``."""
    optimizer, epochs, _ = FINETUNES[name]
    model = _plain()
    model.load_state_dict(pretrained().state)
    accuracy = _train(model, optimizer(model), epochs, seed=1, classes=range(5, 10))
    return Trained(f"fine-tuned on 5-9, {name}", _state(model), accuracy, "2.weight", pretrained().state)


def fresh(init: str) -> State:
    """``bn_sgd``'s architecture, freshly initialised: ``default`` or ``kaiming_normal``."""
    torch.manual_seed(1)
    model = _bn()
    if init == "kaiming_normal":
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return _state(model)


def production_like() -> State:
    """Synthetic layers at the worst healthy figures of working production CNNs."""
    g = torch.Generator().manual_seed(3)

    def trained_like(c_out: int, c_in: int, rank: int) -> torch.Tensor:
        basis = torch.randn(rank, 9, generator=g)
        coef = torch.randn(c_out * c_in, rank, generator=g)
        return (coef @ basis + 0.3 * torch.randn(c_out * c_in, 9, generator=g)).reshape(c_out, c_in, 3, 3)

    sparse = trained_like(64, 32, 4)
    idx = torch.randperm(64 * 32, generator=g)[: int(0.44 * 64 * 32)]
    sparse.view(-1, 9)[idx] *= 1e-3  # 44 % sparse filters
    dead = trained_like(100, 32, 4)
    dead[:3] = 0.0  # 3 % dead output channels
    depthwise = trained_like(256, 1, 1) + 0.02 * torch.randn(256, 1, 3, 3, generator=g)  # raw VE ~0.18
    return {"sparse.weight": sparse, "dead.weight": dead, "depthwise.weight": depthwise}


# -- damages: each takes a layer's weight and returns a damaged copy ----------------------
def zero_channels(share: float) -> Callable[[torch.Tensor], torch.Tensor]:
    def damage(w: torch.Tensor) -> torch.Tensor:
        w = w.clone()
        idx = torch.randperm(w.shape[0], generator=torch.Generator().manual_seed(1))
        w[idx[: math.ceil(share * w.shape[0])]] = 0.0
        return w
    return damage


def zero_filters(share: float) -> Callable[[torch.Tensor], torch.Tensor]:
    def damage(w: torch.Tensor) -> torch.Tensor:
        w = w.clone()
        flat = w.view(-1, math.prod(w.shape[2:]))
        idx = torch.randperm(flat.shape[0], generator=torch.Generator().manual_seed(1))
        flat[idx[: math.ceil(share * flat.shape[0])]] = 0.0
        return w
    return damage


def collapse(w: torch.Tensor) -> torch.Tensor:
    """Every filter a scaled copy of one pattern (the layer's mean filter direction)."""
    flat = w.reshape(-1, math.prod(w.shape[2:]))
    pattern = flat[flat.norm(dim=1).argmax()]
    scales = flat @ pattern / pattern.dot(pattern)
    return (scales[:, None] * pattern[None, :]).reshape(w.shape).clone()


def set_value(value: float) -> Callable[[torch.Tensor], torch.Tensor]:
    def damage(w: torch.Tensor) -> torch.Tensor:
        w = w.clone()
        w.view(-1)[0] = value
        return w
    return damage


def decay_filters(share: float, factor: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """``share`` of the filters scaled by ``factor`` (too strong weight decay: small, not 0)."""
    def damage(w: torch.Tensor) -> torch.Tensor:
        w = w.clone()
        flat = w.view(-1, math.prod(w.shape[2:]))
        idx = torch.randperm(flat.shape[0], generator=torch.Generator().manual_seed(1))
        flat[idx[: math.ceil(share * flat.shape[0])]] *= factor
        return w
    return damage


def scale(factor: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda w: w * factor


def reinit(w: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(2)
    return nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), bias=False).weight.detach().clone()


class Damage(NamedTuple):
    name: str
    apply: Callable[[torch.Tensor], torch.Tensor]
    must_fail: bool  # the gate at its defaults must fail it (issue 22)


DAMAGES: tuple[Damage, ...] = (
    *(Damage(f"{p:.0%} output channels zeroed", zero_channels(p), p >= 0.5) for p in (0.25, 0.5, 0.75, 0.9)),
    *(Damage(f"{p:.0%} filters zeroed", zero_filters(p), p >= 0.75) for p in (0.5, 0.75, 0.9)),
    Damage("75% filters decayed to 1/1000", decay_filters(0.75, 1e-3), True),
    Damage("collapsed to one pattern", collapse, True),
    Damage("one NaN", set_value(math.nan), True),
    Damage("one Inf", set_value(math.inf), True),
    Damage("weights x10", scale(10.0), False),
    Damage("weights x100", scale(100.0), False),
    Damage("re-initialised (default init)", reinit, False),
)


def damaged(model: Trained, damage: Damage) -> State:
    state = dict(model.state)
    state[model.layer] = damage.apply(state[model.layer])
    return state
