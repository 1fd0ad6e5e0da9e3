"""sftheory.theory.smoothing: the smoothed score functions of [SM] (eq. (7)-(9), (15)-(20), (29),
(37)). Every check compares with a route computed another way: quadrature of the definitions,
the toolkit's ESF, the paper's formulas written out here, a sampler run."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from sftheory.theory import smoothing as sm

Y2 = np.array([-1.0, 1.0])
Y5 = np.linspace(-2.0, 2.0, 5)  # Delta = 0.5


# ---------------------------------------------------------------- F (29) --------------------------
def test_F_at_zero_is_one_and_decreases_to_zero():
    assert sm.F(0.0) == pytest.approx(1.0, rel=1e-15)
    k = np.linspace(0, 12, 500)
    f = sm.F(k)
    assert np.all(np.diff(f) < 0) and np.all(f > 0)
    assert sm.F(40.0) < 1e-300
    assert isinstance(sm.F(0.5), float) and sm.F(k).shape == k.shape


@settings(max_examples=40, deadline=None)
@given(st.floats(min_value=-4.0, max_value=20.0))
def test_F_against_quadrature_of_its_definition(k):
    q = 2 * integrate.quad(lambda u: (u - k) ** 2 * stats.norm.pdf(u), k, np.inf,
                           epsabs=0.0, epsrel=1e-12)[0]
    # closed form: <= k^4 eps/2 rounding below k = 9 (< 1e-12), series beyond; quad 1e-12
    assert sm.F(k) == pytest.approx(q, rel=2e-11)


def test_F_series_branch_is_continuous_at_the_switch():
    assert sm.F(9.0 + 1e-12) == pytest.approx(sm.F(9.0), rel=1e-11)


def test_F_rejects_nan():
    with pytest.raises(ValueError, match="kappa"):
        sm.F(np.array([0.1, np.nan]))


# ---------------------------------------------------------------- points, tau_t -----------------
def test_half_spacing_and_validation():
    assert sm.half_spacing(Y5) == pytest.approx(0.5)
    assert sm.half_spacing(Y2[:, None]) == 1.0
    with pytest.raises(ValueError, match="sorted"):
        sm.half_spacing([1.0, -1.0, 0.0])
    with pytest.raises(ValueError, match="uniformly spaced"):
        sm.half_spacing([0.0, 1.0, 3.0])
    with pytest.raises(ValueError, match="n >= 2"):
        sm.half_spacing([0.0])
    with pytest.raises(ValueError, match="NaN"):
        sm.half_spacing([0.0, np.nan])


def test_tau_t():
    assert sm.tau_t(0.01, Y2, 4.0) == pytest.approx(1 - 0.2)
    with pytest.raises(ValueError, match="tau_t"):
        sm.tau_t(0.25, Y2, 4.0)  # tau = 0
    with pytest.raises(ValueError, match="t must be >= 0"):
        sm.tau_t(-0.1, Y2, 1.0)
    with pytest.raises(ValueError, match="kappa"):
        sm.tau_t(0.1, Y2, 0.0)


# ---------------------------------------------------------------- sbar, shat --------------------
def test_sbar_is_the_nearest_point_formula():
    x = np.random.default_rng(0).uniform(-3, 3, 200)
    nearest = Y5[np.argmin(np.abs(x[:, None] - Y5[None, :]), axis=1)]
    np.testing.assert_allclose(sm.s_bar(x, Y5, 0.1), (nearest - x) / 0.1, rtol=1e-14, atol=1e-13)
    # n = 2: (sgn x - x)/t (Sec. 3.1)
    np.testing.assert_allclose(sm.s_bar(x, Y2, 0.2), (np.sign(x) - x) / 0.2, rtol=1e-14, atol=1e-13)


@pytest.mark.parametrize("y,tau,t", [(Y2, 0.3, 0.1), (Y2, 0.9, 0.01), (Y5, 0.2, 0.05),
                                     (np.linspace(-1, 1, 4), 0.1, 1.0)])
def test_shat_is_the_tau_average_of_sbar(y, tau, t):
    """(8): (tau * sbar)(x) = shat(x), by quad of sbar over the window (eq. (7))."""
    delta = sm.half_spacing(y)
    mids = y[:-1] + delta
    x = np.concatenate([np.linspace(y[0] - 1, y[-1] + 1, 31), mids + tau, mids - tau])
    for xi in x:
        inside = [m for m in mids if xi - tau < m < xi + tau]
        q = integrate.quad(lambda z: sm.s_bar(z, y, t), xi - tau, xi + tau, points=inside or None,
                           epsabs=1e-11 * delta / t, epsrel=1e-12)[0] / (2 * tau)
        assert sm.s_hat(xi, y, tau, t) == pytest.approx(q, rel=1e-9, abs=1e-9 * delta / t)


def test_shat_eq9_literal_and_shape():
    x = np.linspace(-2, 2, 40).reshape(4, 10)
    tau, t = 0.4, 0.3
    lit = np.select([x <= -tau, x >= tau], [-(x + 1) / t, -(x - 1) / t], (1 - tau) * x / (tau * t))
    out = sm.s_hat(x, Y2, tau, t)
    assert out.shape == x.shape
    np.testing.assert_allclose(out, lit, rtol=1e-14, atol=1e-14)
    assert sm.s_hat(0.2, Y2, tau) == pytest.approx((1 - tau) * 0.2 / tau)  # default t = 1


@pytest.mark.parametrize("bad,match", [(0.0, "tau"), (1.0, "tau"), (-0.1, "tau"), (math.nan, "tau")])
def test_shat_rejects_tau_outside_0_delta(bad, match):
    with pytest.raises(ValueError, match=match):
        sm.s_hat(0.1, Y2, bad, 0.1)


def test_shat_validation():
    with pytest.raises(ValueError, match="t must be > 0"):
        sm.s_hat(0.1, Y2, 0.5, 0.0)
    with pytest.raises(ValueError, match="x contains NaN"):
        sm.s_hat(np.array([0.0, np.nan]), Y2, 0.5, 0.1)
    with pytest.raises(ValueError, match="uniformly spaced"):
        sm.s_hat(0.0, [0.0, 1.0, 3.0], 0.2, 0.1)
    with pytest.raises(ValueError, match="sorted"):
        sm.s_bar(0.0, [1.0, 0.0], 0.1)


def test_sbar_agrees_with_the_esf_away_from_midpoints_as_t_to_0():
    from sftheory.models import EmpiricalDistribution
    from sftheory.processes import VE

    path = EmpiricalDistribution(Y5[:, None]).path(VE())
    x = np.linspace(-2.6, 2.6, 301)
    far = np.min(np.abs(x[:, None] - (Y5[:-1] + 0.5)[None, :]), axis=1) > 0.1
    errs = []
    for t in (0.02, 0.01, 0.005):
        esf = path.score(x[:, None], t)[:, 0]
        err = np.max(np.abs(esf - sm.s_bar(x, Y5, t))[far])
        # (24): |ESF - sbar| <= 2(n-1)D/t exp(-Delta d/t), d = distance to the midpoint (0.1)
        assert err <= 2 * 4 * 2 / t * math.exp(-0.5 * 0.1 / t) * 1.01
        errs.append(err)
    assert errs[0] > errs[1] > errs[2]


def test_smoothed_esf_is_the_window_average_of_the_esf():
    from sftheory.models import EmpiricalDistribution
    from sftheory.processes import VE

    path = EmpiricalDistribution(Y5[:, None]).path(VE())
    t, tau = 0.02, 0.3
    x = np.linspace(-2.5, 2.5, 11)
    q = sm.smooth_interval(lambda z: float(path.score(np.array([[z]]), t)[0, 0]), x, tau,
                           breakpoints=Y5[:-1] + 0.5)
    np.testing.assert_allclose(sm.smoothed_esf(x, Y5, tau, t), q, rtol=1e-9, atol=1e-9 * 0.5 / t)


# ---------------------------------------------------------------- d dimensions -------------------
def test_shat_d_eq20_on_the_first_axis():
    pts = np.zeros((5, 3))
    pts[:, 0] = Y5
    x = np.random.default_rng(1).normal(size=(50, 3))
    out = sm.s_hat_d(x, pts, 0.2, 0.1)
    np.testing.assert_allclose(out[:, 0], sm.s_hat(x[:, 0], Y5, 0.2, 0.1), rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(out[:, 1:], -x[:, 1:] / 0.1, rtol=1e-13, atol=1e-12)


def test_shat_d_is_rotation_equivariant():
    th = 0.7
    R = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    pts = np.column_stack([Y5, np.zeros(5)])
    x = np.random.default_rng(2).normal(size=(40, 2))
    shift = np.array([0.3, -0.2])
    out_rot = sm.s_hat_d(x @ R.T + shift, pts @ R.T + shift, 0.2, 0.1)
    np.testing.assert_allclose(out_rot, sm.s_hat_d(x, pts, 0.2, 0.1) @ R.T, rtol=1e-12, atol=1e-11)
    with pytest.raises(ValueError, match="line"):
        sm.s_hat_d(x, np.array([[0.0, 0.0], [1.0, 0.1], [2.0, 0.0]]), 0.2, 0.1)
    with pytest.raises(ValueError, match="shape"):
        sm.s_hat_d(np.zeros((3, 3)), pts, 0.2, 0.1)


# ---------------------------------------------------------------- smoothing operators ------------
def test_smooth_cube_of_a_smooth_field_and_of_sbar():
    # a field with coordinate i depending on x_i only: the cube average is the 1D average per axis
    f = lambda p: np.column_stack([np.sin(p[:, 0]), p[:, 1] ** 2])  # noqa: E731
    x = np.array([[0.3, -0.4], [1.0, 2.0]])
    tau = 0.25
    want = np.column_stack([(np.cos(x[:, 0] - tau) - np.cos(x[:, 0] + tau)) / (2 * tau),
                            x[:, 1] ** 2 + tau ** 2 / 3])
    np.testing.assert_allclose(sm.smooth_cube(f, x, tau), want, rtol=1e-13)
    with pytest.raises(ValueError, match="max_evals"):
        sm.smooth_cube(f, x, tau, order=64, panels=64)


def test_smooth_min_norm_of_sbar_is_shat_d():
    t, tau = 0.1, 0.3
    y = np.linspace(-1, 1, 3)
    pts = np.column_stack([y, np.zeros(3)])

    def f(p):
        k = np.argmin(np.abs(p[:, :1] - y[None, :]), axis=1)
        return np.column_stack([(y[k] - p[:, 0]) / t, -p[:, 1] / t])

    x = np.array([[0.62, 0.1], [-0.45, -0.2]])
    out, dirs = sm.smooth_min_norm(f, x, tau, n_directions=64, return_directions=True)
    np.testing.assert_allclose(out, sm.s_hat_d(x, pts, tau, t), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(np.abs(dirs[:, 0]), 1.0, atol=1e-6)


def test_smooth_min_norm_in_1d_is_the_interval_average_and_ties_give_zero():
    f = lambda p: np.sin(p)  # noqa: E731
    x = np.array([[0.4], [1.3]])
    tau = 0.5
    want = (np.cos(x - tau) - np.cos(x + tau)) / (2 * tau)
    np.testing.assert_allclose(sm.smooth_min_norm(f, x, tau), want, rtol=1e-12)
    # f = (p_1^2, p_2^2): the line average along v is x^2 + tau^2 v^2/3; at x = 0 the
    # directions e1 and e2 give (tau^2/3, 0) and (0, tau^2/3): equal norms, different vectors,
    # so the minimum-norm element is not unique and gamma = 0 (37)
    sq = lambda p: p ** 2  # noqa: E731
    e12 = np.array([[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(sm.smooth_min_norm(sq, np.zeros((1, 2)), 0.3, directions=e12,
                                                     refine=False), [[0.0, 0.0]])
    # v and -v give the same vector: unique
    h = lambda p: np.column_stack([np.sign(p[:, 0]), np.ones(len(p))])  # noqa: E731
    y = sm.smooth_min_norm(h, np.array([[0.5, 0.0]]), 0.3,
                           directions=np.array([[0.0, 1.0], [0.0, -1.0]]), refine=False)
    np.testing.assert_allclose(y, [[1.0, 1.0]])


def test_smoothing_operator_validation():
    with pytest.raises(ValueError, match="callable"):
        sm.smooth_interval(3.0, 0.0, 0.1)
    with pytest.raises(ValueError, match="tau"):
        sm.smooth_interval(np.sin, 0.0, -0.1)
    with pytest.raises(ValueError, match=r"shape \(N, d\)"):
        sm.smooth_cube(lambda p: p, np.zeros(3), 0.1)
    with pytest.raises(ValueError, match="directions"):
        sm.smooth_min_norm(lambda p: p, np.zeros((1, 2)), 0.1, directions=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="returned shape"):
        sm.smooth_cube(lambda p: p[:, :1], np.zeros((1, 2)), 0.1, order=2, panels=2)


# ---------------------------------------------------------------- the score field ----------------
def test_smoothed_score_field_values_and_validation():
    field = sm.SmoothedScore(Y5, 0.4)
    assert field.dim == 1
    x = np.linspace(-2.5, 2.5, 7)[:, None]
    t = 0.05
    np.testing.assert_allclose(field(x, t)[:, 0], sm.s_hat(x[:, 0], Y5, sm.tau_t(t, Y5, 0.4), t))
    tt = np.linspace(0.01, 0.2, 7)
    per = field(x, tt)[:, 0]
    for i in range(7):
        assert per[i] == pytest.approx(sm.s_hat(x[i, 0], Y5, sm.tau_t(tt[i], Y5, 0.4), tt[i]))
    with pytest.raises(ValueError, match="t must lie in"):
        field(x, 1.0)  # tau_t < 0
    with pytest.raises(ValueError, match="t must lie in"):
        field(x, 0.0)
    pts = np.column_stack([Y5, np.zeros(5)])
    f2 = sm.SmoothedScore(pts, 0.4)
    assert f2.dim == 2
    x2 = np.random.default_rng(3).normal(size=(6, 2))
    np.testing.assert_allclose(f2(x2, t), sm.s_hat_d(x2, pts, sm.tau_t(t, Y5, 0.4), t))
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x2, dtype=torch.float32)
    out = f2(xt, t)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32


def test_smoothed_score_with_euler_maruyama_interpolates():
    """The ODE (11) (h = 0) driven by SmoothedScore from p_t0 ends inside [y_1, y_n] with a spread
    of values between the points (not only the training points); the SDE also runs."""
    from sftheory.processes import VE
    from sftheory.samplers import sample_euler_maruyama

    kappa, t0 = 0.4, 0.02
    field = sm.SmoothedScore(Y2, kappa)
    rng = np.random.default_rng(0)
    x0 = (rng.choice(Y2, 4000) + math.sqrt(t0) * rng.normal(size=4000))[:, None]
    ts = np.linspace(t0, 0.0, 401)
    res = sample_euler_maruyama(field, x0, ts, VE(), h=0.0, seed=0, disable=True)
    xf = res.x[:, 0]
    assert np.all(np.isfinite(xf))
    # the exact flow (Prop. 3): phi_{0|t0}(x) = x / tau_t0 inside [-tau, tau], sgn(x) outside
    tau0 = sm.tau_t(t0, Y2, kappa)
    exact = np.where(np.abs(x0[:, 0]) <= tau0, x0[:, 0] / tau0, np.sign(x0[:, 0]))
    # Euler in t with 400 steps; near t = 0 the drift ~ 1/t makes the last step O(sqrt(dt)) off
    assert np.median(np.abs(xf - exact)) < 0.02
    inner = np.abs(xf) < 0.9
    assert 0.01 < inner.mean() < 0.5  # an interpolating, non-atomic part
    sde = sample_euler_maruyama(field, x0[:200], ts, VE(), seed=1, disable=True)
    assert np.all(np.isfinite(sde.x))
