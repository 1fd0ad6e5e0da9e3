"""posterior_mean(x) = E[X_0 | X_t = x] (Tweedie) vs the direct conditioning formulas."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import softmax
from scipy.stats import multivariate_normal

from sftheory.models import EmpiricalDistribution, Gaussian, GaussianMixture
from sftheory.processes import OU, VE, VP
import sftheory.testing.strategies as sst
from sftheory.testing.tolerances import EXACT_FLOAT64

PROCESSES = [pytest.param(OU(), id="OU"), pytest.param(VP(), id="VP"),
             pytest.param(VE(), id="VE"), pytest.param(VE(sigma=25.0), id="VE25")]
# up to VP t = 3 (m = 3e-20), where Tweedie's (x + v score) / m would cancel catastrophically
TIMES = [1e-6, 0.05, 0.5, 1.0, 3.0]


def gaussian_posterior_mean(mu, cov, m, v, x):
    """E[X0 | Xt = x] = mu + m Sigma (m^2 Sigma + v I)^{-1} (x - m mu) (Gaussian conditioning)."""
    d = len(mu)
    gain = m * cov @ np.linalg.inv(m * m * cov + v * np.eye(d))
    return mu + (x - m * mu) @ gain.T


def mixture_posterior_mean(w, means, covs, m, v, x):
    """sum_k P(k | x) E[X0 | Xt = x, k], with P(k | x) from scipy's component densities."""
    d = means.shape[1]
    logc = np.stack([np.log(wk) + multivariate_normal(m * mk, m * m * ck + v * np.eye(d)).logpdf(x)
                     for wk, mk, ck in zip(w, means, covs)], axis=-1).reshape(len(x), -1)
    r = softmax(logc, axis=1)
    comp = np.stack([gaussian_posterior_mean(mk, ck, m, v, x) for mk, ck in zip(means, covs)], 1)
    return np.einsum("nk,nkd->nd", r, comp)


def empirical_posterior_mean(y, m, v, x):
    """[SM] eq. (6): sum_i softmax_i(-|x - m y_i|^2 / 2v) y_i."""
    d2 = ((x[:, None, :] - m * y[None]) ** 2).sum(-1)
    return softmax(-d2 / (2 * v), axis=1) @ y


def _tol(ref, x):
    """Rounding of the conditioning formula: eps times the size of the prior means and of x."""
    return dict(rtol=EXACT_FLOAT64.rtol,
                atol=EXACT_FLOAT64.rtol * (1 + np.abs(ref).max() + np.abs(x).max()))


_COV = np.array([[1.0, 0.6], [0.6, 2.0]])


@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("t", TIMES)
@pytest.mark.parametrize("cov", [0.7, [0.5, 2.0], _COV], ids=["iso", "diag", "full"])
def test_gaussian_posterior_mean_is_gaussian_conditioning(process, t, cov, exact_mv):
    mu = np.array([1.0, -0.5])
    g = Gaussian(mu, cov)
    m, v = exact_mv(process, t)
    x = np.random.default_rng(0).normal(size=(20, 2)) * 3.0
    ref = gaussian_posterior_mean(mu, g.cov, m, v, x)
    np.testing.assert_allclose(g.path(process).posterior_mean(x, t), ref, **_tol(ref, x))


@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("t", TIMES)
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_empirical_posterior_mean_is_softmax_average(process, t, dim, exact_mv):
    rng = np.random.default_rng(dim)
    y = rng.uniform(-2, 2, size=(9, dim))
    m, v = exact_mv(process, t)
    # points near the (scaled) training set and in between
    x = m * y[rng.integers(0, 9, 15)] + np.sqrt(v) * rng.normal(size=(15, dim))
    ref = empirical_posterior_mean(y, m, v, x)
    out = EmpiricalDistribution(y).path(process).posterior_mean(x, t)
    np.testing.assert_allclose(out, ref, **_tol(ref, x))


@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("t", TIMES)
def test_mixture_posterior_mean(process, t, exact_mv):
    w = np.array([0.3, 0.7])
    means = np.array([[-1.0, 0.5], [1.5, -0.5]])
    covs = np.stack([_COV, np.diag([0.3, 0.8])])
    mix = GaussianMixture(w, means, covs)
    m, v = exact_mv(process, t)
    x = np.random.default_rng(1).normal(size=(20, 2)) * 2.0
    ref = mixture_posterior_mean(w, means, covs, m, v, x)
    np.testing.assert_allclose(mix.path(process).posterior_mean(x, t), ref, **_tol(ref, x))


@pytest.mark.parametrize("model", [Gaussian([1.0, 2.0], 0.5),
                                   GaussianMixture([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]],
                                                   [1.0, 2.0]),
                                   EmpiricalDistribution([[0.0, 1.0], [2.0, -1.0]])],
                         ids=["gauss", "mix", "emp"])
