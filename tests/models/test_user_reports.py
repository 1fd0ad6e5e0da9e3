"""What a new user broke (issue 6, section 3): each report has a test that failed before the fix."""
from __future__ import annotations

import numpy as np
import pytest

from sftheory import use_kernels
from sftheory.models import EmpiricalDistribution, Gaussian, GaussianMixture
from sftheory.processes import OU, VE, VP
from sftheory.testing.random import random_spd
from sftheory.testing.tolerances import EXACT_FLOAT64


# ---- models keep references to the caller's arrays --------------------------------------------
def test_changing_the_callers_arrays_does_not_change_the_law():
    mean, cov = np.array([0.0, 1.0]), np.array([[1.0, 0.2], [0.2, 2.0]])
    g = Gaussian(mean, cov)
    x = np.array([[0.3, 0.4]])
    lp = g.logpdf(x)
    mean[0], cov[0, 0] = 5.0, 100.0
    np.testing.assert_array_equal(g.mean, [0.0, 1.0])
    np.testing.assert_array_equal(g.cov, [[1.0, 0.2], [0.2, 2.0]])
    np.testing.assert_array_equal(g.logpdf(x), lp)
    w, mus, covs = np.array([0.5, 0.5]), np.zeros((2, 2)), np.ones(2)
    mix = GaussianMixture(w, mus, covs)
    w[0], mus[0, 0], covs[1] = 0.9, 3.0, 7.0
    np.testing.assert_array_equal(mix.weights, [0.5, 0.5])
    np.testing.assert_array_equal(mix.means, np.zeros((2, 2)))
    np.testing.assert_array_equal(mix.variances, [1.0, 1.0])
    pts = np.array([[0.0, 1.0], [2.0, 3.0]])
    emp = EmpiricalDistribution(pts)
    pts[0, 0] = 9.0
    assert emp.points[0, 0] == 0.0
    with pytest.raises(ValueError, match="read-only"):
        emp.points[0, 0] = 1.0
    for arr in (g._mean, g._cov, mix._weights, mix._means):
        assert not arr.flags.writeable


def test_read_only_inputs_compile_no_second_kernel():
    from sftheory._kernels import mixture as kern

    mix = GaussianMixture([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], [np.eye(2), 2 * np.eye(2)])
    x = np.random.default_rng(0).normal(size=(4, 2))
    with use_kernels("numba"):
        mix.score(x)
        mix.path(VP()).score(x, np.linspace(0.1, 1, 4))
        x.flags.writeable = False
        mix.score(x)
        EmpiricalDistribution(x).path(VE()).score(x, 0.1)
    sigs = [str(s) for k in (kern.mixture_full, kern.mixture_iso, kern.mixture_full_serial,
                             kern.mixture_iso_serial) for s in k.signatures]
    assert sigs and not any("readonly" in s for s in sigs), sigs


# ---- overflow to NaN --------------------------------------------------------------------------
@pytest.mark.parametrize("impl", ["numba", "numpy"])
def test_far_points_give_exact_scores_not_nan(impl):
    g = Gaussian([0.0], 1.0)
    with use_kernels(impl):
        lp, s = g.logpdf_and_score(np.array([1e155, -1e155]))
    np.testing.assert_array_equal(s, [-1e155, 1e155])
    np.testing.assert_array_equal(lp, [-np.inf, -np.inf])
    # full covariance, two components: the nearest (in Mahalanobis distance) decides the score
    mix = GaussianMixture([0.5, 0.5], [[0.0, 0.0], [1.0, 0.0]], [np.eye(2), 4 * np.eye(2)])
    x = np.array([[1e160, 0.0]])
    with use_kernels(impl):
        lp, s = mix.logpdf_and_score(x)
    np.testing.assert_allclose(s, -(x - [1.0, 0.0]) / 4.0, rtol=EXACT_FLOAT64.rtol)
    assert lp[0] == -np.inf


@pytest.mark.parametrize("impl", ["numba", "numpy"])
def test_float32_empirical_score_at_tiny_time_fits(impl):
    """Empirical law at t = 1e-10, x = 1e15 in float32: the true score -(x - y)/t ~ -1e25 fits."""
    y = np.array([[0.0], [1.0]])
    x = np.array([[1e15]], dtype=np.float32)
    with use_kernels(impl):
        s = EmpiricalDistribution(y).path(VE()).score(x, 1e-10)
    assert s.dtype == np.float32 and np.isfinite(s).all()
    np.testing.assert_allclose(s, -(np.float64(x) - 1.0) / 1e-10, rtol=1e-6)


def test_torch_float32_far_point_is_finite():
    torch = pytest.importorskip("torch")
    mix = GaussianMixture([0.3, 0.7], [[0.0, 0.0], [1.0, 1.0]], [1.0, 2.0])
    x = torch.tensor([[1e20, -1e20]], dtype=torch.float32)
    lp, s = mix.logpdf_and_score(x)
    assert torch.isfinite(s).all() and lp.item() == -np.inf
    np.testing.assert_allclose(s.numpy(), [[-1e20 / 2.0, 1e20 / 2.0]], rtol=1e-6)


