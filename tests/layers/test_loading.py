"""Safe loading: every supported format, every failure with a clear one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from filterwatch import InputError, NoConvLayersError, analyze, load_state_dict
from tests.conftest import small_cnn


@pytest.mark.parametrize("kind", ["pt", "wrapped", "ckpt", "safetensors", "legacy"])
def test_formats_load_the_same_weights(checkpoints: dict[str, Path], kind: str) -> None:
    sd = load_state_dict(checkpoints[kind])
    expected = small_cnn().state_dict()
    prefix = "model." if kind == "ckpt" else ""
    for key, value in expected.items():
        assert torch.equal(sd[prefix + key], value)


def test_analyze_accepts_paths(checkpoints: dict[str, Path]) -> None:
    a = analyze(checkpoints["safetensors"])
    b = analyze(small_cnn())
    assert a.source.endswith("model.safetensors")
    assert [x.variance_entropy for x in a.layers] == [x.variance_entropy for x in b.layers]


@pytest.mark.parametrize(
    "kind,message",
    [
        ("truncated", "truncated or corrupt zip archive"),
        ("random", "not one, or is corrupt"),
        ("empty", "got an empty file"),
        ("text", "got a file that is not a checkpoint"),
        ("list", "got a list"),
        ("bad_safetensors", "truncated or corrupt one"),
        ("malicious", "refused to load: it needs `posix.system`"),
        ("malicious_raw", "refused to load|not one, or is corrupt"),
    ],
)
def test_bad_files_have_one_line_errors(bad_files: dict[str, Path], kind: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        load_state_dict(bad_files[kind])
    text = str(info.value)
    assert "\n" not in text and str(bad_files[kind]) in text
    assert not (bad_files[kind].parent / "PWNED").exists()


def test_no_conv_weights(bad_files: dict[str, Path]) -> None:
    with pytest.raises(NoConvLayersError, match="got none among 2 tensors"):
        load_state_dict(bad_files["no_conv"])
    assert set(load_state_dict(bad_files["no_conv"], require_conv=False)) == {"0.weight", "0.bias"}


def test_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"expected an existing file.*no such file"):
        load_state_dict(tmp_path / "missing.pt")
    with pytest.raises(InputError, match="got a directory"):
        load_state_dict(tmp_path)
