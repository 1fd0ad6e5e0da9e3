"""Extreme inputs: t = 1e-8, |x| = 1e4..1e8, 1e5 components, float32. Outputs must be finite *and*
right, checked against references computed independently (mpmath at 50 digits, the dominant
component's closed form, scipy log-sum-exp, the numpy reference formula)."""
from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest
from scipy.special import logsumexp, softmax
from scipy.stats import multivariate_normal

from sftheory.models import EmpiricalDistribution, Gaussian, GaussianMixture
from sftheory.processes import OU, VE, VP
from sftheory.testing.tolerances import EXACT_FLOAT64, FLOAT32, KERNEL_PARITY

EPS = np.finfo(np.float64).eps
IMPLS = ["numba", "numpy"]


def mp_iso_mixture(weights, means, var, x, dps=50):
    """log p and score of sum_k w_k N(mu_k, var_k I) at the points x, in mpmath."""
    with mp.workdps(dps):
        out_lp, out_s = [], []
        for xi in x:
            xi = [mp.mpf(float(c)) for c in xi]
            d = len(xi)
            terms, grads = [], []
            for w, mu, s2 in zip(weights, means, var):
                if w == 0:
                    continue
                s2 = mp.mpf(float(s2))
                r = [xi[j] - mp.mpf(float(mu[j])) for j in range(d)]
                q = sum(c * c for c in r)
                terms.append(mp.mpf(float(w)) * (2 * mp.pi * s2) ** (-mp.mpf(d) / 2)
                             * mp.exp(-q / (2 * s2)))
                grads.append([-c / s2 for c in r])
            tot = sum(terms)
            out_lp.append(float(mp.log(tot)))
            out_s.append([float(sum(tk * g[j] for tk, g in zip(terms, grads)) / tot)
                          for j in range(d)])
        return np.array(out_lp), np.array(out_s)


# ---- t = 1e-8 --------------------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
def test_empirical_marginal_at_tiny_time_matches_mpmath(impl):
    y = np.array([[0.0, 0.0], [1.0, 0.5], [-0.7, 1.2], [1.0, 0.5001]])
    t = 1e-8
    p = EmpiricalDistribution(y).marginal(VE(), t)  # m = 1, v = t exactly
    rng = np.random.default_rng(0)
    x = y[[0, 1, 2, 3, 1]] + 1e-4 * rng.normal(size=(5, 2))
    x[4] = 0.5 * (y[1] + y[3])  # halfway between two atoms 1e-4 apart: both matter
    lp, s = p.logpdf_and_score(x, impl=impl)
    lp_ref, s_ref = mp_iso_mixture(np.full(4, 0.25), y, np.full(4, t), x)
    assert np.all(np.isfinite(lp)) and np.all(np.isfinite(s))
    # rounding of (x - y_i) (exact here) and of |x - y|^2 / 2v: a few eps of each term
    np.testing.assert_allclose(lp, lp_ref, rtol=EXACT_FLOAT64.rtol, atol=EXACT_FLOAT64.atol * 1e2)
    np.testing.assert_allclose(s, s_ref, rtol=EXACT_FLOAT64.rtol,
                               atol=EXACT_FLOAT64.rtol * np.abs(s_ref).max())


@pytest.mark.parametrize("process", [OU(), VP(), VE(sigma=25.0)], ids=["OU", "VP", "VE25"])
def test_empirical_marginal_at_tiny_time_other_processes(process, exact_mv):
    """m(1e-8) != 1: the rounding of m y_i (eps |y|) is amplified by 1/v in the score."""
    y = np.array([[0.0, 0.0], [1.0, 0.5], [-0.7, 1.2]])
    t = 1e-8
    m, v = exact_mv(process, t)
    p = EmpiricalDistribution(y).marginal(process, t)
    x = m * y + 1e-4 * np.random.default_rng(1).normal(size=y.shape)
    lp, s = p.logpdf_and_score(x)
    lp_ref, s_ref = mp_iso_mixture(np.full(3, 1 / 3), m * y, np.full(3, v), x)
    np.testing.assert_allclose(lp, lp_ref, rtol=EXACT_FLOAT64.rtol,
                               atol=10 * EPS * np.abs(y).max() * 1e-4 / v)
    np.testing.assert_allclose(s, s_ref, rtol=EXACT_FLOAT64.rtol,
                               atol=10 * EPS * np.abs(y).max() / v)


