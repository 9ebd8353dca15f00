"""The calibration table: what the defaults catch, and what they leave alone.

Healthy trained models (they must pass) and the same models with one layer damaged at
several strengths (``tests/calibration_models.py``), each measured with ``analyze`` and judged
by the gate at its defaults (``check``, ``FilterGate`` and ``assert_filters_healthy`` share
them), by the training-time alerts (the healthy model as the first snapshot, the damaged one
as the next) and by the report's notes ("looks untrained").

The gate's default limits are *derived* here: for each rule, the midpoint between the worst
healthy value (the trained models, the synthetic production-like layers, and the worst values
measured on working production CNNs, DESIGN.md) and the least damaged value that must fail,
rounded to the nearest 0.05. The script prints the derived limits next to the defaults in
``GateRules`` and exits 1 when they differ, or when a healthy model fails or a must-fail
damage passes.

Run: ``.venv/bin/python benchmarks/calibration.py [--out benchmarks/calibration.md]``
(about a minute on 2 cores; training is seeded).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import calibration_models as cm  # noqa: E402

from filterwatch import analyze  # noqa: E402
from filterwatch.gate import GateRules, evaluate  # noqa: E402
from filterwatch.monitor import AlertTracker  # noqa: E402
from filterwatch.report import Report  # noqa: E402

# the worst values measured on nine working production CNNs (DESIGN.md): healthy too
PRODUCTION_WORST = {"sparsity": 0.44, "dead_channel_share": 0.03, "variance_entropy": 0.18}
# rule -> (the quantity, "max" or "min", the damages it is there for)
RULES = {
    "max_sparsity": ("sparsity", "max", "filters zeroed"),
    "max_dead_channel_share": ("dead_channel_share", "max", "output channels zeroed"),
    "min_variance_entropy": ("variance_entropy", "min", "collapsed"),
}


def _quantity(report: Report, layer: str, key: str) -> float | None:
    lr = report.layer(layer)
    if key == "dead_channel_share":
        return None if lr.dead_channels is None else lr.dead_channels / lr.shape[0]
    return lr.value(key)


def _worst(report: Report, key: str, direction: str) -> float | None:
    values = [v for lr in report.layers if (v := _quantity(report, lr.name, key)) is not None]
    if not values:
        return None
    return max(values) if direction == "max" else min(values)


def _verdict(report: Report) -> str:
    v = evaluate(report)
    if v.passed:
        return "pass"
    return "FAIL " + ", ".join(sorted({x.rule for x in v.violations}))


def _alerts(before: Report, after: Report) -> str:
    tracker = AlertTracker()
    tracker.update(before)
    return ", ".join(sorted({a.kind for a in tracker.update(after)})) or "-"


def _notes(report: Report) -> str:
    notes = report.summary.get("notes", [])
    return "; ".join(n.split(":")[0] for n in notes) or "-"


def _key(layer: str) -> str:
    return layer.removesuffix(".weight")


def run() -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    healthy_worst: dict[str, list[float]] = {q: [v] for q, v in PRODUCTION_WORST.items()}
    must_fail: dict[str, list[float]] = {q: [] for q, _, _ in RULES.values()}
    t0 = time.perf_counter()
    models = [cm.trained(name) for name in ("plain", "bn_sgd", "depthwise")]
    for model in models:
        base = analyze(model.state)
        for q, d, _ in RULES.values():
            w = _worst(base, q, d)
            if w is not None:
                healthy_worst[q].append(w)
        rows.append({"model": model.name, "accuracy": model.accuracy, "case": "healthy (alerts: "
                     "from its init)", "must": "pass", "gate": _verdict(base),
                     "alerts": _alerts(analyze(model.init), base), "notes": _notes(base)})
        for damage in cm.DAMAGES:
            report = analyze(cm.damaged(model, damage))
            for q, _, kind in RULES.values():
                if damage.must_fail and kind in damage.name:
                    v = _quantity(report, _key(model.layer), q)
                    if v is not None:
                        must_fail[q].append(v)
            rows.append({"model": model.name, "accuracy": None, "case": damage.name,
                         "must": "fail" if damage.must_fail else "-", "gate": _verdict(report),
                         "alerts": _alerts(base, report), "notes": _notes(report)})
    prod = analyze(cm.production_like())
    for q, d, _ in RULES.values():
        w = _worst(prod, q, d)
        if w is not None:
            healthy_worst[q].append(w)
    rows.append({"model": "production-like (synthetic)", "accuracy": None, "case": "healthy",
                 "must": "pass", "gate": _verdict(prod), "alerts": "-", "notes": _notes(prod)})
    bad = cm.destructive_lr()
    bad_report = analyze(bad.state)
    rows.append({"model": bad.name, "accuracy": bad.accuracy, "case": "destructive learning rate "
                 "(alerts: from its init)", "must": "-", "gate": _verdict(bad_report),
                 "alerts": _alerts(analyze(bad.init), bad_report), "notes": _notes(bad_report)})
    for init in ("default", "kaiming_normal"):
        rows.append({"model": f"bn_sgd, fresh {init} init", "accuracy": None, "case": "untrained",
                     "must": "-", "gate": _verdict(analyze(cm.fresh(init))), "alerts": "-",
                     "notes": _notes(analyze(cm.fresh(init)))})

    derived = {}
    for rule, (q, direction, _) in RULES.items():
        worst = max(healthy_worst[q]) if direction == "max" else min(healthy_worst[q])
        least = min(must_fail[q]) if direction == "max" else max(must_fail[q])
        derived[rule] = {"healthy_worst": worst, "must_fail_least": least,
                         "limit": round(round((worst + least) / 2 / 0.05) * 0.05, 2),
                         "default": getattr(GateRules(), rule)}
    return {"rows": rows, "derived": derived, "seconds": time.perf_counter() - t0,
            "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
                       f"{torch.get_num_threads()} threads"}


def markdown(result: dict[str, Any]) -> str:
    lines = ["| model (val. accuracy) | case | must | gate at defaults | alerts | notes |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        acc = f" ({r['accuracy']:.2f})" if r["accuracy"] is not None else ""
        lines.append(f"| {r['model']}{acc} | {r['case']} | {r['must']} | {r['gate']} | "
                     f"{r['alerts']} | {r['notes']} |")
    lines += ["", "| rule | worst healthy | least must-fail | derived limit | default |",
              "|---|---:|---:|---:|---:|"]
    for rule, d in result["derived"].items():
        lines.append(f"| `{rule.replace('_', '-')}` | {d['healthy_worst']:.3f} | "
                     f"{d['must_fail_least']:.3f} | {d['limit']:.2f} | {d['default']} |")
    return "\n".join(lines) + "\n"


def problems(result: dict[str, Any]) -> list[str]:
    out = [f"{r['model']}: {r['case']} must {r['must']}, got {r['gate']}" for r in result["rows"]
           if (r["must"] == "pass" and r["gate"] != "pass") or (r["must"] == "fail" and r["gate"] == "pass")]
    out += [f"{rule}: derived {d['limit']}, default {d['default']}" for rule, d in result["derived"].items()
            if d["default"] is None or abs(d["limit"] - d["default"]) > 1e-9]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write the table (Markdown) here")
    args = parser.parse_args()
    result = run()
    text = markdown(result)
    print(text)
    print(f"{len(result['rows'])} cases in {result['seconds']:.0f} s on {result['machine']}")
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    issues = problems(result)
    for p in issues:
        print("MISMATCH", p)
    return 1 if issues else 0


if __name__ == "__main__":
    sys.exit(main())
