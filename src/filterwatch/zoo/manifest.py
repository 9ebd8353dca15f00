"""What a zoo scan reads: a manifest (a CSV with a ``path`` column and any meta columns, like
the paper's meta table) or checkpoint paths and globs."""

from __future__ import annotations

import csv
import glob
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from ..errors import InputError

__all__ = ["Entry", "base_of", "entries"]

RESERVED = ("path", "layer", "kind", "kernel_size", "n_filters", "conv_depth", "conv_depth_norm", "shape")


class Entry(NamedTuple):
    """One checkpoint: ``path`` as written (the table's key), where it is, its meta columns."""

    path: str
    file: str
    meta: dict[str, str]


def _from_manifest(manifest: Path) -> tuple[list[Entry], list[str]]:
    try:
        with open(manifest, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{manifest}: expected a readable CSV manifest, got "
                         f"{type(exc).__name__}: {exc}") from None
    if "path" not in columns:
        raise InputError(f"{manifest}: expected a `path` column, got {', '.join(columns) or 'no header'}; "
                         "hint: the first line names the columns, e.g. path,task,dataset")
    clash = [c for c in columns if c in RESERVED and c != "path"]
    if clash:
        raise InputError(f"{manifest}: expected meta columns other than the table's own, got "
                         f"{', '.join(clash)}; hint: rename them (e.g. model_kind)")
    meta_columns = [c for c in columns if c != "path"]
    out = []
    for i, row in enumerate(rows, start=2):
        written = (row.get("path") or "").strip()
        if not written:
            raise InputError(f"{manifest}:{i}: expected a path, got an empty cell")
        meta = {c: row.get(c) or "" for c in meta_columns}
        out.append(Entry(written, str(manifest.parent / written), meta))
    return out, meta_columns


def base_of(sources: Sequence[str | Path]) -> Path:
    """The folder that the paths as written are relative to: the manifest's, else the
    current one (absolute)."""
    if len(sources) == 1 and str(sources[0]).lower().endswith(".csv"):
        return Path(sources[0]).resolve().parent
    return Path.cwd().resolve()


def entries(sources: Sequence[str | Path]) -> tuple[list[Entry], list[str]]:
    """The checkpoints of ``sources`` and the meta column names: one ``.csv`` manifest (paths
    relative to its folder), or paths and globs (no meta columns). A path listed twice is
    scanned once.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "zoo.csv").write_text("path,task\\nmodels/a.pt,cls\\n")
        >>> found, columns = entries([folder / "zoo.csv"])
        >>> found[0].path, found[0].meta, columns
        ('models/a.pt', {'task': 'cls'}, ['task'])
    """
    if len(sources) == 1 and str(sources[0]).lower().endswith(".csv"):
        found, columns = _from_manifest(Path(sources[0]))
    else:
        found, columns = [], []
        for source in sources:
            text = str(source)
            matches = sorted(glob.glob(text)) if glob.has_magic(text) else [text]
            if not matches:
                raise InputError(f"`paths` expected checkpoints, got the pattern {text!r}, which "
                                 "matches nothing")
            found += [Entry(m, m, {}) for m in matches]
    seen: set[str] = set()
    unique = [e for e in found if not (e.path in seen or seen.add(e.path))]  # type: ignore[func-returns-value]
    if not unique:
        raise InputError("`paths` expected at least one checkpoint, got none")
    return unique, columns
