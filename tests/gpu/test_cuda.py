"""CUDA checks, run by `make gpu-check` on a machine with a GPU (skipped everywhere else;
CI never has one). TF32 is off, so float32 products are exact IEEE float32."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from filterwatch import LayerSelection, analyze

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

KEYS = ("sparsity", "variance_entropy", "variance_entropy_clean", "orthogonality", "dead_channels",
        "nonfinite", "weight_norm", "filter_l1_mean", "filter_l2_mean")


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    bad = torch.randn(8, 4, 3, 3, generator=g)
    bad[0, 0, 0, 0] = float("nan")
    return {
        "offset.weight": torch.randn(256, 128, 3, 3, generator=g) + 0.2,
        "five.weight": torch.randn(64, 32, 5, 5, generator=g),
        "one_d.weight": torch.randn(32, 8, 7, generator=g),
        "sparse.weight": torch.cat([torch.randn(64, 64, 3, 3, generator=g), torch.zeros(64, 64, 3, 3)]),
        "half.weight": torch.randn(128, 64, 3, 3, generator=g).half(),
        "copies.weight": torch.randn(1, 1, 3, 3, generator=g).repeat(512, 32, 1, 1),
        "tiny.weight": torch.randn(64, 32, 3, 3, generator=g) * 1e-30,
        "nan.weight": bad,
    }


def test_triton_kernel_is_used_and_matches_float64() -> None:
    from filterwatch.measure._triton_stats import triton_usable

    state = {k: v.cuda() for k, v in _state().items()}
    assert triton_usable(state["offset.weight"].reshape(-1, 9)), "Triton path not active on CUDA"
    gpu = analyze(state)
    gpu64 = analyze(state, precision="float64")
    cpu64 = analyze({k: v.cpu() for k, v in state.items()}, precision="float64")
    for a, b, c in zip(gpu.layers, gpu64.layers, cpu64.layers, strict=True):
        for key in KEYS:
            va, vb, vc = getattr(a, key), getattr(b, key), getattr(c, key)
            assert (va is None) == (vb is None) == (vc is None), (a.name, key)
            if va is not None:
                assert va == pytest.approx(vc, rel=1e-5, abs=1e-5), (a.name, key, va, vc)
                assert vb == pytest.approx(vc, rel=1e-9, abs=1e-9), (a.name, key, vb, vc)
    assert gpu.layer("nan").nonfinite == 1
    assert gpu.layer("copies").variance_entropy == pytest.approx(0.0, abs=1e-5)


def _fit(tmp_path: Path, callbacks: list[Any], model: Any, **kwargs: Any) -> Any:
    from tests.lightning_helpers import loader, trainer

    tr = trainer(tmp_path, callbacks, accelerator="gpu", devices=1, **kwargs)
    tr.fit(model, loader())
    return tr


def test_filterwatch_and_filtergate_on_cuda(tmp_path: Path) -> None:
    from filterwatch import FilterGate, FilterWatch
    from tests.lightning_helpers import TinyNet

    class GoesBad(TinyNet):
        def on_train_batch_start(self, batch: object, batch_idx: int) -> None:
            if self.global_step >= 5:
                with torch.no_grad():
                    self.body[2].weight[:, :14] = 0.0

    watch = FilterWatch(every_n_steps=2)
    tr = _fit(tmp_path, [watch], TinyNet(), max_epochs=2)
    assert [r.step for r in watch.history] == list(range(0, 17, 2))
    assert watch.reference is not None
    assert all(t.is_cuda for t in watch.reference.snapshot.values())  # kept where the weights live
    final = analyze(tr.lightning_module.cpu(), reference=watch.reference)
    for key in ("sparsity", "variance_entropy", "orthogonality", "drift", "relative_change"):
        got, want = watch.history[-1].layer("body.2").value(key), final.layer("body.2").value(key)
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6), key
    gate = FilterGate({"max-sparsity": 0.5}, every_n_steps=2)
    tr = _fit(tmp_path, [gate], GoesBad(lr=0.0), max_epochs=5)
    assert gate.stopped_step == 6 and tr.global_step == 6


def test_lightning_fsdp_strategy_on_one_gpu(tmp_path: Path) -> None:
    from torch import nn

    from filterwatch import FilterWatch
    from tests.lightning_helpers import TinyNet

    try:
        from lightning.pytorch.strategies import FSDPStrategy
        strategy = FSDPStrategy(auto_wrap_policy={nn.Conv2d})
    except Exception as exc:  # pragma: no cover - depends on the installed Lightning
        pytest.skip(f"FSDPStrategy unavailable: {exc}")
    seen: dict[str, Any] = {}

    from lightning.pytorch.callbacks import Callback

    class Final(Callback):
        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            seen["report"] = analyze(pl_module, select=LayerSelection(), reference=watch.reference)

    watch = FilterWatch(every_n_steps=4)
    _fit(tmp_path, [watch, Final()], TinyNet(), max_epochs=1, strategy=strategy)
    assert [r.step for r in watch.history] == [0, 4, 8]
    for key in ("sparsity", "variance_entropy", "orthogonality", "relative_change"):
        got = watch.history[-1].layer("body.2").value(key)
        assert got == pytest.approx(seen["report"].layer("body.2").value(key), rel=1e-6, abs=1e-7), key


def test_hugging_face_callbacks_on_cuda(tmp_path: Path) -> None:
    """Skipped where transformers is not installed (the device's own Python may lack it)."""
    pytest.importorskip("transformers")
    from filterwatch.callbacks.huggingface import FilterGateCallback, FilterWatchCallback
    from tests.hf_helpers import Sabotage, trainer

    watch = FilterWatchCallback(every_n_steps=2)
    gate = FilterGateCallback({"max-dead-channels": 0}, every_n_steps=1)
    tr = trainer(tmp_path, [Sabotage(3), watch, gate], max_steps=10, use_cpu=False, report_to=[])
    tr.train()
    assert next(tr.model.parameters()).is_cuda
    assert gate.stopped_step == 3 and [r.step for r in watch.history] == [0, 1, 2, 3]
    final = analyze(tr.model, reference=watch.reference)
    for key in ("sparsity", "variance_entropy", "orthogonality", "relative_change"):
        for layer in final.layers:
            want, got = layer.value(key), watch.history[-1].layer(layer.name).value(key)
            if want is not None:
                assert got == pytest.approx(want, rel=1e-5, abs=1e-6), (layer.name, key)
