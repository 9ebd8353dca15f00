"""A gate given a reference fails what moved far (issue 35, item 3): drift against its noise
floor and weight growth against the reference's scale; old reference files still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import save_file

from filterwatch import Reference, analyze
from filterwatch.gate import GateRules, evaluate
from filterwatch.reference.codec import read_file, write_file
from filterwatch.report import Report
from tests import calibration_models as cm
from tests.golden_helpers import _run

WRECK, HEALTHY = "SGD lr 5 (wrecked)", "Adam lr 1e-3 (the demo's)"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("finetunes")
    out = {"ref": tmp / "pretrained.ref.safetensors"}
    Reference.build(cm.pretrained().state).save(out["ref"])
    for name, key in ((WRECK, "wreck"), (HEALTHY, "healthy")):
        out[key] = tmp / f"{key}.safetensors"
        save_file({k: v.contiguous() for k, v in cm.finetuned(name).state.items()}, str(out[key]))
    return out


@pytest.mark.slow
def test_the_lr5_wreck_fails_check_reference_and_a_healthy_finetune_passes(files: dict[str, Path]) -> None:
    code, out, _ = _run("check", str(files["wreck"]), "--reference", str(files["ref"]), "--format", "json")
    verdict = json.loads(out)
    rules = {v["rule"] for v in verdict["violations"]}
    assert code == 1 and "max-weight-growth" in rules
    growth = next(v for v in verdict["violations"] if v["rule"] == "max-weight-growth")
    assert f"grew {growth['value']:.0f}x the reference's scale: learning rate too high" in growth["message"]
    assert "collapsed" not in growth["message"]
    assert growth["hint"] in growth["message"] and "{value" not in out  # filled everywhere
    code, out, _ = _run("check", str(files["healthy"]), "--reference", str(files["ref"]))
    assert code == 0, out


@pytest.mark.slow
def test_drift_is_judged_against_its_noise(files: dict[str, Path]) -> None:
    wreck = analyze(str(files["wreck"]), reference=Reference.load(files["ref"]))
    healthy = analyze(str(files["healthy"]), reference=Reference.load(files["ref"]))
    limit = GateRules().max_drift_ratio
    assert limit is not None
    def worst(report: Report) -> float:
        return max(lr.drift_ratio or 0.0 for lr in report.layers)

    assert worst(wreck) > limit > worst(healthy)
    small = [lr for lr in wreck.layers if lr.n_filters < GateRules().drift_min_filters]
    verdict = evaluate(wreck)
    for lr in small:  # raw drift skips layers this small; drift/noise judges them
        assert verdict.checks[(lr.name, "drift")].startswith("skip")
        assert not verdict.checks[(lr.name, "drift_ratio")].startswith("skip")


@pytest.mark.slow
def test_a_reference_without_weight_scales_is_read_as_before_with_a_note(files: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    tensors, meta = read_file(files["ref"])
    for g in meta["groups"]:
        g.pop("rms")
    old = tmp_path / "old.ref.safetensors"
    write_file(old, tensors, meta)
    report = analyze(str(files["wreck"]), reference=Reference.load(old))
    assert all(lr.weight_growth is None and "no weight scale" in lr.undefined["weight_growth"]
               for lr in report.layers)
    assert all(lr.drift is not None for lr in report.layers)
    checks = evaluate(report).checks
    assert all(status.startswith("skip") for (_, group), status in checks.items() if group == "weight_growth")


@pytest.mark.slow
def test_a_baseline_names_the_blow_up_first(files: dict[str, Path], tmp_path: Path) -> None:
    base = tmp_path / "pretrained.json"
    analyze(cm.pretrained().state).save(base)
    code, out, _ = _run("check", str(files["wreck"]), "--baseline", str(base), "--format", "json")
    first = next(v for v in json.loads(out)["violations"] if v["rule"].startswith("baseline"))
    assert code == 1 and first["rule"] == "baseline: max-weight-growth"
    assert "learning rate too high" in first["message"]
