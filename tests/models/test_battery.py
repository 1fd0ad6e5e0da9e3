"""The model battery (scipy ``test_continuous_basic`` style).

Each entry of ``MODEL_CASES`` is a :class:`Spec`: the law's parameters written out by hand
(weights, means, full covariances; empirical atoms have zero covariance) and a factory that
builds the sftheory model from them, in the covariance format the case exercises (scalar,
diagonal, full). Every case is put through the same invariants under every process and a few
times t, each against an independent computation:

- score == central-difference gradient of logpdf;
- the density integrates to one (d <= 2, quadrature);
- the marginal family satisfies the Fokker-Planck equation of the process;
- logpdf / score == scipy (multivariate_normal, per component) at the hand-computed marginal
  parameters m mu_k, m^2 Sigma_k + v I;
- mean / cov == the law of total covariance, pushed forward by hand;
- samples have those moments; the marginal equals the Monte Carlo law of X_t obtained by pushing
  model samples through the exact transition kernel (moments; KS in d = 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import logsumexp

from sftheory.models import EmpiricalDistribution, Gaussian, GaussianMixture
from sftheory.processes import OU, VE, VP
from sftheory.testing import (
    assert_density_normalized,
    assert_fokker_planck,
    assert_moments_match,
    assert_score_is_gradient,
)
from sftheory.testing.tolerances import EXACT_FLOAT64, KS_ALPHA, MC_SIGMAS, QUADRATURE


@dataclass(frozen=True)
class Spec:
    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, d)
    covs: np.ndarray  # (K, d, d); zero for the atoms of an empirical law
    build: Callable
    empirical: bool = False

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def marginal_params(self, m: float, v: float):
        """Component parameters of the law of m X + sqrt(v) Z, written out by hand."""
        d = self.dim
        return self.weights, m * self.means, m * m * self.covs + v * np.eye(d)[None]

    def moments(self, m: float = 1.0, v: float = 0.0):
        """Mean and covariance (law of total covariance) of m X + sqrt(v) Z."""
        w, mu, cov = self.marginal_params(m, v)
        mean = w @ mu
        c = mu - mean
        return mean, np.einsum("k,kab->ab", w, cov) + np.einsum("k,ka,kb->ab", w, c, c)


def _gauss(mean, cov_arg, cov_full):
    mean = np.asarray(mean, float)
    return Spec(np.ones(1), mean[None], np.asarray(cov_full, float)[None],
                lambda: Gaussian(mean, cov_arg))


def _mix(weights, means, cov_arg, cov_full):
    weights, means = np.asarray(weights, float), np.asarray(means, float)
    return Spec(weights, means, np.asarray(cov_full, float),
                lambda: GaussianMixture(weights, means, cov_arg,
                                        covariance_type="diag" if np.ndim(cov_arg) == 2 else None))


def _emp(points):
    points = np.asarray(points, float)
    n, d = points.shape
    return Spec(np.full(n, 1.0 / n), points, np.zeros((n, d, d)),
                lambda: EmpiricalDistribution(points), empirical=True)


_F3 = np.array([[2.0, 0.3, -0.4], [0.3, 1.0, 0.2], [-0.4, 0.2, 0.5]])
_F2a = np.array([[1.0, 0.5], [0.5, 1.0]])
_F2b = np.array([[0.6, -0.2], [-0.2, 0.4]])
_emp_rng = np.random.default_rng(12345)

MODEL_CASES = [
    pytest.param(_gauss([0.3], 0.7, [[0.7]]), id="gauss-iso-d1"),
    pytest.param(_gauss([-0.4], [1.3], [[1.3]]), id="gauss-diag-d1"),
    pytest.param(_gauss([2.0], [[0.25]], [[0.25]]), id="gauss-full-d1"),
    pytest.param(_gauss([1.0, -1.0], 2.0, 2.0 * np.eye(2)), id="gauss-iso-d2"),
    pytest.param(_gauss([0.5, -0.2], [0.5, 2.0], np.diag([0.5, 2.0])), id="gauss-diag-d2"),
    pytest.param(_gauss([0.1, 0.2], [[1.0, 0.6], [0.6, 2.0]], [[1.0, 0.6], [0.6, 2.0]]),
                 id="gauss-full-d2"),
    pytest.param(_gauss([0.3, 1.0, -2.0], [0.3, 1.0, 2.5], np.diag([0.3, 1.0, 2.5])),
                 id="gauss-diag-d3"),
    pytest.param(_gauss([-0.5, 0.0, 1.5], _F3, _F3), id="gauss-full-d3"),
    pytest.param(_mix([0.3, 0.7], [[-1.5], [1.0]], [0.4, 1.2], [[[0.4]], [[1.2]]]),
                 id="mix-iso-d1"),
    pytest.param(_mix([0.2, 0.5, 0.3], [[-2.0], [0.0], [2.5]], [[[0.3]], [[1.0]], [[0.5]]],
                      [[[0.3]], [[1.0]], [[0.5]]]), id="mix-full-d1"),
    pytest.param(_mix([0.25, 0.25, 0.5], [[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0]], [0.5, 1.0, 0.7],
                      [0.5 * np.eye(2), np.eye(2), 0.7 * np.eye(2)]), id="mix-iso-d2"),
    pytest.param(_mix([0.4, 0.6], [[-1.0, 1.0], [1.5, -0.5]], [[0.3, 1.0], [1.2, 0.4]],
                      [np.diag([0.3, 1.0]), np.diag([1.2, 0.4])]), id="mix-diag-d2"),
    pytest.param(_mix([0.5, 0.5], [[-1.0, -1.0], [1.0, 1.0]], [_F2a, _F2b], [_F2a, _F2b]),
                 id="mix-full-d2"),
    pytest.param(_mix([0.5, 0.0, 0.5], [[-1.0, -1.0], [5.0, 5.0], [1.0, 1.0]],
                      [_F2a, 0.1 * np.eye(2), _F2b], [_F2a, 0.1 * np.eye(2), _F2b]),
                 id="mix-zero-weight-d2"),
    pytest.param(_mix([0.6, 0.4], [[0.0, 0.0, 0.0], [1.0, -2.0, 0.5]], [_F3, np.eye(3) * 0.8],
                      [_F3, np.eye(3) * 0.8]), id="mix-full-d3"),
    pytest.param(_emp([[-1.0], [0.2], [0.5], [2.0], [3.1]]), id="emp-d1"),
    pytest.param(_emp(_emp_rng.uniform(-2, 2, size=(7, 2))), id="emp-d2"),
    pytest.param(_emp(_emp_rng.uniform(-2, 2, size=(6, 3))), id="emp-d3"),
]
LOW_DIM_CASES = [c for c in MODEL_CASES if c.values[0].dim <= 2]
D1_CASES = [c for c in MODEL_CASES if c.values[0].dim == 1]

PROCESSES = [pytest.param(OU(), id="OU"), pytest.param(VP(), id="VP"),
             pytest.param(VE(), id="VE"), pytest.param(VE(sigma=25.0), id="VE25")]
TIMES = [0.0, 0.05, 0.5]  # t = 0 is the model itself (skipped for empirical laws: no density)
POSITIVE_TIMES = [0.05, 0.5]


def _with_times(cases, times):
    """(spec, t) pairs; an empirical law has no density at t = 0, so it gets only t > 0."""
    return [pytest.param(c.values[0], t, id=f"{c.id}-t{t}") for c in cases for t in times
            if not (c.values[0].empirical and t == 0.0)]


CASES_T = _with_times(MODEL_CASES, TIMES)
LOW_DIM_CASES_T = _with_times(LOW_DIM_CASES, TIMES)


def _marginal(spec, process, t):
    return spec.build().marginal(process, t)


def _points(spec, m, v, n=12, seed=0):
    """Evaluation points spread over the bulk and the shoulders of the marginal."""
    rng = np.random.default_rng(seed)
    mean, cov = spec.moments(m, v)
    sd = np.sqrt(np.diag(cov))
    return mean + 2.5 * sd * rng.uniform(-1.0, 1.0, size=(n, spec.dim))


# ---- score = gradient of log-density ------------------------------------------------------
@pytest.mark.parametrize("spec,t", CASES_T)
@pytest.mark.parametrize("process", PROCESSES)
def test_score_is_gradient_of_logpdf(spec, process, t, exact_mv):
    p = _marginal(spec, process, t)
    assert_score_is_gradient(p, _points(spec, *exact_mv(process, t)))


# ---- normalization ---------------------------------------------------------------------------
@pytest.mark.parametrize("spec,t", LOW_DIM_CASES_T)
@pytest.mark.parametrize("process", PROCESSES)
def test_density_integrates_to_one(spec, process, t):
    assert_density_normalized(_marginal(spec, process, t))


@pytest.mark.parametrize("spec,t", _with_times([c for c in MODEL_CASES if c.values[0].dim > 2],
                                                TIMES))
@pytest.mark.parametrize("process", PROCESSES)
def test_density_integrates_to_one_importance_sampling(spec, process, t, exact_mv):
    """d = 3: Z = E_q[p / q] with q = N(mean, 2 cov) (scipy), whose tails dominate every
    component's (Sigma_k <= cov < 2 cov), so p / q is bounded and the estimate has a finite SE."""
    p = _marginal(spec, process, t)
    mean, cov = spec.moments(*exact_mv(process, t))
    q = stats.multivariate_normal(mean, 2.0 * cov)
    x = q.rvs(size=200_000, random_state=np.random.default_rng(41))
    ratio = np.exp(p.logpdf(x) - q.logpdf(x))
    se = ratio.std(ddof=1) / np.sqrt(len(ratio))
    assert abs(ratio.mean() - 1.0) <= MC_SIGMAS * se, (ratio.mean(), se)


