"""Safe file writes (private).

A regular file (or a new path) is written atomically: a temporary file in the same folder,
fsync, then rename, so a reader never sees half a file. A symlink is written through to its
target (the link stays a link). A FIFO, a character device or a socket (``/dev/stdout``,
``/dev/full``) is written directly: renaming over it would replace the device node. Written
files get the mode a plain ``open()`` would give them (``0666 & ~umask``), or keep the mode of
the file they replace.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import InputError

__all__: list[str] = []


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _is_special(path: Path) -> bool:
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(p)`` so that ``path`` ends up holding what it wrote; never leaves a
    half-written regular file, never replaces a symlink or a device with a file."""
    path = Path(os.path.realpath(path))  # through symlinks, to the file they name
    if path.is_dir():
        raise InputError(f"`output` expected a file path, got a directory {str(path)!r}")
    if _is_special(path):
        write(path)
        return
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def refuse_overwriting_inputs(output: str | Path | None, inputs: Iterable[str | Path | None],
                              arg: str = "--output") -> None:
    """Raise when ``output`` is (after symlinks) one of the ``inputs``: writing a report over
    the checkpoint it describes would destroy it."""
    if output is None:
        return
    out = os.path.realpath(output)
    for item in inputs:
        if item is None:
            continue
        same = os.path.realpath(item) == out
        with contextlib.suppress(OSError):
            same = same or os.path.samefile(item, output)
        if same:
            raise InputError(
                f"`{arg}` expected a path that is not an input of this command, got {str(output)!r}, "
                f"which is the input {str(item)!r}; hint: write the output to another file"
            )
