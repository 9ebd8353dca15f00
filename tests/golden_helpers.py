"""Run the CLI in-process and compare its output with golden files (test helpers)."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

from filterwatch.cli import main

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("FILTERWATCH_UPDATE_GOLDEN") == "1"


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def _scrub(text: str, tmp: Path) -> str:
    text = text.replace(str(tmp), "<tmp>")
    text = re.sub(r"in \d+\.\d+ s", "in <t> s", text)
    return re.sub(r'"created": "[^"]*"', '"created": "<date>"', text)


def _round_json(text: str) -> str:
    def rnd(obj):  # type: ignore[no-untyped-def]
        if isinstance(obj, float):
            return round(obj, 6)
        if isinstance(obj, dict):
            return {k: rnd(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [rnd(v) for v in obj]
        return obj

    return json.dumps(rnd(json.loads(text)), indent=2) + "\n"


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with FILTERWATCH_UPDATE_GOLDEN=1"
    assert text == path.read_text()