@pytest.mark.parametrize("process", [OU(), VP(), VE(), VE(sigma=25.0)],
                         ids=["OU", "VP", "VE", "VE25"])
def test_gaussian_at_tiny_time(process, exact_mv):
    mu = np.array([0.5, -1.0])
    cov = np.array([[1.0, 0.3], [0.3, 0.5]])
    m, v = exact_mv(process, 1e-8)
    p = Gaussian(mu, cov).marginal(process, 1e-8)
    x = np.array([[0.0, 0.0], [2.0, 1.0]])
    ref = multivariate_normal(m * mu, m * m * cov + v * np.eye(2))
    np.testing.assert_allclose(p.logpdf(x), ref.logpdf(x), rtol=EXACT_FLOAT64.rtol,
                               atol=EXACT_FLOAT64.rtol * 10)
    s_ref = -np.linalg.solve(m * m * cov + v * np.eye(2), (x - m * mu).T).T
    np.testing.assert_allclose(p.score(x), s_ref, rtol=EXACT_FLOAT64.rtol,
                               atol=EXACT_FLOAT64.rtol * np.abs(s_ref).max())


# ---- far-away points -----------------------------------------------------------------------------
_MEANS = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
_W = np.array([0.2, 0.3, 0.5])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("direction", [(1.0, 0.0), (-1.0, 0.0), (0.6, -0.8), (0.0, 1.0)])
def test_far_point_iso_mixture_equals_nearest_component(impl, direction):
    """At x = 1e4 u, components other than the nearest are exp(-O(1e4)) smaller: they underflow
    and p(x) is the nearest component's log w + log N exactly (to rounding)."""
    mix = GaussianMixture(_W, _MEANS, np.ones(3))
    x = 1e4 * np.array([direction])
    lp, s = mix.logpdf_and_score(x, impl=impl)
    k = int(np.argmax(np.log(_W) - 0.5 * ((x - _MEANS) ** 2).sum(1)))
    lp_ref = np.log(_W[k]) + multivariate_normal(_MEANS[k], np.eye(2)).logpdf(x)
    np.testing.assert_allclose(lp, [lp_ref], rtol=EXACT_FLOAT64.rtol, atol=0)
    np.testing.assert_allclose(s, -(x - _MEANS[k]), rtol=EXACT_FLOAT64.rtol, atol=0)


IMPLS_FAR = ["numba", "numpy"]


@pytest.mark.parametrize("impl", IMPLS_FAR)
@pytest.mark.parametrize("scale", [1e4, 1e6, 1e8])
def test_far_point_between_components_matches_mpmath(impl, scale):
    """x = (0.3, scale): components 0 and 1 (means (-1, 0), (1, 0)) compete far from both.

    Along the second axis both component scores are -x_2, so the score there is -x_2 exactly
    whatever the responsibilities. Along the first axis each |x - mu_k|^2 ~ scale^2 is rounded
    to eps scale^2 before the log-ratio forms, so the responsibilities, and the score through
    |mu_0 - mu_1| = 2, carry an absolute error ~ eps scale^2 (a property of evaluating the
    quadratic forms separately, not a bug).
    """
    mix = GaussianMixture([0.5, 0.5], _MEANS[:2], np.ones(2))
    x = np.array([[0.3, scale], [-0.2, -scale], [1e-3, scale]])
    lp, s = mix.logpdf_and_score(x, impl=impl)
    lp_ref, s_ref = mp_iso_mixture([0.5, 0.5], _MEANS[:2], [1.0, 1.0], x)
    np.testing.assert_allclose(s[:, 1], -x[:, 1], rtol=EXACT_FLOAT64.rtol, atol=0)
    np.testing.assert_allclose(s[:, 0], s_ref[:, 0], rtol=0, atol=10 * EPS * scale**2 * 2)
    np.testing.assert_allclose(lp, lp_ref, rtol=EXACT_FLOAT64.rtol, atol=0)


