"""Sampled measures (orthogonality_every, spectral_every) follow the snapshot count, not the
length of the capped history; a gate never shares a watch that samples what it checks; the
last snapshot has every measure."""

from __future__ import annotations

import torch
from torch import nn

from filterwatch.layers import ConvLayer, LayerSelection, discover_layers
from filterwatch.monitor import GateCore, Host, Monitor, WatchCore


class _Plain(Host):
    def __init__(self, model: nn.Module) -> None:
        super().__init__("test", type(model).__name__)
        self.model = model

    def layers(self, selection: LayerSelection) -> list[ConvLayer]:
        return discover_layers(self.model, select=selection)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))


def test_every_k_counts_snapshots_once_the_history_is_capped() -> None:
    layers = discover_layers(_net())
    monitor = Monitor(orthogonality_every=3, spectral=True, spectral_every=4, keep_reports=2)
    ortho, spectral = [], []
    for step in range(12):
        report = monitor.measure(layers, step)
        ortho.append(report.layers[0].orthogonality is not None)
        spectral.append(report.layers[0].condition_number is not None)
    assert len(monitor.history) == 2 and monitor.snapshots == 12
    assert [i for i, x in enumerate(ortho) if x] == [0, 3, 6, 9]
    assert [i for i, x in enumerate(spectral) if x] == [0, 4, 8]
    restored = Monitor(orthogonality_every=3)
    restored.load_state_dict(monitor.state_dict())
    assert restored.snapshots == 12  # a resumed run keeps counting where it was


def test_a_gate_checking_orthogonality_does_not_share_a_sampling_watch() -> None:
    net = _net()
    host = _Plain(net)
    watch = WatchCore(every_n_steps=1, orthogonality_every=3, keep_reports=2, history_file=None)
    gate = GateCore({"min-orthogonality": 0.99}, every_n_steps=1)
    watch.start(host, 0)
    gate.start(host, 0, peers=[watch])
    assert gate.shared_with is None
    assert gate.step_end(host, 1) is True and gate.stopped_step == 1  # random layers: ~0.7
    sharing = GateCore({"max-sparsity": 0.5}, every_n_steps=1)
    sharing.start(host, 0, peers=[watch])
    assert sharing.shared_with is watch  # a rule on a measure the watch always has


def test_the_last_snapshot_has_every_measure_even_when_it_was_scheduled() -> None:
    host = _Plain(_net())
    watch = WatchCore(every_n_steps=2, orthogonality_every=3, history_file=None)
    watch.start(host, 0)
    for step in range(1, 5):
        watch.step_end(host, step)
    assert watch.history[-1].step == 4 and watch.history[-1].layers[0].orthogonality is None
    watch.end(host, 4)  # the run stopped at a scheduled step: measured again, replaced
    assert [r.step for r in watch.history] == [0, 2, 4]
    assert watch.history[-1].layers[0].orthogonality is not None
    known = WatchCore(every_n_steps=2, orthogonality_every=3, history_file=None)
    known.start(host, 0, horizon=(4, None))
    for step in range(1, 5):
        known.step_end(host, step)
    assert known.history[-1].layers[0].orthogonality is not None  # the run's known last step
