"""sftheory.theory.symbolic: the sympy derivations of [OS] App. B.4, H.4, H.5 and the closed forms,
against independent numbers (quad over x, the toolkit's VP process and sampler coefficients)."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import sympy as sp
from scipy.integrate import quad

from sftheory.processes import VP
from sftheory.samplers import _core as samplers_core
from sftheory.theory import symbolic


# ---- B.4 ---------------------------------------------------------------------------------------
def test_b4_symbolic_identities_and_runtime():
    symbolic.clear_caches()
    t0 = time.perf_counter()
    d = symbolic.b4_symbolic()
    assert time.perf_counter() - t0 < 10.0  # ~2 s on this machine; cached afterwards
    assert d.residual22 == 0
    assert d.terms_residual == (0, 0, 0)
    assert d.young_residual == 0
    assert d.gap_minus_square == 0
    g, h = d.symbols["g"], d.symbols["h"]
    assert d.critical_h == (g,)
    assert d.second_derivative_at_g == 1
    assert sp.simplify(d.dprefactor_dh - (h ** 4 - g ** 4) / (4 * h ** 3)) == 0
    t0 = time.perf_counter()
    assert symbolic.b4_symbolic() is d
    assert time.perf_counter() - t0 < 0.01


@pytest.mark.parametrize("a,b,eps,c", [(0.7, 0.5, 0.2, 1.0), (2.5, 3.1, -0.3, -0.6),
                                       (0.1, 0.12, 0.5, 0.3)])
def test_gaussian_b4_terms_against_quadrature_over_x(a, b, eps, c):
    """J, E<-eps E, grad log q/q~>, E|E|^2 by quad over x (independent of the closed forms)."""
    q = lambda x: math.exp(-x * x / (2 * a)) / math.sqrt(2 * math.pi * a)  # noqa: E731
    dlog = lambda x: -x / a + x / b  # noqa: E731
    E = lambda x: -c * x / a  # noqa: E731
    ref = [quad(lambda x, f=f: f(x) * q(x), -np.inf, np.inf, epsabs=0, epsrel=1e-12)[0]
           for f in (lambda x: dlog(x) ** 2, lambda x: -eps * E(x) * dlog(x), lambda x: E(x) ** 2)]
    got = symbolic.gaussian_b4_terms(a, b, eps, c)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-14)


def test_b4_rate_bound_and_prefactor_values():
    # (22) at h = 0 keeps only (g^2/2) cross; at h = g = 1: -J/2 + cross
    assert symbolic.b4_kl_rate(0.0, 2.0, 5.0, 0.3) == pytest.approx(0.5 * 4.0 * 0.3, rel=1e-15)
    assert symbolic.b4_kl_rate(1.0, 1.0, 0.4, 0.3) == pytest.approx(-0.2 + 0.3, rel=1e-15)
    # prefactor: g^2/2 at h = g, larger elsewhere, infinite at h = 0
    for g in (0.3, 1.0, 4.0):
        assert symbolic.b4_bound_prefactor(g, g) == pytest.approx(g * g / 2, rel=1e-15)
        hs = g * np.array([0.5, 0.9, 0.999, 1.001, 1.1, 3.0])
        assert np.all(symbolic.b4_bound_prefactor(hs, g) > g * g / 2)
    assert symbolic.b4_bound_prefactor(0.0, 1.0) == math.inf
    assert symbolic.b4_bound(2.0, 1.0, 0.1, 3.0) == pytest.approx(25 / 32 * 0.01 * 3.0, rel=1e-15)
    assert symbolic.b4_young_c2(2.0, 1.0) == pytest.approx(5 / 8, rel=1e-15)
    out = symbolic.b4_kl_rate(np.array([0.0, 1.0]), 1.0, np.array([1.0, 1.0]), 0.5)
    assert out.shape == (2,)


def test_b4_bound_dominates_rate_on_random_gaussian_states():
    """The gap bound - rate is a square (sympy); numerically: bound >= (22) on random states."""
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.05, 5, 200), rng.uniform(0.05, 5, 200)
    h, g = rng.uniform(0.05, 5, 200), rng.uniform(0.1, 3, 200)
    eps, c = rng.uniform(-1, 1, 200), rng.uniform(-2, 2, 200)
    J, cross, err_sq = symbolic.gaussian_b4_terms(a, b, eps, c)
    rate = symbolic.b4_kl_rate(h, g, J, cross)
    bound = symbolic.b4_bound(h, g, eps, err_sq)
    assert np.all(rate <= bound * (1 + 1e-12) + 1e-300)


@pytest.mark.parametrize("fn,args,name", [
    (symbolic.b4_kl_rate, (-0.1, 1.0, 1.0, 0.0), "h"),
    (symbolic.b4_kl_rate, (1.0, 0.0, 1.0, 0.0), "g"),
    (symbolic.b4_kl_rate, (1.0, 1.0, -1.0, 0.0), "fisher"),
    (symbolic.b4_kl_rate, (1.0, 1.0, 1.0, math.nan), "cross"),
    (symbolic.b4_bound, (1.0, 1.0, 0.1, -1.0), "err_sq"),
    (symbolic.b4_bound_prefactor, (math.inf, 1.0), "h"),
    (symbolic.b4_young_c2, (0.0, 1.0), "h"),
    (symbolic.gaussian_b4_terms, (0.0, 1.0, 0.1, 1.0), "a"),
    (symbolic.gaussian_b4_terms, (1.0, -1.0, 0.1, 1.0), "b"),
    (symbolic.gaussian_b4_terms, (1.0, 1.0, "x", 1.0), "eps"),
    (symbolic.gaussian_b4_terms, (1.0, 1.0, 0.1, True), "c"),
])
def test_b4_validation(fn, args, name):
    with pytest.raises(ValueError, match=name):
        fn(*args)


# ---- H.4 ---------------------------------------------------------------------------------------
def test_h4_symbolic_residuals_vanish():
    d = symbolic.h4_symbolic()
    assert (d.residual_log_gamma, d.residual_score_coef, d.residual_noise_var) == (0, 0, 0)


@pytest.mark.parametrize("b0,b1,T,tk,delta", [(0.1, 20.0, 1.0, 0.3, 0.1), (1.0, 5.0, 1.4, 0.0, 1.4),
                                              (0.5, 0.5, 2.0, 1.0, 0.5)])
def test_h4_gamma_is_exp_half_integral_of_g_squared(b0, b1, T, tk, delta):
    """gamma_k = exp(1/2 int_{t_k}^{t_k + delta} g^<-(s)^2 ds) by quad (forward time T - s)."""
    val, _ = quad(lambda s: b0 + (b1 - b0) * (T - s), tk, tk + delta, epsabs=0, epsrel=1e-13)
    assert symbolic.h4_gamma(b0, b1, T, tk, delta) == pytest.approx(math.exp(val / 2), rel=1e-12)


@pytest.mark.parametrize("b0,b1", [(0.1, 20.0), (1.0, 5.0), (2.0, 2.0)])
@pytest.mark.parametrize("c", [0.0, 0.5, 1.0, 2.0])
def test_h4_coefficients_match_toolkit_exponential_coefficients(b0, b1, c):
    ts = np.concatenate([np.linspace(1.0, 0.05, 12), np.geomspace(0.01, 1e-5, 4), [0.0]])
    mine = symbolic.h4_coefficients(b0, b1, ts[:-1], ts[1:], c)
    h = None if c == 1.0 else (lambda t: c * math.sqrt(b0 + (b1 - b0) * t))
    ref = samplers_core.exponential_coefficients(VP(b0, b1), ts, h)
    for u, v in zip(mine, ref):
        # closed form vs closed form (h = g) or 32-point Gauss-Legendre: rounding level
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-15)


def test_h4_coefficients_small_step_is_stable():
    """expm1: a tiny step keeps full relative precision (gamma - 1 ~ Gamma)."""
    t_hi = 0.5 + 1e-10
    dt = t_hi - 0.5  # the step as float64 holds it
    al, be, si = symbolic.h4_coefficients(0.1, 20.0, t_hi, 0.5, 2.0)
    lg = 0.5 * dt * (0.1 + 19.9 * (0.5 + dt / 2))  # (1/2) int beta: exact at the midpoint
    # gamma - 1 = lg (1 + lg/2 + ...): the second-order term is 2.5e-10 relative
    assert be == pytest.approx(5.0 * lg, rel=1e-9)
    assert si == pytest.approx(2.0 * math.sqrt(2 * lg), rel=1e-9)
    assert isinstance(al, float)


@pytest.mark.parametrize("args,name", [
    ((0.0, 20.0, 1.0, 0.5, 1.0), "beta_min"),
    ((1.0, 0.5, 1.0, 0.5, 1.0), "beta_max"),
    ((0.1, 20.0, 0.5, 0.5, 1.0), "t_hi"),
    ((0.1, 20.0, 1.0, -0.1, 1.0), "t_lo"),
    ((0.1, 20.0, 1.0, 0.5, -1.0), "c"),
    ((0.1, 20.0, math.nan, 0.5, 1.0), "t_hi"),
])
def test_h4_coefficients_validation(args, name):
    with pytest.raises(ValueError, match=name):
        symbolic.h4_coefficients(*args)


@pytest.mark.parametrize("args,name", [((0.1, 20.0, 0.0, 0.1, 0.1), "T"),
                                       ((0.1, 20.0, 1.0, -0.1, 0.1), "t_k"),
                                       ((0.1, 20.0, 1.0, 0.1, 0.0), "delta"),
                                       ((0.1, 20.0, 1.0, 0.5, 0.6), "T")])
def test_h4_gamma_validation(args, name):
    with pytest.raises(ValueError, match=name):
        symbolic.h4_gamma(*args)


# ---- H.5 ---------------------------------------------------------------------------------------
def test_h5_symbolic_residual_vanishes():
    d = symbolic.h5_symbolic()
    assert d.residual == 0
    t, b0, b1 = d.symbols["t"], d.symbols["beta0"], d.symbols["beta1"]
    assert sp.simplify(d.varpi_sq - (1 - sp.exp(-b0 * t - (b1 - b0) * t ** 2 / 2))) == 0


@pytest.mark.parametrize("b0,b1", [(0.1, 20.0), (1.0, 5.0), (0.3, 0.3)])
def test_h5_varpi_is_the_vp_conditional_std(b0, b1):
    ts = np.array([0.0, 1e-6, 0.01, 0.5, 1.0, 3.0])
    w = symbolic.h5_varpi(ts, b0, b1)
    ref = np.sqrt([VP(b0, b1).var(float(t)) for t in ts])
    np.testing.assert_allclose(w, ref, rtol=1e-12, atol=0)
    assert symbolic.h5_varpi(0.0, b0, b1) == 0.0
    assert np.all(np.diff(w) > 0)


@pytest.mark.parametrize("args,name", [((-1.0, 0.1, 20.0), "t"), ((1.0, -0.1, 20.0), "beta_min"),
                                       ((1.0, 0.1, 0.01), "beta_max"),
                                       ((np.array([0.1, np.nan]), 0.1, 20.0), "t")])
def test_h5_validation(args, name):
    with pytest.raises(ValueError, match=name):
        symbolic.h5_varpi(*args)


def test_max_abs_at_keeps_nan_and_uses_exact_points():
    x = sp.Symbol("x")
    assert symbolic.max_abs_at(x - sp.Rational(1, 3), [{x: sp.Rational(1, 3)}]) == 0.0
    assert symbolic.max_abs_at(x, [{x: 2}, {x: -3}]) == 3.0
    assert math.isnan(symbolic.max_abs_at(sp.nan * x, [{x: 1}]))
    assert math.isnan(symbolic.max_abs_at(1 / x, [{x: 0}]))
