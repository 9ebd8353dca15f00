"""Pure tensor maths of filterwatch: no state, no I/O; each function imports only torch.

Every function takes a conv weight in ``(C_out, C_in/groups, k1, ..., kd)`` layout, in any
float dtype and on any device, computes in float64 and never modifies or keeps its input.
"""

from .drift import DriftBasis, DriftResult, drift, drift_basis, drift_noise_floor, peak_scale
from .entropy import VarianceEntropy, VEStats, random_entropy_threshold, variance_entropy
from .norms import dead_channels, filter_norms, nonfinite_count, relative_change
from .orthogonality import orthogonality
from .sparsity import SparsityResult, sparsity

__all__ = [
    "DriftBasis",
    "DriftResult",
    "SparsityResult",
    "VEStats",
    "VarianceEntropy",
    "dead_channels",
    "drift",
    "drift_basis",
    "drift_noise_floor",
    "filter_norms",
    "nonfinite_count",
    "orthogonality",
    "peak_scale",
    "random_entropy_threshold",
    "relative_change",
    "sparsity",
    "variance_entropy",
]
