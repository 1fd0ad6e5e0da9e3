"""sftheory.fusion.barycenter: Gaussian closed form vs quadrature, mixtures by two independent
routes (rejection acceptance rate vs quadrature), exact sampling, score, validation."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from sftheory.fusion import KLBarycenter, barycenter
from sftheory.models import Gaussian, GaussianMixture


def _quad_1d(fn, lo=-30, hi=30):
    return integrate.quad(fn, lo, hi, points=[-5, 0, 5], limit=500, epsabs=0, epsrel=1e-11)[0]


def test_gaussian_1d_matches_quadrature_of_the_product():
    refs = [Gaussian([0.0], 1.0), Gaussian([2.0], 0.5), Gaussian([-1.0], 3.0)]
    lam = np.array([0.2, 0.5, 0.3])
    b = barycenter(refs, lam)
    assert isinstance(b, Gaussian)

    def unnorm(x):  # prod_i N(x; m_i, s_i^2)^lam_i with scipy's density (independent route)
        return np.prod([stats.norm(m, np.sqrt(v)).pdf(x) ** l
                        for m, v, l in zip([0, 2, -1], [1, 0.5, 3], lam)])

    Z = _quad_1d(unnorm)
    mean = _quad_1d(lambda x: x * unnorm(x)) / Z
    var = _quad_1d(lambda x: (x - mean) ** 2 * unnorm(x)) / Z
    # quad at epsrel 1e-11; the closed form is exact up to rounding
    assert b.mean[0] == pytest.approx(mean, rel=1e-9)
    assert b.cov[0, 0] == pytest.approx(var, rel=1e-9)


def test_gaussian_2d_full_cov_precision_weighted():
    rng = np.random.default_rng(0)
    covs = []
    for _ in range(3):
        a = rng.normal(size=(2, 2))
        covs.append(a @ a.T + 0.5 * np.eye(2))
    means = rng.normal(size=(3, 2))
    lam = np.array([0.5, 0.25, 0.25])
    b = barycenter([Gaussian(m, c) for m, c in zip(means, covs)], lam)
    # the barycenter's log-density differs from sum lam_i log p_i by a constant
    x = rng.normal(size=(20, 2))
    s = sum(l * stats.multivariate_normal(m, c).logpdf(x) for l, m, c in zip(lam, means, covs))
    diff = b.logpdf(x) - s
    assert np.ptp(diff) < 1e-10
    # and the same barycenter as a generic density has log Z = that constant
    kb = KLBarycenter([Gaussian(m, c) for m, c in zip(means, covs)], lam)
    assert kb.log_normalizer.value == pytest.approx(-diff[0], abs=1e-9)


def _mixtures_1d():
    m1 = GaussianMixture([0.5, 0.5], [[-2.0], [2.0]], [0.5, 0.5])
    m2 = GaussianMixture([0.3, 0.7], [[0.0], [3.0]], [1.0, 0.3])
    return m1, m2


def test_mixture_log_normalizer_two_routes_and_scipy_quad():
    m1, m2 = _mixtures_1d()
    kb = barycenter([m1, m2], [0.4, 0.6])
    assert isinstance(kb, KLBarycenter)
    q = kb.log_normalizer_quadrature().value
    ref = np.log(_quad_1d(lambda x: np.exp(0.4 * m1.logpdf(np.array([x]))[0]
                                           + 0.6 * m2.logpdf(np.array([x]))[0])))
    assert q == pytest.approx(ref, abs=1e-9)  # trapezoid vs adaptive quad, both ~1e-11
    mc = kb.log_normalizer_mc(100_000, seed=3)
    assert abs(mc.value - q) < 5 * mc.stderr  # 5 standard errors
    assert 0 < mc.stderr < 0.01


def test_mixture_2d_log_normalizer_two_routes():
    m3 = GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 1.0]], [0.5, 0.8])
    g4 = Gaussian([0.5, 0.5], np.array([[1.0, 0.3], [0.3, 0.6]]))
    kb = barycenter([m3, g4], [0.5, 0.5])
    q = kb.log_normalizer.value
    mc = kb.log_normalizer_mc(100_000, seed=1)
    assert abs(mc.value - q) < 5 * mc.stderr


def test_rejection_samples_follow_the_barycenter():
    m1, m2 = _mixtures_1d()
    kb = barycenter([m1, m2], [0.4, 0.6])
    x = kb.sample(20_000, seed=0)[:, 0]
    g = np.linspace(-15, 15, 30001)
    p = np.exp(kb.logpdf(g) - kb.log_normalizer.value)
    cdf = integrate.cumulative_trapezoid(p, g, initial=0.0)
    assert cdf[-1] == pytest.approx(1.0, abs=1e-9)
    # exact sampler: the KS test must not reject at 1e-4 (named significance level)
    assert stats.kstest(x, lambda t: np.interp(t, g, cdf)).pvalue > 1e-4
    # a sampler that kept the first n accepted draws grouped by reference fails this badly


def test_score_is_weighted_sum_and_gradient_of_logpdf():
    m1, m2 = _mixtures_1d()
    kb = barycenter([m1, m2], [0.4, 0.6])
    x = np.linspace(-3, 4, 11)[:, None]
    np.testing.assert_allclose(kb.score(x), 0.4 * m1.score(x) + 0.6 * m2.score(x), rtol=1e-12)
    h = 1e-5
    fd = (kb.logpdf(x + h) - kb.logpdf(x - h)) / (2 * h)
    np.testing.assert_allclose(kb.score(x)[:, 0], fd, rtol=1e-6, atol=1e-8)


def test_zero_weight_reference_drops_out():
    m1, m2 = _mixtures_1d()
    kb = barycenter([m1, m2], [1.0, 0.0])
    assert kb.log_normalizer.value == 0.0
    x = np.linspace(-2, 2, 5)[:, None]
    np.testing.assert_allclose(kb.logpdf(x), m1.logpdf(x))


def test_validation_errors():
    g = Gaussian([0.0], 1.0)
    with pytest.raises(ValueError, match="weights"):
        barycenter([g, g], [0.5, 0.6])
    with pytest.raises(ValueError, match="weights"):
        barycenter([g, g], [1.5, -0.5])
    with pytest.raises(ValueError, match="weights"):
        barycenter([g, g], [1.0])
    with pytest.raises(ValueError, match="dimension"):
        barycenter([g, Gaussian([0.0, 0.0], 1.0)], [0.5, 0.5])
    with pytest.raises(ValueError, match="logpdf"):
        barycenter([g, object()], [0.5, 0.5])
    with pytest.raises(ValueError, match="models"):
        barycenter([], [])


def test_quadrature_error_estimate_is_reported():
    m1, m2 = _mixtures_1d()
    z = barycenter([m1, m2], [0.4, 0.6]).log_normalizer
    assert 0 <= z.stderr < 1e-9 and "trapezoid" in z.method


def test_3d_generic_route_monte_carlo_log_z_and_samples_vs_closed_form():
    from sftheory.fusion import gaussian_barycenter_params, gaussian_log_normalizer

    rng = np.random.default_rng(5)
    means = rng.normal(size=(2, 3))
    covs = np.stack([np.diag(rng.uniform(0.5, 2.0, 3)) for _ in range(2)])
    lam = np.array([0.3, 0.7])
    kb = KLBarycenter([Gaussian(m, c) for m, c in zip(means, covs)], lam, n_logz=100_000)
    z = kb.log_normalizer
    assert "rejection" in z.method
    assert abs(z.value - gaussian_log_normalizer(means, covs, lam)) < 5 * z.stderr
    mean, cov = gaussian_barycenter_params(means, covs, lam)
    x = kb.sample(20_000, seed=6)
    se = np.sqrt(np.diag(cov) / x.shape[0])
    assert np.all(np.abs(x.mean(axis=0) - mean) < 5 * se)  # 5 standard errors per coordinate
