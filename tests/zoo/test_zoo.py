"""`filterwatch zoo scan` (issue 28): a zoo scan equals `filterwatch scan` of each checkpoint
row by row, a corrupt file is listed and the rest kept, a killed scan resumes without
rewriting finished files, two local workers and a Dask cluster on loopback give the same
table."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from filterwatch import zoo
from tests.golden_helpers import _run

pa = pytest.importorskip("pyarrow")

MEASURED = ("sparsity", "variance_entropy", "variance_entropy_norm", "orthogonality", "weight_norm",
            "dead_channels", "nonfinite")


def _zoo_files(folder: Path, corrupt: bool = True) -> Path:
    """Checkpoints of three architectures in three formats, a manifest with meta columns."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    lines = ["path,task,arch"]
    for i in range(4):
        torch.manual_seed(i)
        net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 32, 3 + 2 * (i % 2)),
                            nn.ReLU(), nn.Conv2d(32, 32, 3, groups=32))
        if i == 0:
            torch.save(net.state_dict(), folder / "m0.pt")
        elif i == 1:
            save_file(net.state_dict(), str(folder / "m1.safetensors"))
        else:
            (folder / "sub").mkdir(exist_ok=True)
            torch.save({"state_dict": net.state_dict()}, folder / "sub" / f"m{i}.ckpt")
    lines += ["m0.pt,cls,a", "m1.safetensors,seg,b", "sub/m2.ckpt,cls,a", "sub/m3.ckpt,seg,b"]
    if corrupt:
        (folder / "broken.pt").write_bytes(b"\x80\x02 not a checkpoint")
        lines.append("broken.pt,cls,a")
    (folder / "zoo.csv").write_text("\n".join(lines) + "\n")
    return folder / "zoo.csv"


def _rows(table: object) -> list[dict]:  # type: ignore[type-arg]
    return sorted(table.to_pylist(), key=lambda r: (r["path"], r["conv_depth"]))  # type: ignore[attr-defined]


def test_a_zoo_scan_equals_scan_of_each_checkpoint_row_by_row(tmp_path: Path) -> None:
    manifest = _zoo_files(tmp_path / "models", corrupt=False)
    code, _, err = _run("zoo", "scan", str(manifest), "-o", str(tmp_path / "Z"), "--workers", "1", "-q")
    assert code == 0, err
    table = zoo.open(tmp_path / "Z").layers
    assert {"path", "layer", "kind", "kernel_size", "n_filters", "conv_depth", "conv_depth_norm", "task",
            "arch"} <= set(table.column_names)
    by_path: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for row in _rows(table):
        by_path.setdefault(row["path"], []).append(row)
    assert sorted(by_path) == ["m0.pt", "m1.safetensors", "sub/m2.ckpt", "sub/m3.ckpt"]
    for path, rows in by_path.items():
        code, out, err = _run("scan", str(tmp_path / "models" / path), "--format", "json", "-q")
        assert code == 0, err
        layers = json.loads(out)["layers"]
        assert [r["layer"] for r in rows] == [layer["name"] for layer in layers]
        for row, layer in zip(rows, layers, strict=True):
            assert row["n_filters"] == layer["n_filters"] and row["conv_depth"] == layer["depth"]
            assert row["kernel_size"] == "x".join(map(str, layer["kernel_size"]))
            for key in MEASURED:
                assert (row[key] is None) == (layer[key] is None), (path, key)
                if row[key] is not None:
                    assert row[key] == pytest.approx(layer[key], rel=1e-9, abs=1e-12), (path, key)
        assert {r["task"] for r in rows} == ({"cls"} if path in ("m0.pt", "sub/m2.ckpt") else {"seg"})


def test_a_corrupt_file_is_listed_and_the_rest_kept(tmp_path: Path) -> None:
    manifest = _zoo_files(tmp_path / "models")
    code, _, err = _run("zoo", "scan", str(manifest), "-o", str(tmp_path / "Z"), "--workers", "1", "-q")
    assert code == 2
    assert "failed broken.pt" in err and "1 failed (listed in" in err
    z = zoo.open(tmp_path / "Z")
    assert [p for p, _ in z.failed] == ["broken.pt"] and "checkpoint" in z.failed[0][1]
    assert len({r["path"] for r in z.layers.to_pylist()}) == 4


def test_a_killed_scan_resumes_without_rewriting_finished_files(tmp_path: Path) -> None:
    manifest = _zoo_files(tmp_path / "models", corrupt=False)
    out = tmp_path / "Z"
    first = zoo.scan([manifest], out, workers=1)
    assert first.scanned == 4 and not first.failed
    parts = sorted((out / "layers").glob("*.parquet"))
    lost = parts.pop()  # killed before this one was written; a half-written temporary is left
    lost.unlink()
    (out / "layers" / f".{lost.name}.abc123.tmp").write_bytes(b"PAR1 half")
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in parts}
    again = zoo.scan([manifest], out, workers=1)
    assert (again.scanned, again.skipped) == (1, 3) and lost.is_file()
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in parts} == before  # untouched
    assert zoo.open(out).layers.num_rows == first_rows(manifest, tmp_path)
    code, _, err = _run("zoo", "scan", str(manifest), "-o", str(out), "--kernel-size", "5x5", "-q")
    assert code == 2 and "other settings" in err  # a rerun must not mix settings
    forced = zoo.scan([manifest], out, workers=1, force=True, kernel_sizes=["5x5"])
    assert forced.scanned == 4 and not forced.failed  # two have no 5x5 layer: no rows, no failure
    assert {r["path"] for r in zoo.open(out).layers.to_pylist()} == {"m1.safetensors", "sub/m3.ckpt"}


