"""Forward processes: conditional laws vs the moment ODEs, hand-derived closed forms (mpmath),
quadrature of the clock, Chapman-Kolmogorov, the time change to the canonical OU process,
stationary laws, exact sampling and argument checks."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate

from sftheory.models import stationary_law
from sftheory.processes import OU, VE, VP, LinearSDE
from sftheory.testing import assert_moments_match
import sftheory.testing.strategies as sst
from sftheory.testing.tolerances import EXACT_FLOAT64, FLOW_ODE

PROCESSES = [
    pytest.param(OU(), id="OU"),
    pytest.param(OU(a=1.3, sigma=0.7), id="OU(1.3,0.7)"),
    pytest.param(VP(0.1, 20.0), id="VP"),
    pytest.param(VP(1.0, 1.0), id="VP-const-beta"),
    pytest.param(VE(), id="VE"),
    pytest.param(VE(sigma=25.0), id="VE(25)"),
]
WITH_STATIONARY = [p for p in PROCESSES if not isinstance(p.values[0], VE)]

# kappa by hand: drift a(t) = kappa g(t)^2 ([OS] App. B.2)
EXPECTED_KAPPA = {OU: lambda p: p.a / p.sigma**2, VP: lambda p: 0.5, VE: lambda p: 0.0}


def _close(actual, expected, tol, scale=1.0):
    np.testing.assert_allclose(actual, expected, rtol=tol.rtol, atol=tol.atol * scale)


# ---- coefficients -------------------------------------------------------------------------
@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("t", [0.0, 1e-8, 0.3, 1.0, 2.0])
def test_drift_and_diffusion_match_sde_definition(process, t, exact_a, exact_g2):
    x = np.array([[1.5, -2.0], [0.0, 3.0]])
    _close(process.drift(x, t), -exact_a(process, t) * x, EXACT_FLOAT64)
    _close(float(process.diffusion(t)) ** 2, exact_g2(process, t), EXACT_FLOAT64)
    _close(float(process.drift_coef(t)), exact_a(process, t), EXACT_FLOAT64)


# ---- conditional law vs the moment ODEs -----------------------------------------------------
@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("s", [0.0, 0.4])
def test_transition_matches_moment_ode(process, s, exact_a, exact_g2):
    """dm/dt = -a(t) m, dv/dt = -2 a(t) v + g(t)^2 from m(s) = 1, v(s) = 0 (DOP853, rtol 1e-11)."""
    def rhs(t, y):
        a = exact_a(process, t)
        return [-a * y[0], -2.0 * a * y[1] + exact_g2(process, t)]

    ts = [s + dt for dt in (1e-3, 0.1, 0.5, 1.0, 1.6)]
    sol = integrate.solve_ivp(rhs, (s, ts[-1]), [1.0, 0.0], method="DOP853", rtol=1e-11,
                              atol=1e-14, t_eval=ts)
    assert sol.success, sol.message
    for j, t in enumerate(ts):
        m, v = process.transition(s, t) if s > 0 else process.conditional(t)
        _close(m, sol.y[0, j], FLOW_ODE)
        _close(v, sol.y[1, j], FLOW_ODE, scale=max(1.0, abs(sol.y[1, j])))


# ---- closed forms derived by hand, to full precision (mpmath reference) --------------------
@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("t", [1e-12, 1e-8, 1e-4, 0.3, 1.0, 2.5])
def test_conditional_closed_form_full_relative_precision(process, t, exact_mv):
    """OU: m = e^{-at}, v = sigma^2 (1 - e^{-2at}) / 2a; VP: m = e^{-B/2}, v = 1 - e^{-B};
    VE: v = t; VE(sigma): v = (sigma^{2t} - 1) / (2 ln sigma). Relative precision holds at
    t = 1e-8, where 1 - e^{-2at} computed naively would lose half the digits."""
    m_ref, v_ref = exact_mv(process, t)
    m, v = process.conditional(t)
    np.testing.assert_allclose(m, m_ref, rtol=EXACT_FLOAT64.rtol, atol=0)
    np.testing.assert_allclose(v, v_ref, rtol=EXACT_FLOAT64.rtol, atol=0)
    assert process.mean_coef(t) == m and process.var(t) == v


def test_small_time_variance_keeps_digits_that_naive_formula_loses():
    """At t = 1e-8 the naive 1 - exp(-t) has relative error ~1e-8; the library must not."""
    t = 1e-8
    naive = (1.0 - math.exp(-t)) / 1.0  # OU(a=0.5, sigma=1): v = 1 - e^{-t}
    exact = -math.expm1(-t)
    assert abs(naive - exact) / exact > 1e3 * EXACT_FLOAT64.rtol  # the trap is real
    np.testing.assert_allclose(OU().conditional(t)[1], exact, rtol=EXACT_FLOAT64.rtol, atol=0)


@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("s,t", [(0.2, 0.7), (0.7 - 1e-9, 0.7), (1.0, 1.0), (0.0, 1.3),
                                 (1e-8, 2e-8)])
def test_transition_closed_form(process, s, t, exact_mv):
    m_ref, v_ref = exact_mv(process, t, s)
    m, v = process.transition(s, t)
    np.testing.assert_allclose(m, m_ref, rtol=EXACT_FLOAT64.rtol, atol=0)
    np.testing.assert_allclose(v, v_ref, rtol=EXACT_FLOAT64.rtol, atol=0)


def test_transition_at_zero_is_identity():
    for p in (OU(), VP(), VE(), VE(sigma=25.0)):
        assert p.conditional(0.0) == (1.0, 0.0)
        assert p.transition(0.8, 0.8) == (1.0, 0.0)


@given(sst.processes(), st.lists(sst.diffusion_times(1e-3, 5.0), min_size=3, max_size=3))
def test_chapman_kolmogorov(process, times):
    """m_{u|s} = m_{u|t} m_{t|s}, v_{u|s} = m_{u|t}^2 v_{t|s} + v_{u|t}."""
    s, t, u = sorted(times)
    m_ts, v_ts = process.transition(s, t)
    m_ut, v_ut = process.transition(t, u)
    m_us, v_us = process.transition(s, u)
    np.testing.assert_allclose(m_us, m_ut * m_ts, rtol=EXACT_FLOAT64.rtol, atol=0)
    np.testing.assert_allclose(v_us, m_ut**2 * v_ts + v_ut, rtol=EXACT_FLOAT64.rtol, atol=0)


@given(sst.processes(), sst.diffusion_times(1e-3, 5.0))
def test_conditional_and_transition_from_zero_match_sde_definition(process, t):
    """Both routes of the library (clock vs clock increment) against mpmath from the SDE."""
    from conftest import _exact_mv

    exact = _exact_mv(process, t)
    np.testing.assert_allclose(process.conditional(t), exact, rtol=EXACT_FLOAT64.rtol, atol=0)
    np.testing.assert_allclose(process.transition(0.0, t), exact, rtol=EXACT_FLOAT64.rtol, atol=0)


def test_conditional_many_is_conditional_per_time():
    ts = np.array([0.0, 1e-8, 0.3, 2.0])
    for process in (OU(), VP(), VE(), VE(sigma=25.0)):
        m, v = process.conditional_many(ts)
        assert m.shape == v.shape == (4,)
        for i, t in enumerate(ts):
            assert (m[i], v[i]) == process.conditional(float(t))
    with pytest.raises(ValueError, match=">= 0"):
        VP().conditional_many(np.array([0.1, -1.0]))
    with pytest.raises(ValueError, match="overflows"):
        VE(sigma=25.0).conditional_many(np.array([0.1, 1e3]))


# ---- clock (time change) ---------------------------------------------------------------------
@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("t", [1e-3, 0.3, 1.0, 2.0])
def test_clock_is_integral_of_g_squared(process, t, exact_g2):
    val, err = integrate.quad(lambda u: exact_g2(process, u), 0.0, t, epsabs=0.0, epsrel=1e-13)
    clock = float(process.clock(t))
    # STYLE 3.5: closed form vs adaptive quadrature within 10 * abserr (+ float64 rounding)
    assert abs(clock - val) <= 10 * err + EXACT_FLOAT64.rtol * abs(val), (clock, val, err)
    assert float(process.time_change(t)) == clock


@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("t", [1e-12, 1e-8, 1e-3, 0.3, 1.0, 2.5])
def test_clock_inverse_inverts_clock_on_grid(process, t):
    np.testing.assert_allclose(float(process.clock_inverse(process.clock(t))), t,
                               rtol=EXACT_FLOAT64.rtol, atol=0)
    assert float(process.clock_inverse(0.0)) == 0.0


@given(sst.processes(), sst.diffusion_times(1e-8, 5.0))
def test_clock_inverse_inverts_clock(process, t):
    np.testing.assert_allclose(float(process.clock_inverse(process.clock(t))), t,
                               rtol=EXACT_FLOAT64.rtol, atol=0)


@given(sst.processes(), sst.diffusion_times(1e-3, 5.0), sst.diffusion_times(1e-3, 5.0))
def test_clock_increment_is_difference_of_clocks(process, s, t):
    s, t = min(s, t), max(s, t)
    inc = float(process.clock_increment(s, t))
    diff = float(process.clock(t)) - float(process.clock(s))
    # the difference of clocks carries rounding eps * clock(t), the increment does not
    assert abs(inc - diff) <= EXACT_FLOAT64.rtol * float(process.clock(t))


@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("t", [1e-8, 0.3, 1.0, 2.5])
def test_conditional_equals_canonical_on_clock(process, t, exact_mv, exact_g2):
    """[OS] App. B.2: on theta(t) = int g^2 the process is dX = -kappa X dtheta + dW. Both sides
    from the SDE definitions: the law of X_t in mpmath; the canonical OU (kappa by hand) at
    theta(t) by quadrature of the textbook g^2, its law in mpmath."""
    theta = integrate.quad(lambda s: exact_g2(process, s), 0.0, t, epsabs=0, epsrel=1e-13)[0]
    kappa = EXPECTED_KAPPA[type(process)](process)
    canonical = OU(a=kappa, sigma=1.0) if kappa > 0 else VE()
    m_c, v_c = exact_mv(canonical, theta)
    np.testing.assert_allclose(exact_mv(process, t), [m_c, v_c], rtol=1e-11, atol=0)
    np.testing.assert_allclose(process.conditional(t), [m_c, v_c], rtol=1e-11, atol=0)
    assert process.canonical() == canonical


@pytest.mark.parametrize("process", PROCESSES)
def test_canonical_process_is_unit_diffusion_ou(process):
    kappa = EXPECTED_KAPPA[type(process)](process)
    can = process.canonical()
    assert isinstance(can, LinearSDE)
    x = np.array([[2.0, -1.0]])
    for theta in (0.0, 0.5, 3.0):
        assert float(can.diffusion(theta)) == 1.0
        assert float(can.clock(theta)) == theta
        _close(can.drift(x, theta), -kappa * x, EXACT_FLOAT64)
    _close(process.kappa, kappa, EXACT_FLOAT64)


# ---- stationary law ------------------------------------------------------------------------------
STATIONARY_VAR = {OU: lambda p: p.sigma**2 / (2 * p.a), VP: lambda p: 1.0}


@pytest.mark.parametrize("process,big_t", [(OU(), 200.0), (OU(a=1.3, sigma=0.7), 150.0),
                                           (VP(0.1, 20.0), 10.0), (VP(1.0, 1.0), 200.0)],
                         ids=["OU", "OU(1.3,0.7)", "VP", "VP-const-beta"])
@pytest.mark.parametrize("dim", [1, 3])
def test_stationary_is_long_time_limit(process, big_t, dim):
    var = STATIONARY_VAR[type(process)](process)
    law = stationary_law(process, dim)
    np.testing.assert_array_equal(law.mean, np.zeros(dim))
    _close(law.cov, var * np.eye(dim), EXACT_FLOAT64)
    m, v = process.conditional(big_t)
    assert 0.0 <= m < 1e-30  # theta(T) >= 100 for these T
    np.testing.assert_allclose(v, var, rtol=EXACT_FLOAT64.rtol, atol=0)


@pytest.mark.parametrize("process", WITH_STATIONARY)
@pytest.mark.parametrize("t", [0.1, 1.0, 3.0])
def test_stationary_law_is_invariant(process, t):
    law = stationary_law(process, 2)
    pt = law.marginal(process, t)
    _close(pt.mean, law.mean, EXACT_FLOAT64)
    _close(pt.cov, law.cov, EXACT_FLOAT64)


@pytest.mark.parametrize("process", [VE(), VE(sigma=25.0)])
def test_ve_has_no_stationary_law(process):
    assert process.stationary_variance() is None
    with pytest.raises(ValueError, match="no stationary"):
        stationary_law(process, 2)


# ---- exact sampling ------------------------------------------------------------------------------
@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("s,t,seed", [(0.0, 0.5, 1), (0.3, 1.0, 2)])
def test_sample_transition_moments(process, s, t, seed, exact_mv):
    """X_t - m X_s ~ N(0, v I) exactly: sample mean/cov within 5 SE (fixed seeds)."""
    n, d = 200_000, 2
    x0 = np.random.default_rng(100 + seed).normal(size=(n, d)) * 2.0 + np.array([1.0, -1.0])
    xt = process.sample_transition(x0, t, s=s, seed=seed)
    assert xt.shape == x0.shape
    m, v = exact_mv(process, t, s)
    assert_moments_match(xt - m * x0, np.zeros(d), v * np.eye(d))


def test_sample_transition_seeding():
    p = VP()
    x = np.zeros((50, 3))
    a = p.sample_transition(x, 0.5, seed=7)
    np.testing.assert_array_equal(a, p.sample_transition(x, 0.5, seed=7))
    np.testing.assert_array_equal(a, p.sample_transition(x, 0.5, seed=np.random.default_rng(7)))
    assert not np.array_equal(a, p.sample_transition(x, 0.5, seed=8))


def test_sample_transition_keeps_1d_shape_and_accepts_ints():
    out = OU().sample_transition(np.arange(5), 1.0, seed=0)
    assert out.shape == (5,) and out.dtype == np.float64


def test_sample_transition_zero_time_is_identity():
    x = np.random.default_rng(0).normal(size=(10, 2))
    np.testing.assert_array_equal(VP().sample_transition(x, 0.0, seed=0), x)


# ---- Fokker-Planck right-hand side vs the Gaussian closed form -------------------------------
@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("t", [0.05, 0.7])
def test_log_fokker_planck_rhs_matches_gaussian_time_derivative(process, t, exact_a, exact_g2,
                                                                 exact_mv):
    """For p_t = N(mu_t, s_t) in d = 1: d/dt log p_t from mu' = -a mu, s' = -2 a s + g^2."""
    mu0, s0 = 0.7, 0.4
    m, v = exact_mv(process, t)
    mu, s = m * mu0, m * m * s0 + v
    a, g2 = exact_a(process, t), exact_g2(process, t)
    dmu, ds = -a * mu, -2 * a * s + g2
    x = np.array([[-2.0], [0.1], [0.7], [3.0]])
    r = x[:, 0] - mu
    dt_logp = -0.5 * ds / s + r * dmu / s + r * r * ds / (2 * s * s)
    grad = -(x - mu) / s
    lap = np.full(len(x), -1.0 / s)
    rhs = process.log_fokker_planck_rhs(x, t, grad, lap)
    scale = np.abs(0.5 * ds / s) + np.abs(r * dmu / s) + np.abs(r * r * ds / (2 * s * s))
    assert np.all(np.abs(rhs - dt_logp) <= EXACT_FLOAT64.rtol * 10 * scale), (rhs, dt_logp)


# ---- equality, hashing, repr -------------------------------------------------------------------
def test_equality_hash_repr():
    assert OU() == OU(a=0.5, sigma=1.0) and hash(OU()) == hash(OU(0.5, 1.0))
    assert OU() != OU(a=0.6) and OU() != VP()
    assert VE(sigma=1.0) == VE()
    assert VP(0.1, 20.0) == VP()
    assert repr(VE(sigma=25.0)) == "VE(sigma=25.0)" and repr(VE()) == "VE()"
    assert len({OU(), OU(0.5, 1.0), VE(), VE(25.0)}) == 3


# ---- bad inputs ------------------------------------------------------------------------------
@pytest.mark.parametrize("bad_t,match", [(-1e-3, ">= 0"), (float("nan"), "finite"),
                                         (float("inf"), "finite"), (np.array([0.1, 0.2]), "scalar"),
                                         ("1.0", "real number")])
@pytest.mark.parametrize("process", [OU(), VP(), VE(), VE(sigma=25.0)])
def test_bad_time_raises(process, bad_t, match):
    with pytest.raises(ValueError, match=match):
        process.conditional(bad_t)
    with pytest.raises(ValueError, match=match):
        process.transition(0.0, bad_t)
    with pytest.raises(ValueError, match=match):
        process.sample_transition(np.zeros((2, 2)), bad_t, seed=0)


_TIME_FNS = ("diffusion", "clock", "clock_inverse", "drift_coef", "time_change")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1e-3, np.array([0.1, np.nan]),
                                 np.array([0.2, -0.5]), np.array([True, False])])
@pytest.mark.parametrize("process", [OU(), VP(), VE(), VE(sigma=25.0)])
def test_coefficients_of_time_refuse_bad_times(process, bad):
    """NaN, inf, negative or boolean times (or clock values) raise ValueError naming the argument
    instead of returning NaN, inf or the formula outside its domain (VP().clock(-1) was 9.85);
    on numpy and torch alike."""
    torch = pytest.importorskip("torch")
    fns = _TIME_FNS + (("beta",) if isinstance(process, VP) else ())
    as_tensor = torch.as_tensor(np.asarray(bad) if np.asarray(bad).dtype == bool
                                else np.asarray(bad, dtype=np.float64))
    for name in fns:
        for arg in (bad, as_tensor):
            with pytest.raises(ValueError, match="t must be|theta must be"):
                getattr(process, name)(arg)
    with pytest.raises(ValueError, match="t must be|s must be"):
        process.clock_increment(0.1, bad) if np.ndim(bad) == 0 else \
            process.clock_increment(np.zeros(2), bad)


def test_coefficients_of_time_accept_good_times():
    torch = pytest.importorskip("torch")
    vp = VP()
    assert vp.clock(0.0) == 0.0 and np.all(np.isfinite(vp.clock(np.array([0.0, 1.0, 5.0]))))
    assert vp.diffusion(np.array([], dtype=float)).shape == (0,)
    assert vp.clock(np.array([0, 1])).dtype == np.float64  # integer times are times
    assert float(vp.clock(torch.tensor(0.5))) == pytest.approx(vp.clock(0.5), rel=1e-7)


def test_transition_needs_s_le_t():
    with pytest.raises(ValueError, match="s <= t"):
        VP().transition(0.5, 0.2)
    with pytest.raises(ValueError, match=">= 0"):
        VP().transition(-0.1, 0.2)


@pytest.mark.parametrize("factory,match", [
    (lambda: OU(a=0.0), "a must be"),
    (lambda: OU(a=-1.0), "a must be"),
    (lambda: OU(a=float("nan")), "a must be"),
    (lambda: OU(sigma=0.0), "sigma must be"),
    (lambda: VP(beta_min=0.0), "beta_min must be"),
    (lambda: VP(beta_min=-0.1), "beta_min must be"),
    (lambda: VP(1.0, 0.5), "beta_max >= beta_min"),
    (lambda: VP(0.1, float("inf")), "beta_max"),
    (lambda: VP(0.1, float("nan")), "beta_max"),
    (lambda: VE(sigma=0.0), "sigma must be"),
    (lambda: VE(sigma=-25.0), "sigma must be"),
    (lambda: VE(sigma=float("inf")), "sigma must be"),
])
def test_bad_parameters_raise(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_sample_transition_bad_inputs():
    with pytest.raises(ValueError, match="NaN or infinite"):
        OU().sample_transition(np.array([[0.0, np.nan]]), 1.0, seed=0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        OU().sample_transition(np.array([[0.0, np.inf]]), 1.0, seed=0)
    with pytest.raises(ValueError, match="seed"):
        OU().sample_transition(np.zeros((2, 2)), 1.0, seed=1.5)
    with pytest.raises(ValueError, match="s <= t"):
        OU().sample_transition(np.zeros((2, 2)), 0.5, s=1.0, seed=0)
