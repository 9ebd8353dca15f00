"""Independent numpy implementations of the measures, written from DESIGN.md (not from the
package code): SVD of the centred filter matrix, explicit loops where clearer."""

from __future__ import annotations

import numpy as np


def filters(w: np.ndarray) -> np.ndarray:
    return w.reshape(w.shape[0] * w.shape[1], -1).astype(np.float64)


def sparsity(w: np.ndarray, eps: float = 0.01) -> tuple[float, np.ndarray]:
    f = filters(w)
    t = eps * np.abs(w).max()
    if t == 0:
        t = 1.0
    mask = np.array([all(abs(v) < t for v in row) for row in f])
    return mask.sum() / len(f), mask


def variance_entropy(f: np.ndarray) -> float:
    if len(f) < 2:
        raise ValueError("fewer than 2 filters")
    centred = f - f.mean(axis=0)
    s = np.linalg.svd(centred, compute_uv=False)
    lam = s**2 / (len(f) - 1)
    total = lam.sum()
    if total <= 1e-12 * np.mean((f**2).sum(axis=1)) or total == 0:
        return 0.0
    p = lam / total
    return float(-sum(pi * np.log10(pi) for pi in p if pi > 0))


def h_t9(n: int) -> float:
    return 1.2618047 / (1 + np.exp(-0.88767525 * (np.log2(n) - 2.30436435))) - 0.31050834


def orthogonality(w: np.ndarray) -> float:
    rows = w.reshape(w.shape[0], -1).astype(np.float64)
    n = len(rows)
    unit = []
    for r in rows:
        norm = np.sqrt((r**2).sum())
        unit.append(r / norm if norm > 0 else r)
    u = np.array(unit)
    g = u @ u.T
    return float(1 - np.abs(g - np.eye(n)).sum() / (n * (n - 1)))


def drift(reference: np.ndarray, current: np.ndarray, bins: int = 70) -> tuple[float, np.ndarray]:
    """The notebook pipeline: sklearn PCA, np.histogram, KL sum (filters as (n, K) rows)."""
    from sklearn.decomposition import PCA

    def scale(f: np.ndarray) -> np.ndarray:
        peak = np.abs(f).max(axis=1, keepdims=True)
        peak[peak == 0] = 1
        return f / peak

    ref, cur = scale(reference.astype(np.float64)), scale(current.astype(np.float64))
    k = ref.shape[1]
    pca = PCA(n_components=k, svd_solver="full").fit(ref)
    comps = pca.components_.copy()
    for row in comps:  # sign convention: largest-magnitude entry positive
        if row[np.argmax(np.abs(row))] < 0:
            row *= -1
    ref_c = (ref - pca.mean_) @ comps.T
    cur_c = np.clip((cur - pca.mean_) @ comps.T, ref_c.min(), ref_c.max())
    lo, hi = ref_c.min(), ref_c.max()
    eps = np.finfo(np.float32).eps
    terms = np.zeros(k)
    for i in range(k):
        p, _ = np.histogram(ref_c[:, i], bins=bins, range=(lo, hi))
        q, _ = np.histogram(cur_c[:, i], bins=bins, range=(lo, hi))
        p = p / p.sum()
        q = q / q.sum()
        p[p == 0] = eps
        q[q == 0] = eps
        p, q = p / p.sum(), q / q.sum()
        kl_pq = np.sum(p * np.log(p / q))
        kl_qp = np.sum(q * np.log(q / p))
        terms[i] = pca.explained_variance_ratio_[i] * (kl_pq + kl_qp)
    return float(terms.sum()), terms