def first_rows(manifest: Path, tmp: Path) -> int:
    return zoo.scan([manifest], tmp / "fresh", workers=1).filters and zoo.open(tmp / "fresh").layers.num_rows


@pytest.mark.slow
def test_two_local_workers_give_the_same_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    scan_module = importlib.import_module("filterwatch.zoo.scan")  # the module, not the function

    manifest = _zoo_files(tmp_path / "models", corrupt=False)
    zoo.scan([manifest], tmp_path / "one", workers=1)
    monkeypatch.setattr(scan_module, "_RECYCLE", 1)  # fresh workers after every checkpoint each
    two = zoo.scan([manifest], tmp_path / "two", workers=2)
    assert two.scanned == 4
    assert _rows(zoo.open(tmp_path / "one").layers) == _rows(zoo.open(tmp_path / "two").layers)


@pytest.mark.slow
def test_a_dask_cluster_on_loopback_gives_the_same_table(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    manifest = _zoo_files(tmp_path / "models", corrupt=False)
    zoo.scan([manifest], tmp_path / "local", workers=1)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client, distributed.get_task_stream(client) as stream:
        code, _, err = _run("zoo", "scan", str(manifest), "-o", str(tmp_path / "dask"),
                            "--scheduler", cluster.scheduler_address, "-q")
        assert code == 0, err
        ran = zoo.scan([manifest], tmp_path / "api", executor=client.get_executor())
        workers = set(client.scheduler_info()["workers"])  # their addresses
        assert ran.scanned == 4 and workers
    done_on = {t["worker"] for t in stream.data if str(t["key"]).startswith("checkpoint_rows")}
    assert done_on and done_on <= workers  # on the cluster's worker process, not in this one
    want = _rows(zoo.open(tmp_path / "local").layers)
    assert _rows(zoo.open(tmp_path / "dask").layers) == want == _rows(zoo.open(tmp_path / "api").layers)


def test_manifest_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("file,task\na.pt,cls\n")
    code, _, err = _run("zoo", "scan", str(tmp_path / "m.csv"), "-o", str(tmp_path / "Z"))
    assert code == 2 and "expected a `path` column" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run("zoo", "scan", str(tmp_path / "*.nothing"), "-o", str(tmp_path / "Z"))
    assert code == 2 and "matches nothing" in err
    assert os.path.isdir(tmp_path / "Z") is False
    (tmp_path / "a.pt").write_bytes(b"")
    code, _, err = _run("zoo", "scan", str(tmp_path / "a.pt"), "-o", str(tmp_path / "a.pt"))
    assert code == 2 and "expected a zoo folder, got the file" in err


def test_zoo_reference_equals_reference_build_over_those_checkpoints(tmp_path: Path) -> None:
    from filterwatch.reference import Reference

    manifest = _zoo_files(tmp_path / "models", corrupt=False)
    zoo.scan([manifest], tmp_path / "Z", workers=1)
    out = tmp_path / "cls.safetensors"
    code, _, err = _run("zoo", "reference", str(tmp_path / "Z"), "--where", "task=cls", "-o", str(out), "-q")
    assert code == 0, err
    got = Reference.load(out)
    want = Reference.build([str(tmp_path / "models" / "m0.pt"), str(tmp_path / "models" / "sub" / "m2.ckpt")],
                           group="kernel")
    assert sorted(got.groups) == sorted(want.groups)
    for key, group in want.groups.items():
        assert torch.allclose(got.groups[key].basis.hist, group.basis.hist)
        assert got.groups[key].basis.n == group.basis.n
    code, _, _ = _run("check", str(tmp_path / "models" / "m1.safetensors"), "--reference", str(out), "-q")
    assert code in (0, 1)  # the reference works with check (0: pass, 1: a rule failed)
    code, _, err = _run("zoo", "reference", str(tmp_path / "Z"), "--where", "size=big", "-o", str(out), "-q")
    assert code == 2 and "meta columns of the zoo (task, arch)" in err


@pytest.mark.slow
def test_a_scan_killed_for_real_resumes_without_rewriting_finished_files(tmp_path: Path) -> None:
    """SIGKILL in the middle of a scan (no clean-up runs): every table file left is whole, and
    the same command again finishes the rest and leaves those files as they were."""
    import signal
    import subprocess
    import sys
    import time

    import pyarrow.parquet as pq

    folder = tmp_path / "models"
    folder.mkdir()
    lines = ["path"]
    for i in range(12):
        torch.manual_seed(i)
        net = nn.Sequential(nn.Conv2d(3, 128, 3), nn.Conv2d(128, 256, 3), nn.Conv2d(256, 256, 3))
        torch.save(net.state_dict(), folder / f"m{i:02d}.pt")
        lines.append(f"m{i:02d}.pt")
    (folder / "zoo.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "Z"
    argv = [sys.executable, "-m", "filterwatch", "zoo", "scan", str(folder / "zoo.csv"), "-o", str(out),
            "--workers", "1", "-q"]
    proc = subprocess.Popen(argv)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list((out / "layers").glob("*.parquet"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted((out / "layers").glob("*.parquet"))
    assert 2 <= len(done) < 12, "the scan was not killed halfway"
    for part in done:
        assert pq.read_table(part).num_rows == 3  # whole files only
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in done}
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in done} == before
    assert zoo.open(out).layers.num_rows == 36


def test_ctrl_c_is_one_line_and_exit_130(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(zoo, "scan", interrupted)
    manifest = _zoo_files(tmp_path / "models", corrupt=False)
    code, _, err = _run("zoo", "scan", str(manifest), "-o", str(tmp_path / "Z"))
    assert code == 130 and len(err.strip().splitlines()) == 1 and "interrupted" in err