# ---- Fokker-Planck -------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", MODEL_CASES)
@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("t", POSITIVE_TIMES)
def test_marginals_solve_fokker_planck(spec, process, t, exact_mv):
    assert_fokker_planck(spec.build(), process, t, _points(spec, *exact_mv(process, t), n=6))


# ---- vs scipy, at hand-computed marginal parameters ------------------------------------------
@pytest.mark.parametrize("spec,t", CASES_T)
@pytest.mark.parametrize("process", PROCESSES)
def test_logpdf_and_score_match_scipy(spec, process, t, exact_mv, mixture_ref):
    p = _marginal(spec, process, t)
    m, v = exact_mv(process, t)
    x = _points(spec, m, v)
    w, mu, cov = spec.marginal_params(m, v)
    lp_ref, s_ref = mixture_ref(w, mu, cov, x)
    lp, s = p.logpdf_and_score(x)
    # rounding in the quadratic forms and log-determinants: relative to the size of the terms
    scale = 1.0 + np.abs(lp_ref).max()
    np.testing.assert_allclose(lp, lp_ref, rtol=EXACT_FLOAT64.rtol, atol=EXACT_FLOAT64.rtol * scale)
    np.testing.assert_allclose(s, s_ref, rtol=EXACT_FLOAT64.rtol,
                               atol=EXACT_FLOAT64.rtol * (1.0 + np.abs(s_ref).max()))