@pytest.mark.parametrize("impl", ["numba", "numpy"])
def test_zero_weight_component_never_makes_nan(impl):
    mix = GaussianMixture([0.0, 1.0], [[1e3, 0.0], [0.0, 0.0]],
                          [[[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.5], [0.5, 1.0]]])
    x = np.array([[1e155, 3.0], [0.5, -0.5], [-1e300, 0.0]])
    with use_kernels(impl):
        lp, s = mix.logpdf_and_score(x)
        post = mix.path(OU()).posterior_mean(x, 0.5)
    assert np.all(np.isfinite(s)) and np.all(np.isfinite(post)) and not np.any(np.isnan(lp))
    only = Gaussian([0.0, 0.0], [[2.0, 0.5], [0.5, 1.0]])
    np.testing.assert_allclose(mix.logpdf(x[1:2]), only.logpdf(x[1:2]), rtol=EXACT_FLOAT64.rtol)


# ---- batching ------------------------------------------------------------------------------------
def test_many_full_components_are_factorized_once(monkeypatch):
    """K = 1000, d = 5: one batched eigendecomposition at construction; marginals and paths at
    new times factorize nothing (every LAPACK entry point is disabled after construction)."""
    rng = np.random.default_rng(0)
    k, d = 1000, 5
    covs = np.stack([random_spd(rng, d) for _ in range(k)])
    mix = GaussianMixture(np.full(k, 1.0 / k), rng.normal(size=(k, d)), covs)

    def forbidden(*a, **kw):
        raise AssertionError("a factorization at evaluation time")

    for name in ("eigh", "cholesky", "inv", "solve", "eigvalsh"):
        monkeypatch.setattr(np.linalg, name, forbidden)
    x = rng.normal(size=(3, d))
    path = mix.path(VP())
    s1 = path.score(x, np.array([0.1, 0.5, 0.9]))
    pt = mix.marginal(VP(), 0.5)
    np.testing.assert_allclose(pt.score(x[1:2]), s1[1:2], rtol=1e-12, atol=1e-12)
    monkeypatch.undo()
    # independent route: scipy at one point
    from scipy.stats import multivariate_normal

    m, v = VP().conditional(0.5)
    dens = [multivariate_normal(m * mu, m * m * c + v * np.eye(d)) for mu, c in zip(mix.means, covs)]
    lp = np.log(np.mean([q.pdf(x[1]) for q in dens]))
    np.testing.assert_allclose(pt.logpdf(x[1:2]), [lp], rtol=1e-11)


