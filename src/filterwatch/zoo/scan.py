"""``filterwatch zoo scan``: every checkpoint of a zoo measured once, one Parquet file each.

The parent process sends each worker a path (never a tensor) and gets plain rows back, with
the layers' peak-scaled filters as bytes (for ``zoo shift``); it writes
``ZOO/filters/<key>.safetensors`` and then ``ZOO/layers/<key>.parquet``, each atomically
(the key: a hash of the path as written), so a
scan killed halfway leaves whole files only and a rerun skips them (``force=True`` scans
again). Failures are kept in ``ZOO/failed.csv`` (``path,reason``) and the rest of the zoo is
kept. Memory is one checkpoint per worker plus the rows. Any
``concurrent.futures.Executor`` runs the tasks: a local process pool (spawn; each worker gets
its share of the cores and is recycled), or a Dask cluster's (``Client.get_executor()``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from .._atomic import write_atomic, write_text_atomic
from ..errors import InputError
from .manifest import Entry, base_of, entries
from .rows import Settings, checkpoint_rows, schema

__all__ = ["ScanResult", "filters_file", "part_name", "scan"]

ZOO_FORMAT = 1
Progress = Callable[[int, int, int, float], None]  # done, total, filters so far, seconds


class ScanResult(NamedTuple):
    """What a scan did: checkpoints scanned now, skipped (already in the zoo), failed
    (``(path, reason)``), and the filters measured now."""

    scanned: int
    skipped: int
    failed: list[tuple[str, str]]
    filters: int


def part_name(path: str) -> str:
    """The file of one checkpoint's rows: a hash of its path as written (stable across runs).

    Example:
        >>> part_name("models/a.pt")
        '10886409c3f53bd1.parquet'
    """
    return hashlib.sha256(path.encode("utf-8")).hexdigest()[:16] + ".parquet"


def _zoo_json(out: Path, settings: Mapping[str, Any], columns: list[str], force: bool, base: Path) -> None:
    """Create the zoo's description, or check that a rerun scans with the same settings
    (``base``: where the paths as written are, kept for ``zoo reference``)."""
    meta = out / "zoo.json"
    want = {"format": ZOO_FORMAT, "settings": dict(settings), "meta_columns": columns}
    if meta.is_file() and not force:
        try:
            have = json.loads(meta.read_text(encoding="utf-8"))
        except ValueError:
            raise InputError(f"{meta}: expected the zoo's description (JSON), got something else") from None
        if {k: have.get(k) for k in want} != want:
            raise InputError(f"`-o` {str(out)!r} holds a zoo scanned with other settings or meta columns "
                             f"({have.get('settings')}, {have.get('meta_columns')}); hint: another "
                             "folder, or --force to scan it again")
        return
    write_text_atomic(meta, json.dumps({**want, "base": str(base)}, indent=2) + "\n")


def filters_file(root: Path, path: str) -> Path:
    """Where the zoo in ``root`` keeps the peak-scaled filters of the checkpoint ``path``."""
    return (root / "filters" / part_name(path)).with_suffix(".safetensors")


def _write_part(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows, schema=schema(columns))
    write_atomic(path, lambda p: pq.write_table(table, p))


def _write_failed(out: Path, failed: list[tuple[str, str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "reason"])
    writer.writerows(failed)
    write_text_atomic(out / "failed.csv", buf.getvalue())


_RECYCLE = 100  # checkpoints a local worker scans before it is replaced by a fresh one


def _local_pool(workers: int) -> ProcessPoolExecutor:
    """Spawned workers (no forked torch state). They are recycled by :func:`scan`, which
    starts a fresh pool every ``_RECYCLE`` checkpoints a worker (memory stays bounded whatever
    a checkpoint leaves behind); ``max_tasks_per_child`` is not used: Python 3.11's pool hangs
    when its workers retire that way."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def _reason(exc: BaseException, file: str) -> str:
    """One line: the error's own words without the file's name (the row names it)."""
    text = " ".join(str(exc).split()).removeprefix(f"{file}: ")
    return text if isinstance(exc, InputError | OSError) else f"{type(exc).__name__}: {text}"


