"""The calibration table: what the defaults catch, and what they leave alone.

Three sets, each judged by the gate at its defaults (``check``, ``FilterGate`` and
``assert_filters_healthy`` share them), the training-time alerts and the report's notes:

* **trained here** (``tests/calibration_models.py``): digits CNNs (plain, BatchNorm, depthwise)
  and the same models with one layer damaged at several strengths;
* **fine-tunes** of a CNN pretrained on digits 0-4, on 5-9 (the demo's recipe), judged with the
  pretrained weights as the reference (``check --reference``): two healthy ones and one wrecked
  at learning rate 5;
* **the wild set** (``tests/wild_models.py``): working models that pip packages ship, vision
  and audio, 1-D and 2-D, ``.pt``, safetensors and ONNX. They must pass; a layer that is
  degenerate but works (a few huge weights dwarf the rest) may warn.

The gate's default limits are *derived* here: for each rule, the midpoint between the worst
healthy value and the least damaged value that must fail (rounded to 0.05; for the ratio rules
on drift/noise and weight growth the geometric midpoint, to two significant digits). The
script prints the derived limits next to the defaults in ``GateRules`` and exits 1 when they
differ, or when a healthy model fails or a must-fail case passes.

Run: ``.venv/bin/python benchmarks/calibration.py [--out benchmarks/calibration.md]
[--wild-cache DIR] [--no-wild]`` (about two minutes on 2 cores; training is seeded; the wild
set's wheels, about 135 MB, are downloaded once into the cache).
"""

from __future__ import annotations

import argparse
import json
import math
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
from tests import wild_models as wm  # noqa: E402

from filterwatch import Reference, analyze  # noqa: E402
from filterwatch.gate import GateRules, evaluate  # noqa: E402
from filterwatch.gate.evaluate import dwarfed, limit_for  # noqa: E402
from filterwatch.monitor import AlertTracker  # noqa: E402
from filterwatch.report import LayerReport, Report  # noqa: E402
from filterwatch.report.registry import get  # noqa: E402

# the worst values measured on nine working production CNNs (DESIGN.md): healthy too
PRODUCTION_WORST = {"sparsity": 0.44, "dead_channel_share": 0.03, "variance_entropy": 0.18}
# rule -> (the quantity, "max" or "min", the damages it is there for)
RULES = {
    "max_sparsity": ("sparsity", "max", "filters"),
    "max_dead_channel_share": ("dead_channel_share", "max", "output channels zeroed"),
    "min_variance_entropy": ("variance_entropy", "min", "collapsed"),
}
RATIO_RULES = {"max_drift_ratio": "drift_ratio", "max_weight_growth": "weight_growth"}
DEFAULTS = GateRules()
_VE = get("variance_entropy")


def _quantity(lr: LayerReport, key: str) -> float | None:
    """The rule's quantity of a layer, VE in 3x3 units (its limit scales with log10 K)."""
    if key == "dead_channel_share":
        return None if lr.dead_channels is None else lr.dead_channels / lr.shape[0]
    v = lr.value(key)
    if key == "variance_entropy" and v is not None:
        k = math.prod(lr.kernel_size)
        return None if k < 2 else v * 0.1 / limit_for(lr, _VE, 0.1)
    return v


def _failing(report: Report) -> list[LayerReport]:
    """The layers a failure rule judges (dwarfed layers only warn on sparsity and VE)."""
    return [lr for lr in report.layers if not dwarfed(lr, DEFAULTS)]


def _worst(layers: list[LayerReport], key: str, direction: str) -> float | None:
    values = [v for lr in layers if (v := _quantity(lr, key)) is not None]
    return (max(values) if direction == "max" else min(values)) if values else None


def _verdict(report: Report) -> str:
    v = evaluate(report)
    warn = f" (WARN {', '.join(sorted({x.rule for x in v.warnings}))})" if v.warnings else ""
    return ("pass" if v.passed else "FAIL " + ", ".join(sorted({x.rule for x in v.violations}))) + warn


