"""sftheory.fusion.vanilla_fusion: problem (9) of [SF], its gradient (Remark 2) and Hessian
(Prop. 1) by three routes (Gaussian closed form, quadrature, Monte Carlo), optimum vs SLSQP."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate
from scipy.optimize import minimize

from sftheory.fusion import FusionObjective, barycenter, vanilla_fusion
from sftheory.models import Gaussian, GaussianMixture

REFS_1D = [Gaussian([0.0], 1.0), Gaussian([2.0], 0.5), Gaussian([-1.0], 2.0)]


def _slsqp(prob):
    k = prob.k
    def proj(x):  # SLSQP's iterates satisfy the constraints only to ~1e-9
        x = np.clip(x, 0, None)
        return x / x.sum()

    res = minimize(lambda x: prob.value(proj(x)), np.full(k, 1 / k),
                   jac=lambda x: prob.grad(proj(x)), method="SLSQP",
                   bounds=[(0, 1)] * k, constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1}],
                   options={"ftol": 1e-14, "maxiter": 500})
    x = np.clip(res.x, 0, None)
    return x / x.sum()


def _mixture_refs():
    return [GaussianMixture([0.5, 0.5], [[-2.0], [2.0]], [0.5, 0.5]),
            GaussianMixture([0.3, 0.7], [[0.0], [3.0]], [1.0, 0.3]),
            Gaussian([1.0], 2.0)]


def test_gaussian_closed_form_equals_quadrature_route():
    tgt = Gaussian([0.7], 0.8)
    a = FusionObjective(REFS_1D, tgt)
    b = FusionObjective(REFS_1D, tgt, method="quadrature")
    assert a.method == "gaussian" and b.method == "quadrature"
    for lam in ([0.2, 0.5, 0.3], [1, 0, 0], [0.0, 0.4, 0.6]):
        assert a.value(lam) == pytest.approx(b.value(lam), abs=1e-10)
        assert a.kl(lam) == pytest.approx(b.kl(lam), abs=1e-10)
        np.testing.assert_allclose(a.grad(lam), b.grad(lam), atol=1e-9)
        np.testing.assert_allclose(a.hessian(lam), b.hessian(lam), atol=1e-9)


def test_kl_by_scipy_quad_and_zero_at_a_realizable_target():
    lam_star = np.array([0.3, 0.6, 0.1])
    tgt = barycenter(REFS_1D, lam_star)  # a Gaussian: nu = p_{lambda*}
    prob = FusionObjective(REFS_1D, tgt)
    lam = np.array([0.5, 0.2, 0.3])
    pl = barycenter(REFS_1D, lam)
    kl = integrate.quad(lambda x: np.exp(tgt.logpdf(np.array([x]))[0])
                        * (tgt.logpdf(np.array([x]))[0] - pl.logpdf(np.array([x]))[0]),
                        -30, 30, limit=300, epsabs=0, epsrel=1e-11)[0]
    assert prob.kl(lam) == pytest.approx(kl, rel=1e-8)
    assert prob.kl(lam_star) == pytest.approx(0.0, abs=1e-12)
    res = vanilla_fusion(REFS_1D, tgt, gap_tol=1e-12)
    assert res.trace.converged
    np.testing.assert_allclose(res.weights, lam_star, atol=1e-6)


@pytest.mark.parametrize("kind", ["gaussian-model", "mixture-samples", "mixture-smoothed",
                                  "gaussian-samples-smoothed"])
def test_optimum_matches_slsqp(kind):
    rng = np.random.default_rng(1)
    target_law = GaussianMixture([0.6, 0.4], [[-1.0], [2.5]], [0.7, 0.4])
    if kind == "gaussian-model":
        refs, target, sigma = REFS_1D, Gaussian([0.7], 0.8), None
    elif kind == "mixture-samples":
        refs, target, sigma = _mixture_refs(), target_law.sample(400, seed=rng), None
    elif kind == "mixture-smoothed":
        refs, target, sigma = _mixture_refs(), target_law.sample(200, seed=rng), 0.3
    else:
        refs, target, sigma = REFS_1D, target_law.sample(200, seed=rng), 0.3
    res = vanilla_fusion(refs, target, sigma=sigma, gap_tol=1e-10, seed=0)
    assert res.trace.converged, res.trace.gaps[-1]
    x_ref = _slsqp(res.problem)
    # both solve the same smooth convex problem: objectives agree to the FW gap, weights to
    # sqrt(gap / curvature)
    assert res.objective <= res.problem.value(x_ref) + 1e-9
    np.testing.assert_allclose(res.weights, x_ref, atol=2e-4)


def test_smoothed_target_gaussian_closed_form_equals_quadrature():
    x = np.random.default_rng(2).normal(size=(50, 1))
    a = FusionObjective(REFS_1D, x, sigma=0.4)
    b = FusionObjective(REFS_1D, x, sigma=0.4, method="quadrature")
    np.testing.assert_allclose(a.target_moments, b.target_moments, rtol=1e-9)


def test_monte_carlo_route_in_3d_matches_closed_form():
    rng = np.random.default_rng(3)
    refs = [Gaussian(rng.normal(size=3), np.diag(rng.uniform(0.5, 2, 3))) for _ in range(3)]
    tgt = Gaussian(np.zeros(3), 1.0)
    a = FusionObjective(refs, tgt)
    b = FusionObjective(refs, tgt, method="mc", n_mc=200_000, seed=4)
    lam = np.array([0.3, 0.3, 0.4])
    # MC error of self-normalized importance sampling with weights <= k: a few 1e-3 here
    np.testing.assert_allclose(b.grad(lam), a.grad(lam), atol=0.05)
    np.testing.assert_allclose(b.hessian(lam), a.hessian(lam), atol=0.1)
    assert b.log_normalizer(lam) == pytest.approx(a.log_normalizer(lam), abs=0.02)


def test_validation():
    with pytest.raises(ValueError, match="sigma"):
        vanilla_fusion(REFS_1D, np.zeros((5, 1)), sigma=-1.0)
    with pytest.raises(ValueError, match="sigma"):
        vanilla_fusion(REFS_1D, Gaussian([0.0], 1.0), sigma=0.5)
    with pytest.raises(ValueError, match="target"):
        vanilla_fusion(REFS_1D, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="target"):
        vanilla_fusion(REFS_1D, object())
    with pytest.raises(ValueError, match="method"):
        vanilla_fusion(_mixture_refs(), np.zeros((5, 1)), method="gaussian")
    with pytest.raises(ValueError, match="lam"):
        FusionObjective(REFS_1D, np.zeros((5, 1))).grad([0.5, 0.5])
    with pytest.raises(ValueError, match="density"):
        FusionObjective(REFS_1D, np.zeros((5, 1))).kl([0.2, 0.3, 0.5])


@pytest.mark.parametrize("method", ["quadrature", "mc"])
def test_kl_to_an_unnormalized_barycenter_target_is_zero_at_its_weights(method):
    """A KLBarycenter of mixtures has an unnormalized logpdf (sum_i lambda_i log p_i, Z < 1).
    KL(nu || p_lambda) at nu's own weights is 0 and never negative: the target's entropy term
    must use its normalized density (a planted regression read -log Z = 0.81 as a negative KL)."""
    refs = [GaussianMixture([0.5, 0.5], [[-3.0], [10.0]], [1.0, 1.0]),
            GaussianMixture([0.7, 0.3], [[-7.0], [9.0]], [1.0, 1.0])]
    lam = np.array([0.6, 0.4])
    nu = barycenter(refs, lam)
    assert nu.log_normalizer.value < -0.5  # far from normalized: the test has teeth
    prob = FusionObjective(refs, nu, method=method, n_mc=200_000, seed=0)
    tol = 1e-8 if method == "quadrature" else 5e-3  # MC: both terms from the same draws
    assert abs(prob.kl(lam)) <= tol
    assert prob.kl(np.array([0.9, 0.1])) > 0.0
