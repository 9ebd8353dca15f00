"""The CLI's commands, one function each (private; the parser lives in :mod:`filterwatch.cli`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TextIO

from ._atomic import write_text_atomic
from .analyze import analyze
from .errors import InputError
from .matching import parse_layer_map
from .reference import Reference
from .render import to_markdown, to_table
from .report import Report

__all__: list[str] = []

RANDOM_INIT = "random-init"


def _render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return report.to_json()
    if fmt == "markdown":
        return to_markdown(report)
    return to_table(report)


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


def scan(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    start = time.perf_counter()
    reference = _load_reference(args.reference, args.path)
    if (args.map or args.match_by_order or args.allow_unmatched) and reference is None:
        raise InputError("`--map`/`--match-by-order`/`--allow-unmatched` expected --reference, got none")
    report = analyze(
        args.path,
        kernel_sizes=args.kernel_sizes,
        include=args.include,
        exclude=args.exclude,
        include_pointwise=args.include_pointwise,
        sparsity_eps=args.sparsity_eps,
        orthogonality=not args.no_orthogonality,
        progress=None if args.quiet else _Progress(err),
        reference=reference,
        layer_map=parse_layer_map(args.map),
        match_by_order=args.match_by_order,
        allow_unmatched=args.allow_unmatched,
    )
    _emit(_render(report, args.format), args.output, out)
    if not args.quiet:
        s = report.summary
        err.write(
            f"filterwatch: scanned {s['n_layers']} layers ({s['n_filters']} filters) of "
            f"{args.path} in {time.perf_counter() - start:.2f} s"
            + (f"; wrote {args.output}" if args.output else "") + "\n"
        )
    return 0


def reference_build(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    start = time.perf_counter()
    ref = Reference.build(
        list(args.paths), group=args.group, snapshot=args.snapshot,
        kernel_sizes=args.kernel_sizes, include=args.include, exclude=args.exclude,
    )
    ref.save(args.output)
    if not args.quiet:
        n = sum(g.basis.n for g in ref.groups.values())
        err.write(
            f"filterwatch: built a {args.group} reference of {len(ref.groups)} groups "
            f"({n} filters) from {len(args.paths)} file(s) in {time.perf_counter() - start:.2f} s; "
            f"wrote {args.output}\n"
        )
    return 0


def reference_show(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    out.write(Reference.load(args.reference).describe())
    return 0


def _load_baseline(path: str) -> Report:
    import json

    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(
            f"`--baseline` expected a readable JSON report, got {path!r} ({exc.strerror})"
        ) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: expected a JSON report, got a parse error ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("report"), dict):
        data = data["report"]  # the output of `filterwatch check --format json`
    return Report.from_dict(data, where=path)


def check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .gate import compare_to_baseline, evaluate
    from .gate_render import render_verdict
    from .gate_rules import load_rules

    start = time.perf_counter()
    if args.tolerance is not None and args.baseline is None:
        raise InputError("`--tolerance` expected --baseline REPORT.json, got none")
    if args.tolerance is not None and args.tolerance < 0:
        raise InputError(f"`--tolerance` expected a number >= 0, got {args.tolerance}")
    config = load_rules(args.config)
    baseline = None if args.baseline is None else _load_baseline(args.baseline)
    report = analyze(args.path, kernel_sizes=config.kernel_sizes, include=config.include,
                     exclude=config.exclude, reference=_load_reference(args.reference, args.path),
                     allow_unmatched=True, progress=None if args.quiet else _Progress(err))
    verdict = evaluate(report, config)
    if baseline is not None:
        compare_to_baseline(report, baseline, 0.05 if args.tolerance is None else args.tolerance, verdict)
    _emit(render_verdict(verdict, report, config, args.format), args.output, out)
    if not args.quiet:
        word = "passed" if verdict.passed else f"FAILED with {len(verdict.violations)} violation(s)"
        err.write(f"filterwatch: gate {word}: {len(verdict.checks)} checks on "
                  f"{len(report.layers)} layers of {args.path} in {time.perf_counter() - start:.2f} s"
                  + (f"; wrote {args.output}" if args.output else "") + "\n")
    return 0 if verdict.passed else 1
