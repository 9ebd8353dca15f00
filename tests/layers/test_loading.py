"""Safe loading: every supported format, every failure with a clear one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from filterwatch import InputError, NoConvLayersError, analyze, load_state_dict
from filterwatch.layers.loading import natural_key
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
    with pytest.raises(InputError, match=r"got the directory .* without model\.safetensors"):
        load_state_dict(tmp_path)


def test_hugging_face_checkpoint_folders(tmp_path: Path) -> None:
    """A folder is read as its model file, or as all the shards its index names (in the
    model's order across shards); an index may not point outside its folder."""
    from safetensors.torch import save_file
    from torch import nn

    net = nn.Sequential(*[nn.Conv2d(4, 4, 3) for _ in range(12)])
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    single = tmp_path / "single"
    single.mkdir()
    save_file(state, str(single / "model.safetensors"))
    (single / "optimizer.pt").write_bytes(b"not read")
    in_order = sorted(state, key=natural_key)  # 0, 1, ..., 11 (not 0, 10, 11, 1, ...)
    assert list(load_state_dict(single)) == in_order
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    names = list(state)
    parts = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in parts.items():
        save_file({k: state[k] for k in keys}, str(sharded / shard))
    index = {"metadata": {}, "weight_map": {k: shard for shard, keys in parts.items() for k in keys}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    loaded = load_state_dict(sharded)
    assert list(loaded) == in_order
    assert all(torch.equal(loaded[k], state[k]) for k in names)
    (sharded / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(InputError, match=r"names the shard 'model-00002-of-00002\.safetensors', which"):
        load_state_dict(sharded)
    for shard, keys in parts.items():  # the hub cache: shards are links to blobs elsewhere
        blob = tmp_path / f"blob-{shard}"
        save_file({k: state[k] for k in keys}, str(blob))
        (sharded / shard).unlink(missing_ok=True)
        (sharded / shard).symlink_to(blob)
    assert list(load_state_dict(sharded)) == in_order
    index["weight_map"] = {"0.weight": "../single/model.safetensors"}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(InputError, match="must not point outside its folder"):
        load_state_dict(sharded)
    (sharded / "model.safetensors.index.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="expected a shard index"):
        load_state_dict(sharded)
