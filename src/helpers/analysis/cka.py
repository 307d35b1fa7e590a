"""Centered kernel alignment (the paper's Fig. 3e-f), one estimator used consistently, with a permutation null.

CKA(X, Y) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) for kernel matrices K, L over the same n samples (rows).
The biased estimator with a linear or RBF kernel lies in [0, 1]: it cannot be negative. The debiased estimator
(Song et al. 2012; Nguyen et al. 2021) can be, so negative 'CKA' values as the paper reports need it (or another
measure).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["gram", "hsic", "cka", "cka_from_grams", "cka_permutation_null"]

Kernel = Literal["linear", "rbf"]


def gram(x: np.ndarray, *, kernel: Kernel = "linear", sigma: float = 1.0) -> np.ndarray:
    """Kernel matrix (n, n) of rows of x (n, d); RBF bandwidth = sigma x median pairwise distance."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if kernel == "linear":
        return x @ x.T
    if kernel == "rbf":
        sq = np.sum(x**2, 1)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)
        median = np.median(np.sqrt(d2[np.triu_indices(len(x), 1)]))
        bandwidth = sigma * (median if median > 0 else 1.0)
        return np.exp(-d2 / (2 * bandwidth**2))
    raise ValueError(f"kernel={kernel!r}; choose 'linear' or 'rbf'")


def hsic(k: np.ndarray, l: np.ndarray, *, debiased: bool = False) -> float:
    """HSIC of two kernel matrices: biased tr(KHLH)/(n-1)^2, or the unbiased estimator (needs n > 3)."""
    n = len(k)
    if debiased:
        if n < 4:
            raise ValueError("the debiased HSIC needs at least 4 samples")
        k, l = k.copy(), l.copy()
        np.fill_diagonal(k, 0)
        np.fill_diagonal(l, 0)
        term = np.sum(k * l) + k.sum() * l.sum() / ((n - 1) * (n - 2)) - 2 * (k.sum(0) @ l.sum(0)) / (n - 2)
        return float(term / (n * (n - 3)))
    h = np.eye(n) - 1.0 / n
    return float(np.sum((h @ k @ h) * l) / (n - 1) ** 2)


def cka(x: np.ndarray, y: np.ndarray, *, kernel: Kernel = "linear", debiased: bool = False,
        sigma: float = 1.0) -> float:
    """CKA between representations x (n, p) and y (n, q) of the same n samples (rows paired)."""
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows and y {len(y)}: CKA compares the same samples")
    return cka_from_grams(gram(x, kernel=kernel, sigma=sigma), gram(y, kernel=kernel, sigma=sigma),
                          debiased=debiased)


def cka_from_grams(k: np.ndarray, l: np.ndarray, *, debiased: bool = False) -> float:
    """CKA from two kernel matrices over the same samples (so a resample is `k[np.ix_(i, i)]`, no recomputation).

    NaN where a representation has no variance under the estimator (e.g. an all-zero LoRA B output)."""
    kk, ll = hsic(k, k, debiased=debiased), hsic(l, l, debiased=debiased)
    if not (kk > 0 and ll > 0):
        return float("nan")
    return float(hsic(k, l, debiased=debiased) / np.sqrt(kk * ll))


def cka_permutation_null(x: np.ndarray, y: np.ndarray, *, kernel: Kernel = "linear", debiased: bool = False,
                         n_permutations: int = 200, seed: int = 0) -> np.ndarray:
    """CKA values after shuffling the rows of y (breaking the pairing): what chance looks like. (n_permutations,)"""
    rng = np.random.default_rng(seed)
    k = gram(x, kernel=kernel)
    l = gram(y, kernel=kernel)
    kk = hsic(k, k, debiased=debiased)
    ll = hsic(l, l, debiased=debiased)
    out = np.empty(n_permutations)
    for i in range(n_permutations):
        p = rng.permutation(len(y))
        out[i] = hsic(k, l[np.ix_(p, p)], debiased=debiased) / np.sqrt(kk * ll)
    return out
