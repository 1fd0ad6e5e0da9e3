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


# ---- exact (m, v), g^2 and a(t) of the forward processes, written from their SDE definitions -----
# One textbook definition, shipped in sftheory.testing.textbook (it reads only the parameters of a
# process, never its kappa, clock or coefficients), shared by these tests and the claim checks.
from sftheory.testing.textbook import diffusion_sq as _exact_g2  # noqa: E402
from sftheory.testing.textbook import drift_coef as _exact_a  # noqa: E402
from sftheory.testing.textbook import exact_mv as _exact_mv  # noqa: E402


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


# ---- one unplanted quick record per check, shared by the whole test session ----------------------
_QUICK_RECORDS: dict = {}


@pytest.fixture(scope="session")
def quick_record():
    """``quick_record(cid)``: the record (JSON form) of ``run_claim(cid)`` -- quick mode, seed 0,
    no figures -- computed once per test process and shared by tests/test_claims.py and the
    per-module claim tests (several checks take 20-50 s: running each twice was the largest
    duplicate in CI). Only for unplanted runs: a test that plants an error calls run_claim
    itself. Each call returns a deep copy, so no test can alter another's record."""
    import copy
    import warnings

    from sftheory.claims.runner import run_claim

    def get(cid: str) -> dict:
        if cid not in _QUICK_RECORDS:
            # the project's warning filter (pyproject: error::RuntimeWarning:sftheory.*), not the
            # marks of whichever test asks first (some modules ignore RuntimeWarning)
            with warnings.catch_warnings():
                warnings.simplefilter("default")
                warnings.filterwarnings("error", category=RuntimeWarning, module="sftheory.*")
                _QUICK_RECORDS[cid] = run_claim(cid).to_json()
        return copy.deepcopy(_QUICK_RECORDS[cid])

    return get
