"""Shared fixtures: checkpoint files of every supported kind, and hostile ones."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from hypothesis import settings
from safetensors.torch import save_file
from torch import nn

# CI runs the same examples every time: a failure there is reproducible, never flaky.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")


def small_cnn(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 32, 3), nn.ReLU(),
        nn.Conv2d(32, 32, 1), nn.Conv2d(32, 1, 3),
    )
    with torch.no_grad():  # deterministic, human-checkable damage in layer 2
        net[2].weight[:, :5] = 0
    return net


class _Evil:
    """Unpickling this would create the marker file: the loader must never do it."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def checkpoints(tmp_path: Path) -> dict[str, Path]:
    sd = small_cnn().state_dict()
    files = {
        "pt": tmp_path / "model.pt",
        "wrapped": tmp_path / "wrapped.pth",
        "ckpt": tmp_path / "lightning.ckpt",
        "safetensors": tmp_path / "model.safetensors",
        "legacy": tmp_path / "legacy.pt",
    }
    torch.save(sd, files["pt"])
    torch.save({"state_dict": sd, "epoch": 3}, files["wrapped"])
    torch.save({"state_dict": {f"model.{k}": v for k, v in sd.items()}, "global_step": 10,
                "optimizer_states": [], "hyper_parameters": {"lr": 0.1}}, files["ckpt"])
    save_file({k: v.contiguous() for k, v in sd.items()}, str(files["safetensors"]))
    torch.save(sd, files["legacy"], _use_new_zipfile_serialization=False)
    return files


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.pt"
    torch.save(small_cnn().state_dict(), good)
    raw = good.read_bytes()
    files = {
        "truncated": tmp_path / "truncated.pt",
        "random": tmp_path / "random.pt",
        "empty": tmp_path / "empty.pt",
        "text": tmp_path / "notes.pt",
        "list": tmp_path / "list.pt",
        "no_conv": tmp_path / "mlp.pt",
        "malicious": tmp_path / "malicious.pt",
        "malicious_raw": tmp_path / "malicious.pkl",
        "bad_safetensors": tmp_path / "bad.safetensors",
    }
    files["truncated"].write_bytes(raw[: len(raw) // 2])
    files["random"].write_bytes(bytes(range(256)) * 8)
    files["empty"].write_bytes(b"")
    files["text"].write_text("hello, not a checkpoint\n")
    torch.save([torch.zeros(3)], files["list"])
    torch.save(nn.Sequential(nn.Linear(4, 4)).state_dict(), files["no_conv"])
    marker = tmp_path / "PWNED"
    torch.save({"weight": _Evil(marker)}, files["malicious"])
    files["malicious_raw"].write_bytes(pickle.dumps({"weight": _Evil(marker)}))
    files["bad_safetensors"].write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": garbage")
    return files