@pytest.mark.parametrize("impl", IMPLS_FAR)
def test_far_point_posterior_mean_is_convex_combination(impl):
    """E[X0 | Xt = x] for two atoms sharing their second coordinate (5) is a convex combination
    of them: second coordinate exactly 5, first within [10, 12], also far away."""
    y = np.array([[10.0, 5.0], [12.0, 5.0]])
    p = EmpiricalDistribution(y).path(VE())
    x = np.array([[11.3, 1e6], [11.0, -1e7]])
    post = p.posterior_mean(x, 1.0, impl=impl)
    np.testing.assert_allclose(post[:, 1], 5.0, rtol=EXACT_FLOAT64.rtol, atol=0)
    assert np.all((post[:, 0] >= 10.0) & (post[:, 0] <= 12.0)), post


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("scale", [1e4, 1e6, 1e8])
def test_far_point_full_mixture_dominant_component(impl, scale):
    """Full covariances: far along u, the component with the largest u^T Sigma^{-1} ... smallest
    u^T Sigma_k^{-1} u dominates; the others underflow."""
    covs = np.array([[[1.0, 0.5], [0.5, 1.0]], [[0.5, -0.2], [-0.2, 2.0]],
                     [[0.3, 0.0], [0.0, 0.3]]])
    mix = GaussianMixture(_W, _MEANS, covs)
    rng = np.random.default_rng(2)
    u = rng.normal(size=(6, 2))
    x = scale * u / np.linalg.norm(u, axis=1, keepdims=True)
    lp, s = mix.logpdf_and_score(x, impl=impl)
    comp = np.stack([np.log(w) + multivariate_normal(mu, c).logpdf(x)
                     for w, mu, c in zip(_W, _MEANS, covs)], 1)
    k = comp.argmax(1)
    assert np.all(comp.max(1)[:, None] - comp[np.arange(6), :] >= 0)
    np.testing.assert_allclose(lp, comp.max(1), rtol=1e2 * EXACT_FLOAT64.rtol, atol=0)  # cond ~10
    s_ref = np.stack([-np.linalg.solve(covs[kk], xi - _MEANS[kk]) for kk, xi in zip(k, x)])
    np.testing.assert_allclose(s, s_ref, rtol=1e2 * EXACT_FLOAT64.rtol,
                               atol=1e2 * EXACT_FLOAT64.rtol * np.abs(s_ref).max())


@pytest.mark.parametrize("scale", [1e4, 1e8])
def test_far_point_empirical_marginal_and_parity(scale):
    y = np.random.default_rng(3).uniform(-2, 2, size=(50, 3))
    p = EmpiricalDistribution(y).marginal(VP(), 0.2)
    x = scale * np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.6, 0.0, 0.8]])
    lp_nb, s_nb = p.logpdf_and_score(x, impl="numba")
    lp_np, s_np = p.logpdf_and_score(x, impl="numpy")
    assert np.all(np.isfinite(lp_nb)) and np.all(np.isfinite(s_nb))
    np.testing.assert_allclose(lp_nb, lp_np, rtol=KERNEL_PARITY.rtol, atol=0)
    np.testing.assert_allclose(s_nb, s_np, rtol=KERNEL_PARITY.rtol,
                               atol=KERNEL_PARITY.rtol * np.abs(s_np).max())
    m, v = VP().conditional(0.2)
    # the score is within the segment of component scores: -(x - m y_k)/v for some mixing
    comp = -(x[:, None, :] - m * y[None]) / v
    slack = EXACT_FLOAT64.rtol * np.abs(comp).max()  # rounding of the weighted average
    assert np.all(s_nb >= comp.min(1) - slack) and np.all(s_nb <= comp.max(1) + slack)


def test_gaussian_far_away_matches_scipy():
    g = Gaussian([1.0, 2.0, 3.0], [[2.0, 0.3, 0.0], [0.3, 1.0, 0.1], [0.0, 0.1, 0.5]])
    x = np.array([[1e5, -1e5, 1e5], [1e8, 0.0, 0.0]])
    np.testing.assert_allclose(g.logpdf(x), multivariate_normal(g.mean, g.cov).logpdf(x),
                               rtol=1e2 * EXACT_FLOAT64.rtol, atol=0)  # cond(cov) ~ 10
    np.testing.assert_allclose(g.score(x), -np.linalg.solve(g.cov, (x - g.mean).T).T,
                               rtol=1e2 * EXACT_FLOAT64.rtol, atol=1e2 * EXACT_FLOAT64.rtol * 1e8)


