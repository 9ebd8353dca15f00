"""`filterwatch zoo shift` (issue 28, item 3) equals an independent numpy implementation of
the paper's pipeline: every filter in one array, one PCA, one range, 70-bin histograms per
group, float32 epsilon for empty bins, symmetric KL weighted by the explained variance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from filterwatch import zoo
from tests.golden_helpers import _run
from tests.models import trained_like_layer

pytest.importorskip("pyarrow")


def _make_zoo(folder: Path) -> Path:
    folder.mkdir(parents=True)
    lines = ["path,task"]
    for i in range(6):
        torch.manual_seed(i)
        net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 32, 3), nn.Conv2d(32, 32, 3),
                            nn.Conv2d(32, 8, 5))
        task = "trained" if i % 2 else "random"
        if task == "trained":
            with torch.no_grad():
                net[1].weight.copy_(trained_like_layer(32, 16, rank=3, noise=0.1, seed=i))
                net[2].weight.copy_(trained_like_layer(32, 32, rank=2, noise=0.05, seed=100 + i))
        torch.save(net.state_dict(), folder / f"m{i}.pt")
        lines.append(f"m{i}.pt,{task}")
    (folder / "zoo.csv").write_text("\n".join(lines) + "\n")
    return folder / "zoo.csv"


def _numpy_shift(folder: Path, by_task: bool) -> tuple[list[str], list[int], np.ndarray]:
    """The notebook's way: load everything, one array."""
    rows = [line.split(",") for line in (folder / "zoo.csv").read_text().splitlines()[1:]]
    filters, groups = [], []
    for path, task in rows:
        state = torch.load(folder / path, weights_only=True)
        convs = [k for k, v in state.items() if k.endswith("weight") and v.ndim == 4]
        for depth, key in enumerate(convs):
            w = state[key].numpy().astype(np.float64)
            if w.shape[2:] != (3, 3):
                continue
            f = w.reshape(-1, 9)
            peak = np.abs(f).max(axis=1, keepdims=True)
            f = f / np.where(peak == 0, 1, peak)
            decile = min(int(depth / (len(convs) - 1) * 10), 9)
            group = task if by_task else f"{decile / 10:.1f}-{(decile + 1) / 10:.1f}"
            filters.append(f)
            groups += [group] * len(f)
    x = np.concatenate(filters)
    g = np.array(groups)
    mean = x.mean(axis=0)
    vals, vecs = np.linalg.eigh(np.cov(x, rowvar=False))
    order = np.argsort(vals)[::-1]
    basis = vecs[:, order].T
    sign = np.sign(basis[np.arange(9), np.abs(basis).argmax(axis=1)])
    basis = basis * np.where(sign == 0, 1, sign)[:, None]
    lam = np.clip(vals[order], 0, None)
    explained = lam / lam.sum()
    c = (x - mean) @ basis.T
    lo, hi = c.min(), c.max()
    names = sorted(set(groups))
    eps = np.finfo(np.float32).eps
    hists = []
    for name in names:
        h = np.stack([np.histogram(c[g == name, i], bins=70, range=(lo, hi))[0]
                      for i in range(9)]).astype(float)
        p = h / h.sum(axis=1, keepdims=True)
        p[p == 0] = eps
        hists.append(p / p.sum(axis=1, keepdims=True))
    m = np.zeros((len(names), len(names)))
    for a, pa in enumerate(hists):
        for b, pb in enumerate(hists):
            sym_kl = (pa * np.log(pa / pb)).sum(1) + (pb * np.log(pb / pa)).sum(1)
            m[a, b] = float((explained * sym_kl).sum())
    return names, [int((g == n).sum()) for n in names], m


@pytest.mark.parametrize("by", ["task", "depth"])
def test_shift_equals_the_numpy_pipeline(tmp_path: Path, by: str) -> None:
    manifest = _make_zoo(tmp_path / "models")
    zoo.scan([manifest], tmp_path / "Z", workers=1)
    got = zoo.open(tmp_path / "Z").shift(by=by)
    names, sizes, want = _numpy_shift(tmp_path / "models", by == "task")
    assert got.groups == names and got.n_filters == sizes
    assert np.allclose(np.array(got.matrix), want, rtol=1e-9, atol=1e-12)
    assert np.allclose(np.diag(want), 0) and (want[~np.eye(len(names), dtype=bool)] > 0).all()
    if by == "task":
        assert got.matrix[0][1] > 0.05  # trained filters differ from random ones


def test_shift_command_formats_and_errors(tmp_path: Path) -> None:
    manifest = _make_zoo(tmp_path / "models")
    zoo.scan([manifest], tmp_path / "Z", workers=1)
    code, out, err = _run("zoo", "shift", str(tmp_path / "Z"), "--by", "task", "--format", "json", "-q")
    assert code == 0, err
    data = json.loads(out)
    assert data["by"] == "task" and data["kernel_size"] == "3x3" and data["groups"] == ["random", "trained"]
    assert len(data["matrix"]) == 2 and data["n_filters"][0] > 0
    code, out, _ = _run("zoo", "shift", str(tmp_path / "Z"), "--by", "task", "--format", "markdown", "-q")
    assert code == 0 and out.startswith("| task | filters | random | trained |")
    picture = tmp_path / "shift.png"
    zoo_dir = str(tmp_path / "Z")
    code, _, err = _run("zoo", "shift", zoo_dir, "--by", "task", "--format", "png", "-o", str(picture))
    assert code == 0 and picture.read_bytes().startswith(b"\x89PNG"), err
    code, out, _ = _run("zoo", "shift", str(tmp_path / "Z"), "--by", "depth", "--format", "html", "-q")
    assert code == 0 and out.startswith("<!doctype html>") and "<svg" in out and "<script" not in out
    code, _, err = _run("zoo", "shift", str(tmp_path / "Z"), "--by", "task", "--format", "png", "-q")
    assert code == 2 and "--output" in err
    code, _, err = _run("zoo", "shift", str(tmp_path / "Z"), "--by", "nope", "-q")
    assert code == 2 and "meta column of the zoo (task)" in err
    code, _, err = _run("zoo", "shift", str(tmp_path / "Z"), "--by", "task", "--kernel-size", "7x7", "-q")
    assert code == 2 and "no layers" in err
