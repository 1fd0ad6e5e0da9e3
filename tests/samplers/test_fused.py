"""The compiled step loop (sftheory/samplers/_fused.py, sftheory/_kernels/sampler.py).

Three independent checks: (1) given the same Brownian path, the compiled loop and the Python
loop (one kernel call per step, or the numpy reference formula) produce the same trajectory to
rounding; (2) its own random stream is standard normal and independent (KS, moments,
correlations); (3) seeded runs have the exact law of the linear chain of a Gaussian p0 in d = 3
(odd d uses the spare normal), computed here by a recursion from the step coefficients.
"""
from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from scipy import stats

from sftheory.backend import use_kernels
from sftheory.fields import as_field, perturbed, scaled, weighted
from sftheory.models import Gaussian, GaussianMixture
from sftheory.processes import OU, VP
from sftheory.samplers import (BrownianPath, initial_points, sample_euler_maruyama,
                               sample_exponential)
from sftheory.samplers import _fused
from sftheory.samplers._core import euler_maruyama_coefficients
from sftheory.testing.tolerances import MC_SIGMAS
from sftheory._kernels.sampler import standard_normals

MEANS = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
ISO = GaussianMixture(np.full(4, 0.25), MEANS, np.full(4, 0.05 ** 2), covariance_type="spherical")
_A = np.random.default_rng(1).standard_normal((3, 2, 2))
FULL = GaussianMixture(np.array([0.2, 0.3, 0.5]), np.random.default_rng(2).standard_normal((3, 2)),
                       _A @ _A.transpose(0, 2, 1) + 0.1 * np.eye(2))
# a trajectory of 100 steps accumulates rounding: 1e-12 absolute on O(1) points is ~100 ulps
# per step of slack, while any coefficient 1e-3 off moves the points by ~1e-4 (planted below)
PARITY_ATOL = 1e-12


def _fields(path):
    c = lambda t: 1.0 + math.sin(t)  # noqa: E731 - a factor of forward time
    return {"path": path, "as_field": as_field(path), "scaled": scaled(path, c),
            "perturbed": perturbed(path, scaled(path, c), -0.2),
            "weighted": weighted([path, scaled(path, 2.0)], [0.25, 0.75])}


@pytest.mark.parametrize("law", [ISO, FULL], ids=["iso", "full"])
@pytest.mark.parametrize("sampler", [sample_euler_maruyama, sample_exponential])
@pytest.mark.parametrize("h", [None, 0.0, 2.0])
def test_compiled_loop_equals_the_python_loop_given_the_noise(law, sampler, h):
    proc = OU()
    path = law.path(proc)
    x = initial_points(64, proc, 4.0, law=law, seed=0)
    ts = np.linspace(4.0, 0.01, 101)
    for name, field in _fields(path).items():
        assert _fused.exact_form(field) is not None, name
        bp = BrownianPath(x.shape, seed=3)
        a = sampler(field, x, ts, proc, h=h, noise=bp, save_at=ts[[0, 50, 100]], disable=True)
        b = sampler(field, x, ts, proc, h=h, noise=bp, save_at=ts[[0, 50, 100]], disable=True,
                    callback=lambda s: None)  # forces the Python loop
        with use_kernels("numpy"):
            c = sampler(field, x, ts, proc, h=h, noise=bp, disable=True)
        assert np.abs(a.x - b.x).max() <= PARITY_ATOL, name
        assert np.abs(a.x - c.x).max() <= PARITY_ATOL, name
        assert len(a.snapshots) == 3 and np.array_equal(a.times, b.times)
        for sa, sb in zip(a.snapshots, b.snapshots):
            assert np.abs(sa - sb).max() <= PARITY_ATOL
        assert a.nfe == b.nfe == 100


def test_a_planted_step_error_breaks_parity(monkeypatch):
    """The parity test can fail: beta 0.1 % off on the compiled route only."""
    proc = OU()
    path = ISO.path(proc)
    x = initial_points(64, proc, 4.0, law=ISO, seed=0)
    ts = np.linspace(4.0, 0.01, 101)
    bp = BrownianPath(x.shape, seed=3)
    ref = sample_euler_maruyama(path, x, ts, proc, noise=bp, disable=True, callback=lambda s: None)
    orig = _fused.run_fused
    monkeypatch.setattr(_fused, "run_fused", lambda form, x, grid, al, be, si, **kw:
                        orig(form, x, grid, al, 1.001 * be, si, **kw))
    bad = sample_euler_maruyama(path, x, ts, proc, noise=bp, disable=True)
    assert np.abs(bad.x - ref.x).max() > 1e3 * PARITY_ATOL


def test_fields_that_are_not_one_scaled_path_take_the_python_loop():
    p, q = ISO.path(OU()), ISO.path(OU())
    assert _fused.exact_form(perturbed(p, q, 0.1)) is None  # two path objects
    assert _fused.exact_form(as_field(lambda x, t: -x, dim=2)) is None
    assert _fused.exact_form(weighted([p, as_field(lambda x, t: -x, dim=2)], [0.5, 0.5])) is None
    path, factor = _fused.exact_form(perturbed(p, scaled(p, lambda t: t), 0.5))
    assert path is p and np.allclose(factor(np.array([0.0, 2.0])), [1.0, 2.0])