# ---- 1e5 components ------------------------------------------------------------------------------
N_BIG = 100_000


@pytest.fixture(scope="module")
def big_empirical():
    y = np.random.default_rng(4).uniform(-3, 3, size=(N_BIG, 2))
    return y, EmpiricalDistribution(y)


@pytest.mark.parametrize("process,t", [(VE(), 0.01), (VP(), 0.05), (OU(), 1e-6)],
                         ids=["VE-0.01", "VP-0.05", "OU-1e-6"])
def test_1e5_components_match_scipy_logsumexp(big_empirical, process, t):
    y, emp = big_empirical
    p = emp.marginal(process, t)
    m, v = process.conditional(t)
    rng = np.random.default_rng(5)
    x = np.concatenate([m * y[:6] + np.sqrt(v) * rng.normal(size=(6, 2)),
                        rng.uniform(-4, 4, size=(6, 2)), [[30.0, -40.0]]])
    lp, s = p.logpdf_and_score(x)
    assert np.all(np.isfinite(lp)) and np.all(np.isfinite(s))
    d2 = ((x[:, None, :] - m * y[None]) ** 2).sum(-1)  # (13, 1e5)
    lp_ref = logsumexp(-d2 / (2 * v), axis=1) - np.log(N_BIG) - np.log(2 * np.pi * v)
    r = softmax(-d2 / (2 * v), axis=1)
    s_ref = (r @ (m * y) - x) / v
    # sums of 1e5 terms (pairwise vs sequential): rounding ~ eps * log2(1e5) per unit of the
    # largest term |x - m y| / v
    big = np.abs(x).max() + np.abs(y).max()
    np.testing.assert_allclose(lp, lp_ref, rtol=EXACT_FLOAT64.rtol,
                               atol=EXACT_FLOAT64.rtol * (1 + big**2 / v))
    np.testing.assert_allclose(s, s_ref, rtol=EXACT_FLOAT64.rtol, atol=EXACT_FLOAT64.rtol * big / v)
    post = emp.path(process).posterior_mean(x, t)
    np.testing.assert_allclose(post, r @ y, rtol=EXACT_FLOAT64.rtol,
                               atol=EXACT_FLOAT64.rtol * np.abs(y).max())


def test_1e5_components_kernel_vs_numpy_reference_subset(big_empirical):
    y, emp = big_empirical
    p = emp.marginal(VE(), 0.02)
    x = np.random.default_rng(6).uniform(-3.5, 3.5, size=(64, 2))
    lp_nb, s_nb = p.logpdf_and_score(x, impl="numba")
    lp_np, s_np = p.logpdf_and_score(x, impl="numpy")
    np.testing.assert_allclose(lp_nb, lp_np, rtol=KERNEL_PARITY.rtol, atol=KERNEL_PARITY.atol)
    # the floor-1 relative metric of measure_backend_parity, with 1e5-term sums
    bound = 10 * KERNEL_PARITY.rtol * np.maximum(np.abs(s_np), 1.0 / 0.02)
    assert np.all(np.abs(s_nb - s_np) <= bound)


def test_1e5_identical_components_are_one_gaussian():
    """1e5 copies of one point: the mixture is exactly N(m y, v I)."""
    y0 = np.array([0.7, -1.1])
    emp = EmpiricalDistribution(np.tile(y0, (N_BIG, 1)))
    p = emp.marginal(VP(), 0.3)
    m, v = VP().conditional(0.3)
    x = np.array([[0.0, 0.0], [1.0, 2.0], [-50.0, 3.0]])
    ref = multivariate_normal(m * y0, v * np.eye(2))
    np.testing.assert_allclose(p.logpdf(x), ref.logpdf(x), rtol=EXACT_FLOAT64.rtol,
                               atol=EXACT_FLOAT64.rtol * np.log(N_BIG) * 10)
    # the kernel sums 1e5 equal terms sequentially: relative rounding up to N eps
    np.testing.assert_allclose(p.score(x), -(x - m * y0) / v, rtol=N_BIG * EPS, atol=0)
    np.testing.assert_allclose(emp.path(VP()).posterior_mean(x, 0.3), np.broadcast_to(y0, x.shape),
                               rtol=N_BIG * EPS, atol=0)


