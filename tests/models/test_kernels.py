"""Property tests on hypothesis-generated models (shipped strategies): numba kernel == numpy
reference formula == torch float64 == a slow scipy reference; score is the gradient of logpdf;
identities of the marginal family (t = 0, semigroup, canonical clock, iso == full)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sftheory import use_kernels
from sftheory.claims.checks.core_paths import term_scale
from sftheory.models import EmpiricalDistribution, Gaussian, GaussianMixture
from sftheory.processes import OU, VE
from sftheory.testing import assert_score_is_gradient, measure_backend_parity
import sftheory.testing.strategies as sst
from sftheory.testing.tolerances import EXACT_FLOAT64, KERNEL_PARITY

models = st.one_of(sst.gaussians(), sst.gaussian_mixtures(),
                   sst.empirical_distributions(n=(1, 12), min_separation=0.0))


def _density_model(model, process, t):
    """Empirical laws have a density only after diffusing."""
    if isinstance(model, EmpiricalDistribution) or t > 0:
        return model.marginal(process, t)
    return model


def _points(data, dim):
    return data.draw(sst.points_for(dim))


def _parity_close(a, b, tol):
    """|a - b| <= tol.rtol * max(|b|, 1): the floor-1 relative metric of measure_backend_parity."""
    a, b = np.asarray(a), np.asarray(b)
    assert np.all(np.abs(a - b) <= tol.rtol * np.maximum(np.abs(b), 1.0)), np.abs(a - b).max()


@given(models, sst.processes(), sst.diffusion_times(1e-3, 3.0), st.data())
def test_numba_numpy_torch_parity(model, process, t, data):
    p = _density_model(model, process, t)
    x = _points(data, p.dim)
    parity = measure_backend_parity(p, x)
    assert parity["numba_vs_numpy"] <= KERNEL_PARITY.rtol, parity
    if isinstance(parity["torch_vs_numpy"], float):
        assert parity["torch_vs_numpy"] <= KERNEL_PARITY.rtol, parity


@given(models, sst.processes(), sst.diffusion_times(1e-3, 3.0), st.data())
def test_use_kernels_context_selects_numpy_reference(model, process, t, data):
    p = _density_model(model, process, t)
    x = _points(data, p.dim)
    lp_ref, s_ref = p.logpdf_and_score(x, impl="numpy")
    with use_kernels("numpy"):
        lp, s = p.logpdf_and_score(x)
    np.testing.assert_array_equal(lp, lp_ref)
    np.testing.assert_array_equal(s, s_ref)


@given(mix=sst.gaussian_mixtures(), process=sst.processes(), t=sst.diffusion_times(1e-3, 3.0),
       data=st.data())
def test_kernel_matches_slow_scipy_reference(mix, process, t, data, mixture_ref):
    p = mix.marginal(process, t)
    x = _points(data, p.dim)
    lp_ref, s_ref = mixture_ref(p.weights, p.means, p.covs, x)
    lp, s = p.logpdf_and_score(x)
    # different algorithms (eigendecomposition + solve vs Cholesky whitening): rounding times
    # cond(Sigma_k) <= 1e2 (strategy bound), relative to the size of the terms
    tol = 1e2 * EXACT_FLOAT64.rtol
    np.testing.assert_allclose(lp, lp_ref, rtol=tol, atol=tol * (1 + np.abs(lp_ref).max()))
    np.testing.assert_allclose(s, s_ref, rtol=tol, atol=tol * (1 + np.abs(s_ref).max()))


@given(models, sst.processes(), sst.diffusion_times(1e-2, 3.0), st.data())
def test_score_is_gradient_property(model, process, t, data):
    p = _density_model(model, process, t)
    assert_score_is_gradient(p, _points(data, p.dim))


@given(st.one_of(sst.gaussians(), sst.gaussian_mixtures()), sst.processes(), st.data())
def test_marginal_at_zero_is_the_model(model, process, data):
    p0 = model.marginal(process, 0.0)
    x = _points(data, model.dim)
    lp, s = model.logpdf_and_score(x)
    lp0, s0 = p0.logpdf_and_score(x)
    np.testing.assert_allclose(lp0, lp, rtol=EXACT_FLOAT64.rtol, atol=EXACT_FLOAT64.atol)
    np.testing.assert_allclose(s0, s, rtol=EXACT_FLOAT64.rtol, atol=EXACT_FLOAT64.atol)
    np.testing.assert_allclose(p0.mean, model.mean, rtol=EXACT_FLOAT64.rtol,
                               atol=EXACT_FLOAT64.atol)
    np.testing.assert_allclose(p0.cov, model.cov, rtol=EXACT_FLOAT64.rtol, atol=EXACT_FLOAT64.atol)


@given(models, sst.processes(), sst.diffusion_times(1e-3, 3.0), st.data())
def test_marginal_on_canonical_clock(model, process, t, data):
    """p_t under the process == p_theta(t) under its canonical OU ([OS] App. B.2)."""
    p = model.marginal(process, t)
    q = model.marginal(process.canonical(), float(process.clock(t)))
    x = _points(data, model.dim)
    if t > 0:
        lp, lq = p.logpdf(x), q.logpdf(x)
        np.testing.assert_allclose(lp, lq, rtol=1e2 * EXACT_FLOAT64.rtol,
                                   atol=1e2 * EXACT_FLOAT64.rtol * (1 + np.abs(lq).max()))
    np.testing.assert_allclose(p.cov, q.cov, rtol=EXACT_FLOAT64.rtol,
                               atol=EXACT_FLOAT64.rtol * (1 + np.abs(q.cov).max()))


@given(models, st.sampled_from([OU(), OU(a=1.3, sigma=0.7), VE()]),
       sst.diffusion_times(1e-2, 2.0), sst.diffusion_times(1e-2, 2.0), st.data())
def test_semigroup_for_time_homogeneous_processes(model, process, s, t, data):
    """For OU and VE (time-homogeneous): (p_s)_t = p_{s+t}."""
    two_steps = model.marginal(process, s).marginal(process, t)
    one_step = model.marginal(process, s + t)
    x = _points(data, model.dim)
    lp2, s2 = two_steps.logpdf_and_score(x)
    lp1, s1 = one_step.logpdf_and_score(x)
    tol = 1e2 * EXACT_FLOAT64.rtol  # cond <= 1e2; exp(-a s) exp(-a t) vs exp(-a (s + t))
    np.testing.assert_allclose(lp2, lp1, rtol=tol, atol=tol * (1 + np.abs(lp1).max()))
    np.testing.assert_allclose(s2, s1, rtol=tol, atol=tol * (1 + np.abs(s1).max()))


@given(sst.point_clouds(n=(1, 6), dim=st.integers(1, 3)), st.lists(st.floats(0.1, 5.0),
       min_size=6, max_size=6), st.data())
def test_iso_kernel_equals_full_kernel(means, variances, data):
    k, d = means.shape
    w = np.full(k, 1.0 / k)
    var = np.array(variances[:k])
    iso = GaussianMixture(w, means, var)
    full = GaussianMixture(w, means, var[:, None, None] * np.eye(d)[None])
    diag = GaussianMixture(w, means, np.repeat(var[:, None], d, axis=1), covariance_type="diag")
    x = _points(data, d)
    lp_i, s_i = iso.logpdf_and_score(x)
    for other in (full, diag):
        lp_f, s_f = other.logpdf_and_score(x)
        np.testing.assert_allclose(lp_i, lp_f, rtol=EXACT_FLOAT64.rtol,
                                   atol=EXACT_FLOAT64.rtol * (1 + np.abs(lp_f).max()))
        np.testing.assert_allclose(s_i, s_f, rtol=EXACT_FLOAT64.rtol,
                                   atol=EXACT_FLOAT64.rtol * (1 + np.abs(s_f).max()))


@given(sst.gaussians(), st.data())
def test_one_component_mixture_is_gaussian(g, data):
    mix = GaussianMixture([1.0], g.mean[None], g.cov[None])
    x = _points(data, g.dim)
    lp_g, s_g = g.logpdf_and_score(x)
    lp_m, s_m = mix.logpdf_and_score(x)
    np.testing.assert_allclose(lp_m, lp_g, rtol=EXACT_FLOAT64.rtol,
                               atol=EXACT_FLOAT64.rtol * (1 + np.abs(lp_g).max()))
    np.testing.assert_allclose(s_m, s_g, rtol=EXACT_FLOAT64.rtol,
                               atol=EXACT_FLOAT64.rtol * (1 + np.abs(s_g).max()))


@given(sst.empirical_distributions(n=(1, 10)), sst.processes(), sst.diffusion_times(1e-3, 3.0),
       st.data())
def test_empirical_marginal_is_as_mixture(emp, process, t, data):
    m, v = process.conditional(t)
    scaled = EmpiricalDistribution(m * emp.points)
    x = _points(data, emp.dim)
    lp_ref, s_ref = scaled.as_mixture(v).logpdf_and_score(x)
    lp, s = emp.marginal(process, t).logpdf_and_score(x)
    np.testing.assert_allclose(lp, lp_ref, rtol=EXACT_FLOAT64.rtol,
                               atol=EXACT_FLOAT64.rtol * (1 + np.abs(lp_ref).max()))
    np.testing.assert_allclose(s, s_ref, rtol=EXACT_FLOAT64.rtol,
                               atol=EXACT_FLOAT64.rtol * (1 + np.abs(s_ref).max()))


@given(sst.gaussians(), st.data())
def test_gaussian_score_closed_form(g, data):
    """score(x) = -Sigma^{-1}(x - mu), by np.linalg.solve."""
    x = _points(data, g.dim)
    ref = -np.linalg.solve(g.cov, (x - g.mean).T).T
    tol = 1e2 * EXACT_FLOAT64.rtol  # cond(Sigma) <= 1e2
    np.testing.assert_allclose(g.score(x), ref, rtol=tol, atol=tol * (1 + np.abs(ref).max()))


def test_parity_helper_is_sensitive():
    """The floor-1 relative comparison used above does flag a 1e-10 relative error."""
    with pytest.raises(AssertionError):
        _parity_close(np.array([1.0 + 1e-10]), np.array([1.0]), KERNEL_PARITY)
    _parity_close(np.array([1.0 + 1e-13]), np.array([1.0]), KERNEL_PARITY)


@pytest.mark.parametrize("model", [Gaussian([0.0, 1.0], [[2.0, 0.5], [0.5, 1.0]]),
                                   GaussianMixture([0.2, 0.8], [[0.0, 0.0], [3.0, 1.0]],
                                                   [0.5, 2.0])],
                         ids=["gauss", "mix-iso"])
def test_many_points_parallel_path_matches_reference(model):
    """Enough points for the kernel's parallel path (N*K*d >= 2^16); compared with the numpy
    reference formula."""
    x = np.random.default_rng(0).normal(size=(40_000, 2)) * 3
    lp_nb, s_nb = model.logpdf_and_score(x, impl="numba")
    lp_np, s_np = model.logpdf_and_score(x, impl="numpy")
    _parity_close(lp_nb, lp_np, KERNEL_PARITY)
    _parity_close(s_nb, s_np, KERNEL_PARITY)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(models, sst.processes(), sst.diffusion_times(1e-4, 5.0), st.data())
def test_numba_numpy_torch_parity_thorough(model, process, t, data):
    """The parity property with 1000 examples and a wider time range."""
    p = _density_model(model, process, t)
    parity = measure_backend_parity(p, _points(data, p.dim))
    assert parity["numba_vs_numpy"] <= KERNEL_PARITY.rtol, parity
    if isinstance(parity["torch_vs_numpy"], float):
        assert parity["torch_vs_numpy"] <= KERNEL_PARITY.rtol, parity


def test_parity_two_competing_atoms_at_small_time():
    """Regression example from hypothesis: x = 1 is equidistant (1.62) from both atoms."""
    y = np.array([[2.6218974093311678], [-0.6218684856310022]])
    p = EmpiricalDistribution(y).marginal(OU(a=1.0, sigma=0.5), 1e-4)
    parity = measure_backend_parity(p, np.array([[1.0]]))
    assert parity["numba_vs_numpy"] <= KERNEL_PARITY.rtol, parity


@given(models, sst.processes(), st.data())
def test_per_point_times_parity_numba_numpy_torch(model, process, data):
    """One time per point: kernel == reference formula == torch float64, score and posterior mean
    (tolerance relative to the size of the terms summed, as rounding scales with it)."""
    path = model.path(process)
    x = _points(data, model.dim)
    ts = np.array([data.draw(sst.diffusion_times(1e-3, 3.0)) for _ in range(len(x))])
    scale = 1.0 + term_scale(model, process, x, ts)[:, None]
    out = {}
    for impl in ("numba", "numpy"):
        out[impl] = (*path.logpdf_and_score(x, ts, impl=impl), path.posterior_mean(x, ts, impl=impl))

    def close(a, b, vec):
        a, b = np.asarray(a), np.asarray(b)
        sc = np.maximum(np.abs(b), scale if vec else 1.0)
        assert np.all(np.abs(a - b) <= KERNEL_PARITY.rtol * sc), np.max(np.abs(a - b) / sc)

    for i, (a, b) in enumerate(zip(out["numba"], out["numpy"])):
        close(a, b, i > 0)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is installed in CI
        return
    xt, tt = torch.from_numpy(x), torch.from_numpy(ts)
    got = (*path.logpdf_and_score(xt, tt), path.posterior_mean(xt, tt))
    for i, (a, b) in enumerate(zip(got, out["numpy"])):
        close(a.numpy(), b, i > 0)
