"""The CLI's commands, one function each (the parser lives in :mod:`filterwatch.cli.parser`).

Each command checks its options first, then loads files, then measures."""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Literal, TextIO

from .._atomic import refuse_overwriting_inputs, write_text_atomic
from ..errors import InputError
from ..functional.sparsity import check_eps
from ..gate import compare_to_baseline, evaluate, load_rules, render_verdict, verdict_dict
from ..layers import LayerSelection, discover_layers, load_state_dict
from ..measure import analyze
from ..reference import Matching, Reference, parse_layer_map
from ..report import Report, to_markdown, to_table
from ..report.report import read_report_text

__all__ = ["EXIT_GATE", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "REPORT_FORMATS",
           "check", "reference_build", "reference_show", "scan"]

EXIT_OK, EXIT_GATE, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # Ctrl-C: the shell's 128 + SIGINT
RANDOM_INIT = "random-init"
ReportFormat = Literal["table", "json", "markdown", "html"]
REPORT_FORMATS: tuple[ReportFormat, ...] = ("table", "json", "markdown", "html")


def _render(report: Report, fmt: ReportFormat, width: int | None) -> str:
    if fmt == "json":
        return report.to_json()
    if fmt == "markdown":
        return to_markdown(report)
    return to_table(report, width)


def _html(report: Report, path: str, select: LayerSelection, verdict: dict | None = None) -> str:  # type: ignore[type-arg]
    """The HTML page, with filter grids of the worst layers (their kernels read again)."""
    from ..integrations.html import to_html, worst_layers  # matplotlib: only for this format

    wanted = set(worst_layers(report))
    kernels = {layer.name: layer.kernel() for layer in discover_layers(load_state_dict(path), select=select)
               if layer.name in wanted and not layer.unavailable}
    return to_html(report, verdict, kernels)


def _width(output: str | None, out: TextIO) -> int | None:
    """The width a table must fit: ``COLUMNS`` when set, else the terminal's; none for files."""
    if output:
        return None
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    return shutil.get_terminal_size().columns if out.isatty() else None


class _Progress:
    """``[i/n] layer`` on a terminal's stderr, nothing when redirected."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, done: int, total: int, name: str) -> None:
        if not self.stream.isatty():
            return
        self.stream.write(f"\r[{done}/{total}] {name[:60]:<60}")
        if done == total:
            self.stream.write("\r" + " " * 70 + "\r")
        self.stream.flush()


def _emit(text: str, output: str | None, out: TextIO) -> None:
    if output:
        write_text_atomic(Path(output), text)
    else:
        out.write(text)


def _load_reference(spec: str | None, path: str) -> Reference | None:
    if spec is None:
        return None
    if spec == RANDOM_INIT:
        return Reference.random_init(path)
    return Reference.load(spec)


def _reference_path(spec: str | None) -> str | None:
    return None if spec in (None, RANDOM_INIT) else spec


def _matching(args: argparse.Namespace) -> Matching:
    """Strict unless asked: a reference from another network is refused (exit 2)."""
    if (args.map or args.match_by_order or args.allow_unmatched) and args.reference is None:
        raise InputError("`--map`/`--match-by-order`/`--allow-unmatched` expected --reference, got none")
    return Matching(parse_layer_map(args.map), args.match_by_order, args.allow_unmatched)


def _selection(args: argparse.Namespace, include_pointwise: bool = False) -> LayerSelection:
    return LayerSelection(args.kernel_sizes, args.include, args.exclude, include_pointwise,
                          args.transposed)


def scan(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    start = time.perf_counter()
    refuse_overwriting_inputs(args.output, [args.path, _reference_path(args.reference)])
    selection = _selection(args, args.include_pointwise)
    check_eps(args.sparsity_eps, "--sparsity-eps")
    matching = _matching(args)
    report = analyze(
        args.path,
        select=selection,
        reference=_load_reference(args.reference, args.path),
        matching=matching,
        sparsity_eps=args.sparsity_eps,
        orthogonality=not args.no_orthogonality,
        progress=None if args.quiet else _Progress(err),
        spectral=args.spectral or args.input_size is not None,
        input_size=args.input_size,
    )
    text = (_html(report, args.path, selection) if args.format == "html"
            else _render(report, args.format, _width(args.output, out)))
    _emit(text, args.output, out)
    if not args.quiet:
        s = report.summary
        err.write(
            f"filterwatch: scanned {s['n_layers']} layers ({s['n_filters']} filters) of "
            f"{args.path} in {time.perf_counter() - start:.2f} s"
            + (f"; wrote {args.output}" if args.output else "") + "\n"
        )
    return EXIT_OK


def reference_build(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    start = time.perf_counter()
    refuse_overwriting_inputs(args.output, args.paths)
    ref = Reference.build(list(args.paths), group=args.group, snapshot=args.snapshot,
                          select=_selection(args))
    ref.save(args.output)
    if not args.quiet:
        n = sum(g.basis.n for g in ref.groups.values())
        err.write(
            f"filterwatch: built a {args.group} reference of {len(ref.groups)} groups "
            f"({n} filters) from {len(args.paths)} file(s) in {time.perf_counter() - start:.2f} s; "
            f"wrote {args.output}\n"
        )
    return EXIT_OK


def reference_show(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    out.write(Reference.load(args.reference).describe())
    return EXIT_OK


def _load_baseline(path: str) -> Report:
    text = read_report_text(path, "--baseline")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: expected a JSON report, got a parse error ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("report"), dict):
        data = data["report"]  # the output of `filterwatch check --format json`
    return Report.from_dict(data, where=path)


def check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    start = time.perf_counter()
    refuse_overwriting_inputs(args.output, [args.path, _reference_path(args.reference),
                                            args.baseline, args.config])
    if args.tolerance is not None and args.baseline is None:
        raise InputError("`--tolerance` expected --baseline REPORT.json, got none")
    if args.tolerance is not None and not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        raise InputError(f"`--tolerance` expected a finite number >= 0, got {args.tolerance}; "
                         "hint: 0.05 is five points of a share")
    config = load_rules(args.config)
    baseline = None if args.baseline is None else _load_baseline(args.baseline)
    matching = _matching(args)
    select = config.select
    if args.transposed:
        select = LayerSelection(select.kernel_sizes, select.include, select.exclude,
                                select.include_pointwise, args.transposed)
    report = analyze(args.path, select=select, reference=_load_reference(args.reference, args.path),
                     matching=matching, spectral=config.needs_spectral,
                     progress=None if args.quiet else _Progress(err))
    verdict = evaluate(report, config)
    if baseline is not None:
        compare_to_baseline(report, baseline, 0.05 if args.tolerance is None else args.tolerance, verdict,
                            config.rules.max_weight_growth)
    if args.format == "html":
        text = _html(report, args.path, select, verdict_dict(verdict, report, config))
    else:
        text = render_verdict(verdict, report, config, args.format, _width(args.output, out))
    _emit(text, args.output, out)
    if not args.quiet:
        word = "passed" if verdict.passed else f"FAILED with {len(verdict.violations)} violation(s)"
        skipped = f" ({verdict.skipped} skipped)" if verdict.skipped else ""
        err.write(f"filterwatch: gate {word}: {verdict.ran} checks{skipped} on "
                  f"{len(report.layers)} layers of {args.path} in {time.perf_counter() - start:.2f} s"
                  + (f"; wrote {args.output}" if args.output else "") + "\n")
    return EXIT_OK if verdict.passed else EXIT_GATE
