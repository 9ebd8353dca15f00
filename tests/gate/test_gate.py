"""Gate rules, evaluation, baseline regression, and the pytest helper."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from filterwatch import InputError, analyze
from filterwatch.gate import GateRules, compare_to_baseline, evaluate, load_rules, rules_from_mapping
from filterwatch.testing import assert_filters_healthy
from tests.trained import damaged, trained_state


def test_healthy_trained_model_passes_the_defaults() -> None:
    verdict = evaluate(analyze(trained_state()))
    assert verdict.passed, [v.message for v in verdict.violations]
    assert verdict.checks[("5", "sparsity")] == "pass"
    assert verdict.checks[("5", "orthogonality")] == "skip: min-orthogonality is off"


def test_defaults_flag_what_is_clearly_broken() -> None:
    assert not evaluate(analyze(damaged(nan=True))).passed
    dead = damaged(share=0.0)
    dead["5.weight"].zero_()
    verdict = evaluate(analyze(dead))
    found = {(v.layer, v.measure) for v in verdict.violations}
    assert found >= {("5", "sparsity"), ("5", "dead_channel_share")}
    share = next(v for v in verdict.violations if v.rule == "max-dead-channel-share")
    assert share.value == pytest.approx(1.0) and (share.count, share.total) == (64, 64)
    assert ("dead_channel_share = 1 (64 of 64 output channels) violates max-dead-channel-share 0.25"
            in share.message)
    collapsed = damaged(share=0.0)
    collapsed["5.weight"] = torch.randn(64, 1, 1, 1) * torch.randn(1, 1, 3, 3).expand(64, 64, 3, 3)
    assert [v.measure for v in evaluate(analyze(collapsed)).violations] == ["variance_entropy"]


def test_thirty_percent_zeroed_fails_a_project_sparsity_limit() -> None:
    """30 % sparse filters is normal for some production layers, so the default limit (0.6)
    lets it pass; a project opts into a stricter limit, and then it fails."""
    config = rules_from_mapping({"max-sparsity": 0.25})
    assert evaluate(analyze(trained_state()), config).passed
    verdict = evaluate(analyze(damaged(0.3)), config)
    (v,) = verdict.violations
    assert (v.layer, v.measure, v.rule, v.limit) == ("2", "sparsity", "max-sparsity", 0.25)
    assert v.value == pytest.approx(0.3, abs=1 / 2048)
    assert "weight decay or dead ReLUs" in v.hint


def test_nan_weights_fail() -> None:
    verdict = evaluate(analyze(damaged(0.0, nan=True)))
    assert [(v.layer, v.measure, v.rule) for v in verdict.violations] == [
        ("2", "nonfinite", "allow-nonfinite")]
    assert evaluate(analyze(damaged(0.0, nan=True)), rules_from_mapping({"allow-nonfinite": True})).passed


def test_baseline_regression_is_detected() -> None:
    baseline = analyze(trained_state())
    assert compare_to_baseline(analyze(trained_state()), baseline, 0.05).passed
    verdict = compare_to_baseline(analyze(damaged(0.3)), baseline, 0.05)
    assert [(v.layer, v.measure, v.group) for v in verdict.violations] == [("2", "sparsity", "baseline")]
    assert compare_to_baseline(analyze(damaged(0.3)), baseline, 0.5).passed


def test_per_layer_overrides_and_selection() -> None:
    config = rules_from_mapping({
        "max-sparsity": 0.25,
        "layer": [{"pattern": "2", "max-sparsity": 0.4}],
    })
    assert evaluate(analyze(damaged(0.3)), config).passed
    only_first = rules_from_mapping({"max-sparsity": 0.25, "include": ["0"]})
    assert evaluate(analyze(damaged(0.3)), only_first).passed
    by_kernel = rules_from_mapping({"max-sparsity": 0.25, "kernel-sizes": ["5x5"]})
    assert evaluate(analyze(damaged(0.3)), by_kernel).checks == {}


def test_drift_rule_needs_a_reference_and_big_layers() -> None:
    from filterwatch import Reference

    ref = Reference.random_init(trained_state())
    report = analyze(trained_state(), reference=ref)
    verdict = evaluate(report, rules_from_mapping({"max-drift": 0.01}))
    assert {v.layer for v in verdict.violations} == {"2", "5"}  # layer 0 has 32 filters: skipped
    assert verdict.checks[("0", "drift")].startswith("skip: 32 filters < drift-min-filters")


@pytest.mark.parametrize(
    "table,message",
    [
        ({"max-sparsty": 0.5}, "unknown key `max-sparsty`; allowed keys: max-sparsity"),
        ({"max-sparsity": 1.5}, r"`max-sparsity` expected a number in \[0, 1\]"),
        ({"max-sparsity": "high"}, "`max-sparsity` expected a number"),
        ({"allow-nonfinite": "no"}, "`allow-nonfinite` expected true or false"),
        ({"drift-min-filters": -1}, "`drift-min-filters` expected an integer >= 0"),
        ({"include": "conv*"}, "`include` expected a list of strings"),
        ({"kernel-sizes": ["3by3"]}, "`kernel_size` expected"),
        ({"layer": [{"max-sparsity": 0.1}]}, "`pattern` expected a glob string"),
        ({"layer": [{"pattern": "x", "bogus": 1}]}, "unknown key `bogus`"),
    ],
)
def test_config_validation(table: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InputError, match=message):
        rules_from_mapping(table)


def test_load_rules_from_pyproject_and_files(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.filterwatch.gate]\nmax-sparsity = 0.3\n'
        'min-orthogonality = 0.1\n\n[[tool.filterwatch.gate.layer]]\npattern = "head.*"\n'
        "max-sparsity = false\n"
    )
    config = load_rules(search_from=tmp_path)
    assert config.rules.max_sparsity == pytest.approx(0.3)
    assert config.rules.min_orthogonality == pytest.approx(0.1)
    assert config.for_layer("head.0").max_sparsity is None
    plain = tmp_path / "gate.toml"
    plain.write_text("max-dead-channels = 0.1\n")  # the old name: still works, and says so
    with pytest.warns(FutureWarning, match="`max-dead-channels` is now `max-dead-channel-share`"):
        assert load_rules(plain).rules.max_dead_channel_share == pytest.approx(0.1)
    assert load_rules(search_from=tmp_path / "nowhere").rules == GateRules()
    bad = tmp_path / "bad.toml"
    bad.write_text("max-sparsity = = 1\n")
    with pytest.raises(InputError, match="expected valid TOML"):
        load_rules(bad)


def test_assert_filters_healthy() -> None:
    report = assert_filters_healthy(trained_state(), max_sparsity=0.25)
    assert report.layer("2").sparsity == pytest.approx(0.0)
    with pytest.raises(AssertionError) as info:
        assert_filters_healthy(damaged(0.3), max_sparsity=0.25)
    text = str(info.value)
    assert text.startswith("filterwatch: 1 violation(s) in state_dict:")
    assert "2: sparsity = 0.2998 violates max-sparsity 0.25" in text
    with pytest.raises(InputError, match="unknown key `max-sparsty`"):
        assert_filters_healthy(trained_state(), max_sparsty=0.1)


def test_a_spectral_rule_fails_assert_filters_healthy_where_check_fails(tmp_path: Path) -> None:
    """A spectral rule turns the spectral measures on for assert_filters_healthy, as for check."""
    from filterwatch.cli import main
    from filterwatch.testing import assert_filters_healthy

    path = tmp_path / "model.pt"
    torch.save(trained_state(), path)
    config = tmp_path / "gate.toml"
    config.write_text("[tool.filterwatch.gate]\nmax-condition-number = 1.0001\n")
    assert main(["check", str(path), "--config", str(config), "-q"]) == 1
    with pytest.raises(AssertionError, match=r"condition_number = .* violates max-condition-number"):
        assert_filters_healthy(path, max_condition_number=1.0001)