@pytest.mark.parametrize("spec", [c for c in MODEL_CASES if c.id.startswith("gauss")])
@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("t", TIMES)
def test_gaussian_logpdf_equals_scipy_multivariate_normal(spec, process, t, exact_mv):
    p = _marginal(spec, process, t)
    m, v = exact_mv(process, t)
    x = _points(spec, m, v)
    ref = stats.multivariate_normal(m * spec.means[0], m * m * spec.covs[0] + v * np.eye(spec.dim))
    np.testing.assert_allclose(p.logpdf(x), ref.logpdf(x), rtol=EXACT_FLOAT64.rtol,
                               atol=EXACT_FLOAT64.rtol * 10)  # terms of size ~10
    np.testing.assert_allclose(p.pdf(x), ref.pdf(x), rtol=10 * EXACT_FLOAT64.rtol, atol=0)


@pytest.mark.parametrize("spec", [c for c in MODEL_CASES if not c.id.startswith("gauss")])
@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("t", POSITIVE_TIMES)
def test_mixture_pdf_is_weighted_sum_of_scipy_component_pdfs(spec, process, t, exact_mv):
    p = _marginal(spec, process, t)
    m, v = exact_mv(process, t)
    x = _points(spec, m, v)
    w, mu, cov = spec.marginal_params(m, v)
    dens = sum(wk * stats.multivariate_normal(mk, ck).pdf(x) for wk, mk, ck in zip(w, mu, cov))
    np.testing.assert_allclose(p.pdf(x), dens, rtol=10 * EXACT_FLOAT64.rtol, atol=0)
    np.testing.assert_allclose(p.logpdf(x), np.log(dens), rtol=EXACT_FLOAT64.rtol,
                               atol=EXACT_FLOAT64.rtol * 10)


