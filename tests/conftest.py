"""Shared test configuration: hypothesis profiles and the exact references several modules use.

Profiles (choose with ``HYPOTHESIS_PROFILE=...``; default ``ci`` when ``CI`` is set, else ``dev``):

- ``dev``: 30 examples, random (fast local runs);
- ``ci``: 60 examples, derandomized (reproducible in CI);
- ``thorough``: 1000 examples (nightly / by hand).

``deadline=None`` everywhere: the first call of a numba kernel compiles.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=60, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


# ---- exact (m, v) of the forward processes, written from their definitions ------------------
def _exact_mv(process, t: float, s: float = 0.0) -> tuple[float, float]:
    """(m, v) of X_t | X_s for the processes of sftheory, from the textbook formulas in mpmath.

    Independent of the library's clock machinery: each law is written from its SDE
    (OU: dX = -a X dt + sigma dW; VP: beta(t) = b0 + (b1 - b0) t; VE: dX = dW or sigma^t dW),
    evaluated at 40 significant digits and rounded once to float64.
    """
    import mpmath as mp

    from sftheory.processes import OU, VE, VP

    with mp.workdps(40):
        t_, s_ = mp.mpf(t), mp.mpf(s)
        if isinstance(process, OU):
            a, sig = mp.mpf(process.a), mp.mpf(process.sigma)
            m = mp.exp(-a * (t_ - s_))
            v = sig**2 * (1 - mp.exp(-2 * a * (t_ - s_))) / (2 * a)
        elif isinstance(process, VP):
            b0, b1 = mp.mpf(process.beta_min), mp.mpf(process.beta_max)

            def big_b(u):
                return b0 * u + (b1 - b0) * u**2 / 2

            db = big_b(t_) - big_b(s_)
            m = mp.exp(-db / 2)
            v = 1 - mp.exp(-db)
        elif isinstance(process, VE):
            m = mp.mpf(1)
            if process.sigma is None:
                v = t_ - s_
            else:
                sig = mp.mpf(process.sigma)
                v = (sig ** (2 * t_) - sig ** (2 * s_)) / (2 * mp.log(sig))
        else:  # pragma: no cover - test helper
            raise TypeError(process)
        return float(m), float(v)


def _exact_g2(process, t: float) -> float:
    """g(t)^2 from the SDE definitions (float64)."""
    from sftheory.processes import OU, VE, VP

    if isinstance(process, OU):
        return process.sigma**2
    if isinstance(process, VP):
        return process.beta_min + (process.beta_max - process.beta_min) * t
    if isinstance(process, VE):
        return 1.0 if process.sigma is None else process.sigma ** (2 * t)
    raise TypeError(process)  # pragma: no cover


def _exact_a(process, t: float) -> float:
    """a(t) with drift f(t, x) = -a(t) x, from the SDE definitions."""
    from sftheory.processes import OU, VE, VP

    if isinstance(process, OU):
        return process.a
    if isinstance(process, VP):
        return 0.5 * (process.beta_min + (process.beta_max - process.beta_min) * t)
    if isinstance(process, VE):
        return 0.0
    raise TypeError(process)  # pragma: no cover


# ---- slow, obviously-correct mixture reference (scipy per component) ------------------------
def _mixture_reference(weights, means, covs, x):
    """log p and grad log p of sum_k w_k N(mu_k, Sigma_k) at x (N, d), one component at a time.

    ``covs`` are full (K, d, d) matrices. Uses scipy's multivariate_normal (eigendecomposition)
    for log-densities and ``np.linalg.solve`` for component scores: a different algorithm from
    the library's Cholesky whitening.
    """
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    weights = np.asarray(weights, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    covs = np.asarray(covs, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    keep = weights > 0
    weights, means, covs = weights[keep], means[keep], covs[keep]
    logc = np.stack([math.log(w) + np.atleast_1d(multivariate_normal(mu, c).logpdf(x))
                     for w, mu, c in zip(weights, means, covs)], axis=1)  # (N, K)
    logp = logsumexp(logc, axis=1)
    resp = np.exp(logc - logp[:, None])
    comp = np.stack([-np.linalg.solve(c, (x - mu).T).T for mu, c in zip(means, covs)], axis=1)
    return logp, np.einsum("nk,nkd->nd", resp, comp)


# Session-scoped so hypothesis tests may use them (they are pure functions).
@pytest.fixture(scope="session")
def exact_mv():
    """:func:`_exact_mv`: exact (m, v) of X_t | X_s from the SDE definitions (mpmath)."""
    return _exact_mv


@pytest.fixture(scope="session")
def exact_g2():
    """:func:`_exact_g2`: g(t)^2 from the SDE definitions."""
    return _exact_g2


@pytest.fixture(scope="session")
def exact_a():
    """:func:`_exact_a`: drift coefficient a(t) from the SDE definitions."""
    return _exact_a


@pytest.fixture(scope="session")
def mixture_ref():
    """:func:`_mixture_reference`: slow scipy reference for mixture log-density and score."""
    return _mixture_reference


@pytest.fixture
def rng():
    """A fixed-seed generator (tests that need several streams derive their own seeds)."""
    return np.random.default_rng(20240601)
