"""sftheory.theory.bounds: the formulas of [OS] Props 3.4-3.6 / App. E-F and their Gaussian
closed forms, each against a route computed another way (the other printed form of the same
constant, quadrature, finite differences, the exact ODE theory, sympy)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad, solve_ivp
from scipy.special import eval_hermitenorm

from sftheory.testing.strategies import spd_matrices
from sftheory.theory import bounds as B
from sftheory.theory import odesde

QUAD_RTOL = 1e-9  # quad at epsrel 1e-12 vs closed forms


# ---- the paper's constants ----------------------------------------------------------------------
@pytest.mark.parametrize("m, M", [(1.0, 1.0), (1.5, 4.0), (3.0, 3.0)])
def test_C2_two_printed_forms_of_eq30_agree(m, M):
    # (30): C2 = 8 varsigma / m^2 == (20 + 30 M^2)/m^2
    assert B.C2(M, m) == pytest.approx((20 + 30 * M ** 2) / m ** 2, rel=1e-14)
    assert B.C2(M, m) == pytest.approx(8 * B.varsigma(M) / m ** 2, rel=1e-14)
    # the literal printed M^{-2}, m^{-2} reading differs unless M = m = 1
    lit = B.C2(M, m, reading="literal")
    assert lit == pytest.approx(8 * 5 * (0.5 + 0.75 / M ** 2) * m ** 2, rel=1e-14)


@pytest.mark.parametrize("d, M, m, X", [(1, 2.0, 2.0, 0.0), (3, 4.0, 1.5, 0.7)])
def test_lemmaE3_limit_is_C1_without_the_h_terms(d, M, m, X):
    # lim C1 = xi(dlogZ=0) + 0 * varsigma |Y - X|^2 + 20 d M varsigma / m^2
    assert B.C1(0.0, d, M, m, X, 0.0) == pytest.approx(B.C1_limit_lemmaE3(d, M, m, X), rel=1e-14)
    assert B.C1(0.3, d, M, m, X, 0.5) > B.C1_limit_lemmaE3(d, M, m, X)


def test_kappa_and_bound17_forms():
    assert B.kappa(2.0, 1.0) == pytest.approx(3.0)
    assert B.kappa(1.0, 0.3) == pytest.approx(1.0)  # m = 1: kappa = 1 for every h
    assert B.bound17(2.0, 3.0, 1.5) == pytest.approx(2.0 * 100 * math.exp(-1.5), rel=1e-14)
    assert B.bound17_log(2.0, 3.0, 1.5) == pytest.approx(math.log(2.0 * 100) - 1.5, rel=1e-14)


def test_prop35_and_36_formulas():
    I = 2.0
    assert B.prop35_L0_asymptote(0.02, I) == pytest.approx(0.02 ** 2 / 8 * I)
    k0 = B.kappa(1 / 0.25, 4.0)
    assert B.prop35_Lh_bound(0.02, 4.0, k0, I) == pytest.approx(
        (1 - math.exp(-0.02 * 16 * k0 / 2)) ** 2 / (2 * k0 ** 2) * I)
    lo, hi = B.prop36_sandwich(0.25, 1.0, 2.0, 10.0, 0.5, 1.0)
    tail = 1.0 / 2.0 * 101 * math.exp(-10.0 * 2.0)
    assert lo == pytest.approx(0.75 * 0.25 - 3 * tail) and hi == pytest.approx(1.25 * 0.25 + 5 * tail)
    assert B.bound18(2.0, 8.0) == pytest.approx(1.0)


def test_prop35_formulas_equal_os_gaussian_inline_ones():
    """The Prop. 3.5 formulas here reproduce os_gaussian.prop35_asymptotes (to be switched to
    import them): the same numbers, so the move changes no verdict."""
    from sftheory.claims.checks.os_gaussian import prop35_asymptotes

    for s0, a, h in [(0.3, 0.02, 4.0), (0.8, 0.01, 16.0)]:
        ref = prop35_asymptotes(s0, a, h)
        I = 2.0 / s0 ** 4  # int (div(p0 grad log p0))^2 / p0, E[He_2^2]/sigma0^4
        assert B.prop35_L0_asymptote(a, I) == pytest.approx(ref["L0_paper"], rel=1e-14)
        k0 = B.kappa(1 / s0 ** 2, h)
        assert B.prop35_Lh_bound(a, h, k0, I) == pytest.approx(ref["Lh_paper_bound"], rel=1e-14)
        assert B.gaussian_prop35_Lh_asymptote(s0, a, h) == pytest.approx(
            ref["Lh_gauss_asymptote"], rel=1e-14)


# ---- spectral limit (App. F.1) ------------------------------------------------------------------
def test_hermite_spectrum_against_projection():
    s0 = 0.7
    e = np.array([0.3, -1.2, 0.5, 0.2])  # E(x) = sum_j e_j He_j(x/s0)
    k, alpha, lam = B.hermite_spectrum_gaussian(s0, e)
    p = lambda x: math.exp(-x * x / (2 * s0 * s0)) / math.sqrt(2 * math.pi * s0 * s0)  # noqa: E731

    def div(x, h=1e-5):  # d/dx (p E) by central differences
        f = lambda y: p(y) * sum(ej * eval_hermitenorm(j, y / s0) for j, ej in enumerate(e))  # noqa: E731
        return (f(x + h) - f(x - h)) / (2 * h)

    for kk, a, l in zip(k, alpha, lam):
        phi_over_p = lambda x: eval_hermitenorm(int(kk), x / s0) / math.sqrt(math.factorial(int(kk)))  # noqa: E731
        a_q = quad(lambda x: div(x) * phi_over_p(x), -12 * s0, 12 * s0, epsabs=1e-13, limit=200)[0]
        assert a == pytest.approx(a_q, rel=1e-7, abs=1e-9)  # central difference h = 1e-5
        assert l == pytest.approx(kk / s0 ** 2)
    assert B.spectral_limit(alpha, lam) == pytest.approx(0.5 * float(np.sum((alpha / lam) ** 2)))


def test_spectral_limit_1d_score_error_is_c_sq_over_4():
    for s0 in (0.3, 1.7):
        _, a, l = B.hermite_spectrum_gaussian(s0, [0.0, -0.5 / s0])
        assert B.spectral_limit(a, l) == pytest.approx(0.25 * 0.25, rel=1e-14)


@settings(max_examples=20)
@given(Sigma0=spd_matrices(st.integers(1, 4), min_eig=0.1, max_eig=5.0), c=st.floats(-2, 2))
def test_nd_spectral_limit_and_bound18(Sigma0, c):
    d = Sigma0.shape[0]
    lim = B.gaussian_spectral_limit_nd(Sigma0, c)
    assert lim == pytest.approx(d * c * c / 4, rel=1e-12, abs=1e-15)
    b = B.gaussian_bound18_nd(Sigma0, c)
    s = np.linalg.eigvalsh(Sigma0)
    assert b == pytest.approx(s.max() ** 2 * c * c * np.sum(1 / s ** 2), rel=1e-12, abs=1e-15)
    assert lim <= 0.25 * b * (1 + 1e-12) + 1e-300


def test_large_h_gaussian_L_tends_to_spectral_limit():
    # case 1 closed form: L = (1 + 1/h^2)^2 (1 - r^{h^2})^2 / 4 -> 1/4
    L = odesde.gaussian_L(0.6, 2.0, 10.0, 1)
    assert L == pytest.approx(0.25 * (1 + 1 / 100) ** 2, rel=1e-9)


# ---- 1D Gaussian pulse and the constants of (17) ------------------------------------------------
def test_dlogZ_closed_form_vs_difference():
    for v in (0.2, 0.7, 0.95):
        for h in (0.7, 3.0, 20.0):
            dt = 1e-5
            tau = -math.log((v - 1) / (0.09 - 1))  # the tau where sigma_tau^2 = v for sigma0 = 0.3
            fd = (B._log_Z_V(float(B.gaussian_sigma_sq(0.3, tau + dt)), h)
                  - B._log_Z_V(float(B.gaussian_sigma_sq(0.3, tau - dt)), h)) / (2 * dt)
            assert B._dlogZ_dtau(v, h) == pytest.approx(fd, rel=1e-6, abs=1e-11)
            assert B._dlogZ_dtau(v, h) <= 0


def test_log_Z_V_against_quad():
    for v, h in [(0.3, 1.0), (0.9, 7.0)]:
        u = 1 / h ** 2
        Z = quad(lambda x: math.exp(-((1 + u) * (x * x / (2 * v) + 0.5 * math.log(2 * math.pi * v))
                                      - u * x * x / 2)), -np.inf, np.inf, epsrel=1e-12)[0]
        assert B._log_Z_V(v, h) == pytest.approx(math.log(Z), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("s0, tau_s, h", [(0.5, 0.3, 1.0), (0.8, 1.0, 2.0), (1.4, 0.5, 0.5)])
def test_pulse_L_score_is_minus_horizon_derivative_of_case1(s0, tau_s, h):
    """A pulse at s equals -d/dT' of the error window [s, T] = case 1 with horizon T' = T - s."""
    def u(Tp):
        return -2 * s0 ** 2 * math.sqrt(odesde.gaussian_L(s0, Tp, h, 1))

    dl = 1e-3
    D = lambda d: (u(tau_s + d) - u(tau_s - d)) / (2 * d)  # noqa: E731
    u_p = (4 * D(dl / 2) - D(dl)) / 3
    assert B.gaussian_pulse_L(s0, 2.0, 2.0 - tau_s, h) == pytest.approx(u_p ** 2 / (4 * s0 ** 4),
                                                                        rel=1e-8)


def test_pulse_L_const_against_the_mean_ode():
    s0, T, s, h = 0.6, 2.0, 1.2, 1.5
    k = 1 + h * h
    sol = solve_ivp(lambda t, m: (0.5 - k / (2 * (1 + (s0 ** 2 - 1) * math.exp(-(T - t))))) * m,
                    (s, T), [k / 2], method="DOP853", rtol=1e-12, atol=1e-16)
    mu = sol.y[0, -1]
    assert B.gaussian_pulse_L(s0, T, s, h, kind="const") == pytest.approx(mu ** 2 / (2 * s0 ** 2),
                                                                          rel=1e-9)
    assert B.gaussian_pulse_L(s0, T, s, h, c=-2.0) == pytest.approx(
        4 * B.gaussian_pulse_L(s0, T, s, h), rel=1e-14)


def test_bound17_exponent_closed_form_vs_quad_of_eq30():
    """The closed-form antiderivative in gaussian_bound17 vs quad of the pointwise constants
    (bounds.C1, C2, kappa with the closed-form d log Z/dt)."""
    for s0, s, h in [(0.3, 0.0, 8.0), (0.9, 1.5, 12.0)]:
        b = B.gaussian_bound17(s0, 2.0, s, h)

        def f(tau):
            v = float(B.gaussian_sigma_sq(s0, tau))
            m = 1 / v
            return ((h * h - B.C2(m, m)) * B.kappa(m, h)
                    - B.C1(B._dlogZ_dtau(v, h), 1, m, m, 0.0, 0.0))

        val = quad(f, 0, 2.0 - s, epsrel=1e-13, epsabs=0)[0]
        assert b.exponent == pytest.approx(val, rel=QUAD_RTOL)
        assert b.h_ok and 5.4 < b.h_lb < 7.1
        # the bound holds with room to spare, and C_h tends to its h -> oo limit
        assert B.gaussian_pulse_log_L(s0, 2.0, s, h) < b.log_bound
    b_inf = B.gaussian_bound17(0.5, 2.0, 1.0, 1e5)
    v = float(B.gaussian_sigma_sq(0.5, 1.0))
    assert b_inf.C_h == pytest.approx(1 / v ** 2, rel=1e-8)  # (1/2) int (p'')^2/p = 1/sigma^4


def test_bound17_literal_reading_and_h_lb():
    b = B.gaussian_bound17(0.3, 2.0, 1.0, 8.0, reading="literal")
    assert b.h_lb > 40 and not b.h_ok  # C2 = 20/sigma^4 + 30 under the printed M^{-2}, m^{-2}
    assert B.gaussian_bound17(0.3, 2.0, 1.0, 3.0).h_ok is False


def test_appF2_identity_sympy():
    diff, per_d, ok = B.appF2_identity()
    assert ok and diff == 0 and len(per_d) == 5


# ---- argument validation ------------------------------------------------------------------------
@pytest.mark.parametrize("call, match", [
    (lambda: B.kappa(0.0, 1.0), "m"),
    (lambda: B.kappa(1.0, 0.0), "h must be > 0"),
    (lambda: B.varsigma(1.0, reading="other"), "reading"),
    (lambda: B.C1(0.0, 0, 1.0, 1.0, 0.0, 0.0), "d must be"),
    (lambda: B.C1(0.0, 1, 1.0, 1.0, -1.0, 0.0), "X_norm"),
    (lambda: B.bound17(-1.0, 1.0, 0.0), "C_h"),
    (lambda: B.bound17(1.0, 1.0, math.nan), "exponent"),
    (lambda: B.bound18(1.0, -1.0), "fisher"),
    (lambda: B.prop36_sandwich(0.2, 1.0, 1.0, 5.0, 1.5, 1.0), "alpha"),
    (lambda: B.prop36_sandwich(0.2, 1.0, 1.0, 5.0, 0.5, 2.5), "beta"),
    (lambda: B.spectral_limit([1.0], [0.0]), "lam"),
    (lambda: B.spectral_limit([1.0, 2.0], [1.0]), "same shape"),
    (lambda: B.hermite_spectrum_gaussian(-1.0, [1.0]), "sigma0"),
    (lambda: B.gaussian_spectral_limit_nd([[1.0, 2.0], [2.0, 1.0]], 1.0), "Sigma0"),
    (lambda: B.gaussian_pulse_L(0.5, 2.0, 2.0, 1.0), "s must be in"),
    (lambda: B.gaussian_pulse_L(0.5, 2.0, 1.0, -1.0), "h must be >= 0"),
    (lambda: B.gaussian_pulse_L(0.5, 2.0, 1.0, 1.0, kind="x"), "kind"),
    (lambda: B.gaussian_bound17(0.5, 2.0, 1.0, 0.0), "h must be > 0"),
    (lambda: B.gaussian_bound17(0.5, -2.0, 1.0, 1.0), "T"),
])
def test_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()
