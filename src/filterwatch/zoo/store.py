"""A scanned zoo as data: ``filterwatch.zoo.open(ZOO)``."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError
from .rows import schema
from .shift import Shift, shift_matrix

__all__ = ["Zoo", "open_zoo", "shift"]


class Zoo:
    """A zoo folder written by :func:`filterwatch.zoo.scan`: ``layers`` (a pyarrow Table, one
    row per checkpoint and conv layer; ``.to_pandas()``), ``failed`` (``(path, reason)``
    pairs) and the scan's ``settings``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        meta = self.folder / "zoo.json"
        if not meta.is_file():
            raise InputError(f"`zoo` expected a folder written by `filterwatch zoo scan`, got "
                             f"{str(self.folder)!r} without zoo.json")
        description = json.loads(meta.read_text(encoding="utf-8"))
        self.settings: dict[str, Any] = description["settings"]
        self.meta_columns: list[str] = description["meta_columns"]
        self.base = Path(description.get("base", "."))  # where the paths as written are

    @property
    def layers(self) -> Any:
        """Every checkpoint's rows as one table, in path order."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = sorted((self.folder / "layers").glob("*.parquet"))
        table = pa.concat_tables([pq.read_table(p) for p in parts]) if parts else \
            schema(self.meta_columns).empty_table()
        return table.sort_by([("path", "ascending"), ("conv_depth", "ascending")])

    def shift(self, by: str, kernel_size: str = "3x3") -> Shift:
        """The paper's shift matrix between the groups of ``by`` (a meta column, or ``depth``:
        deciles of the normalised depth), over the zoo's filters of ``kernel_size`` (see
        :mod:`filterwatch.zoo.shift`)."""
        return shift_matrix(self.folder, self.layers, self.meta_columns, by, kernel_size)

    def files(self, where: Mapping[str, Sequence[str]] | None = None) -> list[Path]:
        """The checkpoint files of the zoo whose meta columns hold one of the values in
        ``where`` (``{"task": ["cls"]}``), in path order."""
        where = dict(where or {})
        unknown = [c for c in where if c not in self.meta_columns]
        if unknown:
            known = ", ".join(self.meta_columns) or "none"
            raise InputError(f"`--where` expected meta columns of the zoo ({known}), got "
                             f"{', '.join(unknown)}")
        chosen = sorted({row["path"] for row in self.layers.to_pylist()
                         if all(str(row[c]) in values for c, values in where.items())})
        return [self.base / p for p in chosen]

    @property
    def failed(self) -> list[tuple[str, str]]:
        path = self.folder / "failed.csv"
        if not path.is_file():
            return []
        with open(path, newline="", encoding="utf-8") as fh:
            return [(row["path"], row["reason"]) for row in csv.DictReader(fh)]


def open_zoo(folder: str | Path) -> Zoo:
    """The zoo in ``folder``.

    Example:
        >>> import tempfile, torch
        >>> from filterwatch import zoo
        >>> folder = tempfile.mkdtemp()
        >>> torch.save(torch.nn.Conv2d(3, 8, 3).state_dict(), f"{folder}/a.pt")
        >>> _ = zoo.scan([f"{folder}/a.pt"], f"{folder}/zoo", workers=1)
        >>> zoo.open(f"{folder}/zoo").layers.num_rows
        1
    """
    return Zoo(folder)


def shift(folder: str | Path, by: str, kernel_size: str = "3x3") -> Shift:
    """The shift matrix of the zoo in ``folder`` (see :meth:`Zoo.shift`)."""
    return Zoo(folder).shift(by, kernel_size)
