"""The spectral measures are homogeneous: weights near the ends of float64 (1e200, 1e-200)
are scaled before the eigensolver, not overflowed in a Gram matrix or called all-zero."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from filterwatch.functional.spectral import conv_operator_norm, lipschitz_bound, matrix_spectrum


@pytest.mark.parametrize("c", [1e200, 1e-200, 1e-300, 1e300])
def test_spectral_measures_scale_with_the_weight(c: float) -> None:
    torch.manual_seed(0)
    w = torch.randn(8, 4, 3, 3, dtype=torch.float64)
    base, scaled = matrix_spectrum(w), matrix_spectrum(w * c)
    assert scaled.spectral_norm == pytest.approx(c * base.spectral_norm, rel=1e-9)
    assert scaled.condition_number == pytest.approx(base.condition_number, rel=1e-9)
    assert scaled.stable_rank == pytest.approx(base.stable_rank, rel=1e-9)
    assert lipschitz_bound(w * c) == pytest.approx(c * lipschitz_bound(w), rel=1e-9)
    assert conv_operator_norm(w * c, (8, 8)) == pytest.approx(c * conv_operator_norm(w, (8, 8)), rel=1e-9)


def test_scan_spectral_of_huge_float64_weights_is_no_bug(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "huge.pt"
    torch.save({"c.weight": torch.randn(8, 4, 3, 3, dtype=torch.float64) * 1e200}, path)
    done = subprocess.run([sys.executable, "-m", "filterwatch", "scan", str(path), "--spectral",
                           "--format", "json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert '"condition_number": null' not in done.stdout
