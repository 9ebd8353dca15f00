"""Model zoos: ``filterwatch zoo`` over many checkpoints, here or on a Dask cluster
(``pip install 'filterwatch[zoo]'``: pyarrow, dask[distributed]).

- :func:`scan`: every checkpoint of a manifest measured once into a Parquet dataset, in
  parallel, resumable, failures listed;
- :func:`shift`: the paper's shift matrix between groups of the zoo's filters;
- :func:`open`: the scanned zoo as a table.
"""

from __future__ import annotations

from .manifest import Entry, entries
from .scan import ScanResult, scan
from .shift import Shift
from .store import Zoo, open_zoo, shift

open = open_zoo

__all__ = ["Entry", "ScanResult", "Shift", "Zoo", "entries", "open", "open_zoo", "scan", "shift"]