# ---- exact moments ----------------------------------------------------------------------------
@pytest.mark.parametrize("spec", MODEL_CASES)
@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("t", TIMES)
def test_marginal_mean_and_cov_closed_form(spec, process, t, exact_mv):
    """mean_t = m mean, cov_t = m^2 cov + v I, with mean/cov by the law of total covariance."""
    p = spec.build().marginal(process, t)
    m, v = exact_mv(process, t)
    mean0, cov0 = spec.moments()
    scale = 1.0 + np.abs(cov0).max()
    np.testing.assert_allclose(p.mean, m * mean0, rtol=EXACT_FLOAT64.rtol,
                               atol=EXACT_FLOAT64.atol * scale)
    np.testing.assert_allclose(p.cov, m * m * cov0 + v * np.eye(spec.dim),
                               rtol=EXACT_FLOAT64.rtol, atol=EXACT_FLOAT64.rtol * scale)
    assert p.dim == spec.dim


@pytest.mark.parametrize("spec", MODEL_CASES)
def test_model_mean_and_cov(spec):
    model = spec.build()
    mean, cov = spec.moments()
    scale = 1.0 + np.abs(cov).max()
    np.testing.assert_allclose(model.mean, mean, rtol=EXACT_FLOAT64.rtol,
                               atol=EXACT_FLOAT64.atol * scale)
    np.testing.assert_allclose(model.cov, cov, rtol=EXACT_FLOAT64.rtol,
                               atol=EXACT_FLOAT64.rtol * scale)


@pytest.mark.parametrize("spec", MODEL_CASES)
@pytest.mark.parametrize("seed", [11])
def test_sample_moments(spec, seed):
    x = spec.build().sample(200_000, seed=seed)
    assert x.shape == (200_000, spec.dim)
    assert_moments_match(x, *spec.moments())


@pytest.mark.parametrize("spec", MODEL_CASES)
@pytest.mark.parametrize("process", PROCESSES)
def test_marginal_sample_moments(spec, process, exact_mv):
    t = 0.5
    x = spec.build().marginal(process, t).sample(100_000, seed=21)
    assert_moments_match(x, *spec.moments(*exact_mv(process, t)))


def test_sampling_is_reproducible():
    spec = MODEL_CASES[10].values[0]
    model = spec.build()
    np.testing.assert_array_equal(model.sample(100, seed=3), model.sample(100, seed=3))
    np.testing.assert_array_equal(model.sample(100, seed=3),
                                  model.sample(100, seed=np.random.default_rng(3)))
    assert not np.array_equal(model.sample(100, seed=3), model.sample(100, seed=4))
    assert model.sample(0, seed=0).shape == (0, 2)


