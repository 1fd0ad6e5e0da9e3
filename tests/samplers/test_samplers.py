"""Samplers against test problems that carry their exact solution (torchsde's practice).

For a Gaussian p0 the score is linear, so every chain x_{k+1} = alpha x + beta S(x, t_k) +
sigma xi is a linear recursion whose coefficients the tests compute themselves from the SDE's
textbook definition (scipy quadrature for the exponential integrator), and whose exact law or,
given the Brownian path, exact trajectory follows. The probability-flow ODE of a Gaussian has the
exact flow map x -> m_e mu + sqrt(c_e / c_T) (x - m_T mu), c_t = m_t^2 s0 + v_t.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from sftheory.fields import as_field
from sftheory.models import Gaussian
from sftheory.processes import OU, VE, VP
from sftheory.samplers import (BrownianPath, initial_points, sample_euler_maruyama,
                               sample_exponential, sample_ode)
from sftheory.testing import textbook
from sftheory.testing.tolerances import MC_SIGMAS

MU, S0 = 0.7, 0.3
PROCESSES = [OU(), VP(), VP(beta_min=1.0, beta_max=5.0), VE(), VE(sigma=25.0)]


def _c(process, t):
    m, v = textbook.exact_mv(process, float(t))
    return m, m * m * S0 + v


def _coeffs(kind, process, ts, h):
    """(alpha, beta, sigma) per step from the textbook SDE (a = drift coefficient, g^2):
    Euler-Maruyama by definition; the exponential integrator by scipy quad of its integrals."""
    out = []
    for hi, lo in zip(ts[:-1], ts[1:]):
        def h2(u):
            return textbook.diffusion_sq(process, u) if h is None else h * h
        if kind == "em":
            dt = hi - lo
            a, g2 = float(textbook.drift_coef(process, hi)), float(textbook.diffusion_sq(process, hi))
            out.append((1 + dt * a, dt * (g2 + float(h2(hi))) / 2, math.sqrt(dt * float(h2(hi)))))
        else:
            def grow(u):  # exp(int_lo^u a)
                return math.exp(integrate.quad(lambda r: float(textbook.drift_coef(process, r)), lo, u,
                                               epsabs=0, epsrel=1e-13)[0])
            q = dict(epsabs=0, epsrel=1e-12)
            alpha = grow(hi)
            beta = integrate.quad(lambda u: grow(u) * (float(textbook.diffusion_sq(process, u))
                                                       + float(h2(u))) / 2, lo, hi, **q)[0]
            var = integrate.quad(lambda u: grow(u) ** 2 * float(h2(u)), lo, hi, **q)[0]
            out.append((alpha, beta, math.sqrt(var)))
    return np.array(out)


def _chain(coef, process, ts, x, xis=None):
    """The linear recursion with the exact Gaussian score S(x, t) = -(x - m mu)/c."""
    x = np.array(x, dtype=np.float64)
    for k, (al, be, si) in enumerate(coef):
        m, c = _c(process, ts[k])
        x = al * x - be * (x - m * MU) / c
        if xis is not None:
            x = x + si * xis[k]
    return x


@pytest.mark.parametrize("kind,sampler", [("em", sample_euler_maruyama), ("exp", sample_exponential)])
@pytest.mark.parametrize("process", PROCESSES, ids=repr)
@pytest.mark.parametrize("h", [None, 0.0, 0.6])
def test_trajectory_equals_exact_linear_chain_given_the_brownian_path(kind, sampler, process, h):
    path = Gaussian([MU], S0).path(process)
    ts = np.linspace(1.0, 0.02, 13)
    x = np.linspace(-2, 3, 7)[:, None]
    noise = BrownianPath(x.shape, seed=3)
    res = sampler(path, x, ts, process, h=h, noise=noise, disable=True)
    coef = _coeffs(kind, process, ts, h)
    xis = [(noise(ts[k]) - noise(ts[k + 1])) / math.sqrt(ts[k] - ts[k + 1]) for k in range(len(ts) - 1)]
    ref = _chain(coef, process, ts, x, xis)
    np.testing.assert_allclose(res.x, ref, rtol=1e-10, atol=1e-10)
    assert res.nfe == len(ts) - 1


@pytest.mark.parametrize("sampler", [sample_euler_maruyama, sample_exponential])
@pytest.mark.parametrize("process", [VP(), OU()], ids=repr)
def test_probability_flow_converges_at_the_declared_order(sampler, process):
    """h = 0: error of the final points against the exact flow map, for halving steps; the
    fitted slope of log error vs log dt is the strong order (declared 1; band +- 0.15)."""
    path = Gaussian([MU], S0).path(process)
    T, te = 1.0, 0.05
    x = np.linspace(-2, 3, 9)[:, None]
    mT, cT = _c(process, T)
    me, ce = _c(process, te)
    exact = me * MU + math.sqrt(ce / cT) * (x - mT * MU)
    ns = [20, 40, 80, 160, 320]
    errs = [np.abs(sampler(path, x, np.linspace(T, te, n + 1), process, h=0.0, disable=True).x - exact).max()
            for n in ns]
    slope = stats.linregress(np.log(1.0 / np.array(ns)), np.log(errs)).slope
    assert abs(slope - sampler.strong_order) <= 0.15, (slope, errs)


@pytest.mark.parametrize("process", [VP(), OU(), VE(sigma=25.0)], ids=repr)
def test_sample_ode_matches_the_exact_flow_map(process):
    path = Gaussian([MU], S0).path(process)
    x = np.linspace(-2, 3, 9)[:, None]
    ts = np.linspace(1.0, 0.05, 5)
    res = sample_ode(path, x, ts, process, h=0.0, rtol=1e-10, atol=1e-12, save_at=ts[1:3])
    mT, cT = _c(process, 1.0)
    for t, snap in zip(res.times, res.snapshots):
        m, c = _c(process, t)
        np.testing.assert_allclose(snap, m * MU + math.sqrt(c / cT) * (x - mT * MU), rtol=1e-8, atol=1e-9)
    me, ce = _c(process, 0.05)
    np.testing.assert_allclose(res.x, me * MU + math.sqrt(ce / cT) * (x - mT * MU), rtol=1e-8, atol=1e-9)
    assert res.nfe > 0


@pytest.mark.parametrize("kind,sampler", [("em", sample_euler_maruyama), ("exp", sample_exponential)])
def test_monte_carlo_law_equals_exact_chain_law(kind, sampler):
    """Seeded draws (no injected noise): mean and variance of the final points vs the chain's
    exact Gaussian law by recursion, within MC_SIGMAS standard errors."""
    process, h = VP(), None
    path = Gaussian([MU], S0).path(process)
    ts = np.linspace(1.0, 0.01, 41)
    n = 100_000
    x0 = initial_points(n, process, 1.0, law=Gaussian([MU], S0), seed=5)
    res = sampler(path, x0, ts, process, h=h, seed=7, disable=True)
    coef = _coeffs(kind, process, ts, h)
    mT, cT = _c(process, 1.0)
    mean, var = mT * MU, cT
    for k, (al, be, si) in enumerate(coef):
        m, c = _c(process, ts[k])
        mean = al * mean - be * (mean - m * MU) / c
        var = (al - be / c) ** 2 * var + si * si
    z_mean = (res.x.mean() - mean) / math.sqrt(var / n)
    z_var = (res.x.var() - var) / (var * math.sqrt(2.0 / n))
    assert abs(z_mean) <= MC_SIGMAS and abs(z_var) <= MC_SIGMAS, (z_mean, z_var)


def test_brownian_path_is_brownian_and_shared_across_grids():
    n = 40_000
    b = BrownianPath((n,), seed=0)
    w1, wh = b(1.0), b(0.5)
    for val, var in ((w1, 1.0), (wh, 0.5), (w1 - wh, 0.5)):
        assert abs(val.mean()) <= MC_SIGMAS * math.sqrt(var / n)
        assert abs(val.var() - var) <= MC_SIGMAS * var * math.sqrt(2.0 / n)
    assert abs(np.corrcoef(wh, w1 - wh)[0, 1]) <= MC_SIGMAS / math.sqrt(n)
    assert b(0.5) is wh  # a known time is returned, not redrawn
    with pytest.raises(ValueError, match=">= 0"):
        b(-1.0)


def test_seeded_runs_are_reproducible_and_torch_agrees_given_the_noise():
    path = Gaussian([MU, -MU], S0).path(VP())
    x = np.random.default_rng(0).normal(size=(5, 2))
    ts = np.linspace(1.0, 0.1, 11)
    a = sample_euler_maruyama(path, x, ts, VP(), seed=4, disable=True).x
    b = sample_euler_maruyama(path, x, ts, VP(), seed=4, disable=True).x
    np.testing.assert_array_equal(a, b)
    torch = pytest.importorskip("torch")
    noise = BrownianPath(x.shape, seed=1)
    r_np = sample_exponential(path, x, ts, VP(), noise=noise, disable=True)
    r_t = sample_exponential(path, torch.from_numpy(x), ts, VP(), noise=noise, disable=True)
    assert isinstance(r_t.x, torch.Tensor)
    np.testing.assert_allclose(r_t.x.numpy(), r_np.x, rtol=1e-12, atol=1e-12)


def test_callback_save_at_and_the_caller_array():
    path = Gaussian([0.0, 0.0], 1.0).path(OU())
    x = np.ones((3, 2))
    keep = x.copy()
    ts = np.linspace(1.0, 0.0, 6)
    seen = []
    res = sample_euler_maruyama(path, x, ts, OU(), seed=0, callback=lambda s: seen.append(s["i"]),
                                save_at=[ts[0], ts[2], ts[-1]], disable=True)
    np.testing.assert_array_equal(x, keep)
    assert seen == list(range(5)) and list(res.times) == [ts[0], ts[2], ts[-1]]
    np.testing.assert_array_equal(res.snapshots[-1], res.x)


def test_a_plain_callable_with_a_planted_error_is_seen_by_the_exact_chain():
    """A score field 0.1 % off moves the ODE flow beyond the tolerance the exact map allows."""
    process = VP()
    path = Gaussian([MU], S0).path(process)
    bad = as_field(lambda z, t: 1.001 * path.score(z, t), dim=1)
    x = np.linspace(-2, 3, 9)[:, None]
    ts = np.linspace(1.0, 0.05, 5)
    good = sample_ode(path, x, ts, process, h=0.0, rtol=1e-10, atol=1e-12).x
    off = sample_ode(bad, x, ts, process, h=0.0, rtol=1e-10, atol=1e-12).x
    assert np.abs(off - good).max() > 1e3 * 1e-9


@pytest.mark.parametrize("kwargs,match", [
    ({"ts": [1.0, 0.5, 0.7]}, "strictly decreasing"),
    ({"ts": [1.0, -0.1]}, ">= 0"),
    ({"ts": [1.0]}, "at least two"),
    ({"ts": [1.0, np.nan]}, "NaN"),
    ({"h": -1.0}, "h must be finite and >= 0"),
    ({"h": "g"}, "h must be None"),
    ({"save_at": [0.3]}, "save_at"),
    ({"x": np.zeros((2, 3))}, r"expected \(N, 2\)"),
    ({"process": "VP"}, "process must be"),
    ({"score": lambda x, t: x}, "score must be a score field"),
])
def test_bad_input_names_the_argument(kwargs, match):
    args = {"score": Gaussian([0.0, 0.0], 1.0).path(VP()), "x": np.zeros((2, 2)),
            "ts": np.linspace(1.0, 0.0, 4), "process": VP()}
    extra = {k: kwargs[k] for k in ("h", "save_at") if k in kwargs}
    args.update({k: v for k, v in kwargs.items() if k not in extra})
    with pytest.raises(ValueError, match=match):
        sample_euler_maruyama(args["score"], args["x"], args["ts"], args["process"], disable=True, **extra)


def test_sample_ode_refuses_h_and_noise():
    path = Gaussian([0.0], 1.0).path(VP())
    with pytest.raises(ValueError, match="h must be 0"):
        sample_ode(path, np.zeros((2, 1)), [1.0, 0.5], VP(), h=1.0)
    with pytest.raises(ValueError, match="deterministic"):
        sample_ode(path, np.zeros((2, 1)), [1.0, 0.5], VP(), noise=BrownianPath((2, 1)))


def test_declared_orders():
    assert sample_euler_maruyama.weak_order == 1.0 and sample_euler_maruyama.strong_order == 1.0
    assert sample_exponential.weak_order == 1.0 and sample_exponential.strong_order == 1.0
    assert "strong order" in repr(sample_ode)
