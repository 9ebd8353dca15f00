"""Issue 13, items 8, 9, 11, 12: odd checkpoints are measured as the layers convolve, or
refused in one line; nothing exits 1 from a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils import parametrizations, prune

from filterwatch import analyze, load_state_dict
from filterwatch.layers import discover_layers
from filterwatch.layers.loading import natural_key
from filterwatch.layers.selection import LayerSelection
from tests.golden_helpers import _run


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 16, 3), nn.ReLU(),
                         nn.Conv2d(16, 8, 3))


def _wrap(kind: str) -> nn.Sequential:
    net = _net()
    if kind == "pruned":
        prune.l1_unstructured(net[2], "weight", amount=0.5)
    elif kind == "weight_norm_old":
        net[2] = torch.nn.utils.weight_norm(net[2])  # type: ignore[assignment]
    elif kind == "weight_norm":
        parametrizations.weight_norm(net[2])
    elif kind == "spectral_norm_old":
        net[2] = torch.nn.utils.spectral_norm(net[2])  # type: ignore[assignment]
        net(torch.randn(2, 3, 12, 12))  # one power iteration: u, v and sigma settle
    elif kind == "spectral_norm":
        parametrizations.spectral_norm(net[2])
        net(torch.randn(2, 3, 12, 12))
    return net


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("kind", ["pruned", "weight_norm_old", "weight_norm", "spectral_norm_old",
                                  "spectral_norm"])
def test_wrapped_checkpoints_measure_the_effective_kernel(tmp_path: Path, kind: str) -> None:
    net = _wrap(kind)
    net.eval()
    live = analyze(net).layer("2")
    path = tmp_path / f"{kind}.pt"
    torch.save(net.state_dict(), path)
    saved = analyze(str(path))
    assert [layer.name for layer in saved.layers] == ["0", "2", "4"]  # no layer dropped
    got = saved.layer("2")
    assert got.weight_norm == pytest.approx(live.weight_norm, rel=1e-5)
    assert got.variance_entropy == pytest.approx(live.variance_entropy, abs=1e-6)
    assert got.sparsity == pytest.approx(live.sparsity)


def test_zero_size_and_sparse_weights_are_measured_or_explained(tmp_path: Path) -> None:
    path = tmp_path / "odd.pt"
    torch.save({"a.weight": torch.zeros(0, 2, 3, 3), "b.weight": torch.randn(8, 2, 3, 3).to_sparse(),
                "c.weight": torch.randn(8, 4, 3, 3, dtype=torch.float64) * 1e200}, path)
    code, out, err = _run("scan", str(path), "-q", "--format", "json")
    assert code == 0, err
    report = analyze(str(path))
    assert report.layer("a").variance_entropy is None
    assert "empty" in report.layer("a").undefined["variance_entropy"]
    dense = analyze({"b.weight": load_state_dict(path)["b.weight"].to_dense()}).layer("b")
    assert report.layer("b").variance_entropy == pytest.approx(dense.variance_entropy)
    assert report.layer("c").variance_entropy is not None
    code, out, _ = _run("check", str(path), "-q")
    assert code == 1 and "not measured" in out  # the empty layer is not a pass


@pytest.mark.parametrize("toml, words", [
    ("tool = 5\n", "`tool` expected a table"),
    ("[tool]\nfilterwatch = 3\n", "`tool.filterwatch` expected a table"),
])
def test_malformed_tool_tables_are_input_errors(tmp_path: Path, toml: str, words: str) -> None:
    torch.save(_net().state_dict(), tmp_path / "m.pt")
    (tmp_path / "c.toml").write_text(toml)
    code, _, err = _run("check", str(tmp_path / "m.pt"), "--config", str(tmp_path / "c.toml"), "-q")
    assert code == 2 and words in err and err.count("\n") == 1


def test_a_misspelt_gate_table_warns(tmp_path: Path) -> None:
    torch.save(_net().state_dict(), tmp_path / "m.pt")
    (tmp_path / "pyproject.toml").write_text("[tool.filterwatch.gates]\nmax-sparsity = 0.0\n")
    code, _, err = _run("check", str(tmp_path / "m.pt"), "--config", str(tmp_path / "pyproject.toml"), "-q")
    assert code == 0
    assert "filterwatch: warning:" in err and "did you mean [tool.filterwatch.gate]" in err


def test_an_internal_error_exits_3_not_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import filterwatch.cli.commands as commands

    torch.save(_net().state_dict(), tmp_path / "m.pt")

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("something unforeseen")

    monkeypatch.setattr(commands, "analyze", boom)
    code, _, err = _run("check", str(tmp_path / "m.pt"), "-q")
    assert code == 3
    assert err.startswith("filterwatch: internal error: RuntimeError: something unforeseen")


def test_safetensors_layers_come_in_natural_order(tmp_path: Path) -> None:
    names = [f"Conv_{i}" for i in (3, 41, 110, 7)]
    state = {f"{n}.weight": torch.randn(4, 2, 3, 3) for n in names}
    save_file(state, str(tmp_path / "m.safetensors"))
    got = [layer.name for layer in discover_layers(load_state_dict(tmp_path / "m.safetensors"))]
    assert got == ["Conv_3", "Conv_7", "Conv_41", "Conv_110"]
    assert sorted(["b10", "b9", "a"], key=natural_key) == ["a", "b9", "b10"]


def test_conv_transpose_from_a_state_dict_with_the_hint(tmp_path: Path) -> None:
    up = nn.ConvTranspose2d(16, 8, 3)
    with torch.no_grad():
        up.weight[:, :4] = 0  # 4 all-zero output channels (dim 1 in ConvTranspose layout)
    net = nn.Sequential(nn.Conv2d(3, 16, 3), up)
    live = analyze(net).layer("1")
    assert live.dead_channels == 4
    torch.save(net.state_dict(), tmp_path / "m.pt")
    assumed = analyze(str(tmp_path / "m.pt")).layer("1")
    assert assumed.kind == "tensor" and assumed.dead_channels == 0  # Conv layout assumed
    hinted = analyze(str(tmp_path / "m.pt"), select=LayerSelection(transposed=["1"])).layer("1")
    assert hinted.dead_channels == 4 and hinted.shape == live.shape
    code, out, _ = _run("scan", str(tmp_path / "m.pt"), "--transposed", "1", "-q", "--format", "json")
    assert code == 0 and '"dead_channels": 4' in out
