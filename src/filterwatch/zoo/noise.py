"""The noise floor of a zoo shift: what re-drawn group labels give for groups of those sizes.

The paper reports shifts between groups without one; a small group reads far from any other
by sampling alone (a group of 24 filters reads about 6 nats away from a population that its
own shuffled labels put 7 nats away). For each pair of groups this module re-draws the labels
``DRAWS`` times and keeps the 95th percentile of the shifts they give:

* **among units** (checkpoints for a meta column, layers for depth deciles) where both groups
  have at least ``MIN_UNITS`` of them: the pooled units are split at random into groups of the
  two sizes, and each side's histograms are the sums of its units' (a population's own spread
  between models counts as noise, as it should);
* **among filters** otherwise: the pooled filters are split at random into groups of the two
  filter counts, component by component (multivariate hypergeometric draws of each
  component's 70 bins; the components are uncorrelated by construction, and drawn
  independently here).

Seeded: the same zoo gives the same noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..functional.drift import _symmetric_kl

__all__ = ["DRAWS", "MIN_FILTERS", "MIN_UNITS", "QUANTILE", "pair_noise"]

DRAWS = 200       # label re-draws per pair
QUANTILE = 0.95   # the noise floor: this quantile of the re-drawn shifts
MIN_UNITS = 5     # fewer checkpoints (or layers) than this in a group: re-draw among filters
MIN_FILTERS = 1024  # a group smaller than this gets a note (as the gate's drift-min-filters)


def _shift(a: torch.Tensor, b: torch.Tensor, explained: torch.Tensor) -> torch.Tensor:
    """Shifts of stacked histogram pairs ``(..., K, bins)``."""
    return (_symmetric_kl(a, b) * explained).sum(dim=-1)


def _among_units(units_a: torch.Tensor, units_b: torch.Tensor, explained: torch.Tensor,
                 rng: np.random.Generator) -> torch.Tensor:
    """Shifts of random splits of the pooled units ``(U, K, bins)`` into the two sizes."""
    pooled = torch.cat([units_a, units_b])
    n_a, total = int(units_a.shape[0]), int(pooled.shape[0])
    pick = torch.zeros(DRAWS, total, dtype=torch.float64)
    for d in range(DRAWS):
        pick[d, torch.from_numpy(rng.permutation(total)[:n_a])] = 1.0
    flat = pooled.reshape(total, -1)
    a = (pick @ flat).reshape(DRAWS, *pooled.shape[1:])
    b = flat.sum(dim=0).reshape(pooled.shape[1:]) - a
    return _shift(a, b, explained)


def _among_filters(hist_a: torch.Tensor, hist_b: torch.Tensor, explained: torch.Tensor,
                   rng: np.random.Generator) -> torch.Tensor:
    """Shifts of random splits of the pooled filters into groups of the two filter counts,
    each component's bins drawn as a multivariate hypergeometric sample."""
    pooled = (hist_a + hist_b).round().to(torch.int64).numpy()  # (K, bins)
    n_a = round(float(hist_a[0].sum()))
    a = np.stack([rng.multivariate_hypergeometric(row, n_a, size=DRAWS, method="marginals")
                  for row in pooled], axis=1)  # (DRAWS, K, bins)
    a_t = torch.from_numpy(a).to(torch.float64)
    return _shift(a_t, torch.from_numpy(pooled).to(torch.float64) - a_t, explained)


def pair_noise(units: Sequence[torch.Tensor], explained: torch.Tensor, seed: int = 0
               ) -> tuple[list[list[float]], list[list[str]]]:
    """The noise matrix of groups whose units' histograms are ``units[g]`` ``(U_g, K, bins)``,
    and how each pair's labels were re-drawn (``"units"`` or ``"filters"``; ``""`` on the
    diagonal, whose noise is 0)."""
    rng = np.random.default_rng(seed)
    g = len(units)
    noise = [[0.0] * g for _ in range(g)]
    how = [[""] * g for _ in range(g)]
    for i in range(g):
        for j in range(i + 1, g):
            a, b = units[i], units[j]
            if min(int(a.shape[0]), int(b.shape[0])) >= MIN_UNITS:
                draws, kind = _among_units(a, b, explained, rng), "units"
            else:
                draws, kind = _among_filters(a.sum(dim=0), b.sum(dim=0), explained, rng), "filters"
            noise[i][j] = noise[j][i] = float(torch.quantile(draws, QUANTILE))
            how[i][j] = how[j][i] = kind
    return noise, how
