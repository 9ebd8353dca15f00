"""The ``filterwatch`` command line: ``filterwatch scan PATH ...``.

Exit codes: 0 success, 2 usage or input error (1 is reserved for a failed quality gate).
Errors are one line on stderr; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from ._atomic import write_text_atomic
from ._version import __version__
from .analyze import analyze
from .errors import FilterwatchError
from .render import to_markdown, to_table
from .report import Report

__all__ = ["main"]

EXIT_OK, EXIT_GATE, EXIT_USAGE = 0, 1, 2
_FORMATS = ("table", "json", "markdown")


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage, so every error is one line."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="filterwatch", description="Measure the health of conv filters.")
    parser.add_argument("--version", action="version", version=f"filterwatch {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    scan = sub.add_parser("scan", help="measure a checkpoint's conv filters")
    scan.add_argument("path", metavar="PATH", help=".pt/.pth/.ckpt/.safetensors file")
    scan.add_argument("--format", choices=_FORMATS, default="table")
    scan.add_argument("--output", "-o", metavar="FILE", help="write here (atomically), not stdout")
    scan.add_argument("--kernel-size", action="append", metavar="KxK", dest="kernel_sizes",
                      help="only layers with this kernel size (repeatable), e.g. 3x3")
    scan.add_argument("--include", action="append", default=[], metavar="GLOB",
                      help="only layers whose name matches (repeatable)")
    scan.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                      help="skip layers whose name matches (repeatable)")
    scan.add_argument("--include-pointwise", action="store_true", help="also measure 1x1 layers")
    scan.add_argument("--sparsity-eps", type=float, default=0.01, metavar="EPS")
    scan.add_argument("--no-orthogonality", action="store_true", help="skip the costly measure")
    scan.add_argument("--quiet", "-q", action="store_true", help="no progress or summary line")
    scan.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def _render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return report.to_json()
    if fmt == "markdown":
        return to_markdown(report)
    return to_table(report)


def _progress(stream: TextIO):  # type: ignore[no-untyped-def]
    def show(done: int, total: int, name: str) -> None:
        if stream.isatty():
            stream.write(f"\r[{done}/{total}] {name[:60]:<60}")
            if done == total:
                stream.write("\r" + " " * 70 + "\r")
            stream.flush()

    return show


def _scan(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    start = time.perf_counter()
    report = analyze(
        args.path,
        kernel_sizes=args.kernel_sizes,
        include=args.include,
        exclude=args.exclude,
        include_pointwise=args.include_pointwise,
        sparsity_eps=args.sparsity_eps,
        orthogonality=not args.no_orthogonality,
        progress=None if args.quiet else _progress(err),
    )
    text = _render(report, args.format)
    if args.output:
        write_text_atomic(Path(args.output), text)
    else:
        out.write(text)
    if not args.quiet:
        s = report.summary
        err.write(
            f"filterwatch: scanned {s['n_layers']} layers ({s['n_filters']} filters) of "
            f"{args.path} in {time.perf_counter() - start:.2f} s"
            + (f"; wrote {args.output}" if args.output else "") + "\n"
        )
    return EXIT_OK


def main(argv: Sequence[str] | None = None, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    """Run the CLI; returns the exit code (the console script passes it to ``sys.exit``)."""
    out = out or sys.stdout
    err = err or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = _build_parser().parse_args(argv)
        if args.command is None:
            raise _UsageError("expected a command: scan (see 'filterwatch --help')")
        return _scan(args, out, err)
    except _UsageError as exc:
        err.write(f"filterwatch: error: {exc}\n")
        return EXIT_USAGE
    except (FilterwatchError, OSError) as exc:
        if debug:
            raise
        err.write(f"filterwatch: error: {exc}\n")
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
