"""``filterwatch zoo scan`` and ``zoo shift``: the commands (the work is in :mod:`filterwatch.zoo`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TextIO

from ..errors import InputError
from ..functional.sparsity import check_eps
from ..reference import GROUPINGS

__all__ = ["add_zoo", "zoo_reference", "zoo_scan", "zoo_shift"]

EXIT_OK, EXIT_FAILED_SOME = 0, 2


class _ZooProgress:
    """``[done/total] models/s, filters/s, ETA`` on a terminal's stderr."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, done: int, total: int, filters: int, seconds: float) -> None:
        if not self.stream.isatty() or seconds <= 0:
            return
        rate = done / seconds
        eta = (total - done) / rate if rate > 0 else 0.0
        self.stream.write(f"\r[{done}/{total}] {rate:.1f} models/s, {filters / seconds:,.0f} filters/s, "
                          f"ETA {eta:.0f} s   ")
        if done == total:
            self.stream.write("\r" + " " * 78 + "\r")
        self.stream.flush()


def zoo_scan(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    check_eps(args.sparsity_eps, "--sparsity-eps")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"`--workers` expected an integer >= 1, got {args.workers}")
    from .. import zoo

    executor, client = None, None
    if args.scheduler:
        try:
            from distributed import Client
        except ImportError:
            raise InputError("`--scheduler` expected dask[distributed] installed, got it missing; hint: "
                             "pip install 'filterwatch[zoo]'") from None
        try:
            client = Client(args.scheduler, timeout=30)
        except OSError as exc:
            raise InputError(f"`--scheduler` expected a reachable Dask scheduler, got {args.scheduler!r} "
                             f"({exc})") from None
        executor = client.get_executor()
    progress: Callable[[int, int, int, float], None] | None = None if args.quiet else _ZooProgress(err)
    try:
        result = zoo.scan(args.paths, args.output, workers=args.workers, executor=executor, force=args.force,
                          kernel_sizes=args.kernel_sizes, include=args.include, exclude=args.exclude,
                          include_pointwise=args.include_pointwise, sparsity_eps=args.sparsity_eps,
                          progress=progress)
    finally:
        if client is not None:
            client.close()
    for path, reason in result.failed[:5]:
        err.write(f"filterwatch: zoo: failed {path}: {reason}\n")
    if len(result.failed) > 5:
        err.write(f"filterwatch: zoo: ... and {len(result.failed) - 5} more\n")
    if not args.quiet or result.failed:
        err.write(f"filterwatch: zoo scanned {result.scanned} checkpoints ({result.filters:,} filters), "
                  f"skipped {result.skipped} already in {args.output}, {len(result.failed)} failed"
                  + (f" (listed in {args.output}/failed.csv)" if result.failed else "") + "\n")
    return EXIT_FAILED_SOME if result.failed else EXIT_OK


SHIFT_FORMATS = ("table", "json", "markdown", "html", "png")


