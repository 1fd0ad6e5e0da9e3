"""Shared by the check modules: the processes and random models they measure, and the container
a measuring function returns."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..verdicts import Worst


@dataclass
class Measured:
    """What a measuring function found: named aggregates of error/tolerance (each a
    :class:`~sftheory.claims.verdicts.Worst`, NaN-keeping), per-case rows, other numbers."""

    excess: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)
    numbers: dict = field(default_factory=dict)

    def add(self, name: str, value, where=None) -> float:
        """Fold ``value`` (error/tolerance, number or array) into aggregate ``name``; returns
        its maximum (NaN if any entry is NaN)."""
        return self.excess.setdefault(name, Worst()).add(value, where)

    def worst(self) -> dict:
        """{name: worst value} of every aggregate (NaN where a measured value was not finite)."""
        return {k: w.value for k, w in self.excess.items()}

    def worst_rows(self, key: str, n: int = 12) -> list:
        """The n rows with the largest ``key`` (NaN first: those are the worst)."""
        def k(r):
            v = r.get(key, -np.inf)
            return np.inf if v is None or (isinstance(v, float) and np.isnan(v)) else v
        return sorted(self.rows, key=k, reverse=True)[:n]


def processes():
    """One of each forward process and schedule, default and non-default parameters."""
    from ...processes import OU, VE, VP

    return [OU(), OU(a=2.0, sigma=0.5), VP(), VP(beta_min=1.0, beta_max=5.0), VE(), VE(sigma=25.0)]


def model_zoo(rng, *, include_empirical: bool = True, max_dim: int = 3):
    """Random (name, law) pairs of every family and covariance kind in d = 1..max_dim."""
    from ...models import EmpiricalDistribution
    from ...testing.random import random_gaussian, random_mixture

    zoo = []
    for d in range(1, max_dim + 1):
        for kind in ("iso", "diag", "full"):
            zoo.append((f"Gaussian[{kind},d={d}]", random_gaussian(rng, d, kind=kind)))
            zoo.append((f"Mixture[K=3,{kind},d={d}]", random_mixture(rng, 3, d, kind=kind)))
        if include_empirical:
            zoo.append((f"Empirical[n=12,d={d}]",
                        EmpiricalDistribution(rng.uniform(-2, 2, size=(12, d)))))
    return zoo


def eval_points(law, rng, n: int) -> np.ndarray:
    """Points where the density is not negligible: draws of the law, spread by 1.5x."""
    x = law.sample(n, seed=rng)
    return law.mean + 1.5 * (x - law.mean)


def mixture_parts(law):
    """(weights, means, covs) of a Gaussian or Gaussian mixture, full (K, d, d) covariances."""
    if hasattr(law, "weights"):
        return (np.asarray(law.weights, dtype=np.float64), np.asarray(law.means, dtype=np.float64),
                np.asarray(law.covs, dtype=np.float64))
    return np.ones(1), np.asarray(law.mean, dtype=np.float64)[None], np.asarray(law.cov)[None]


def diffused_parts(law, m: float, v: float):
    """(weights, means, covs) of the law of m X_0 + sqrt(v) Z, from the base law's parameters
    and (m, v) given by the caller (e.g. the textbook SDE): m mu_k, m^2 S_k + v I."""
    from ...models import EmpiricalDistribution

    if isinstance(law, EmpiricalDistribution):
        y = law.points
        n, d = y.shape
        return np.full(n, 1.0 / n), m * y, np.broadcast_to(v * np.eye(d), (n, d, d)).copy()
    w, mus, covs = mixture_parts(law)
    d = mus.shape[1]
    return w, m * mus, m * m * covs + v * np.eye(d)
