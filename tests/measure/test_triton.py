"""The Triton kernel, run by Triton's interpreter on the CPU, agrees with the torch path.

Triton reads TRITON_INTERPRET when a kernel is defined, so the check runs in a subprocess
with the variable set (never in this process, where it would change nothing else either).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

SCRIPT = textwrap.dedent('''
    import torch
    from filterwatch import analyze
    from filterwatch.measure._triton_stats import triton_usable
    torch.manual_seed(0)
    assert triton_usable(torch.zeros(4, 9)), "interpreter path not active"
    state = {
        "a.weight": torch.randn(32, 16, 3, 3) + 0.2,
        "b.weight": torch.randn(8, 4, 5, 5),
        "c.weight": torch.randn(4, 3, 7),
        "sparse.weight": torch.cat([torch.randn(8, 8, 3, 3), torch.zeros(8, 8, 3, 3)]),
        "half.weight": torch.randn(16, 8, 3, 3).half(),
        "copies.weight": torch.randn(1, 1, 3, 3).repeat(16, 4, 1, 1),
    }
    bad = torch.randn(8, 4, 3, 3); bad[0, 0, 0, 0] = float("nan")
    state["nan.weight"] = bad
    # the per-layer pass takes the kernel (sharded layers, FilterMetrics; the batched pass of
    # whole layers is torch only)
    from filterwatch.layers import discover_layers
    from filterwatch.measure import layer_stats, reports_from_stats
    layers = discover_layers(state)
    fused = reports_from_stats(layers, [layer_stats(layer.kernel(), 0.01) for layer in layers])
    ref = analyze(state, precision="float64")  # float64 never takes the kernel
    for a, b in zip(fused, ref.layers, strict=True):
        for key in ("sparsity", "variance_entropy", "variance_entropy_clean", "orthogonality",
                    "dead_channels", "nonfinite", "weight_norm", "filter_l1_mean"):
            va, vb = getattr(a, key), getattr(b, key)
            assert (va is None) == (vb is None), (a.name, key, va, vb)
            if va is not None:
                assert abs(va - vb) <= 1e-5 * max(1.0, abs(vb)), (a.name, key, va, vb)
    by_name = {r.name: r for r in fused}
    assert by_name["copies"].variance_entropy < 1e-5
    assert by_name["nan"].nonfinite == 1
    print("triton interpreter agrees on", len(fused), "layers")
''')


@pytest.mark.slow
@pytest.mark.parametrize("s2", ["dot", "fma", "gemm"])
def test_triton_kernel_matches_torch_path_under_interpreter(s2: str) -> None:
    """Each way of summing the second moments (the tile product, element-wise multiply-adds,
    a float64 product afterwards) gives the torch path's numbers."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "FILTERWATCH_TRITON": "1", "FILTERWATCH_TRITON_S2": s2}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "triton interpreter agrees on 7 layers" in done.stdout


def test_torch_path_is_used_without_cuda_or_interpreter() -> None:
    import torch

    from filterwatch.measure._triton_stats import triton_usable

    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("interpreter forced in this process")
    assert not triton_usable(torch.zeros(4, 9))
