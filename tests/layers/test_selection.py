"""LayerSelection: one object for the kernel sizes, globs and 1x1 choice, normalised once;
every option is checked before any file is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from filterwatch import InputError, LayerSelection, Reference, analyze
from filterwatch.reference import Matching


def test_kernel_sizes_are_normalised_once() -> None:
    sel = LayerSelection(kernel_sizes=["3x3", 5, (7, 7)], include=["body.*"])
    assert sel.kernel_sizes == ((3, 3), (5,), (7, 7))
    assert sel.as_dict()["kernel_sizes"] == ["3x3", "5", "7x7"]
    assert sel == LayerSelection(kernel_sizes=[(3, 3), "5", "7x7"], include=["body.*"])
    assert len({sel, LayerSelection(kernel_sizes=["3x3", "5", "7x7"], include=["body.*"])}) == 1


def test_accepts() -> None:
    default = LayerSelection()
    assert default.accepts("a", (3, 3)) and not default.accepts("a", (1, 1))
    assert LayerSelection(include_pointwise=True).accepts("a", (1, 1))
    assert LayerSelection(kernel_sizes=["1x1"]).accepts("a", (1, 1))      # an explicit size wins
    assert not LayerSelection(exclude=["head.*"]).accepts("head.0", (3, 3))
    assert not LayerSelection(include=["body.*"]).accepts("head.0", (3, 3))


@pytest.mark.parametrize("kwargs,match", [
    ({"include": "body.*"}, r"`include` expected a list of globs, got the string 'body.\*'"),
    ({"exclude": [3]}, "`exclude` expected a list of glob strings"),
    ({"kernel_sizes": "3x3"}, "`kernel_sizes` expected a list of sizes, got '3x3'; hint"),
    ({"kernel_sizes": ["3by3"]}, "`kernel_size` expected sizes like '3x3'"),
    ({"include_pointwise": "yes"}, "`include_pointwise` expected True or False"),
])
def test_bad_selections(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InputError, match=match):
        LayerSelection(**kwargs)  # type: ignore[arg-type]


def test_options_are_checked_before_the_file_is_read(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pt"   # reading it would fail with "no such file"
    with pytest.raises(InputError, match="`sparsity_eps` expected a number in"):
        analyze(missing, sparsity_eps=7)
    with pytest.raises(InputError, match=r"`select` expected a filterwatch\.LayerSelection"):
        analyze(missing, select=["3x3"])  # type: ignore[arg-type]
    with pytest.raises(InputError, match="`precision` expected one of float32, float64"):
        analyze(missing, precision="half")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="`matching` expected"):
        analyze(missing, matching={"allow_unmatched": True})  # type: ignore[arg-type]
    with pytest.raises(InputError, match="`group` expected one of layer, depth, kernel"):
        Reference.build(missing, group="decile")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="`bins` expected an integer >= 2"):
        Reference.build(missing, bins=1)
    assert Matching().allow_unmatched is False