def _alerts(before: Report, after: Report) -> str:
    tracker = AlertTracker()
    tracker.update(before)
    return ", ".join(sorted({a.kind for a in tracker.update(after)})) or "-"


def _notes(report: Report) -> str:
    notes = report.summary.get("notes", [])
    return "; ".join(n.split(" (")[0] for n in notes) or "-"


def _row(model: str, case: str, must: str, report: Report, alerts: str = "-",
         accuracy: float | None = None, **extra: Any) -> dict[str, Any]:
    return {"model": model, "accuracy": accuracy, "case": case, "must": must, "gate": _verdict(report),
            "alerts": alerts, "notes": _notes(report), **extra}


class _Limits:
    """The worst healthy and the least must-fail value of each rule's quantity."""

    def __init__(self) -> None:
        self.healthy: dict[str, list[float]] = {q: [v] for q, v in PRODUCTION_WORST.items()}
        self.must_fail: dict[str, list[float]] = {q: [] for q, _, _ in RULES.values()}
        self.ratio_healthy: dict[str, list[float]] = {k: [] for k in RATIO_RULES}
        self.ratio_fail: dict[str, list[float]] = {k: [] for k in RATIO_RULES}
        self.dwarfed_healthy: list[float] = []  # sparse RMS of working layers beyond a limit
        self.dwarfed_fail: list[float] = []     # ... of the must-fail sparsity damages

    def add_healthy(self, report: Report) -> None:
        for q, d, _ in RULES.values():
            if (w := _worst(_failing(report), q, d)) is not None:
                self.healthy[q].append(w)
        for lr in report.layers:
            ve = _quantity(lr, "variance_entropy")
            beyond = (lr.sparsity or 0) > (DEFAULTS.max_sparsity or 1) or (
                ve is not None and ve < (DEFAULTS.min_variance_entropy or 0))
            if beyond and lr.sparse_rms_ratio is not None:
                self.dwarfed_healthy.append(lr.sparse_rms_ratio)

    def add_damage(self, report: Report, layer: str, damage: cm.Damage) -> None:
        lr = report.layer(layer)
        for q, _, kind in RULES.values():
            if damage.must_fail and kind in damage.name and (v := _quantity(lr, q)) is not None:
                self.must_fail[q].append(v)
        if damage.must_fail and "filters" in damage.name:
            self.dwarfed_fail.append(lr.sparse_rms_ratio or 0.0)

    def add_finetune(self, report: Report, fails: tuple[str, ...]) -> None:
        """A fine-tune judged against its reference; ``fails``: the ratio rules it is there for
        (none: a healthy one)."""
        for rule, key in RATIO_RULES.items():
            values = [v for lr in report.layers if (v := lr.value(key)) is not None]
            if values and (rule in fails or not fails):
                (self.ratio_fail if fails else self.ratio_healthy)[rule].append(max(values))

    def derived(self) -> dict[str, dict[str, Any]]:
        out = {}
        for rule, (q, direction, _) in RULES.items():
            worst = max(self.healthy[q]) if direction == "max" else min(self.healthy[q])
            least = min(self.must_fail[q]) if direction == "max" else max(self.must_fail[q])
            out[rule] = _entry(worst, least, _midpoint(worst, least), rule)
        if self.dwarfed_healthy and self.dwarfed_fail:
            worst, least = min(self.dwarfed_healthy), max(self.dwarfed_fail)
            out["dwarfed_sparse_rms"] = _entry(worst, least, _midpoint(worst, least), "dwarfed_sparse_rms")
        for rule in RATIO_RULES:
            if self.ratio_healthy[rule] and self.ratio_fail[rule]:
                worst, least = max(self.ratio_healthy[rule]), min(self.ratio_fail[rule])
                out[rule] = _entry(worst, least, float(f"{math.sqrt(worst * least):.2g}"), rule)
        return out