# ---- float32 ---------------------------------------------------------------------------------
F32_MODELS = [
    pytest.param(lambda: Gaussian([0.5, -1.0], [[1.0, 0.3], [0.3, 0.5]]), id="gauss-full"),
    pytest.param(lambda: GaussianMixture(_W, _MEANS, [0.5, 1.0, 2.0]), id="mix-iso"),
    pytest.param(lambda: GaussianMixture(_W, _MEANS, [[[1.0, 0.5], [0.5, 1.0]], np.eye(2),
                                                      [[0.3, 0.1], [0.1, 0.4]]]), id="mix-full"),
    pytest.param(lambda: EmpiricalDistribution(np.random.default_rng(7).normal(size=(30, 2))),
                 id="emp"),
]


@pytest.mark.parametrize("factory", F32_MODELS)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("scale", [3.0, 1e4])
def test_float32_in_float32_out(factory, impl, scale):
    p = factory().marginal(VP(), 0.1)
    x32 = (scale * np.random.default_rng(8).uniform(-1, 1, size=(40, 2))).astype(np.float32)
    lp32, s32 = p.logpdf_and_score(x32, impl=impl)
    assert lp32.dtype == np.float32 and s32.dtype == np.float32
    lp64, s64 = p.logpdf_and_score(x32.astype(np.float64), impl=impl)
    # FLOAT32 is relative to the size of each quantity (|score| ~ |x| / v far away)
    np.testing.assert_allclose(lp32, lp64, rtol=FLOAT32.rtol, atol=FLOAT32.atol)
    np.testing.assert_allclose(s32, s64, rtol=FLOAT32.rtol, atol=FLOAT32.atol * np.abs(s64).max())
    assert p.pdf(x32).dtype == np.float32
    pa = factory().path(VP())
    post = pa.posterior_mean(x32, 0.1, impl=impl)
    assert post.dtype == np.float32
    post64 = pa.posterior_mean(x32.astype(np.float64), 0.1, impl=impl)
    np.testing.assert_allclose(post, post64, rtol=FLOAT32.rtol,
                               atol=FLOAT32.atol * (1 + np.abs(post64).max()))


def test_float32_1d_and_scalar():
    g = Gaussian([0.0], 2.0)
    out = g.logpdf(np.array([1.0, 2.0], dtype=np.float32))
    assert out.dtype == np.float32 and out.shape == (2,)
    np.testing.assert_allclose(out, -0.5 * np.log(4 * np.pi) - np.array([1.0, 4.0]) / 4,
                               rtol=FLOAT32.rtol, atol=FLOAT32.atol)


@pytest.mark.slow
def test_1e5_components_full_grid_kernel_vs_reference(big_empirical):
    """Every point of a 40 x 40 grid (1.6e8 component evaluations) vs the numpy reference."""
    y, emp = big_empirical
    p = emp.marginal(VP(), 0.01)
    g = np.linspace(-4, 4, 40)
    x = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    lp_nb, s_nb = p.logpdf_and_score(x, impl="numba")
    lp_np, s_np = p.logpdf_and_score(x, impl="numpy")
    assert np.all(np.isfinite(lp_nb)) and np.all(np.isfinite(s_nb))
    np.testing.assert_allclose(lp_nb, lp_np, rtol=KERNEL_PARITY.rtol, atol=KERNEL_PARITY.atol)
    _, v = VP().conditional(0.01)
    # the floor-1 relative metric, with the natural score scale 1/v and 1e5-term sums
    bound = 10 * KERNEL_PARITY.rtol * np.maximum(np.abs(s_np), 1.0 / v)
    assert np.all(np.abs(s_nb - s_np) <= bound)