# ---- clear messages --------------------------------------------------------------------------
@pytest.mark.parametrize("factory,match", [
    (lambda: OU(a=None), "a must be a finite number > 0, got None"),
    (lambda: OU(sigma="1"), "sigma must be"),
    (lambda: VP(beta_max=None), "beta_max must be"),
    (lambda: EmpiricalDistribution([[0.0, 1.0], [2.0]]), "points must be a rectangular"),
    (lambda: GaussianMixture([0.5, 0.5], [[0.0, 1.0], [2.0]], [1.0, 1.0]), "means must be a rect"),
    (lambda: Gaussian([0.0, 0.0], [[1.0, 0.0], [0.0]]), "cov must be a rectangular"),
])
def test_bad_arguments_are_named(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


# ---- found by review of the rewrite ---------------------------------------------------------
@pytest.mark.parametrize("impl", ["numba", "numpy"])
def test_extreme_variances_keep_their_log_determinant(impl):
    """Variances of 1e-200 (d = 2): the product of the variances underflows; the log-determinant
    must not. log N(0; 0, 1e-200 I) = -log(2 pi) + 200 log(10)."""
    with use_kernels(impl):
        lp, s = Gaussian([0.0, 0.0], [1e-200, 1e-200]).logpdf_and_score(np.zeros((1, 2)))
        lp_big = Gaussian([0.0, 0.0], [[1.0, 0.3], [0.3, 2.0]]).path(VE()).logpdf(np.zeros((1, 2)), 1e200)
        # one time per point: the kernel's linear-scale determinant falls back to logs here
        lp_pp = Gaussian([0.0, 0.0], [[1.0, 0.3], [0.3, 2.0]]).path(VE()).logpdf(
            np.zeros((3, 2)), np.array([1e200, 1.0, 1e-200]))
    np.testing.assert_allclose(lp, [-np.log(2 * np.pi) + 200 * np.log(10.0)], rtol=1e-14)
    c = np.array([[1.0, 0.3], [0.3, 2.0]])
    ref = [-np.log(2 * np.pi) - 0.5 * np.linalg.slogdet(c + t * np.eye(2))[1] for t in (1.0,)]
    np.testing.assert_allclose(lp_pp, [-np.log(2 * np.pi) - 200 * np.log(10.0), ref[0],
                                       -np.log(2 * np.pi) - 0.5 * np.log(np.linalg.det(c))],
                               rtol=1e-12)
    np.testing.assert_array_equal(s, [[0.0, 0.0]])
    np.testing.assert_allclose(lp_big, [-np.log(2 * np.pi) - 200 * np.log(10.0)], rtol=1e-12)


def test_float32_weights_from_a_softmax_are_on_the_simplex():
    w = np.exp(np.linspace(-1, 1, 7)).astype(np.float32)
    w = w / w.sum()
    assert abs(float(w.sum(dtype=np.float64)) - 1.0) > 1e-9  # float32 rounding: beyond 1e-9
    mix = GaussianMixture(w, np.zeros((7, 2)), np.ones(7))
    np.testing.assert_allclose(mix.weights.sum(), 1.0, rtol=1e-15)
    with pytest.raises(ValueError, match="sum to one"):
        GaussianMixture(np.full(7, 0.15), np.zeros((7, 2)), np.ones(7))


def test_asymmetry_is_judged_per_matrix():
    covs = np.array([1e6 * np.eye(2), [[1e-3, 5e-5], [0.0, 1e-3]]])
    with pytest.raises(ValueError, match="not symmetric"):
        GaussianMixture([0.5, 0.5], [[0.0, 0.0], [100.0, 100.0]], covs)


@pytest.mark.parametrize("impl", ["numba", "numpy"])
def test_zero_responsibility_times_overflow_is_zero(impl):
    mix = GaussianMixture([0.5, 0.5], [[0.0, 0.0], [0.0, 0.0]], [1.0, 1e-300])
    with use_kernels(impl):
        s = mix.score(np.array([[1e10, 0.0]]))
        _, s2 = mix.logpdf_and_score(np.array([[1e155, 0.0], [0.0, 0.0]]))  # overflow row + row at a mean
    np.testing.assert_array_equal(s, [[-1e10, 0.0]])
    assert np.all(np.isfinite(s2))


def test_posterior_mean_at_time_zero_for_every_kind_of_zero():
    path = EmpiricalDistribution([[-1.0], [1.0]]).path(VE())
    x = np.array([0.3])
    zeros = [0, 0.0, np.float32(0), np.array(0.0)]
    try:
        import torch

        zeros.append(torch.tensor(0.0, dtype=torch.float64))
    except ImportError:  # pragma: no cover
        pass
    for z in zeros:
        np.testing.assert_array_equal(path.posterior_mean(x, z), x)
    # per point: t = 0 keeps x, t = 1 gives tanh(x / t) ([SM] eq. (6))
    np.testing.assert_allclose(path.posterior_mean(np.array([0.3, 0.5]), np.array([0.0, 1.0])),
                               [0.3, np.tanh(0.5)], rtol=EXACT_FLOAT64.rtol)
    assert path.score(np.zeros((0, 1)), np.zeros(0)).shape == (0, 1)


def test_bad_inputs_found_by_review():
    from sftheory.fields import as_field

    with pytest.raises(ValueError, match="no time argument"):
        as_field(Gaussian([0.0, 0.0], 1.0))
    with pytest.raises(ValueError, match="fn\\(x, t\\)"):
        as_field(lambda x: x, dim=2)
    with pytest.raises(ValueError, match="dtype float32"):
        as_field(lambda x, t: x.astype(np.float32), dim=2)(np.zeros((2, 2)), 0.1)
    with pytest.raises(ValueError, match="returned a list"):
        as_field(lambda x, t: x.tolist(), dim=2)(np.zeros((2, 2)), 0.1)
    with pytest.raises(ValueError, match=r"shape \(N, d\)"):
        VP().drift(np.ones(3), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="NaN"):
        VP().drift(np.array([[np.nan, 0.0]]), 0.1)
    with pytest.raises(ValueError, match="seed must be a non-negative"):
        Gaussian([0.0], 1.0).sample(2, seed=-1)
    with pytest.raises(ValueError, match="at least one coordinate"):
        GaussianMixture([1.0], np.zeros((1, 0)), np.ones(1))
    with pytest.raises(ValueError, match="a must be a finite number"):
        OU(a=np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="variance must be"):
        EmpiricalDistribution([[0.0]]).as_mixture(np.array([1.0, 2.0]))


@pytest.mark.parametrize("impl", ["numba", "numpy"])
def test_overflow_rows_share_ties_and_responsibilities_stay_finite(impl):
    """|x| = 1e155: equally distant components (in float64) share the limit; the kernel and the
    reference agree, and responsibilities follow the same rule."""
    emp = EmpiricalDistribution([[-1.0], [1.0]]).path(VE())
    with use_kernels(impl):
        post = emp.posterior_mean(np.array([1e155]), 1.0)
        s = GaussianMixture([0.5, 0.5], [[0.0, -1.0], [0.0, 1.0]],
                            [np.eye(2), np.eye(2)]).score(np.array([[1e155, 0.0]]))
    np.testing.assert_array_equal(post, [0.0])  # the two atoms tie at this |x|: average
    np.testing.assert_array_equal(s, [[-1e155, 0.0]])
    mix = GaussianMixture([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], [1.0, 2.0])
    r = mix.responsibilities(np.array([[1e155, 0.0], [0.5, 0.5]]))
    np.testing.assert_array_equal(r[0], [0.0, 1.0])
    np.testing.assert_allclose(r.sum(1), 1.0, rtol=1e-15)
