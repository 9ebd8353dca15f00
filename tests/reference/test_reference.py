"""Reference: building, grouping, files (round trip, corruption), matching, drift in reports."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from filterwatch import InputError, Reference, analyze
from filterwatch.functional import drift, drift_basis
from filterwatch.reference import Matching, match_layers, parse_layer_map
from tests.conftest import small_cnn
from tests.models import resnet18_like


def _assert_same(a: Reference, b: Reference) -> None:
    assert a.grouping == b.grouping and a.sources == b.sources and a.bins == b.bins
    assert a.created == b.created and a.layer_shapes == b.layer_shapes
    assert list(a.groups) == list(b.groups)
    for key, ga in a.groups.items():
        gb = b.groups[key]
        assert ga.kernel_size == gb.kernel_size and ga.layers == gb.layers
        for part in ("mean", "basis", "explained", "hist"):
            assert torch.equal(getattr(ga.basis, part), getattr(gb.basis, part)), (key, part)
        assert (ga.basis.lo, ga.basis.hi, ga.basis.n) == (gb.basis.lo, gb.basis.hi, gb.basis.n)
    assert sorted(a.snapshot) == sorted(b.snapshot)
    for name, w in a.snapshot.items():
        assert torch.equal(w, b.snapshot[name])


@pytest.mark.parametrize("group", ["layer", "depth", "kernel"])
def test_round_trip_is_exact(tmp_path: Path, group: str) -> None:
    ref = Reference.build([small_cnn(0), small_cnn(1)], group=group)
    ref.save(tmp_path / "ref.safetensors")
    _assert_same(ref, Reference.load(tmp_path / "ref.safetensors"))
    assert [p.name for p in tmp_path.iterdir()] == ["ref.safetensors"]


def test_snapshot_round_trip_and_relative_change(tmp_path: Path) -> None:
    net = small_cnn()
    ref = Reference.build(net, snapshot=True)
    ref.save(tmp_path / "r.safetensors")
    again = Reference.load(tmp_path / "r.safetensors")
    _assert_same(ref, again)
    with torch.no_grad():
        net[0].weight.mul_(1.1)
    report = analyze(net, reference=again)
    assert report.layer("0").relative_change == pytest.approx(0.1)
    assert report.layer("2").relative_change == pytest.approx(0.0)
    assert report.layer("2").drift == pytest.approx(0.0)


def test_two_builds_are_identical() -> None:
    a, b = Reference.build(small_cnn()), Reference.build(small_cnn())
    b.created = a.created
    _assert_same(a, b)


def test_groupings() -> None:
    net = resnet18_like(8)
    assert sorted(Reference.build(net, group="kernel").groups) == ["kernel/3x3", "kernel/7x7"]
    depth = Reference.build(net, group="depth")
    assert "depth0/7x7" in depth.groups and "depth9/3x3" in depth.groups
    pop = Reference.build([small_cnn(0), small_cnn(1)])
    assert pop.groups["2"].basis.n == 2 * 32 * 16  # pooled over the population
    report = analyze(net, reference=depth)
    modules = dict(net.named_modules())
    for layer in report.layers:
        group = depth.groups[depth.key_for(_l(net, layer.name))]
        assert layer.drift == pytest.approx(drift(modules[layer.name].weight, group.basis).value)


def _l(net: nn.Module, name: str):  # type: ignore[no-untyped-def]
    from filterwatch import discover_layers

    return next(layer for layer in discover_layers(net) if layer.name == name)


def test_drift_in_report_matches_functional() -> None:
    ref_net, net = small_cnn(0), small_cnn(1)
    ref = Reference.build(ref_net)
    report = analyze(net, reference=ref)
    # Reference.build makes its bases in float64
    want = drift(net[2].weight, drift_basis(ref_net[2].weight.double()))
    got = report.layer("2")
    assert got.drift == pytest.approx(want.value, abs=1e-12)
    assert got.drift_components == pytest.approx(want.components.tolist(), abs=1e-12)
    assert report.settings["reference"] == "Sequential"
    assert report.summary["worst"]["drift"]


def test_random_init_reference() -> None:
    # Histogram KL has a sampling noise floor: two draws of one distribution differ by about
    # 0.2 at 1,000 filters and 0.04 at 4,000. Layers here have 4,096 filters.
    torch.manual_seed(0)
    fresh = nn.Sequential(nn.Conv2d(64, 64, 3), nn.Conv2d(64, 64, 3))
    report = analyze(fresh, reference=Reference.random_init(fresh))
    assert all(layer.drift is not None and layer.drift < 0.1 for layer in report.layers)
    collapsed = nn.Sequential(nn.Conv2d(64, 64, 3), nn.Conv2d(64, 64, 3))
    with torch.no_grad():
        for conv in collapsed:
            conv.weight.copy_(torch.randn(64, 1, 1, 1) * torch.randn(1, 1, 3, 3)
                              + 0.01 * torch.randn_like(conv.weight))
    report = analyze(collapsed, reference=Reference.random_init(collapsed))
    assert all(layer.drift is not None and layer.drift > 1.0 for layer in report.layers)


def test_matching_by_prefix_map_and_order() -> None:
    assert match_layers(["model.a", "model.b"], ["a", "b"]) == {"model.a": "a", "model.b": "b"}
    assert match_layers(["x.c1", "x.c2"], ["y.c1", "y.c2"]) == {"x.c1": "y.c1", "x.c2": "y.c2"}
    assert match_layers(["enc"], ["conv"], mapping=parse_layer_map(["conv=enc"])) == {"enc": "conv"}
    shapes = ({"p": [4, 3, 3, 3], "q": [8, 4, 3, 3]}, {"a": [4, 3, 3, 3], "b": [8, 4, 3, 3]})
    assert match_layers(["p", "q"], ["a", "b"], by_order=True, shapes=shapes) == {"p": "a", "q": "b"}
    with pytest.raises(InputError, match=r"model has \[p, q\], reference has \[a, b\]"):
        match_layers(["p", "q"], ["a", "b"])
    bad = ({"p": [4, 3, 3, 3]}, {"a": [5, 3, 3, 3]})
    with pytest.raises(InputError, match="expected equal shapes"):
        match_layers(["p"], ["a"], by_order=True, shapes=bad)
    with pytest.raises(InputError, match="OLD=NEW"):
        parse_layer_map(["nonsense"])
    assert match_layers(["p", "a"], ["a"], allow_unmatched=True) == {"a": "a"}


def test_wrapped_model_matches_plain_reference() -> None:
    net = small_cnn()
    ref = Reference.build(net)
    wrapped = {f"model.{k}": v for k, v in net.state_dict().items()}
    report = analyze(wrapped, reference=ref)
    assert [layer.drift for layer in report.layers] == [0.0, 0.0, 0.0]


def test_unmatched_layers_are_reported_or_allowed() -> None:
    ref = Reference.build(small_cnn())
    other = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 8, 3))
    other_names = {"first.weight": other[0].weight, "second.weight": other[1].weight}
    with pytest.raises(InputError, match="unmatched names"):
        analyze(other_names, reference=ref)
    report = analyze(other_names, reference=ref, matching=Matching(allow_unmatched=True))
    assert report.layers[0].drift is None
    assert report.layers[0].undefined["drift"] == "no matching layer in the reference"


def test_kernel_mismatch_is_a_clear_error() -> None:
    ref = Reference.build({"c.weight": torch.randn(4, 4, 3, 3)})
    with pytest.raises(InputError, match="expected 3x3 kernels, got 5x5"):
        analyze({"c.weight": torch.randn(4, 4, 5, 5)}, reference=ref)


def _corrupt(tmp_path: Path, how: str) -> Path:
    src = tmp_path / "good.safetensors"
    Reference.build(small_cnn()).save(src)
    raw = src.read_bytes()
    bad = tmp_path / f"{how}.safetensors"
    if how == "truncated":
        bad.write_bytes(raw[: len(raw) - 100])
    elif how == "random":
        bad.write_bytes(bytes(range(200)))
    elif how == "checkpoint":
        save_file({"w": torch.zeros(2, 2, 3, 3)}, str(bad))
    else:
        tensors = load_file(str(src))
        header_len = struct.unpack("<Q", raw[:8])[0]
        meta = json.loads(json.loads(raw[8 : 8 + header_len])["__metadata__"]["filterwatch"])
        if how == "wrong_shape":
            tensors["group.0.basis"] = torch.zeros(5, 5, dtype=torch.float64)
        elif how == "wrong_dtype":
            tensors["group.0.hist"] = tensors["group.0.hist"].float()
        elif how == "nan":
            tensors["group.0.mean"][0] = float("nan")
        elif how == "missing_tensor":
            del tensors["group.1.hist"]
        elif how == "version":
            meta["version"] = 99
        elif how == "bad_range":
            meta["groups"][0]["hi"] = meta["groups"][0]["lo"]
        elif how == "negative_counts":  # issue 13, item 18: crafted files
            tensors["group.0.hist"][0, 0] = -5.0
            tensors["group.0.hist"][0, 1] += 5.0
        elif how == "huge_counts":
            tensors["group.0.hist"][0, 0] = 1e300
        elif how == "negative_explained":
            tensors["group.0.explained"][0] = -7.0
        elif how == "layers_not_list":
            meta["groups"][0]["layers"] = 5
        elif how == "groups_not_list":
            meta["groups"] = {"a": 1}
        elif how == "group_not_object":
            meta["groups"][0] = 5
        elif how == "sources_not_list":
            meta["sources"] = "x"
        elif how == "not_orthonormal":
            tensors["group.0.basis"] = tensors["group.0.basis"] * 3
        elif how == "n_string":
            meta["groups"][0]["n"] = "many"
        save_file(tensors, str(bad), metadata={"filterwatch": json.dumps(meta)})
    return bad


@pytest.mark.parametrize(
    "how,message",
    [
        ("truncated", "truncated or corrupt"),
        ("random", "truncated or corrupt"),
        ("checkpoint", "without filterwatch metadata"),
        ("wrong_shape", r"basis of shape \(5, 5\)"),
        ("wrong_dtype", "torch.float32"),
        ("nan", "non-finite"),
        ("missing_tensor", "without its group.1"),
        ("version", "format version 99"),
        ("bad_range", "cannot have"),
        ("negative_counts", "negative or fractional histogram counts"),
        ("huge_counts", "do not count its n"),
        ("negative_explained", "explained-variance ratios are not"),
        ("layers_not_list", "group 0 with missing or malformed fields"),
        ("groups_not_list", "`groups` is malformed"),
        ("group_not_object", "group 0 that is a int"),
        ("sources_not_list", "`sources` is malformed"),
        ("not_orthonormal", "not orthonormal"),
        ("n_string", "group 0 with missing or malformed fields"),
    ],
)
def test_bad_reference_files(tmp_path: Path, how: str, message: str) -> None:
    bad = _corrupt(tmp_path, how)
    with pytest.raises(InputError, match=message) as info:
        Reference.load(bad)
    assert "\n" not in str(info.value)


def test_failed_save_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors.torch

    def boom(*args: object, **kwargs: object) -> None:
        Path(str(args[1])).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        Reference.build(small_cnn()).save(tmp_path / "ref.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_build_errors() -> None:
    with pytest.raises(InputError, match="`group` expected one of layer, depth, kernel"):
        Reference.build(small_cnn(), group="block")
    with pytest.raises(InputError, match="single source"):
        Reference.build([small_cnn(), small_cnn()], snapshot=True)
    with pytest.raises(InputError, match="expected 3x3 kernels, got 5x5"):
        Reference.build([{"c.weight": torch.randn(4, 4, 3, 3)}, {"c.weight": torch.randn(4, 4, 5, 5)}])
    with pytest.raises(InputError, match=r"missing\.pt"):
        Reference.load("missing.pt")