@pytest.mark.parametrize("process", PROCESSES)
def test_posterior_mean_at_time_zero_is_identity(model, process):
    x = np.array([[0.3, -0.7], [5.0, 2.0]])
    np.testing.assert_array_equal(model.path(process).posterior_mean(x, 0.0), x)


def test_posterior_mean_1d_shapes():
    p = Gaussian([0.0], 1.0).path(VE())
    x = np.array([1.0, 2.0])
    out = p.posterior_mean(x, 1.0)
    assert out.shape == (2,)
    np.testing.assert_allclose(out, x / 2.0, rtol=EXACT_FLOAT64.rtol)  # E = x * 1 / (1 + 1)
    assert p.posterior_mean(x[:, None], 1.0).shape == (2, 1)
    # one time per point: E = x / (1 + t) for N(0, 1) under dX = dW
    np.testing.assert_allclose(p.posterior_mean(x, np.array([1.0, 3.0])), x / np.array([2.0, 4.0]),
                               rtol=EXACT_FLOAT64.rtol)


def test_marginals_have_no_posterior_mean_the_path_does():
    """One mechanism: E[X_0 | X_t] lives on the path, which knows both the law and the process."""
    assert not hasattr(Gaussian([0.0], 1.0).marginal(VE(), 1.0), "posterior_mean")


@given(sst.gaussians(dim=2), sst.processes(), sst.diffusion_times(1e-3, 1.0))
def test_gaussian_posterior_mean_property(g, process, t):
    m, v = process.conditional(t)
    x = np.array([[0.0, 0.0], [1.0, -2.0], [3.0, 3.0]])
    ref = gaussian_posterior_mean(g.mean, g.cov, m, v, x)
    # the strategies bound cond(cov) <= 1e2, which multiplies the rounding of the solve
    tol = 1e2 * EXACT_FLOAT64.rtol
    np.testing.assert_allclose(g.path(process).posterior_mean(x, t), ref, rtol=tol,
                               atol=tol * (1 + np.abs(ref).max() + np.abs(x).max()))


@given(sst.empirical_distributions(n=(1, 12), dim=st.integers(1, 3)), sst.processes(),
       sst.diffusion_times(1e-3, 1.0))
def test_empirical_posterior_mean_property(emp, process, t):
    m, v = process.conditional(t)
    y = emp.points
    x = m * y + np.sqrt(v) * 0.5
    ref = empirical_posterior_mean(y, m, v, x)
    np.testing.assert_allclose(emp.path(process).posterior_mean(x, t), ref, **_tol(ref, x))


@pytest.mark.parametrize("process,t", [(VP(), 1.5), (VP(), 3.0), (OU(), 40.0), (OU(), 80.0)],
                         ids=["VP-1.5", "VP-3", "OU-40", "OU-80"])
@pytest.mark.parametrize("model", [Gaussian([1.0, -0.5], _COV),
                                   GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.5, -0.5]],
                                                   [_COV, np.diag([0.3, 0.8])]),
                                   EmpiricalDistribution([[0.0, 1.0], [2.0, -1.0], [1.0, 1.0]])],
                         ids=["gauss", "mix", "emp"])
def test_posterior_mean_survives_small_mean_coefficient(model, process, t, exact_mv):
    """m(t) = 1e-5 .. 1e-18: E[X0 | Xt = x] tends to the prior mean; Tweedie's (x + v score)/m
    would return garbage of size eps |x| / m here. The exact answer is well conditioned:
    |d E / d x| = m |Sigma0| / v << 1."""
    m, v = exact_mv(process, t)
    x = np.array([[0.3, 0.2], [2.0, -1.0], [-3.0, 4.0]])
    if isinstance(model, EmpiricalDistribution):
        ref = empirical_posterior_mean(model.points, m, v, x)
    elif isinstance(model, Gaussian):
        ref = gaussian_posterior_mean(model.mean, model.cov, m, v, x)
    else:
        ref = mixture_posterior_mean(model.weights, model.means, model.covs, m, v, x)
    out = model.path(process).posterior_mean(x, t)
    np.testing.assert_allclose(out, ref, **_tol(ref, x))
    # |E - mean| = O(m |x|) plus rounding of the responsibility-weighted sum
    np.testing.assert_allclose(out, np.broadcast_to(model.mean, x.shape), rtol=EXACT_FLOAT64.rtol,
                               atol=1e3 * m * (1 + np.abs(x).max()) + EXACT_FLOAT64.atol)


@pytest.mark.parametrize("impl", ["numba", "numpy"])
def test_posterior_mean_impls_agree(impl):
    mix = GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.5, -0.5]], [_COV, np.diag([0.3, 0.8])])
    p = mix.path(VP())
    x = np.random.default_rng(3).normal(size=(50, 2)) * 2
    ref = mixture_posterior_mean(mix.weights, mix.means, mix.covs, *VP().conditional(0.4), x)
    np.testing.assert_allclose(p.posterior_mean(x, 0.4, impl=impl), ref, **_tol(ref, x))
