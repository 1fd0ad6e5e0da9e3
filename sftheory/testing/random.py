"""Seeded random models for checks and scripts that do not run under hypothesis.

The construction (rotation times bounded eigenvalues) is the same one the hypothesis strategies in
:mod:`sftheory.testing.strategies` use, so conditioning bounds mean the same thing in both.
"""
from __future__ import annotations

import numpy as np

from ..models import Gaussian, GaussianMixture


def rotation(seed_or_rng, dim: int) -> np.ndarray:
    """A Haar-random orthogonal (dim, dim) matrix (QR of a Gaussian matrix, signs fixed)."""
    rng = seed_or_rng if isinstance(seed_or_rng, np.random.Generator) else np.random.default_rng(seed_or_rng)
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def spd_from(eigenvalues, rot: np.ndarray) -> np.ndarray:
    """Q diag(eigenvalues) Q^T, symmetrized."""
    m = (rot * np.asarray(eigenvalues)) @ rot.T
    return 0.5 * (m + m.T)


def random_spd(rng: np.random.Generator, dim: int, *, min_eig=0.1, max_eig=10.0) -> np.ndarray:
    """SPD matrix with log-uniform eigenvalues in [min_eig, max_eig]."""
    eig = np.exp(rng.uniform(np.log(min_eig), np.log(max_eig), size=dim))
    return spd_from(eig, rotation(rng, dim))


def random_gaussian(rng: np.random.Generator, dim: int, *, kind: str = "full", mean_scale=3.0,
                    min_eig=0.1, max_eig=10.0) -> Gaussian:
    mean = rng.uniform(-mean_scale, mean_scale, size=dim)
    if kind == "iso":
        return Gaussian(mean, float(np.exp(rng.uniform(np.log(min_eig), np.log(max_eig)))))
    if kind == "diag":
        return Gaussian(mean, np.exp(rng.uniform(np.log(min_eig), np.log(max_eig), size=dim)))
    return Gaussian(mean, random_spd(rng, dim, min_eig=min_eig, max_eig=max_eig))


def random_mixture(rng: np.random.Generator, k: int, dim: int, *, kind: str = "full",
                   mean_scale=3.0, min_eig=0.1, max_eig=10.0, min_weight=0.02) -> GaussianMixture:
    """K-component mixture; weights Dirichlet(1) floored at min_weight; one covariance kind."""
    w = rng.dirichlet(np.ones(k))
    w = min_weight + (1 - min_weight * k) * w
    means = rng.uniform(-mean_scale, mean_scale, size=(k, dim))
    lo, hi = np.log(min_eig), np.log(max_eig)
    if kind == "iso":
        covs = np.exp(rng.uniform(lo, hi, size=k))
    elif kind == "diag":
        covs = np.exp(rng.uniform(lo, hi, size=(k, dim)))
    else:
        covs = np.stack([random_spd(rng, dim, min_eig=min_eig, max_eig=max_eig) for _ in range(k)])
    return GaussianMixture(w, means, covs, covariance_type={"iso": "spherical"}.get(kind, kind))
