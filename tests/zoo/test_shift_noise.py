"""`zoo shift`'s noise floor (issue 35, item 4): one population split in two reads within its
noise; two populations read far above it; the re-drawn quantile equals the exact one that
enumerating every split gives."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from filterwatch import zoo
from filterwatch.functional.drift import _symmetric_kl
from filterwatch.zoo.noise import pair_noise

pytest.importorskip("pyarrow")


def _population(folder: Path, n: int, labels: list[str], structured: set[int]) -> Path:
    folder.mkdir(parents=True)
    lines = ["path,group"]
    for i in range(n):
        torch.manual_seed(i)
        net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 16, 3))
        if i in structured:
            with torch.no_grad():
                pattern = torch.randn(2, 9)
                net[1].weight.copy_((torch.randn(256, 2) @ pattern).reshape(16, 16, 3, 3))
        torch.save(net.state_dict(), folder / f"m{i}.pt")
        lines.append(f"m{i}.pt,{labels[i]}")
    (folder / "zoo.csv").write_text("\n".join(lines) + "\n")
    return folder / "zoo.csv"


def test_one_population_split_in_two_reads_within_its_noise(tmp_path: Path) -> None:
    labels = ["a", "b"] * 5
    zoo.scan([_population(tmp_path / "m", 10, labels, set())], tmp_path / "Z", workers=1)
    got = zoo.open(tmp_path / "Z").shift(by="group")
    assert got.noise is not None and got.noise_redrawn == [["", "units"], ["units", ""]]
    assert 0 < got.matrix[0][1] < got.noise[0][1]
    assert "(" in got.to_table() and '"noise"' in got.to_json()


def test_two_populations_read_far_above_their_noise(tmp_path: Path) -> None:
    labels = ["random"] * 5 + ["trained"] * 5
    zoo.scan([_population(tmp_path / "m", 10, labels, set(range(5, 10)))], tmp_path / "Z", workers=1)
    got = zoo.open(tmp_path / "Z").shift(by="group")
    # 5 + 5 checkpoints: 252 splits, of which only the true one and its mirror are that far
    assert got.noise is not None and got.matrix[0][1] > got.noise[0][1] > 0


def test_groups_of_few_checkpoints_are_redrawn_among_filters_with_a_note(tmp_path: Path) -> None:
    labels = ["a", "a", "b"]
    zoo.scan([_population(tmp_path / "m", 3, labels, set())], tmp_path / "Z", workers=1)
    got = zoo.open(tmp_path / "Z").shift(by="group")
    assert got.noise_redrawn == [["", "filters"], ["filters", ""]]
    assert got.notes and "fewer than 1024 filters" in got.notes[0]


def test_the_redrawn_quantile_is_the_exact_one_of_every_split() -> None:
    g = torch.Generator().manual_seed(0)
    units = [torch.randint(0, 30, (5, 3, 10), generator=g).to(torch.float64) for _ in range(2)]
    explained = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    noise, how = pair_noise(units, explained)
    pooled = torch.cat(units)
    exact = []
    for pick in itertools.combinations(range(10), 5):
        a = pooled[list(pick)].sum(0)
        b = pooled.sum(0) - a
        exact.append(float((_symmetric_kl(a, b) * explained).sum()))
    lo, hi = np.quantile(exact, [0.9, 0.99])
    assert how[0][1] == "units" and lo <= noise[0][1] <= hi
