"""The ``filterwatch`` command line: ``scan``, ``check`` and ``reference build|show``.

Exit codes: 0 success, 1 a gate rule failed (``check``), 2 usage or input error."""

from .parser import main

__all__ = ["main"]
