"""Bad inputs raise ValueError at the boundary, with a message that says what is wrong."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from sftheory import use_kernels
from sftheory.models import EmpiricalDistribution, Gaussian, GaussianMixture
from sftheory.processes import OU, VE, VP
from sftheory.testing.tolerances import EXACT_FLOAT64

NAN, INF = float("nan"), float("inf")

MODELS_2D = [
    pytest.param(lambda: Gaussian([0.0, 1.0], [[1.0, 0.2], [0.2, 0.5]]), id="gauss"),
    pytest.param(lambda: GaussianMixture([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], [1.0, 2.0]),
                 id="mix-iso"),
    pytest.param(lambda: GaussianMixture([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]],
                                         [np.eye(2), 2 * np.eye(2)]), id="mix-full"),
    pytest.param(lambda: EmpiricalDistribution([[0.0, 0.0], [1.0, 1.0]]).marginal(VE(), 0.5),
                 id="emp-marginal"),
]


# ---- points ------------------------------------------------------------------------------------
@pytest.mark.parametrize("factory", MODELS_2D)
@pytest.mark.parametrize("method", ["logpdf", "score", "pdf", "logpdf_and_score"])
@pytest.mark.parametrize("x,match", [
    (np.zeros((3, 3)), r"expected \(N, 2\)"),
    (np.zeros(3), "1-D array"),
    (np.zeros((2, 2, 2)), r"must have shape \(N, 2\)"),
    (np.float64(1.0), "scalar x"),
    (np.array([[0.0, NAN]]), "NaN or infinite"),
    (np.array([[INF, 0.0]]), "NaN or infinite"),
    (np.array([[-INF, 0.0]]), "NaN or infinite"),
    (np.array([["a", "b"]]), "float32 or float64"),
    (np.array([[1 + 1j, 0]]), "float32 or float64"),
    (np.zeros((2, 2), dtype=np.float16), "float32 or float64"),
], ids=["too-many-columns", "1d-for-d2", "3d", "scalar-for-d2", "nan", "inf", "-inf", "str",
        "complex", "float16"])
def test_bad_points_raise(factory, method, x, match):
    model = factory()
    with pytest.raises(ValueError, match=match):
        getattr(model, method)(x)


@pytest.mark.parametrize("factory", MODELS_2D)
def test_bad_points_posterior_mean(factory):
    p = factory().path(OU())
    with pytest.raises(ValueError, match=r"expected \(N, 2\)"):
        p.posterior_mean(np.zeros((3, 1)), 0.5)
    with pytest.raises(ValueError, match="NaN or infinite"):
        p.posterior_mean(np.array([[NAN, 0.0]]), 0.5)


def test_1d_model_rejects_two_columns():
    with pytest.raises(ValueError, match=r"expected \(N, 1\)"):
        Gaussian([0.0], 1.0).logpdf(np.zeros((4, 2)))


@pytest.mark.parametrize("factory", MODELS_2D)
def test_integer_points_are_accepted(factory):
    model = factory()
    xi = np.array([[1, 2], [0, -3]])
    lp_i, s_i = model.logpdf_and_score(xi)
    lp_f, s_f = model.logpdf_and_score(xi.astype(np.float64))
    assert lp_i.dtype == np.float64
    np.testing.assert_array_equal(lp_i, lp_f)
    np.testing.assert_array_equal(s_i, s_f)
    lp_l, _ = model.logpdf_and_score([[1, 2], [0, -3]])  # nested lists too
    np.testing.assert_array_equal(lp_l, lp_f)


def test_integer_1d_points_are_accepted():
    g = Gaussian([0.0], 1.0)
    np.testing.assert_allclose(g.logpdf(np.array([0, 1])), [-0.5 * np.log(2 * np.pi),
                                                            -0.5 * np.log(2 * np.pi) - 0.5],
                               rtol=EXACT_FLOAT64.rtol)


# ---- Gaussian parameters ---------------------------------------------------------------------
@pytest.mark.parametrize("mean,cov,match", [
    ([0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]], "not positive definite"),
    ([0.0, 0.0], [[1.0, 0.0], [0.0, 0.0]], "not positive definite"),
    ([0.0, 0.0], [[1.0, 0.5], [0.4, 1.0]], "not symmetric"),
    ([0.0, 0.0], -1.0, "> 0"),
    ([0.0, 0.0], 0.0, "> 0"),
    ([0.0, 0.0], [1.0, -2.0], "> 0"),
    ([0.0, 0.0], [1.0, 2.0, 3.0], "length 3, expected 2"),
    ([0.0, 0.0], np.eye(3), r"shape \(3, 3\), expected \(2, 2\)"),
    ([0.0, 0.0], np.ones((2, 2, 2)), "dimension"),
    ([0.0, NAN], 1.0, "NaN or infinite"),
    ([0.0, INF], 1.0, "NaN or infinite"),
    ([0.0, 0.0], [[1.0, NAN], [NAN, 1.0]], "NaN or infinite"),
    ([0.0, 0.0], INF, "NaN or infinite"),
    ([], 1.0, "at least one"),
    (np.zeros((2, 2)), 1.0, "dimension"),
    (["a", "b"], 1.0, "numeric"),
], ids=["indefinite", "singular", "non-symmetric", "neg-scalar", "zero-scalar", "neg-diag",
        "diag-len", "full-shape", "3d-cov", "nan-mean", "inf-mean", "nan-cov", "inf-cov",
        "empty-mean", "2d-mean", "str-mean"])
def test_bad_gaussian_parameters(mean, cov, match):
    with pytest.raises(ValueError, match=match):
        Gaussian(mean, cov)


# ---- mixture parameters ----------------------------------------------------------------------
_M = [[0.0, 0.0], [1.0, 1.0]]


@pytest.mark.parametrize("weights,means,covs,match", [
    ([1.2, -0.2], _M, [1.0, 1.0], "non-negative"),
    ([0.5, 0.6], _M, [1.0, 1.0], "sum to one"),
    ([0.2, 0.2], _M, [1.0, 1.0], "sum to one"),
    ([1.0], _M, [1.0, 1.0], "weights has 1 entries but means has 2"),
    ([], np.zeros((0, 2)), np.zeros(0), "empty"),
    ([NAN, 0.5], _M, [1.0, 1.0], "NaN or infinite"),
    ([0.5, 0.5], [[0.0, NAN], [1.0, 1.0]], [1.0, 1.0], "NaN or infinite"),
    ([0.5, 0.5], _M, [1.0, INF], "NaN or infinite"),
    ([0.5, 0.5], _M, [1.0, 0.0], "> 0"),
    ([0.5, 0.5], _M, [1.0, -1.0], "> 0"),
    ([0.5, 0.5], _M, [[1.0, 1.0], [1.0, 0.0]], "ambiguous"),
    ([0.5, 0.5], _M, [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]], r"\(2, 2\) \(diagonal\)"),
    ([0.5, 0.5], _M, [1.0, 1.0, 1.0], r"must have shape \(2,\)"),
    ([0.5, 0.5], _M, [np.eye(2), [[1.0, 2.0], [2.0, 1.0]]], "not positive definite"),
    ([0.5, 0.5], _M, [np.eye(2), [[1.0, 0.5], [0.1, 1.0]]], "not symmetric"),
    ([0.5, 0.5], _M, [np.eye(3), np.eye(3)], r"must have shape \(2, 2, 2\)"),
    ([0.5, 0.5], np.zeros((2, 2, 2)), [1.0, 1.0], "dimension"),
    ([[0.5, 0.5]], _M, [1.0, 1.0], "dimension"),
], ids=["neg-weight", "sum>1", "sum<1", "k-mismatch", "empty", "nan-weight", "nan-mean",
        "inf-var", "zero-var", "neg-var", "zero-diag", "diag-shape", "covs-k", "indefinite",
        "non-symmetric", "full-shape", "3d-means", "2d-weights"])
def test_bad_mixture_parameters(weights, means, covs, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(weights, means, covs)


def test_weights_within_simplex_tolerance_are_renormalized():
    w = np.array([0.3, 0.7]) * (1 + 1e-12)  # sums to 1 + 1e-12
    mix = GaussianMixture(w, _M, [1.0, 1.0])
    np.testing.assert_allclose(mix.weights.sum(), 1.0, rtol=0, atol=EXACT_FLOAT64.atol)


# ---- empirical ---------------------------------------------------------------------------------
@pytest.mark.parametrize("points,match", [
    (np.zeros((0, 2)), "non-empty"),
    (np.zeros((3, 0)), "non-empty"),
    (np.zeros((2, 2, 2)), "dimension"),
    ([[0.0, NAN]], "NaN or infinite"),
    ([[0.0, INF]], "NaN or infinite"),
])
def test_bad_empirical_points(points, match):
    with pytest.raises(ValueError, match=match):
        EmpiricalDistribution(points)


def test_empirical_law_has_no_density():
    """A Law without the Density role: no logpdf/score at all; its path has them for t > 0."""
    emp = EmpiricalDistribution([[0.0, 0.0], [1.0, 1.0]])
    for method in ("logpdf", "score", "pdf", "logpdf_and_score"):
        assert not hasattr(emp, method)
    path = emp.path(VE())
    for method in ("logpdf", "score", "logpdf_and_score"):
        with pytest.raises(ValueError, match="t must be > 0"):
            getattr(path, method)(np.zeros((1, 2)), 0.0)
        with pytest.raises(ValueError, match="t must be > 0"):
            getattr(path, method)(np.zeros((2, 2)), np.array([0.5, 0.0]))
    with pytest.raises(ValueError, match="variance must be a finite number > 0"):
        emp.as_mixture(0.0)


def test_covariance_type_resolves_the_k_equals_d_ambiguity():
    """covs of shape (K, d) with K = d: K diagonals or one shared matrix? Explicit, not guessed."""
    w, c = [0.5, 0.5], np.array([[1.0, 0.3], [0.3, 2.0]])
    diag = GaussianMixture(w, _M, c, covariance_type="diag")
    np.testing.assert_array_equal(diag.covs, [np.diag(c[0]), np.diag(c[1])])
    tied = GaussianMixture(w, _M, c, covariance_type="tied")
    np.testing.assert_array_equal(tied.covs, [c, c])
    x = np.array([[0.2, -0.4]])
    ref = np.log(0.5 * multivariate_normal(_M[0], c).pdf(x) + 0.5 * multivariate_normal(_M[1], c).pdf(x))
    np.testing.assert_allclose(tied.logpdf(x), [ref], rtol=EXACT_FLOAT64.rtol)
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        GaussianMixture(w, _M, c, covariance_type="shared")
    with pytest.raises(ValueError, match="tied"):
        GaussianMixture([0.2, 0.3, 0.5], [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], c)
    with pytest.raises(ValueError, match="> 0"):
        GaussianMixture(w, _M, [[1.0, 1.0], [1.0, 0.0]], covariance_type="diag")


# ---- marginal, sample, kernels ------------------------------------------------------------------
@pytest.mark.parametrize("factory", MODELS_2D)
@pytest.mark.parametrize("t,match", [(-0.1, ">= 0"), (NAN, "finite"), (INF, "finite"),
                                     (np.array([0.1, 0.2]), "scalar")])
def test_bad_marginal_time(factory, t, match):
    with pytest.raises(ValueError, match=match):
        factory().marginal(VP(), t)


@pytest.mark.parametrize("process", [None, "VP", VP, lambda t: t])
def test_marginal_needs_a_process(process):
    with pytest.raises(ValueError, match="process"):
        Gaussian([0.0], 1.0).marginal(process, 0.5)


@pytest.mark.parametrize("factory", MODELS_2D + [
    pytest.param(lambda: EmpiricalDistribution([[0.0, 0.0], [1.0, 1.0]]), id="emp")])
@pytest.mark.parametrize("n", [2.5, -1, "3", None, 3.0])
def test_bad_sample_count(factory, n):
    with pytest.raises(ValueError, match="non-negative integer"):
        factory().sample(n, seed=0)


@pytest.mark.parametrize("seed", [1.5, "0", [1, 2]])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        Gaussian([0.0], 1.0).sample(3, seed=seed)


def test_sample_accepts_numpy_integer_count():
    assert Gaussian([0.0], 1.0).sample(np.int64(4), seed=0).shape == (4, 1)


def test_use_kernels_rejects_unknown_impl():
    with pytest.raises(ValueError, match="impl must be"):
        with use_kernels("cuda"):
            pass


def test_logpdf_and_score_rejects_unknown_impl():
    with pytest.raises(ValueError, match="impl"):
        Gaussian([0.0], 1.0).logpdf_and_score(np.zeros(2), impl="bogus")


def test_variances_only_for_isotropic_mixtures():
    mix = GaussianMixture([0.5, 0.5], _M, [np.eye(2), np.eye(2)])
    with pytest.raises(ValueError, match="isotropic"):
        mix.variances  # noqa: B018


def test_ve_geometric_needs_sigma_at_least_one():
    with pytest.raises(ValueError, match="sigma >= 1"):
        VE(sigma=0.5)
    assert VE(sigma=1.0) == VE()


@pytest.mark.parametrize("bad", [True, np.bool_(False)])
def test_booleans_are_not_times_or_counts(bad):
    with pytest.raises(ValueError):
        OU().conditional(bad)
    with pytest.raises(ValueError):
        Gaussian([0.0], 1.0).sample(bad)


def test_posterior_mean_at_time_zero_is_a_copy():
    x = np.array([[0.5, -1.0]])
    pm = Gaussian([0.0, 0.0], 1.0).path(OU()).posterior_mean(x, 0.0)
    assert pm is not x and not np.shares_memory(pm, x)
    np.testing.assert_array_equal(pm, x)


def test_conditional_variance_overflow_is_a_clear_error():
    with pytest.raises(ValueError, match="overflows"):
        VE(sigma=25.0).conditional(150.0)
    with pytest.raises(ValueError, match="overflows"):
        Gaussian([0.0], 1.0).marginal(VE(sigma=25.0), 150.0)