def zoo_shift(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from pathlib import Path

    from .._atomic import refuse_overwriting_inputs, write_atomic, write_text_atomic
    from ..zoo import shift

    refuse_overwriting_inputs(args.output, [args.zoo])
    if args.format == "png" and not args.output:
        raise InputError("`--format png` expected --output FILE.png, got none (a picture is not for stdout)")
    result = shift(args.zoo, args.by, args.kernel_size)
    if args.format in ("html", "png"):
        from ..zoo.picture import shift_html, shift_png

        if args.format == "png":
            data = shift_png(result)
            write_atomic(Path(args.output), lambda p: p.write_bytes(data))
        else:
            text = shift_html(result)
    else:
        render = {"table": result.to_table, "json": result.to_json, "markdown": result.to_markdown}
        text = render[args.format]()
    if args.format != "png":
        if args.output:
            write_text_atomic(Path(args.output), text)
        else:
            out.write(text)
    if not args.quiet:
        wrote = f"; wrote {args.output}" if args.output else ""
        err.write(f"filterwatch: zoo shift of {sum(result.n_filters):,} {args.kernel_size} filters in "
                  f"{len(result.groups)} groups by {args.by}{wrote}\n")
    return EXIT_OK


def zoo_reference(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .._atomic import refuse_overwriting_inputs
    from ..reference import Reference
    from ..zoo import open_zoo
    from ..zoo.rows import Settings

    where: dict[str, list[str]] = {}
    for item in args.where:
        column, sep, value = item.partition("=")
        if not sep or not column:
            raise InputError(f"`--where` expected COLUMN=VALUE, got {item!r}")
        where.setdefault(column, []).append(value)
    zoo = open_zoo(args.zoo)
    files = zoo.files(where)
    if not files:
        raise InputError(f"`--where` expected to choose some checkpoints of {args.zoo}, got none")
    refuse_overwriting_inputs(args.output, files)
    select = Settings(zoo.settings).selection()  # the layers the zoo was scanned with
    ref = Reference.build([str(f) for f in files], group=args.group, select=select)
    ref.save(args.output)
    if not args.quiet:
        n = sum(g.basis.n for g in ref.groups.values())
        err.write(f"filterwatch: built a {args.group} reference of {len(ref.groups)} groups ({n:,} filters) "
                  f"from {len(files)} checkpoints of {args.zoo}; wrote {args.output}\n")
    return EXIT_OK


def add_zoo(sub: argparse._SubParsersAction, parser_class: type, selection: Callable[..., None],  # type: ignore[type-arg]
            common: Callable[..., None]) -> None:
    zoo = sub.add_parser("zoo", help="model zoos: many checkpoints, here or on a Dask cluster")
    zoo_sub = zoo.add_subparsers(dest="zoo_command", parser_class=parser_class, metavar="ACTION")
    scan = zoo_sub.add_parser("scan", help="measure every checkpoint into a Parquet dataset")
    scan.add_argument("paths", nargs="+", metavar="MANIFEST.csv|PATH",
                      help="a CSV manifest (a path column, relative to it, and meta columns), or "
                           "checkpoint paths and globs")
    scan.add_argument("--output", "-o", required=True, metavar="ZOO",
                      help="the zoo folder (layers/*.parquet, failed.csv); a rerun skips what it holds")
    scan.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: all cores)")
    scan.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                      help="send each checkpoint to this Dask scheduler's workers instead")
    scan.add_argument("--force", action="store_true", help="scan again what the zoo already holds")
    selection(scan)
    scan.add_argument("--include-pointwise", action="store_true", help="also measure 1x1 layers")
    scan.add_argument("--sparsity-eps", type=float, default=0.01, metavar="EPS",
                      help="a filter is sparse when every |w| < EPS x the layer's max |w| (default 0.01)")
    common(scan)
    scan.set_defaults(func=zoo_scan)
    shift = zoo_sub.add_parser("shift", help="the paper's study: filter distribution shifts between groups")
    shift.add_argument("zoo", metavar="ZOO", help="a zoo folder written by `zoo scan`")
    shift.add_argument("--by", required=True, metavar="COLUMN",
                       help="a meta column of the manifest, or `depth` (deciles of conv_depth_norm)")
    shift.add_argument("--kernel-size", default="3x3", metavar="KxK", help="which filters (default 3x3)")
    shift.add_argument("--format", choices=SHIFT_FORMATS, default="table",
                       help="table, json (by, kernel_size, groups, n_filters, matrix), markdown, or the "
                            "paper's picture: a self-contained html page or a png (with -o)")
    shift.add_argument("--output", "-o", metavar="FILE", help="write here (atomically), not stdout")
    common(shift)
    shift.set_defaults(func=zoo_shift)
    ref = zoo_sub.add_parser("reference", help="a population reference from (some of) the zoo's checkpoints")
    ref.add_argument("zoo", metavar="ZOO", help="a zoo folder written by `zoo scan`")
    ref.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                     help="only checkpoints with this meta value (repeatable; values of one column: any)")
    ref.add_argument("--group", choices=GROUPINGS, default="kernel",
                     help="one distribution per kernel size (default), per depth decile and kernel "
                          "size, or per layer name (same architecture)")
    ref.add_argument("--output", "-o", required=True, metavar="REF", help="the reference file (.safetensors)")
    common(ref)
    ref.set_defaults(func=zoo_reference)