def test_zero_weight_component_is_never_sampled():
    spec = next(c.values[0] for c in MODEL_CASES if c.id == "mix-zero-weight-d2")
    x, labels = spec.build().sample(50_000, seed=5, return_labels=True)
    assert not np.any(labels == 1)


# ---- marginal == law of X_t pushed through the transition kernel (Monte Carlo) ------------
def _mixture_cdf_1d(spec, m, v, x):
    """CDF of sum_k w_k N(m mu_k, m^2 s_k + v) in d = 1: the mixture-of-normal-cdfs formula."""
    w, mu, cov = spec.marginal_params(m, v)
    return sum(wk * stats.norm.cdf(x, loc=mk[0], scale=np.sqrt(ck[0, 0]))
               for wk, mk, ck in zip(w, mu, cov))


@pytest.mark.parametrize("spec", MODEL_CASES)
@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("t,seed", [(0.05, 31), (0.5, 32)])
def test_marginal_matches_monte_carlo_through_transition_kernel(spec, process, t, seed, exact_mv):
    n = 100_000
    model = spec.build()
    x0 = model.sample(n, seed=seed)
    xt = process.sample_transition(x0, t, seed=seed + 1000)
    m, v = exact_mv(process, t)
    p = model.marginal(process, t)
    assert_moments_match(xt, p.mean, p.cov)  # p.mean/p.cov checked against the closed form above
    assert_moments_match(xt, *spec.moments(m, v))
    if spec.dim == 1:
        res = stats.kstest(xt[:, 0], lambda u: _mixture_cdf_1d(spec, m, v, u))
        assert res.pvalue >= KS_ALPHA, res


@pytest.mark.parametrize("spec", D1_CASES)
@pytest.mark.parametrize("process", PROCESSES)
def test_mixture_cdf_formula_equals_quadrature_of_marginal_pdf(spec, process, exact_mv):
    """Ties the KS reference above to the library's density: int_{-oo}^x p_t == the formula."""
    t = 0.5
    m, v = exact_mv(process, t)
    p = spec.build().marginal(process, t)
    for x in (-2.0, 0.1, 1.7):
        val, err = integrate.quad(lambda u: float(p.pdf(np.array([u]))[0]), -np.inf, x,
                                  epsabs=1e-13, epsrel=1e-12, limit=200)
        ref = float(_mixture_cdf_1d(spec, m, v, np.array([x]))[0])
        assert abs(val - ref) <= 10 * err + QUADRATURE.atol, (x, val, ref, err)


# ---- t = 0, shapes, consistency -----------------------------------------------------------------
@pytest.mark.parametrize("spec", [c for c in MODEL_CASES if not c.values[0].empirical])
@pytest.mark.parametrize("process", PROCESSES)
def test_marginal_at_time_zero_is_the_model(spec, process):
    model = spec.build()
    p0 = model.marginal(process, 0.0)
    x = _points(spec, 1.0, 0.0)
    lp, s = model.logpdf_and_score(x)
    lp0, s0 = p0.logpdf_and_score(x)
    np.testing.assert_allclose(lp0, lp, rtol=EXACT_FLOAT64.rtol, atol=EXACT_FLOAT64.atol)
    np.testing.assert_allclose(s0, s, rtol=EXACT_FLOAT64.rtol, atol=EXACT_FLOAT64.atol)
    assert type(p0) is type(model)


@pytest.mark.parametrize("spec", [c for c in MODEL_CASES if c.values[0].empirical])
def test_empirical_marginal_family(spec):
    model = spec.build()
    p0 = model.marginal(VP(), 0.0)
    assert isinstance(p0, EmpiricalDistribution)
    np.testing.assert_array_equal(p0.points, spec.means)
    pt = model.marginal(VP(), 0.3)
    assert isinstance(pt, GaussianMixture) and pt.kind == "iso"
    m, v = VP().conditional(0.3)
    np.testing.assert_allclose(pt.means, m * spec.means, rtol=EXACT_FLOAT64.rtol, atol=0)
    np.testing.assert_allclose(pt.variances, np.full(len(spec.weights), v),
                               rtol=EXACT_FLOAT64.rtol, atol=0)