def scan(sources: Sequence[str | Path], out: str | Path, *, workers: int | None = None,
         executor: Executor | None = None, force: bool = False, kernel_sizes: Sequence[str] | None = None,
         include: Sequence[str] = (), exclude: Sequence[str] = (), include_pointwise: bool = False,
         sparsity_eps: float = 0.01, progress: Progress | None = None) -> ScanResult:
    """Scan a zoo into ``out`` (see the module's text); returns what it did.

    Args:
        sources: one ``.csv`` manifest (a ``path`` column, relative to the manifest's folder,
            and meta columns), or checkpoint paths and globs.
        out: the zoo folder (created; a rerun skips what it holds).
        workers: local processes (default: all cores; 1: this process). Each gets
            ``cores / workers`` torch threads.
        executor: any ``concurrent.futures.Executor`` instead (e.g. a Dask
            ``Client.get_executor()``); ``workers`` is then ignored.
        force: scan every checkpoint again.
    """
    found, columns = entries(sources)
    settings = Settings(kernel_sizes=None if kernel_sizes is None else list(kernel_sizes),
                        include=list(include), exclude=list(exclude),
                        include_pointwise=bool(include_pointwise), sparsity_eps=float(sparsity_eps))
    settings.selection()  # bad kernel sizes or patterns: an error now, not one per checkpoint
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise InputError(f"`out` expected a zoo folder, got the file {str(root)!r}; hint: -o names a folder")
    (root / "layers").mkdir(parents=True, exist_ok=True)
    (root / "filters").mkdir(exist_ok=True)
    _zoo_json(root, settings, columns, force, base_of(sources))
    todo = [e for e in found if force or not (root / "layers" / part_name(e.path)).is_file()]
    skipped = len(found) - len(todo)
    cores = os.cpu_count() or 1
    n = max(1, min(workers or cores, len(todo) or 1))
    own = executor is None and n > 1
    threads = max(1, cores // n) if own else None
    failed: list[tuple[str, str]] = []
    filters = scanned = 0
    start = time.perf_counter()

    def finish(entry: Entry, result: tuple[list[dict[str, Any]], bytes] | None,
               error: BaseException | None) -> None:
        nonlocal filters, scanned
        if error is not None or result is None:
            failed.append((entry.path, _reason(error, entry.file) if error is not None else "no result"))
        else:
            rows, scaled = result
            name = part_name(entry.path)  # the filters first: a table file means both are there
            if scaled:  # a worker that could not write them itself sent them
                write_atomic(filters_file(root, entry.path), lambda p: p.write_bytes(scaled))
            _write_part(root / "layers" / name, rows, columns)
            filters += sum(int(r["n_filters"]) for r in rows)
            scanned += 1
        if progress is not None:
            progress(scanned + len(failed), len(todo), filters, time.perf_counter() - start)

    def run(pool: Executor, batch: list[Entry]) -> None:
        futures: dict[Future[tuple[list[dict[str, Any]], bytes]], Entry] = {
            pool.submit(checkpoint_rows, e.file, e.path, e.meta, dict(settings), threads,
                        str(filters_file(root, e.path)) if own else None): e
            for e in batch}
        for future, e in _as_completed(futures):
            try:
                finish(e, future.result(), None)
            except Exception as exc:  # one checkpoint's failure is a row of failed.csv
                finish(e, None, exc)

    try:
        if executor is not None:
            run(executor, todo)
        elif own:
            step = _RECYCLE * n
            for i in range(0, len(todo), step):  # fresh workers for every step checkpoints
                pool = _local_pool(n)
                try:
                    run(pool, todo[i:i + step])
                finally:
                    pool.shutdown(cancel_futures=True)
        else:
            for e in todo:
                try:
                    finish(e, checkpoint_rows(e.file, e.path, e.meta, settings, None,
                                              str(filters_file(root, e.path))), None)
                except Exception as exc:
                    finish(e, None, exc)
    finally:
        _write_failed(root, failed)
    return ScanResult(scanned, skipped, failed, filters)


def _as_completed(futures: Mapping[Future[Any], Entry]) -> Any:
    from concurrent.futures import as_completed

    for future in as_completed(futures):
        yield future, futures[future]