def _midpoint(worst: float, least: float) -> float:
    return round(round((worst + least) / 2 / 0.05) * 0.05, 2)


def _entry(worst: float, least: float, limit: float, rule: str) -> dict[str, Any]:
    return {"healthy_worst": worst, "must_fail_least": least, "limit": limit,
            "default": getattr(DEFAULTS, rule)}


def _trained_rows(rows: list[dict[str, Any]], limits: _Limits) -> None:
    for model in (cm.trained(name) for name in ("plain", "bn_sgd", "depthwise")):
        base = analyze(model.state)
        limits.add_healthy(base)
        rows.append(_row(model.name, "healthy (alerts: from its init)", "pass", base,
                         _alerts(analyze(model.init), base), model.accuracy))
        for damage in cm.DAMAGES:
            report = analyze(cm.damaged(model, damage))
            limits.add_damage(report, model.layer.removesuffix(".weight"), damage)
            rows.append(_row(model.name, damage.name, "fail" if damage.must_fail else "-", report,
                             _alerts(base, report)))
    prod = analyze(cm.production_like())
    limits.add_healthy(prod)
    rows.append(_row("production-like (synthetic)", "healthy", "pass", prod))
    bad = cm.destructive_lr()
    bad_report = analyze(bad.state)
    rows.append(_row(bad.name, "destructive learning rate (alerts: from its init)", "-", bad_report,
                     _alerts(analyze(bad.init), bad_report), bad.accuracy))
    for init in ("default", "kaiming_normal"):
        report = analyze(cm.fresh(init))
        rows.append(_row(f"bn_sgd, fresh {init} init", "untrained", "-", report))


def _finetune_rows(rows: list[dict[str, Any]], limits: _Limits) -> None:
    reference = Reference.build(cm.pretrained().state)
    start = analyze(cm.pretrained().state)
    cases = [(cm.finetuned(name), tuple(RATIO_RULES) if must_fail else ())
             for name, (_, _, must_fail) in cm.FINETUNES.items()]
    blown = cm.Trained("plain, pretrained weights x10", {k: v * 10 if k.endswith("weight") else v
                                                          for k, v in cm.pretrained().state.items()},
                       None, "2.weight", cm.pretrained().state)  # type: ignore[arg-type]
    cases.append((blown, ("max_weight_growth",)))  # a blow-up: the least growth that must fail
    for tuned, fails in cases:
        plain = analyze(tuned.state)
        report = analyze(tuned.state, reference=reference)
        limits.add_finetune(report, fails)
        worst = {k: max((v for lr in report.layers if (v := lr.value(k)) is not None), default=math.nan)
                 for k in ("drift_ratio", "weight_growth")}
        rows.append(_row(tuned.name, f"--reference pretrained (drift/noise up to {worst['drift_ratio']:.1f}, "
                         f"growth up to {worst['weight_growth']:.1f}x; without it: {_verdict(plain)})",
                         "fail" if fails else "pass", report, _alerts(start, plain), tuned.accuracy))


def _wild_rows(rows: list[dict[str, Any]], limits: _Limits, cache: Path) -> list[dict[str, Any]]:
    paths = wm.fetch(cache)
    table = []
    for w in wm.WILD:
        t0 = time.perf_counter()
        report = analyze(str(paths[w.name]))
        seconds = time.perf_counter() - t0
        limits.add_healthy(report)
        random_like = [lr.name for lr in report.layers if lr.random_like]
        ibr = max((lr.init_bound_ratio or 0.0) for lr in report.layers)
        row = _row(f"{w.name} ({w.package})", f"working: {w.task}", "pass", report,
                   random_like=len(random_like), seconds=seconds, init_bound_ratio=ibr)
        rows.append(row)
        table.append({**w._asdict(), "layers": len(report.layers), "verdict": row["gate"],
                      "notes": row["notes"], "random_like": len(random_like), "seconds": seconds,
                      "max_init_bound_ratio": ibr})
    return table


