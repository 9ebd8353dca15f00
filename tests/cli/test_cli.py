"""`filterwatch scan`: golden files for every output format and every error path.

Regenerate the golden files after a deliberate change with
``FILTERWATCH_UPDATE_GOLDEN=1 make pytest`` and review the diff.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.golden_helpers import _check_golden, _round_json, _run, _scrub


@pytest.mark.parametrize("fmt", ["table", "markdown", "json"])
def test_scan_output_formats(checkpoints: dict[str, Path], fmt: str) -> None:
    code, out, err = _run("scan", str(checkpoints["pt"]), "--format", fmt)
    assert code == 0
    text = _scrub(out, checkpoints["pt"].parent)
    if fmt == "json":
        text = _round_json(text)
    _check_golden(f"scan_{fmt}.{ {'table': 'txt', 'markdown': 'md'}.get(fmt, fmt) }", text)
    assert _scrub(err, checkpoints["pt"].parent) == (
        "filterwatch: scanned 3 layers (592 filters) of <tmp>/model.pt in <t> s\n"
    )


def test_scan_selection_options(checkpoints: dict[str, Path]) -> None:
    code, out, _ = _run("scan", str(checkpoints["ckpt"]), "--kernel-size", "1x1", "-q")
    assert code == 0 and "model.4" in out and "model.2" not in out
    code, out, _ = _run("scan", str(checkpoints["ckpt"]), "--include", "*.2", "-q")
    assert code == 0 and "model.2" in out and "model.0 " not in out
    code, out, _ = _run("scan", str(checkpoints["ckpt"]), "--exclude", "model.2", "-q")
    assert code == 0 and "model.2 " not in out and "model.0" in out


def test_output_file_is_written_atomically(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.json"
    target.parent.mkdir()
    code, out, err = _run("scan", str(checkpoints["pt"]), "--format", "json", "-o", str(target))
    assert code == 0 and out == "" and "wrote" in err
    assert json.loads(target.read_text())["schema_version"] == 1
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]


def test_unwritable_output_is_an_input_error(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    code, _, err = _run("scan", str(checkpoints["pt"]), "-o", str(tmp_path / "no" / "dir" / "r.txt"))
    assert code == 2 and err.startswith("filterwatch: error:") and err.count("\n") == 1


ERROR_CASES = {
    "missing": lambda bad: ["scan", str(bad["empty"].parent / "missing.pt")],
    "directory": lambda bad: ["scan", str(bad["empty"].parent)],
    "truncated": lambda bad: ["scan", str(bad["truncated"])],
    "random": lambda bad: ["scan", str(bad["random"])],
    "empty": lambda bad: ["scan", str(bad["empty"])],
    "text": lambda bad: ["scan", str(bad["text"])],
    "list": lambda bad: ["scan", str(bad["list"])],
    "no_conv": lambda bad: ["scan", str(bad["no_conv"])],
    "malicious": lambda bad: ["scan", str(bad["malicious"])],
    "bad_safetensors": lambda bad: ["scan", str(bad["bad_safetensors"])],
    "no_selection": lambda bad: ["scan", str(bad["truncated"].parent / "good.pt"),
                                 "--kernel-size", "5x5"],
    "bad_kernel_size": lambda bad: ["scan", str(bad["truncated"].parent / "good.pt"),
                                    "--kernel-size", "3by3"],
    "bad_format": lambda bad: ["scan", "x.pt", "--format", "yaml"],
    "bad_eps": lambda bad: ["scan", str(bad["truncated"].parent / "good.pt"),
                            "--sparsity-eps", "7"],
    "no_command": lambda bad: [],
    "unknown_option": lambda bad: ["scan", "x.pt", "--frobnicate"],
}


def test_error_paths_golden(bad_files: dict[str, Path]) -> None:
    lines = []
    for name, argv in ERROR_CASES.items():
        code, out, err = _run(*argv(bad_files))
        assert code == 2, name
        assert out == "", name
        assert err.count("\n") == 1 and "Traceback" not in err, name
        lines.append(f"[{name}] exit {code}: {_scrub(err, bad_files['empty'].parent)}")
    _check_golden("scan_errors.txt", "".join(lines))
    assert not (bad_files["malicious"].parent / "PWNED").exists()


def test_debug_shows_the_traceback(bad_files: dict[str, Path]) -> None:
    with pytest.raises(Exception, match="truncated"):
        _run("scan", str(bad_files["truncated"]), "--debug")


@pytest.mark.slow
def test_console_script_and_module_entry_points(
    checkpoints: dict[str, Path], bad_files: dict[str, Path]
) -> None:
    """The installed entry points: exit codes and stderr through a real process."""
    exe = Path(sys.executable).parent / "filterwatch"
    ok = subprocess.run([str(exe), "scan", str(checkpoints["pt"])], capture_output=True, text=True)
    assert ok.returncode == 0 and "layer" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "filterwatch", "scan", str(bad_files["malicious"])],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert not (bad_files["malicious"].parent / "PWNED").exists()
