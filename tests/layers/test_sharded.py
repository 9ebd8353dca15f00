"""FSDP2 (``fully_shard``) and FSDP1 on 2 CPU processes with gloo: results equal the
unsharded model. (Lightning's FSDPStrategy itself refuses CPU accelerators, so it is covered
through torch's FSDP1, which it wraps.)"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from filterwatch import analyze

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).parents[1] / "fsdp_script.py"
MEASURES = ("sparsity", "n_sparse", "variance_entropy", "variance_entropy_norm",
            "variance_entropy_clean", "orthogonality", "dead_channels", "weight_norm")


def test_sharded_results_equal_unsharded(tmp_path: Path) -> None:
    port = str(random.randint(20000, 40000))
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), port],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    want = analyze(tmp_path / "unsharded.pt")
    assert want.layer("4").sparsity == pytest.approx(12 / 32)  # needs the global peak
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["sharded_local_rows"] == 16  # each rank really held half of layer 2
        assert got["max_full_layers_alive"] == 1  # beyond the model, one full layer at a time
        assert got["gathers_with_reference"] == 3  # one all-gather per sharded layer: all measures,
        #                                            drift and relative change from that one read
        assert got["fsdp1_param_ndims"] == [1]  # FSDP1 really flattened the parameters
        for source in ("analyze", "watch", "metric", "fsdp1"):
            for layer in got[source]["layers"]:
                ref = want.layer(layer["name"])
                for m in MEASURES:
                    if source == "metric" and m == "orthogonality":
                        assert layer[m] is None and "sharded" in layer["undefined"][m]
                        continue
                    assert layer[m] == pytest.approx(ref.value(m), rel=1e-6, abs=1e-7), (
                        rank, source, layer["name"], m)
        # the Hugging Face callback: every rank joined the gathers, the main one alone logged
        assert [r["step"] for r in got["hf"]["history"]] == [0, 1]
        assert got["hf"]["logged"] == ([0, 1] if rank == 0 else [])
        for layer in got["hf"]["history"][-1]["layers"]:
            for m in MEASURES:
                want_m = want.layer(layer["name"]).value(m)
                assert layer[m] == pytest.approx(want_m, rel=1e-6, abs=1e-7), ("hf", layer["name"], m)
