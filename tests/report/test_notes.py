"""The report's notes: "looks untrained" only where the weights say so."""

from __future__ import annotations

from filterwatch import analyze
from tests.calibration_models import Damage, damaged, fresh, reinit, trained


def test_fresh_models_are_called_untrained_with_what_was_measured() -> None:
    # a normal init's 32-filter first layer can be told from a trained one neither by its VE
    # nor by its values (issue 35): 3 of 4 layers are named, enough for "looks untrained"
    for init, name, named in (("default", "PyTorch default", 4), ("kaiming_normal", "Kaiming-normal", 3)):
        (note,) = analyze(fresh(init)).summary["notes"]
        assert note.startswith(f"looks untrained: {named} of 4 layers hold freshly initialised weights")
        assert name in note and "VE/H_T" in note and "was the right checkpoint loaded?" in note


def test_trained_models_that_keep_random_like_ve_are_not() -> None:
    """Issue 22: the BatchNorm CNN trained with SGD (96 % accuracy) has VE/H_T near 1."""
    model = trained("bn_sgd")
    report = analyze(model.state)
    assert max(layer.variance_entropy_norm or 0 for layer in report.layers) > 0.98
    assert report.summary["notes"] == []


def test_one_reinitialised_layer_is_named() -> None:
    model = trained("bn_sgd")
    (note,) = analyze(damaged(model, Damage("reinit", reinit, False))).summary["notes"]
    assert note.startswith("1 of 4 layers look freshly initialised (mean, RMS and largest |w|: 7 as "
                           "PyTorch default (uniform ±1/sqrt(fan_in)) leaves them; ")
    assert "re-initialised, newly added, or not reached by training?" in note
