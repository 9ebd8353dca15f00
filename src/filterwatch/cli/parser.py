"""The ``filterwatch`` command line.

- ``filterwatch scan PATH [--reference REF|random-init] ...``: measure a checkpoint.
- ``filterwatch check PATH [--config FILE] [--baseline REPORT.json] ...``: the CI gate.
- ``filterwatch reference build PATH... -o REF [--group layer|depth|kernel]``.
- ``filterwatch reference show REF``.
- ``filterwatch zoo scan MANIFEST.csv -o ZOO [--workers N | --scheduler tcp://HOST:PORT]``.
- ``filterwatch zoo shift ZOO --by COLUMN|depth [--kernel-size 3x3]``.
- ``filterwatch zoo reference ZOO [--where COLUMN=VALUE ...] [--group ...] -o REF``.

Exit codes: 0 success, 1 a gate rule failed (``check``), 2 usage or input error, 3 an
internal error (a bug: never 1, so that a crash is never read as a failed gate), 130 when
interrupted (Ctrl-C).
Errors are one line on stderr; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

from .._version import __version__
from ..errors import FilterwatchError
from ..gate import VERDICT_FORMATS
from ..reference import GROUPINGS
from ..report.text import printable
from . import commands
from .commands import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, REPORT_FORMATS
from .zoo import add_zoo

__all__ = ["main"]

Command = Callable[[argparse.Namespace, TextIO, TextIO], int]


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage, so every error is one line."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def _selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kernel-size", action="append", metavar="KxK", dest="kernel_sizes",
                   help="only layers with this kernel size (repeatable), e.g. 3x3")
    p.add_argument("--include", action="append", default=[], metavar="GLOB",
                   help="only layers whose name matches (repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                   help="skip layers whose name matches (repeatable)")
    _transposed(p)


def _transposed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--transposed", action="append", default=[], metavar="GLOB",
                   help="these layers are ConvTranspose (a checkpoint does not say; repeatable)")


def _reference(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reference", metavar="REF",
                   help=f"reference file for drift, or '{commands.RANDOM_INIT}'")
    p.add_argument("--map", action="append", default=[], metavar="OLD=NEW",
                   help="reference layer OLD is model layer NEW (repeatable)")
    p.add_argument("--match-by-order", action="store_true",
                   help="pair unmatched layers by order when shapes agree")
    p.add_argument("--allow-unmatched", action="store_true",
                   help="layers without a reference get no drift instead of an error")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", "-q", action="store_true", help="no progress or summary line")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def _add_scan(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    scan = sub.add_parser("scan", help="measure a checkpoint's conv filters")
    scan.add_argument("path", metavar="PATH",
                      help=".pt/.pth/.ckpt/.safetensors file, or a Hugging Face checkpoint folder")
    scan.add_argument("--format", choices=REPORT_FORMATS, default="table",
                      help="table (fits the terminal), json (the CI contract), markdown, or a "
                           "self-contained html page (default: table)")
    scan.add_argument("--output", "-o", metavar="FILE", help="write here (atomically), not stdout")
    _selection(scan)
    scan.add_argument("--include-pointwise", action="store_true", help="also measure 1x1 layers")
    scan.add_argument("--sparsity-eps", type=float, default=0.01, metavar="EPS",
                      help="a filter is sparse when every |w| < EPS x the layer's max |w| "
                           "(default: 0.01, the paper's)")
    scan.add_argument("--no-orthogonality", action="store_true", help="skip the costly measure")
    scan.add_argument("--spectral", action="store_true",
                      help="also spectral norm, condition number, stable and effective rank and a "
                           "certified Lipschitz bound (exact, costlier: seconds for 512-channel layers)")
    scan.add_argument("--input-size", metavar="HxW",
                      help="with it, also the exact circular-padding operator norm at this input "
                           "size (implies --spectral)")
    _reference(scan)
    _common(scan)
    scan.set_defaults(func=commands.scan)


def _add_check(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    check = sub.add_parser("check", help="quality gate: exit 1 when a rule fails")
    check.add_argument("path", metavar="PATH",
                       help=".pt/.pth/.ckpt/.safetensors file, or a Hugging Face checkpoint folder")
    check.add_argument("--config", metavar="FILE",
                       help="TOML with [tool.filterwatch.gate] (default: ./pyproject.toml)")
    _reference(check)
    _transposed(check)
    check.add_argument("--baseline", metavar="REPORT.json",
                       help="fail measures worse than in this earlier report")
    check.add_argument("--tolerance", type=float, metavar="X",
                       help="allowed absolute worsening vs the baseline (default 0.05)")
    check.add_argument("--format", choices=(*VERDICT_FORMATS, "html"), default="table",
                       help="table, json, markdown (CI job summaries), junit (test reports) or "
                            "a self-contained html page (default: table)")
    check.add_argument("--output", "-o", metavar="FILE", help="write here (atomically), not stdout")
    _common(check)
    check.set_defaults(func=commands.check)


def _add_reference(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ref = sub.add_parser("reference", help="build or inspect drift references")
    ref_sub = ref.add_subparsers(dest="ref_command", parser_class=_Parser, metavar="ACTION")
    build = ref_sub.add_parser("build", help="build a reference from one or more checkpoints")
    build.add_argument("paths", nargs="+", metavar="PATH",
                       help="checkpoints whose filters make the reference (several: a population)")
    build.add_argument("--output", "-o", required=True, metavar="REF",
                       help="the reference file to write (.safetensors)")
    build.add_argument("--group", choices=GROUPINGS, default="layer",
                       help="one distribution per layer (same network), per depth decile and "
                            "kernel size, or per kernel size (other networks) (default: layer)")
    build.add_argument("--snapshot", action="store_true",
                       help="also keep the raw weights (for relative change; one PATH)")
    _selection(build)
    _common(build)
    build.set_defaults(func=commands.reference_build)
    show = ref_sub.add_parser("show", help="describe a reference file")
    show.add_argument("reference", metavar="REF", help="a reference file")
    _common(show)
    show.set_defaults(func=commands.reference_show)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="filterwatch", description="Measure the health of conv filters.")
    parser.add_argument("--version", action="version", version=f"filterwatch {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    _add_scan(sub)
    _add_check(sub)
    _add_reference(sub)
    add_zoo(sub, _Parser, _selection, _common)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    """Run the CLI; returns the exit code (the console script passes it to ``sys.exit``)."""
    out = out or sys.stdout
    err = err or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = _dispatch(argv, out, err, debug)
    for w in caught:  # our warnings as one line each, after the command's own output
        if issubclass(w.category, UserWarning):
            err.write(f"filterwatch: warning: {_one_line(str(w.message))}\n")
    return code


def _one_line(text: str) -> str:
    """One line, no control characters (an exception may quote ANSI escapes or file bytes)."""
    return " ".join(printable(text, keep="").replace("\\x0a", " ").replace("\\x09", " ").split())


def _dispatch(argv: list[str], out: TextIO, err: TextIO, debug: bool) -> int:
    try:
        args = _build_parser().parse_args(argv)
        func: Command | None = getattr(args, "func", None)
        if func is None:
            what = {"reference": "an action: build, show", "zoo": "an action: scan, shift, reference"}.get(
                args.command, "a command: scan, check, reference, zoo")
            raise _UsageError(f"expected {what} (see 'filterwatch --help')")
        return func(args, out, err)
    except _UsageError as exc:
        err.write(f"filterwatch: error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C: one line; what was written whole stays (a zoo scan resumes)
        if debug:
            raise
        err.write("filterwatch: interrupted; files already written are whole (rerun `zoo scan` to resume)\n")
        return EXIT_INTERRUPTED
    except (FilterwatchError, OSError) as exc:
        if debug:
            raise
        err.write(f"filterwatch: error: {_one_line(str(exc))}\n")
        return EXIT_USAGE
    except Exception as exc:  # a bug: never exit 1, which `check` uses for "the gate failed"
        if debug:
            raise
        err.write(f"filterwatch: internal error: {type(exc).__name__}: {_one_line(str(exc))[:300]}; "
                  "hint: rerun with --debug for the traceback and report it\n")
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
