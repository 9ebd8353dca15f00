"""Tampered reference files: validated against what a build can write, and a reference that
compares no layer is not a pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from filterwatch import InputError, Reference
from filterwatch.reference.codec import write_file


def _files(tmp_path: Path) -> tuple[Path, Path]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(), torch.nn.Conv2d(16, 32, 3))
    ckpt = tmp_path / "model.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
    ref = tmp_path / "ref.safetensors"
    Reference.build(model).save(ref)
    return ckpt, ref


def _tamper(ref: Path, out: Path, change) -> Path:  # type: ignore[no-untyped-def]
    tensors, meta = Reference.load(ref).to_tensors()
    change(tensors, meta)
    write_file(out, {k: v.contiguous() for k, v in tensors.items()}, meta)
    return out


def _zero_explained(tensors: dict, meta: dict) -> None:  # type: ignore[type-arg]
    for key in tensors:
        if key.endswith(".explained"):
            tensors[key] = torch.zeros_like(tensors[key])


def _huge_range(tensors: dict, meta: dict) -> None:  # type: ignore[type-arg]
    for i, g in enumerate(meta["groups"]):
        g["lo"], g["hi"] = -1e300, 1e300
        hist = torch.zeros_like(tensors[f"group.{i}.hist"])
        hist[:, 35] = g["n"]
        tensors[f"group.{i}.hist"] = hist


@pytest.mark.parametrize("change", [_zero_explained, _huge_range])
def test_a_reference_a_build_cannot_write_is_refused(tmp_path: Path, change) -> None:  # type: ignore[no-untyped-def]
    _, ref = _files(tmp_path)
    bad = _tamper(ref, tmp_path / "bad.safetensors", change)
    with pytest.raises(InputError, match="expected a filterwatch reference file"):
        Reference.load(bad)


def test_a_reference_that_compares_no_layer_fails_the_check(tmp_path: Path) -> None:
    ckpt, ref = _files(tmp_path)

    def empty(tensors: dict, meta: dict) -> None:  # type: ignore[type-arg]
        names = [layer for g in meta["groups"] for layer in g["layers"]]
        for key in [k for k in tensors if k.startswith("group.")]:
            del tensors[key]
        meta["groups"] = []
        meta["skipped"] = dict.fromkeys(names, "skipped")

    bad = _tamper(ref, tmp_path / "empty.safetensors", empty)
    config = tmp_path / "pyproject.toml"
    config.write_text("[tool.filterwatch.gate]\ndrift-min-filters = 1\n")
    done = subprocess.run([sys.executable, "-m", "filterwatch", "check", str(ckpt), "--reference",
                           str(bad), "--config", str(config)], capture_output=True, text=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the reference compares none of the" in done.stdout + done.stderr