def test_the_stream_is_standard_normal_and_independent():
    """2 x 10^6 draws: KS against N(0, 1) at the 1e-4 level, mean/variance/kurtosis within
    MC_SIGMAS standard errors, and no correlation between coordinates, neighbouring particles or
    consecutive steps beyond MC_SIGMAS / sqrt(n)."""
    z = standard_normals(np.uint64(12345), 20_000, 3, 33)  # odd d: the spare normal is used
    flat = z.ravel()
    n = flat.size
    assert stats.kstest(flat, "norm").pvalue > 1e-4
    assert abs(flat.mean()) * math.sqrt(n) <= MC_SIGMAS
    assert abs(flat.var() - 1.0) / math.sqrt(2.0 / n) <= MC_SIGMAS
    assert abs(stats.kurtosis(flat)) / math.sqrt(24.0 / n) <= MC_SIGMAS
    pairs = {"coordinates": (z[..., 0], z[..., 1]), "particles": (z[:, :-1, 0], z[:, 1:, 0]),
             "steps": (z[:-1, :, 2], z[1:, :, 2])}
    for what, (a, b) in pairs.items():
        r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
        assert abs(r) * math.sqrt(a.size) <= MC_SIGMAS, what
    # the ziggurat's layers: every probability of |z| > c (c at the tail edge r = 3.654, in the
    # tail, inside the layers) within MC_SIGMAS binomial standard errors
    for c in (0.3, 1.0, 2.0, 3.6541528853610088, 4.5):
        p = 2 * stats.norm.sf(c)
        frac = float(np.mean(np.abs(flat) > c))
        assert abs(frac - p) <= MC_SIGMAS * math.sqrt(p * (1 - p) / n), c
    other = standard_normals(np.uint64(12346), 20_000, 3, 2)
    assert abs(np.corrcoef(other.ravel(), z[:2].ravel())[0, 1]) * math.sqrt(other.size) <= MC_SIGMAS


def test_seeded_runs_reproduce_for_any_thread_count_and_chunking(monkeypatch):
    proc = OU()
    path = ISO.path(proc)
    x = initial_points(1000, proc, 4.0, law=ISO, seed=0)
    ts = np.linspace(4.0, 0.01, 51)
    a = sample_euler_maruyama(path, x, ts, proc, seed=11, disable=True).x
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        b = sample_euler_maruyama(path, x, ts, proc, seed=11, disable=True).x
    finally:
        numba.set_num_threads(before)
    monkeypatch.setattr(_fused, "TARGET_WORK_PER_CHUNK", 1)  # one step per kernel call
    c = sample_euler_maruyama(path, x, ts, proc, seed=11, disable=True).x
    d = sample_euler_maruyama(path, x, ts, proc, seed=12, disable=True).x
    assert np.array_equal(a, b) and np.array_equal(a, c)
    assert not np.allclose(a, d)
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    assert np.array_equal(sample_euler_maruyama(path, x, ts, proc, seed=g1, disable=True).x,
                          sample_euler_maruyama(path, x, ts, proc, seed=g2, disable=True).x)


def test_law_of_a_3d_chain_with_full_covariance():
    """Gaussian p0 = N(mu, Sigma) in d = 3: the Euler-Maruyama chain is linear,
    x' = (alpha I - beta C_k^{-1}) x + beta C_k^{-1} m_k mu + sigma xi with C_k = m_k^2 Sigma + v_k I,
    so its mean and covariance follow exactly by recursion (numpy here, coefficients from the
    step definition). Seeded compiled run, 40,000 particles: mean within MC_SIGMAS standard
    errors, each covariance entry within MC_SIGMAS of its standard error (sqrt((S_ii S_jj +
    S_ij^2)/n) for a Gaussian)."""
    proc = VP()
    mu = np.array([0.5, -1.0, 2.0])
    B = np.array([[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 0.2]])
    law = Gaussian(mu, B)
    ts = np.linspace(1.0, 0.02, 31)
    n = 40_000
    x0 = initial_points(n, proc, 1.0, law=law, seed=1)
    res = sample_euler_maruyama(law.path(proc), x0, ts, proc, seed=2, disable=True)
    alpha, beta, sigma = euler_maruyama_coefficients(proc, ts, None)
    m_s, v_s = proc.conditional_many(ts)
    mean = m_s[0] * mu
    cov = m_s[0] ** 2 * B + v_s[0] * np.eye(3)
    for k in range(len(ts) - 1):
        Ci = np.linalg.inv(m_s[k] ** 2 * B + v_s[k] * np.eye(3))
        A = alpha[k] * np.eye(3) - beta[k] * Ci
        mean = A @ mean + beta[k] * Ci @ (m_s[k] * mu)
        cov = A @ cov @ A.T + sigma[k] ** 2 * np.eye(3)
    z_mean = (res.x.mean(0) - mean) / np.sqrt(np.diag(cov) / n)
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov ** 2) / n)
    z_cov = (np.cov(res.x.T) - cov) / se_cov
    assert np.all(np.abs(z_mean) <= MC_SIGMAS), z_mean
    assert np.all(np.abs(z_cov) <= MC_SIGMAS), z_cov


def test_float32_points_and_1d_shapes():
    proc = OU()
    law = Gaussian([0.3], 0.5)
    x = initial_points(100, proc, 1.0, law=law, seed=0).astype(np.float32)
    ts = np.linspace(1.0, 0.1, 11)
    res = sample_euler_maruyama(law.path(proc), x, ts, proc, seed=0, disable=True)
    assert res.x.dtype == np.float32 and res.x.shape == x.shape
    r1 = sample_euler_maruyama(law.path(proc), x[:, 0].astype(np.float64), ts, proc, seed=0,
                               disable=True)
    assert r1.x.shape == (100,)
