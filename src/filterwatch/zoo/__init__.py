"""Model zoos: ``filterwatch zoo`` over many checkpoints, here or on a Dask cluster
(``pip install 'filterwatch[zoo]'``: pyarrow, dask[distributed]).

- :func:`scan`: every checkpoint of a manifest measured once into a Parquet dataset, in
  parallel, resumable, failures listed;
- :func:`open`: the scanned zoo as a table.
"""

from __future__ import annotations

from .manifest import Entry, entries
from .scan import ScanResult, scan
from .store import Zoo, open_zoo

open = open_zoo

__all__ = ["Entry", "ScanResult", "Zoo", "entries", "open", "open_zoo", "scan"]
