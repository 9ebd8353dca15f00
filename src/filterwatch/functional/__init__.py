"""Pure tensor maths of filterwatch: no state, no I/O; imports only torch (and the errors).

Every public function takes a conv weight in ``(C_out, C_in/groups, k1, ..., kd)`` layout, in
any float dtype and on any device, computes in float64 and never modifies or keeps its input.
The ``*_update`` / ``*_compute`` pairs split each measure into sufficient statistics
and their evaluation (as torchmetrics does); :mod:`filterwatch.functional.stats` combines
them into the one-read-per-layer statistics that the engine and ``FilterMetrics`` share.
"""

from ._filters import filter_matrix
from ._scratch import scratch_memory
from .drift import DriftBasis, DriftResult, drift, drift_basis, drift_noise_floor, peak_scale
from .entropy import RandomBand, VarianceEntropy, random_band, random_entropy_threshold, variance_entropy
from .norms import dead_channels, filter_norms, nonfinite_count, relative_change
from .orthogonality import orthogonality
from .sparsity import SparsityResult, sparsity

__all__ = [
    "DriftBasis",
    "DriftResult",
    "RandomBand",
    "SparsityResult",
    "VarianceEntropy",
    "dead_channels",
    "drift",
    "drift_basis",
    "drift_noise_floor",
    "filter_matrix",
    "filter_norms",
    "nonfinite_count",
    "orthogonality",
    "peak_scale",
    "random_band",
    "random_entropy_threshold",
    "relative_change",
    "scratch_memory",
    "sparsity",
    "variance_entropy",
]