@pytest.mark.parametrize("spec", MODEL_CASES)
def test_pdf_logpdf_score_are_consistent(spec):
    p = _marginal(spec, VE(), 0.5)
    x = _points(spec, 1.0, 0.5)
    lp, s = p.logpdf_and_score(x)
    assert lp.shape == (len(x),) and s.shape == x.shape
    np.testing.assert_array_equal(p.logpdf(x), lp)
    np.testing.assert_array_equal(p.score(x), s)
    np.testing.assert_allclose(p.pdf(x), np.exp(lp), rtol=EXACT_FLOAT64.rtol, atol=0)
    lp_np, s_np = p.logpdf_and_score(x, impl="numpy")
    np.testing.assert_allclose(lp_np, lp, rtol=EXACT_FLOAT64.rtol, atol=EXACT_FLOAT64.atol)


@pytest.mark.parametrize("spec", D1_CASES)
def test_one_dimensional_input_shapes(spec):
    p = _marginal(spec, OU(), 0.5)
    x = np.array([-1.0, 0.0, 2.0])
    lp1, s1 = p.logpdf_and_score(x)
    lp2, s2 = p.logpdf_and_score(x[:, None])
    assert lp1.shape == (3,) and s1.shape == (3,) and s2.shape == (3, 1)
    np.testing.assert_array_equal(lp1, lp2)
    np.testing.assert_array_equal(s1, s2[:, 0])
    lp0, s0 = p.logpdf_and_score(2.0)
    assert np.ndim(lp0) == 0 and np.ndim(s0) == 0
    assert lp0 == lp1[2] and s0 == s1[2]


@pytest.mark.parametrize("spec", MODEL_CASES)
def test_empty_input(spec):
    p = _marginal(spec, OU(), 0.5)
    lp, s = p.logpdf_and_score(np.zeros((0, spec.dim)))
    assert lp.shape == (0,) and s.shape == (0, spec.dim)


def test_logsumexp_reference_sanity():
    """The scipy reference used above is itself right on a case computed by hand:
    0.5 N(0, 1) + 0.5 N(2, 1) at x = 1 has log p = log N(1; 0, 1) and score 0."""
    spec = _mix([0.5, 0.5], [[0.0], [2.0]], [1.0, 1.0], [[[1.0]], [[1.0]]])
    p = spec.build()
    lp, s = p.logpdf_and_score(np.array([[1.0]]))
    np.testing.assert_allclose(lp, -0.5 - 0.5 * np.log(2 * np.pi), rtol=EXACT_FLOAT64.rtol)
    np.testing.assert_allclose(s, 0.0, atol=EXACT_FLOAT64.atol)
    assert logsumexp([0.0, 0.0]) == np.log(2.0)


# ---- slow: high-power versions ------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("spec", [c for c in D1_CASES if c.id not in ("gauss-diag-d1",
                                                                      "gauss-full-d1")])
@pytest.mark.parametrize("process", PROCESSES)
def test_marginal_law_high_power_ks(spec, process, exact_mv):
    """4e6 draws pushed through the transition kernel vs the exact marginal CDF, at 4 times.
    KS with n = 4e6 resolves CDF errors of ~1e-3 (the default-run version: ~6e-3)."""
    model = spec.build()
    for j, t in enumerate((0.01, 0.1, 0.5, 2.0)):
        xt = process.sample_transition(model.sample(4_000_000, seed=50 + j), t, seed=60 + j)
        m, v = exact_mv(process, t)
        res = stats.kstest(xt[:, 0], lambda u: _mixture_cdf_1d(spec, m, v, u))
        assert res.pvalue >= KS_ALPHA, (t, res)
