"""sftheory.theory.smoothing_flow: closed-form flow maps of (11) ([SM] eqs. (12), (17), Prop. 6),
the pushforward law (13) and Cor. 5's bound, against solve_ivp of the ODE, quadrature and
identities (identity at s = t, composition, n = 2 special case, monotonicity)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from sftheory.testing import tolerances as tol
from sftheory.theory import smoothing, smoothing_flow as sf

FLOW = tol.FLOW_ODE


def ode(x0, t, s, points, kappa):
    """(11) integrated backward from t to s by solve_ivp in u = sqrt(r) (dx/du = -u shat(x, u^2));
    s = 0 is reached by stopping at u = 1e-9 sqrt(t) and one Euler step."""
    y = np.asarray(points, dtype=float)

    def rhs(u, x):
        r = u * u
        return -u * smoothing.s_hat(x, y, smoothing.tau_t(r, y, kappa), r)

    floor = 1e-9 * math.sqrt(t)
    u1 = max(math.sqrt(s), floor)
    sol = integrate.solve_ivp(rhs, (math.sqrt(t), u1), np.asarray(x0, dtype=float), method="DOP853",
                              rtol=1e-12, atol=1e-13)
    assert sol.success
    x = sol.y[:, -1]
    if s == 0:
        x = x - floor * rhs(floor, x)
    return x


def starts(points, t, kappa):
    """Every case condition of (12)/(17): training points, region boundaries y_k +- sqrt(kappa t)
    exactly and 1e-9 off, midpoints, inside each region, the outer half-lines."""
    y = np.asarray(points, dtype=float)
    delta = smoothing.half_spacing(y)
    rho = math.sqrt(kappa * t)
    xs = [y[0] - 2.0, y[0] - 0.3 * delta, y[-1] + 0.3 * delta, y[-1] + 2.0]
    for yk in y:
        xs += [yk, yk + rho, yk - rho, yk + 0.5 * rho, yk - 0.5 * rho, yk + rho * (1 + 1e-9),
               yk - rho * (1 - 1e-9)]
    for a in y[:-1] + delta:
        xs += [a, a + 0.5 * (delta - rho), a - 0.9 * (delta - rho)]
    return np.array(xs)


def close(a, ref):
    return np.all(np.abs(np.asarray(a) - ref) <= FLOW.rtol * np.abs(ref) + FLOW.atol * (np.abs(ref) + 1))


CONFIGS = [([-1.0, 1.0], 1.0, 0.5), ([-1.0, 1.0], 4.0, 0.2), ([0.5, 3.5], 1.0, 2.0),
           (np.linspace(-1, 1, 4), 0.4, 0.02), (np.linspace(-1, 1, 4), 0.4, 0.25),
           (np.linspace(-2.5, 2.5, 5), 3.0, 0.1), (np.linspace(0, 6, 7), 0.5, 0.4)]


@pytest.mark.parametrize("points,kappa,t", CONFIGS)
@pytest.mark.parametrize("frac", [0.0, 0.01, 0.3, 0.9])
def test_flow_map_matches_ode_on_every_case(points, kappa, t, frac):
    x0 = starts(points, t, kappa)
    s = frac * t
    ref = ode(x0, t, s, points, kappa)
    assert close(sf.flow_map(x0, s, t, points, kappa), ref)
    if s == 0:
        assert close(sf.flow_map_to_zero(x0, t, points, kappa), ref)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(kappa=st.floats(0.05, 20.0), tf=st.floats(0.001, 0.99), sf_=st.floats(0.0, 1.0),
       n=st.integers(2, 6), x=st.floats(-1.5, 1.5), D=st.floats(0.5, 3.0))
def test_flow_map_vs_ode_hypothesis(kappa, tf, sf_, n, x, D):
    y = np.linspace(-D, D, n)
    delta = D / (n - 1)
    t = tf * delta ** 2 / kappa
    s = sf_ * t
    x0 = np.array([x * D * 1.3])
    assert close(sf.flow_map(x0, s, t, y, kappa), ode(x0, t, s, y, kappa))


@settings(max_examples=30, deadline=None, derandomize=True)
@given(kappa=st.floats(0.05, 20.0), tf=st.floats(0.0, 0.999), f1=st.floats(0.0, 1.0),
       f2=st.floats(0.0, 1.0), n=st.integers(2, 6))
def test_identity_composition_and_phi0(kappa, tf, f1, f2, n):
    y = np.linspace(-1.0, 1.0, n)
    delta = 1.0 / (n - 1)
    t = tf * delta ** 2 / kappa
    s, r = f1 * t, f1 * f2 * t
    x = starts(y, t, kappa) if t > 0 else np.linspace(-2, 2, 41)
    np.testing.assert_array_equal(sf.flow_map(x, t, t, y, kappa), x)
    two = sf.flow_map(sf.flow_map(x, s, t, y, kappa), r, s, y, kappa)
    np.testing.assert_allclose(two, sf.flow_map(x, r, t, y, kappa), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(sf.flow_map(x, 0.0, t, y, kappa), sf.flow_map_to_zero(x, t, y, kappa),
                               rtol=1e-12, atol=1e-13)
    xs = np.sort(x)
    assert np.all(np.diff(sf.flow_map(xs, s, t, y, kappa)) >= -1e-13)  # order preserving


@settings(max_examples=40, deadline=None, derandomize=True)
@given(kappa=st.floats(0.05, 20.0), tf=st.floats(0.001, 0.999), f=st.floats(0.0, 1.0),
       lo=st.floats(-3, 3), gap=st.floats(0.1, 4))
def test_two_points_eq12_equals_eq17(kappa, tf, f, lo, gap):
    y = np.array([lo, lo + gap])
    delta = gap / 2
    t = tf * delta ** 2 / kappa
    s = f * t
    x = starts(y, t, kappa)
    rho = math.sqrt(kappa * t)
    r, ratio = math.sqrt(s / t), (delta - math.sqrt(kappa * s)) / (delta - rho)
    np.testing.assert_allclose(sf.flow_map(x, s, t, y, kappa), sf._flow_map_eq17(x, y, delta, r, ratio, rho),
                               rtol=1e-12, atol=1e-12 * (abs(lo) + gap))


def test_flow_map_known_values_and_shapes():
    y = np.array([-1.0, 1.0])
    # t = 0.25, kappa = 1: tau_t = 0.5; s = 0.04: tau_s = 0.8, sqrt(s/t) = 0.4
    got = sf.flow_map(np.array([[-2.0, -0.5], [0.25, 1.5]]), 0.04, 0.25, y, 1.0)
    np.testing.assert_allclose(got, [[0.4 * (-1) - 1, -0.8], [0.4, 0.4 * 0.5 + 1]], rtol=1e-14)
    assert isinstance(sf.flow_map(0.3, 0.0, 0.25, y, 1.0), float)
    assert sf.flow_map_to_zero(0.25, 0.25, y, 1.0) == pytest.approx(0.5)
    assert sf.flow_map_to_zero(0.7, 0.25, y, 1.0) == 1.0
    # at t = 0 (s = 0) the map is the identity
    np.testing.assert_array_equal(sf.flow_map([0.3, 2.0], 0.0, 0.0, y, 1.0), [0.3, 2.0])


@pytest.mark.parametrize("call,match", [
    (lambda: sf.flow_map(0.0, 0.1, 1.0, [-1, 1], 1.0), "tau_t"),           # tau_t = 0
    (lambda: sf.flow_map(0.0, 0.1, 2.0, [-1, 1], 1.0), "tau_t"),           # tau_t < 0
    (lambda: sf.flow_map(0.0, 0.3, 0.2, [-1, 1], 1.0), "s must satisfy"),
    (lambda: sf.flow_map(0.0, -0.1, 0.2, [-1, 1], 1.0), "s must be >= 0"),
    (lambda: sf.flow_map(0.0, 0.1, 0.2, [-1, 0.1, 1], 1.0), "uniformly spaced"),
    (lambda: sf.flow_map(0.0, 0.1, 0.2, [1, -1], 1.0), "sorted"),
    (lambda: sf.flow_map(0.0, 0.1, 0.2, [1.0], 1.0), "n >= 2"),
    (lambda: sf.flow_map([0.0, np.nan], 0.1, 0.2, [-1, 1], 1.0), "NaN"),
    (lambda: sf.flow_map(0.0, np.nan, 0.2, [-1, 1], 1.0), "finite"),
    (lambda: sf.flow_map(0.0, 0.1, 0.2, [-1, np.nan], 1.0), "NaN"),
    (lambda: sf.flow_map(0.0, 0.1, 0.2, [-1, 1], 0.0), "kappa"),
    (lambda: sf.flow_map(0.0, 0.1, 0.2, [-1, 1], np.nan), "kappa"),
    (lambda: sf.flow_map_to_zero(0.0, 1.0, [-1, 1], 1.0), "tau_t"),
    (lambda: sf.pushforward([-1, 1], 0.0, 1.0), "t must be > 0"),
    (lambda: sf.pushforward([-1, 1], 1.0, 1.0), "tau_t"),
    (lambda: sf.flow_map_d(np.zeros((3, 2)), 0.1, 0.2, [[-1, 0], [1, 0.1]], 1.0), "first axis"),
    (lambda: sf.flow_map_d(np.zeros((3, 3)), 0.1, 0.2, [[-1, 0], [1, 0]], 1.0), "shape"),
    (lambda: sf.flow_map_d(np.zeros((3, 2)), 0.3, 0.2, [[-1, 0], [1, 0]], 1.0), "s must satisfy"),
    (lambda: sf.kl_bound_cor5(1.0, 1.0), "t0 < 1/kappa"),
    (lambda: sf.kl_bound_cor5(0.0, 1.0), "t0 must be > 0"),
])
def test_errors_name_the_condition(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---- the pushforward law -------------------------------------------------------------------------
@pytest.mark.parametrize("points,kappa,t", [([-1.0, 1.0], 1.0, 0.05), ([-1.0, 1.0], 0.4, 2.0),
                                            (np.linspace(-1, 1, 4), 0.4, 0.02), (np.linspace(0, 4, 3), 1.0, 0.3)])
def test_pushforward_masses_and_density(points, kappa, t):
    pf = sf.pushforward(points, t, kappa)
    y = np.asarray(points, dtype=float)
    assert pf.weights.sum() + pf.continuous_mass == pytest.approx(1.0, abs=1e-14)
    dens = sum(integrate.quad(lambda z: float(pf.pdf(z)), y[k], y[k + 1], epsrel=1e-12, epsabs=1e-14)[0]
               for k in range(len(y) - 1))
    assert dens == pytest.approx(pf.continuous_mass, rel=tol.QUADRATURE.rtol, abs=tol.QUADRATURE.atol)
    assert pf.pdf(y[0] - 0.1) == 0.0 and pf.pdf(y[-1] + 0.1) == 0.0
    # weights are P(x_t in the attracting region) under p_t = mean of N(y_k, t)
    rho = math.sqrt(kappa * t)
    sd = math.sqrt(t)
    mix = lambda a, b: np.mean(stats.norm.cdf(b, y, sd) - stats.norm.cdf(a, y, sd))  # noqa: E731
    want = [mix(-np.inf, y[0] + rho)] + [mix(v - rho, v + rho) for v in y[1:-1]] + [mix(y[-1] - rho, np.inf)]
    np.testing.assert_allclose(pf.weights, want, rtol=1e-12)
    # the cdf: 0 below y_1, jumps by w_1 at y_1, 1 at y_n; ac_cdf reaches the continuous mass
    assert pf.cdf(y[0] - 1e-12) == 0.0
    assert pf.cdf(y[0]) == pytest.approx(pf.weights[0], rel=1e-12)
    assert pf.cdf(y[-1]) == 1.0
    assert pf.ac_cdf(y[-1]) == pytest.approx(pf.continuous_mass, rel=1e-12)
    if len(y) == 2 and y[0] == -1:
        tau = 1 - math.sqrt(kappa * t)
        z = np.linspace(-1, 1, 11)
        ref = tau * 0.5 * (stats.norm.pdf(tau * z, -1, math.sqrt(t)) + stats.norm.pdf(tau * z, 1, math.sqrt(t)))
        np.testing.assert_allclose(pf.pdf(z), ref, rtol=1e-12)  # eq. (13)


def test_pushforward_sample_law():
    y = np.linspace(-1, 1, 4)
    pf = sf.pushforward(y, 0.02, 0.4)
    z = pf.sample(40000, seed=1)
    frac = (z[:, None] == y).mean(axis=0)
    se = np.sqrt(pf.weights * (1 - pf.weights) / len(z))
    assert np.all(np.abs(frac - pf.weights) <= tol.MC_SIGMAS * se)
    cont = z[~(z[:, None] == y).any(axis=1)]
    p = stats.kstest(cont, lambda q: np.asarray(pf.ac_cdf(q)) / pf.continuous_mass).pvalue
    assert p >= tol.KS_ALPHA
    np.testing.assert_array_equal(pf.sample(5, seed=3), pf.sample(5, seed=3))


# ---- d dimensions ----------------------------------------------------------------------------------
@pytest.mark.parametrize("n,kappa,t", [(2, 1.0, 0.5), (4, 0.4, 0.1)])
def test_flow_map_d_matches_ode_every_coordinate(n, kappa, t):
    d = 3
    y = np.linspace(-1, 1, n)
    pd = np.zeros((n, d))
    pd[:, 0] = y
    rng = np.random.default_rng(0)
    x1 = starts(y, t, kappa)
    x0 = np.column_stack([x1, rng.normal(size=(len(x1), d - 1))])

    def rhs(u, xf):
        r = u * u
        return (-u * smoothing.s_hat_d(xf.reshape(-1, d), pd, smoothing.tau_t(r, y, kappa), r)).ravel()

    for frac in (0.01, 0.5):
        s = frac * t
        sol = integrate.solve_ivp(rhs, (math.sqrt(t), math.sqrt(s)), x0.ravel(), method="DOP853",
                                  rtol=1e-12, atol=1e-13)
        ref = sol.y[:, -1].reshape(-1, d)
        got = sf.flow_map_d(x0, s, t, pd, kappa)
        assert close(got, ref)
        np.testing.assert_allclose(got[:, 1:], math.sqrt(s / t) * x0[:, 1:], rtol=1e-14)
        assert np.all(np.abs(ref[:, 1:]) > 0)  # Prop. 6's zeros do not hold for s > 0
    np.testing.assert_array_equal(sf.flow_map_d(x0, t, t, pd, kappa), x0)
    np.testing.assert_allclose(sf.flow_map_d(x0, 0.0, t, pd, kappa)[:, 1:], 0.0)


def test_kl_bound_cor5_value():
    t0, kappa = 0.1, 1.0
    tau = 1 - math.sqrt(0.1)
    want = 1 / (3 * t0 * tau) + math.log(math.sqrt(t0) / tau) + math.log(2 * math.sqrt(2 * math.pi))
    assert sf.kl_bound_cor5(t0, kappa) == pytest.approx(want, rel=1e-15)
