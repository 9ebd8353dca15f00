"""Issue 13, items 1-2: `-o` never destroys an input, a link or a device; written files follow
the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from filterwatch import Report, analyze
from filterwatch.reference import Reference
from tests.conftest import small_cnn
from tests.golden_helpers import _run


@pytest.mark.parametrize("command", ["scan", "check"])
def test_output_onto_the_input_is_refused(checkpoints: dict[str, Path], command: str) -> None:
    path = checkpoints["pt"]
    before = path.read_bytes()
    code, _, err = _run(command, str(path), "-o", str(path))
    assert code == 2
    assert "`--output` expected a path that is not an input" in err and err.count("\n") == 1
    assert path.read_bytes() == before


def test_output_onto_an_input_through_a_symlink_is_refused(checkpoints: dict[str, Path]) -> None:
    path = checkpoints["pt"]
    link = path.parent / "alias.txt"
    link.symlink_to(path)
    before = path.read_bytes()
    code, _, _ = _run("scan", str(path), "-o", str(link))
    assert code == 2 and path.read_bytes() == before


def test_check_refuses_output_onto_its_baseline_and_reference_build_onto_its_input(
        checkpoints: dict[str, Path], tmp_path: Path) -> None:
    baseline = tmp_path / "base.json"
    analyze(str(checkpoints["pt"])).save(baseline)
    before = baseline.read_bytes()
    code, _, _ = _run("check", str(checkpoints["pt"]), "--baseline", str(baseline), "-o", str(baseline))
    assert code == 2 and baseline.read_bytes() == before
    pt_before = checkpoints["pt"].read_bytes()
    code, _, _ = _run("reference", "build", str(checkpoints["pt"]), "-o", str(checkpoints["pt"]))
    assert code == 2 and checkpoints["pt"].read_bytes() == pt_before


def test_output_through_a_symlink_writes_the_target(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "real.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    code, _, _ = _run("scan", str(checkpoints["pt"]), "-q", "-o", str(link))
    assert code == 0
    assert link.is_symlink() and "VE clean" in target.read_text()


def test_output_onto_a_fifo_writes_into_it(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    code, _, _ = _run("scan", str(checkpoints["pt"]), "-q", "-o", str(fifo))
    reader.join(timeout=30)
    assert code == 0
    assert stat.S_ISFIFO(fifo.lstat().st_mode)  # still a FIFO, not replaced by a file
    assert b"VE clean" in got[0]


@pytest.mark.parametrize("umask, want", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(checkpoints: dict[str, Path], tmp_path: Path,
                                        umask: int, want: int) -> None:
    old = os.umask(umask)
    try:
        report = tmp_path / f"r{umask}.json"
        analyze(str(checkpoints["pt"])).save(report)
        ref = tmp_path / f"ref{umask}.safetensors"
        Reference.build([str(checkpoints["pt"])]).save(ref)
        text = tmp_path / f"t{umask}.txt"
        assert _run("scan", str(checkpoints["pt"]), "-q", "-o", str(text))[0] == 0
    finally:
        os.umask(old)
    for path in (report, ref, text):
        assert stat.S_IMODE(path.stat().st_mode) == want, path


def test_replacing_a_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text("{}")
    path.chmod(0o640)
    analyze(torch.nn.Conv2d(3, 8, 3)).save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert Report.load(path).layers


def test_history_file_follows_the_umask(tmp_path: Path) -> None:
    from filterwatch.layers import discover_layers
    from filterwatch.monitor import HistoryFile, Monitor, Snapshot

    old = os.umask(0o022)
    try:
        monitor = Monitor()
        sink = HistoryFile.open(tmp_path, "filterwatch_history.jsonl")
        sink.write(Snapshot(monitor.measure(discover_layers(small_cnn()), step=0), monitor.history))
    finally:
        os.umask(old)
    files = list(tmp_path.glob("*.jsonl"))
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o644 for f in files)
