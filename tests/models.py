"""Model and layer builders for tests and benchmarks (torchvision-free look-alikes)."""

from __future__ import annotations

import torch
from torch import nn


def random_layer(c_out: int, c_in: int, k: int = 3, seed: int = 0) -> torch.Tensor:
    """Kaiming-uniform init, as PyTorch initialises nn.Conv2d."""
    torch.manual_seed(seed)
    return nn.Conv2d(c_in, c_out, k, bias=False).weight.detach().double().clone()


def trained_like_layer(c_out: int, c_in: int, rank: int = 3, noise: float = 0.05,
                       seed: int = 0) -> torch.Tensor:
    """Low-rank filter patterns plus noise: what a trained layer's spectrum looks like."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(rank, 9, generator=g, dtype=torch.float64)
    coef = torch.randn(c_out * c_in, rank, generator=g, dtype=torch.float64)
    f = coef @ basis + noise * torch.randn(c_out * c_in, 9, generator=g, dtype=torch.float64)
    return f.reshape(c_out, c_in, 3, 3)


def sparse_layer(c_out: int, c_in: int, share: float = 0.4, seed: int = 0) -> torch.Tensor:
    w = trained_like_layer(c_out, c_in, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    idx = torch.randperm(c_out * c_in, generator=g)[: int(share * c_out * c_in)]
    w.view(-1, 9)[idx] *= 1e-4
    return w


def _block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out),
    )


def resnet18_like(width: int = 64) -> nn.Sequential:
    """Conv shapes of ResNet-18 (7x7 stem, 8 basic blocks, 1x1 downsamples)."""
    layers: list[nn.Module] = [nn.Conv2d(3, width, 7, 2, 3, bias=False)]
    c = width
    for i, mult in enumerate((1, 2, 4, 8)):
        out = width * mult
        stride = 1 if i == 0 else 2
        layers += [_block(c, out, stride), _block(out, out)]
        if c != out:
            layers.append(nn.Conv2d(c, out, 1, stride, bias=False))
        c = out
    return nn.Sequential(*layers)


def mobilenet_like(width: int = 32) -> nn.Sequential:
    """Depthwise-separable blocks: 3x3 depthwise (groups = channels) + 1x1 pointwise."""
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, 2, 1, bias=False)]
    c = width
    for out in (64, 128, 128, 256):
        layers += [nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False), nn.ReLU(),
                   nn.Conv2d(c, out, 1, bias=False), nn.ReLU()]
        c = out
    return nn.Sequential(*layers)


# MobileNetV2's inverted residual settings: expansion t, output channels c, repeats n, stride s
_MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                 (6, 160, 3, 2), (6, 320, 1, 1))


def mobilenetv2_like() -> nn.Sequential:
    """MobileNetV2's conv shapes: a 3x3 stem, 17 inverted residuals (1x1 expand, 3x3 depthwise,
    1x1 project), a 1x1 head; 18 small 3x3 layers, 17 of them depthwise."""
    layers: list[nn.Module] = [nn.Conv2d(3, 32, 3, 2, 1, bias=False)]
    c = 32
    for t, out, n, s in _MOBILENET_V2:
        for i in range(n):
            hidden = c * t
            if t != 1:
                layers.append(nn.Conv2d(c, hidden, 1, bias=False))
            layers += [nn.Conv2d(hidden, hidden, 3, s if i == 0 else 1, 1, groups=hidden, bias=False),
                       nn.Conv2d(hidden, out, 1, bias=False)]
            c = out
    layers.append(nn.Conv2d(c, 1280, 1, bias=False))
    return nn.Sequential(*layers)


def _bottleneck(c_in: int, mid: int, stride: int) -> list[nn.Module]:
    out = mid * 4
    layers: list[nn.Module] = [nn.Conv2d(c_in, mid, 1, bias=False),
                               nn.Conv2d(mid, mid, 3, stride, 1, bias=False),
                               nn.Conv2d(mid, out, 1, bias=False)]
    if c_in != out or stride != 1:
        layers.append(nn.Conv2d(c_in, out, 1, stride, bias=False))
    return layers


def resnet50_like() -> nn.Sequential:
    """Conv shapes of ResNet-50 (7x7 stem, 16 bottlenecks: 1x1-3x3-1x1, 1x1 downsamples)."""
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, 2, 3, bias=False)]
    c = 64
    for i, (mid, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3))):
        for b in range(blocks):
            layers += _bottleneck(c, mid, 2 if (b == 0 and i > 0) else 1)
            c = mid * 4
    return nn.Sequential(*layers)


def fifty_layers() -> nn.Sequential:
    """50 3x3 conv layers in four stages of 64, 128, 256 and 512 channels (12, 13, 13 and 12
    layers): a deep plain stack, to see a snapshot's cost against its layer count."""
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 3, padding=1, bias=False)]
    c = 64
    for width, count in ((64, 11), (128, 13), (256, 13), (512, 12)):
        for _ in range(count):
            layers.append(nn.Conv2d(c, width, 3, padding=1, bias=False))
            c = width
    return nn.Sequential(*layers)


def convnext_like(dims: tuple[int, ...] = (96, 192, 384, 768),
                  depths: tuple[int, ...] = (3, 3, 9, 3)) -> nn.Sequential:
    """ConvNeXt-T conv shapes: 4x4 patchify stem, 7x7 depthwise blocks (MLPs as 1x1 convs)."""
    layers: list[nn.Module] = [nn.Conv2d(3, dims[0], 4, 4)]
    for i, (d, n) in enumerate(zip(dims, depths, strict=True)):
        if i:
            layers.append(nn.Conv2d(dims[i - 1], d, 2, 2))
        for _ in range(n):
            layers += [nn.Conv2d(d, d, 7, padding=3, groups=d), nn.Conv2d(d, 4 * d, 1),
                       nn.Conv2d(4 * d, d, 1)]
    return nn.Sequential(*layers)