def run(wild_cache: Path | None = None) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    limits = _Limits()
    t0 = time.perf_counter()
    _trained_rows(rows, limits)
    _finetune_rows(rows, limits)
    wild = _wild_rows(rows, limits, wild_cache) if wild_cache is not None else []
    wreck = analyze(cm.finetuned("SGD lr 5 (wrecked)").state)
    wreck_ibr = max(lr.init_bound_ratio or 0.0 for lr in wreck.layers)
    return {"rows": rows, "wild": wild, "derived": limits.derived(), "seconds": time.perf_counter() - t0,
            "wreck_init_bound_ratio": wreck_ibr,
            "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
                       f"{torch.get_num_threads()} threads"}


def markdown(result: dict[str, Any]) -> str:
    lines = ["| model (val. accuracy) | case | must | gate at defaults | alerts | notes |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if "seconds" in r:
            continue
        acc = f" ({r['accuracy']:.2f})" if r["accuracy"] is not None else ""
        lines.append(f"| {r['model']}{acc} | {r['case']} | {r['must']} | {r['gate']} | "
                     f"{r['alerts']} | {r['notes']} |")
    if result["wild"]:
        lines += ["", "| working model (package) | kind | task | convs | format | layers | gate at defaults "
                  "| random-like layers | notes | scan s |",
                  "|---|---|---|---|---|---:|---|---:|---|---:|"]
        lines += [f"| {w['name']} (`{w['package']}`) | {w['kind']} | {w['task']} | {w['convs']} | "
                  f"{w['format']} | {w['layers']} | {w['verdict']} | {w['random_like']} | {w['notes']} | "
                  f"{w['seconds']:.1f} |"
                  for w in result["wild"]]
    lines += ["", "| rule | worst healthy | least must-fail | derived limit | default |",
              "|---|---:|---:|---:|---:|"]
    for rule, d in result["derived"].items():
        lines.append(f"| `{rule.replace('_', '-')}` | {d['healthy_worst']:.3f} | "
                     f"{d['must_fail_least']:.3f} | {d['limit']:g} | {d['default']} |")
    return "\n".join(lines) + "\n"


def problems(result: dict[str, Any]) -> list[str]:
    out = [f"{r['model']}: {r['case']} must {r['must']}, got {r['gate']}" for r in result["rows"]
           if (r["must"] == "pass" and not r["gate"].startswith("pass"))
           or (r["must"] == "fail" and r["gate"].startswith("pass"))]
    out += [f"{r['model']}: {r['random_like']} layer(s) called random-like" for r in result["rows"]
            if r.get("random_like")]
    out += [f"{r['model']}: notes say {r['notes']}" for r in result["rows"]
            if "seconds" in r and r["notes"] != "-"]
    out += [f"{rule}: derived {d['limit']}, default {d['default']}" for rule, d in result["derived"].items()
            if d["default"] is None or abs(d["limit"] - d["default"]) > 1e-9]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write the table (Markdown) here")
    parser.add_argument("--wild-cache", type=Path, default=Path.home() / ".cache" / "filterwatch" / "wild",
                        help="where the wild set's wheels and model files are kept")
    parser.add_argument("--no-wild", action="store_true", help="leave the wild set out")
    args = parser.parse_args()
    result = run(None if args.no_wild else args.wild_cache)
    text = markdown(result)
    print(text)
    print(f"{len(result['rows'])} cases in {result['seconds']:.0f} s on {result['machine']}; the wrecked "
          f"fine-tune's largest max|w|·sqrt(fan_in) is {result['wreck_init_bound_ratio']:.0f}, the wild "
          f"set's {max((w['max_init_bound_ratio'] for w in result['wild']), default=math.nan):.0f}")
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    issues = problems(result)
    for p in issues:
        print("MISMATCH", p)
    return 1 if issues else 0


if __name__ == "__main__":
    sys.exit(main())
