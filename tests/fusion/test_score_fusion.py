"""ScoreFusion, [SF] Algorithm 1 (sftheory.fusion.score_fusion): the simplex QP solver against
brute force and scipy, the Monte Carlo Gram matrix / linear term / constant against closed forms
derived here for Gaussian auxiliaries, the exact solve against the softmax SGD, and bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate
from scipy.optimize import minimize

from sftheory.fusion import score_fusion, simplex_qp
from sftheory.models import Gaussian, GaussianMixture
from sftheory.processes import OU, VE, VP

# Monte Carlo mean vs exact: 5 standard errors (false-alarm rate ~6e-7 per entry; the standard
# errors treat the stratified target draws as independent, which overestimates them)
N_SE = 5.0


def _psd(rng, k, rank=None):
    a = rng.normal(size=(k, rank or k))
    return a @ a.T


# ---- the quadratic program ----------------------------------------------------------------------
def _brute_force(G, b, n=400):
    """Minimum of lam^T G lam - 2 b^T lam on a fine grid of the 2-simplex (k = 3)."""
    best = math.inf
    for i in range(n + 1):
        for j in range(n + 1 - i):
            lam = np.array([i, j, n - i - j]) / n
            best = min(best, lam @ G @ lam - 2 * b @ lam)
    return best


def _slsqp(G, b, x0):
    k = b.shape[0]
    res = minimize(lambda x: x @ G @ x - 2 * b @ x, x0, jac=lambda x: 2 * (G @ x - b),
                   method="SLSQP", bounds=[(0, 1)] * k,
                   constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1}],
                   options={"ftol": 1e-14, "maxiter": 500})
    return res.fun


@pytest.mark.parametrize("seed", range(6))
def test_qp_matches_brute_force_and_slsqp(seed):
    rng = np.random.default_rng(seed)
    G = _psd(rng, 3)
    b = rng.normal(size=3) * 2
    r = simplex_qp(G, b)
    assert r.route == "kkt-enumeration"
    assert np.all(r.weights >= 0) and r.weights.sum() == pytest.approx(1, abs=1e-14)
    assert r.objective == pytest.approx(r.weights @ G @ r.weights - 2 * b @ r.weights, abs=1e-13)
    # the grid minimum (spacing 1/400) can only be above the exact minimum; a grid point within
    # h = 1/400 of the minimizer is above it by at most |grad| h + ||G|| h^2
    grid = _brute_force(G, b)
    slack = (np.abs(2 * (G @ r.weights - b)).sum() + np.abs(G).sum()) / 400
    assert r.objective <= grid + 1e-12
    assert grid - r.objective <= slack
    for x0 in (np.full(3, 1 / 3), np.array([1.0, 0, 0]), np.array([0, 0.5, 0.5])):
        assert r.objective <= _slsqp(G, b, x0) + 1e-10
    assert r.kkt_residual < 1e-9


def test_qp_vertex_face_and_interior_solutions():
    G = np.eye(3)
    # unconstrained minimizer b lies in the simplex: the answer is b itself
    r = simplex_qp(G, np.array([0.2, 0.3, 0.5]))
    np.testing.assert_allclose(r.weights, [0.2, 0.3, 0.5], atol=1e-14)
    # projection of (1, 1, -5) onto the simplex is (1/2, 1/2, 0)
    r = simplex_qp(G, np.array([1.0, 1.0, -5.0]))
    np.testing.assert_allclose(r.weights, [0.5, 0.5, 0.0], atol=1e-14)
    assert r.support == (0, 1)
    r = simplex_qp(G, np.array([5.0, 0.0, 0.0]))
    np.testing.assert_allclose(r.weights, [1, 0, 0], atol=1e-14)
    assert r.identifiable


def test_qp_singular_gram_is_flagged_and_optimal():
    rng = np.random.default_rng(3)
    # rank-2 Gram of 4 "scores" with s_4 = (s_1 + s_2) / 2: not identifiable on the simplex
    A = rng.normal(size=(6, 2))
    cols = np.column_stack([A[:, 0], A[:, 1], 0.3 * A[:, 0], 0.5 * (A[:, 0] + A[:, 1])])
    G = cols.T @ cols
    y = cols @ np.array([0.25, 0.25, 0.0, 0.5])
    b = cols.T @ y
    r = simplex_qp(G, b)
    assert not r.identifiable
    assert r.tangent_min_eig < 1e-10 * r.tangent_max_eig
    # the minimum value is -y^T y (zero residual); every minimizer reproduces y
    assert r.objective == pytest.approx(-y @ y, rel=1e-10)
    np.testing.assert_allclose(cols @ r.weights, y, atol=1e-9)


def test_qp_large_k_uses_slsqp_with_kkt_check():
    rng = np.random.default_rng(5)
    k = 14
    G = _psd(rng, k)
    b = rng.normal(size=k) * 3
    r = simplex_qp(G, b)
    assert r.route == "slsqp+kkt-check"
    assert r.kkt_residual < 1e-6
    # the first 12 coordinates alone (enumeration) cannot do better than the full problem
    sub = simplex_qp(G[:12, :12], b[:12])
    assert r.objective <= sub.objective + 1e-9


def test_qp_bad_input():
    with pytest.raises(ValueError, match="G must have shape"):
        simplex_qp(np.eye(2), np.ones(3))
    with pytest.raises(ValueError, match="symmetric"):
        simplex_qp(np.array([[1.0, 2.0], [0.0, 1.0]]), np.ones(2))
    with pytest.raises(ValueError, match="semi-definite"):
        simplex_qp(-np.eye(2), np.ones(2))
    with pytest.raises(ValueError, match="NaN"):
        simplex_qp(np.eye(2), np.array([1.0, np.nan]))
    for bad in (-1e-3, math.nan, True):
        with pytest.raises(ValueError, match="psd_rel_tol"):
            simplex_qp(np.eye(2), np.ones(2), psd_rel_tol=bad)
    # an eigenvalue -1e-6 x max|G|: refused by default, accepted with a looser tolerance
    G = np.diag([1.0, -1e-6])
    with pytest.raises(ValueError, match="semi-definite"):
        simplex_qp(G, np.ones(2))
    assert simplex_qp(G, np.ones(2), psd_rel_tol=1e-5).weights.sum() == pytest.approx(1.0)


# ---- Gram matrix and linear term vs closed form -------------------------------------------------
def closed_form_quadratic(mus, covs, X, process, T_tilde, gamma="variance"):
    r"""(G, b, c) of the DSM quadratic for Gaussian auxiliaries N(mu_i, Sigma_i), x_0 drawn from
    the empirical law of X, derived independently of the package:

    p^i_t = N(a_i, C_i), a_i = m mu_i, C_i = m^2 Sigma_i + v I, P_i = C_i^{-1},
    s_i = -P_i (x - a_i).
    x_t = m x_0 + sqrt(v) z has mean a = m xbar and covariance C = m^2 Sigma_hat + v I (Sigma_hat
    the 1/n sample covariance), so with E over x_0 and z:
      G_ij(t) = E[s_i . s_j] = tr(P_i P_j C) + (a - a_i)^T P_i P_j (a - a_j),
      b_i(t) = -E[s_i . z / sqrt v] = E[(m x_0 - a_i + sqrt(v) z)^T P_i z] / sqrt(v) = tr(P_i),
      c(t) = E|z|^2 / v = d / v,
    averaged over t ~ U[0, T~] with weight gamma(t) by scipy quad_vec.
    """
    mus, covs = np.asarray(mus), np.asarray(covs)
    k, d = mus.shape
    xbar = X.mean(axis=0)
    Sh = np.cov(X.T, bias=True).reshape(d, d)

    def integrand(t):
        m, v = process.conditional(t)
        g = v if gamma == "variance" else float(process.diffusion(t)) ** 2
        P = np.linalg.inv(m * m * covs + v * np.eye(d))
        C = m * m * Sh + v * np.eye(d)
        r = m * xbar[None] - m * mus
        Pr = np.einsum("kab,kb->ka", P, r)
        G = np.einsum("iab,jbc,ca->ij", P, P, C) + Pr @ Pr.T
        b = np.trace(P, axis1=1, axis2=2)
        return g * np.concatenate([G.ravel(), b])

    val = integrate.quad_vec(integrand, 0.0, T_tilde, epsrel=1e-11, epsabs=0)[0] / T_tilde
    G = val[:k * k].reshape(k, k)
    # c: gamma = v gives E|z|^2 = d; gamma = g^2 (or 1) gives (1/T~) int g^2 d / v dt = inf, as
    # v(t) ~ g(0)^2 t near t = 0 (the reason the default weighting is v)
    c = float(d) if gamma == "variance" else math.inf
    return 0.5 * (G + G.T), val[k * k:], c


@pytest.mark.parametrize("process,T_tilde,weighting", [(VP(), 0.4, None), (OU(), 0.8, "g2"),
                                                       (VE(), 0.5, None)])
def test_gram_linear_const_vs_closed_form(process, T_tilde, weighting):
    rng = np.random.default_rng(11)
    d, k = 2, 3
    mus = rng.normal(size=(k, d)) * 2
    covs = np.stack([_psd(rng, d) + 0.3 * np.eye(d) for _ in range(k)])
    X = rng.normal(size=(37, d)) * 1.3 + 0.5
    res = score_fusion([Gaussian(m, c) for m, c in zip(mus, covs)], X, process, T_tilde,
                       n_mc=40_000, seed=1, weighting=weighting, n_boot=0)
    G, b, c = closed_form_quadratic(mus, covs, X, process, T_tilde,
                                    "variance" if weighting is None else "g2")
    assert np.all(np.abs(res.gram - G) <= N_SE * res.gram_se)
    assert np.all(np.abs(res.linear - b) <= N_SE * res.linear_se)
    if weighting is None:  # gamma = v: c = E|z|^2 = d exactly
        assert abs(res.const - c) <= N_SE * res.const_se
    else:  # gamma = g^2: the constant is infinite, its Monte Carlo estimate finite and meaningless
        assert math.isinf(c) and math.isfinite(res.const)
    # the estimate is not trivially loose: standard errors are a few percent of the values
    assert np.max(res.gram_se / np.abs(np.diag(G)).max()) < 0.05
    # the fitted weights solve the QP of the estimated quadratic, and the closed-form QP is close
    exact = simplex_qp(G, b).weights
    assert np.max(np.abs(res.weights - exact)) < 0.1


def test_loss_and_objective_are_the_same_quadratic():
    rng = np.random.default_rng(2)
    aux = [Gaussian([-1.0], 1.0), Gaussian([2.0], 0.5)]
    X = rng.normal(size=(50, 1))
    res = score_fusion(aux, X, OU(), 0.3, n_mc=5000, seed=3, n_boot=0)
    assert res.loss == pytest.approx(res.objective(res.weights), rel=1e-10)
    assert res.weights.sum() == pytest.approx(1.0, abs=1e-14)
    # the weights minimize the estimated objective over the simplex
    for lam in np.linspace(0, 1, 21):
        assert res.objective([lam, 1 - lam]) >= res.loss - 1e-12


def test_seed_reproducible_and_field_is_the_weighted_score():
    aux = [Gaussian([-1.0, 0.0], np.eye(2)), Gaussian([1.0, 1.0], np.eye(2))]
    X = np.random.default_rng(0).normal(size=(30, 2))
    r1 = score_fusion(aux, X, VP(), 0.2, n_mc=2000, seed=7, n_boot=0)
    r2 = score_fusion(aux, X, VP(), 0.2, n_mc=2000, seed=7, n_boot=0)
    np.testing.assert_array_equal(r1.weights, r2.weights)
    x = np.array([[0.3, -0.2], [1.0, 2.0]])
    expect = sum(w * a.path(VP()).score(x, 0.5) for w, a in zip(r1.weights, aux))
    np.testing.assert_allclose(r1.field()(x, 0.5), expect, rtol=1e-13)


# ---- exact vs softmax SGD, weight recovery ------------------------------------------------------
def test_exact_and_softmax_sgd_agree_and_recover_barycenter_weights():
    # equal-covariance Gaussians with affinely independent means; target = their barycenter
    # N(sum lam_i mu_i, Sigma): sum lam_i s_i is the target's score at every t, lam* identifiable
    mus = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    lam_star = np.array([0.2, 0.5, 0.3])
    aux = [Gaussian(m, np.eye(2)) for m in mus]
    X = Gaussian(lam_star @ mus, np.eye(2)).sample(4000, seed=4)
    ex = score_fusion(aux, X, OU(), 0.3, n_mc=2 ** 15, seed=0)
    sg = score_fusion(aux, X, OU(), 0.3, n_mc=2 ** 12, seed=1, method="softmax-sgd",
                      steps=1500, n_boot=0)
    se = ex.diagnostics["weights_se"]
    # Polyak-averaged SGD over the last half (750 x 256 draws) has the error of an exact solve
    # on those draws: se * sqrt(n_mc / 192000)
    se_sgd = se * math.sqrt(2 ** 15 / (750 * 256))
    assert np.all(np.abs(sg.weights - ex.weights) <= N_SE * np.sqrt(se ** 2 + se_sgd ** 2))
    # recovery: lam* up to the sampling error of 4000 target samples (~ 1/sqrt(4000) scale)
    assert np.max(np.abs(ex.weights - lam_star)) < 0.05
    assert ex.diagnostics["identifiable"]
    assert sg.diagnostics["sgd_weights"].shape == (1500, 3)
    assert np.all(np.isfinite(sg.diagnostics["sgd_losses"]))


def test_more_auxiliaries_than_d_plus_1_not_identifiable():
    aux = [Gaussian([m], 1.0) for m in (-2.0, 0.0, 2.0)]  # d = 1, k = 3 > d + 1
    X = Gaussian([0.5], 1.0).sample(500, seed=1)
    res = score_fusion(aux, X, OU(), 0.3, n_mc=4000, seed=0, n_boot=0)
    assert not res.diagnostics["identifiable"]


def test_mixture_auxiliaries_and_callables_and_network():
    torch = pytest.importorskip("torch")
    from sftheory.training import ScoreMLP

    aux1 = GaussianMixture([0.5, 0.5], [[-3.0], [3.0]], [1.0, 1.0], covariance_type="spherical")
    path2 = Gaussian([1.0], 2.0).path(OU())
    net = ScoreMLP(1, hidden=(8,), process=OU())
    X = np.random.default_rng(0).normal(size=(64, 1))
    res = score_fusion([aux1, path2, lambda x, t: -x, net], X, OU(), 0.5, n_mc=2000, seed=0,
                       n_boot=0)
    assert res.weights.shape == (4,) and np.all(np.isfinite(res.weights))
    del torch


# ---- bad input ----------------------------------------------------------------------------------
def test_bad_input_errors():
    aux = [Gaussian([0.0], 1.0), Gaussian([1.0], 1.0)]
    X = np.zeros((10, 1))
    with pytest.raises(ValueError, match="different dimensions"):
        score_fusion([Gaussian([0.0], 1.0), Gaussian([0.0, 0.0], np.eye(2))], X, OU(), 0.1)
    with pytest.raises(ValueError, match="target_samples has dimension 2"):
        score_fusion(aux, np.zeros((10, 2)), OU(), 0.1)
    with pytest.raises(ValueError, match="T_tilde must be a finite number > 0"):
        score_fusion(aux, X, OU(), 0.0)
    with pytest.raises(ValueError, match="T_tilde must be a finite number > 0"):
        score_fusion(aux, X, OU(), -1.0)
    with pytest.raises(ValueError, match="T_tilde must lie in"):
        score_fusion(aux, X, OU(), 1.0, T=1.0)
    with pytest.raises(ValueError, match="T_tilde must lie in"):
        score_fusion(aux, X, OU(), 2.0, T=1.0)
    with pytest.raises(ValueError, match="batch_size = 11 exceeds the 10 target samples"):
        score_fusion(aux, X, OU(), 0.1, batch_size=11)
    with pytest.raises(ValueError, match="method must be one of"):
        score_fusion(aux, X, OU(), 0.1, method="sgd")
    with pytest.raises(ValueError, match="weighting"):
        score_fusion(aux, X, OU(), 0.1, weighting="bogus")
    with pytest.raises(ValueError, match="process"):
        score_fusion(aux, X, "OU", 0.1)
    with pytest.raises(ValueError, match="target_samples contains NaN"):
        score_fusion(aux, np.full((10, 1), np.nan), OU(), 0.1)
    with pytest.raises(ValueError, match="at least one"):
        score_fusion([], X, OU(), 0.1)
    # a callable returning the wrong shape, NaN, or the wrong backend
    with pytest.raises(ValueError, match=r"scores\[1\].*shape"):
        score_fusion([aux[0], lambda x, t: x[:, :0]], X, OU(), 0.1, n_mc=100)
    with pytest.raises(ValueError, match=r"scores\[1\].*NaN"):
        score_fusion([aux[0], lambda x, t: x * np.nan], X, OU(), 0.1, n_mc=100)
    with pytest.raises(ValueError, match=r"scores\[0\]"):
        score_fusion([lambda x: x, aux[1]], X, OU(), 0.1, n_mc=100)


def test_bad_network_output_shape():
    torch = pytest.importorskip("torch")

    class Wrong(torch.nn.Module):
        dim = 1

        def forward(self, x, t):
            return torch.zeros(x.shape[0], 2, dtype=x.dtype)

    class Right(torch.nn.Module):
        def forward(self, x, t):
            return -x

    X = np.zeros((10, 1))
    with pytest.raises(ValueError, match=r"scores\[1\].*returned shape \(100, 2\)"):
        score_fusion([Gaussian([0.0], 1.0), Wrong()], X, OU(), 0.1, n_mc=100, batch_size=10)
    res = score_fusion([Gaussian([0.0], 1.0), Right()], X, OU(), 0.1, n_mc=100, n_boot=0)
    assert res.weights.shape == (2,)
