"""Tests of sftheory.metrics against references computed independently of the code under test.

References: closed forms for Gaussians (KL, TV via erf, W1 of a shift), scipy's Jensen–Shannon
distance on raw counts, and the exact expectation of the plug-in histogram KL under binomial
bin counts (scipy.stats.binom on exact bin probabilities from the normal cdf).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.special import erf
from scipy.stats import binom, norm

from sftheory.metrics import (QUAD_MAX_ERROR, HistogramDivergence, histogram_js, histogram_kl,
                              kl_quadrature, tv_quadrature, wasserstein1)
from sftheory.testing.tolerances import QUADRATURE

N_SIGMA = 5  # Monte Carlo checks: |estimate - expectation| <= 5 SE (STYLE.md, false alarm ~6e-7)


# ---------------------------------------------------------------- histogram KL -------------------
def _expected_plugin_kl(p_bins, q_bins, n_p, n_q, alpha):
    """E[sum_i p^_i log(p^_i / q^_i)] for independent counts C_i ~ Bin(n, pi_i), exact in each bin.

    p^ = (C/n + alpha) / (1 + K alpha). Sums the binomial pmf over mean +- 15 sd (+ 30 counts),
    which holds all but < 1e-30 of each bin's mass. Written from the definition, not from the code.
    """
    k = p_bins.size
    total = 0.0
    for pi, qi in zip(p_bins, q_bins):
        vals = []
        for prob, n in ((pi, n_p), (qi, n_q)):
            mean, sd = n * prob, math.sqrt(n * prob * (1 - prob))
            c = np.arange(max(0, int(mean - 15 * sd) - 30), min(n, int(mean + 15 * sd) + 30) + 1)
            vals.append((c, binom.pmf(c, n, prob), (c / n + alpha) / (1 + k * alpha)))
        (cp, wp, hp), (cq, wq, hq) = vals
        total += np.sum(wp * np.where(hp > 0, hp * np.log(np.where(hp > 0, hp, 1.0)), 0.0))
        total -= np.sum(wp * hp) * np.sum(wq * np.log(hq))
    return total


def test_histogram_kl_gaussians_vs_closed_form():
    # KL(N(0,1) || N(1,1)) = (mu_p - mu_q)^2 / 2 = 0.5.
    n, bins, rng_ = 200_000, 260, (-6.0, 7.0)
    rng = np.random.default_rng(20240607)
    p = rng.standard_normal(n)
    q = 1.0 + rng.standard_normal(n)
    res = histogram_kl(p, q, bins=bins, range=rng_, seed=1)
    assert isinstance(res, HistogramDivergence)
    assert res.bins == (bins,) and res.range == (rng_,)
    # Histogram bias, computed exactly from the bin probabilities: discretization (binning lowers
    # KL by ~w^2/24 = 1e-4) plus the plug-in bias of sparse Q-bins in P's left tail (upward,
    # ~1e-2 with alpha = 1e-10). Both are part of what the estimator's expectation is.
    edges = np.linspace(*rng_, bins + 1)
    p_bins, q_bins = np.diff(norm.cdf(edges)), np.diff(norm.cdf(edges, loc=1.0))
    p_bins, q_bins = p_bins / p_bins.sum(), q_bins / q_bins.sum()  # conditioned on the range
    discretized = float(np.sum(p_bins * np.log(p_bins / q_bins)))
    assert abs(discretized - 0.5) < 2e-4
    expected = _expected_plugin_kl(p_bins, q_bins, n, n, res.alpha)
    bias = expected - 0.5
    assert 0 < bias < 0.03  # the bias is small beside the value, so the check below has teeth
    assert 0 < res.stderr < 0.02
    assert abs(res.value - expected) <= N_SIGMA * res.stderr
    assert abs(res.value - 0.5) <= abs(bias) + N_SIGMA * res.stderr
    assert res.outside == (0.0, 0.0)


def test_histogram_kl_stderr_vs_delta_method():
    # P = N(0,1), Q = N(0, 2^2): KL = log 2 + 1/8 - 1/2. Q covers P's tails, so the delta method
    # holds: Var(KL^) ~ Var_P(log p/q)/N_p + Var_Q(p/q)/N_q with Var_P(3x^2/8) = 9/32 and
    # Var_Q(p/q) = int p^2/q - 1 = 4/sqrt(7) - 1. Bootstrap SE from 200 resamples: ~5% relative.
    n = 20_000
    rng = np.random.default_rng(4)
    res = histogram_kl(rng.standard_normal(n), 2.0 * rng.standard_normal(n), bins=120,
                       range=(-6, 6), seed=3)
    se_delta = math.sqrt((9 / 32 + 4 / math.sqrt(7) - 1) / n)
    assert 0.8 < res.stderr / se_delta < 1.25
    edges = np.linspace(-6, 6, 121)
    p_bins, q_bins = np.diff(norm.cdf(edges)), np.diff(norm.cdf(edges, scale=2.0))
    expected = _expected_plugin_kl(p_bins / p_bins.sum(), q_bins / q_bins.sum(), n, n, res.alpha)
    exact = math.log(2) + 1 / 8 - 1 / 2
    assert abs(expected - exact) < 0.01  # histogram bias (binning + plug-in), computed exactly
    assert abs(res.value - expected) <= N_SIGMA * res.stderr


def test_histogram_kl_planted_shift_detected():
    # A wrong shift (mu = 1.2, KL = 0.72) must fall outside the same tolerance.
    n, bins, rng_ = 200_000, 260, (-6.0, 7.0)
    rng = np.random.default_rng(5)
    res = histogram_kl(rng.standard_normal(n), 1.2 + rng.standard_normal(n), bins=bins,
                       range=rng_, seed=2)
    assert abs(res.value - 0.5) > 0.03 + N_SIGMA * res.stderr


def test_histogram_kl_empty_bins_rule():
    p = np.array([0.1, 0.2, 0.3, 0.6])   # bins [0, .5) and [.5, 1]: counts (3, 1)
    q = np.array([0.1, 0.2, 0.3, 0.4])   # counts (4, 0): Q empty where P is not
    exact = histogram_kl(p, q, bins=2, range=(0, 1), alpha=0.0, n_boot=0)
    assert exact.value == math.inf and math.isnan(exact.stderr)
    smooth = histogram_kl(p, q, bins=2, range=(0, 1), alpha=1e-10, n_boot=0)
    ph = (np.array([0.75, 0.25]) + 1e-10) / (1 + 2e-10)
    qh = (np.array([1.0, 0.0]) + 1e-10) / (1 + 2e-10)
    assert smooth.value == pytest.approx(np.sum(ph * np.log(ph / qh)), rel=1e-12)
    # bins where P is empty contribute nothing when alpha = 0
    rev = histogram_kl(q, p, bins=2, range=(0, 1), alpha=0.0, n_boot=0)
    assert rev.value == pytest.approx(math.log(1 / 0.75), rel=1e-12)


def test_histogram_outside_fraction_reported_and_excluded():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 900)
    p_out = np.concatenate([p, np.full(100, 5.0)])  # 10% outside [0, 1]
    a = histogram_kl(p_out, p, bins=10, range=(0, 1), n_boot=0)
    assert a.outside == (pytest.approx(0.1), 0.0)
    assert a.value == pytest.approx(0.0, abs=1e-12)  # conditioned on the range: identical


def test_histogram_2d():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((20_000, 2))
    y = rng.standard_normal((20_000, 2)) + [1.0, 0.0]
    res = histogram_kl(x, y, bins=(40, 30), range=((-5, 6), (-5, 5)), seed=0, n_boot=50)
    assert res.bins == (40, 30) and res.range == ((-5.0, 6.0), (-5.0, 5.0))
    # same closed form 0.5; looser (2D: K = 1200 bins, plug-in bias ~ K/N more)
    assert abs(res.value - 0.5) < 0.1 + N_SIGMA * res.stderr
    js = histogram_js(x, x, bins=20, range=(-5, 5), n_boot=0)
    assert js.value == 0.0 and js.bins == (20, 20)


# ---------------------------------------------------------------- histogram JS -------------------
def test_histogram_js_matches_scipy_and_bounds():
    rng = np.random.default_rng(11)
    p = rng.standard_normal(5_000)
    q = 0.5 + 1.3 * rng.standard_normal(4_000)
    res = histogram_js(p, q, bins=50, range=(-6, 6), alpha=0.0, seed=0)
    cp, _ = np.histogram(p, bins=50, range=(-6, 6))
    cq, _ = np.histogram(q, bins=50, range=(-6, 6))
    assert res.value == pytest.approx(jensenshannon(cp, cq) ** 2, rel=1e-10)  # natural log
    swapped = histogram_js(q, p, bins=50, range=(-6, 6), alpha=0.0, seed=0)
    assert swapped.value == pytest.approx(res.value, rel=1e-14)
    assert 0 < res.value <= math.log(2) and res.stderr > 0
    same = histogram_js(p, p.copy(), bins=50, range=(-6, 6), seed=0)
    assert same.value == 0.0
    disjoint = histogram_js(np.zeros(10), np.ones(10), bins=2, range=(0, 1), alpha=0.0, n_boot=0)
    assert disjoint.value == pytest.approx(math.log(2), rel=1e-14)
    assert disjoint.value <= math.log(2)


def test_bootstrap_seeded_and_frozen():
    rng = np.random.default_rng(2)
    p, q = rng.standard_normal(1000), rng.standard_normal(1000) + 0.5
    a = histogram_js(p, q, bins=20, range=(-4, 4), seed=7)
    b = histogram_js(p, q, bins=20, range=(-4, 4), seed=7)
    assert a == b
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.value = 0.0


# ---------------------------------------------------------------- W1 ----------------------------
def test_wasserstein1_shift():
    # W1(N(0,1), N(shift,1)) = |shift| (a translation is the optimal map). SE ~ sqrt(2/N) = 0.02.
    shift, n = 1.5, 5_000
    rng = np.random.default_rng(15)
    p = rng.standard_normal(n)
    q = shift + rng.standard_normal((n, 1))
    res = wasserstein1(p, q, n_boot=60, seed=0)
    assert 0.005 < res.stderr < 0.05
    assert abs(res.value - shift) <= N_SIGMA * res.stderr
    wrong = wasserstein1(p, q + 0.25, n_boot=60, seed=0)  # planted: shift off by 0.25 (~12 SE)
    assert abs(wrong.value - shift) > N_SIGMA * wrong.stderr
    assert wasserstein1(p, p, n_boot=0).value == 0.0
    # Independent SE: no quantile crossings at this shift, so W1^ = shift + mean(q) - mean(p)
    # up to O(1/N), and SE = sqrt(1/N + 1/N). Bootstrap SE from 60 resamples: ~9% relative.
    assert 0.7 < res.stderr / math.sqrt(2 / n) < 1.4


def test_wasserstein1_equal_sizes_sorted_reference():
    # For equal sizes W1 of the empirical laws = mean |sort(p) - sort(q)| (monotone coupling).
    rng = np.random.default_rng(8)
    p, q = rng.standard_normal(1000), rng.gamma(2.0, size=1000)
    ref = float(np.mean(np.abs(np.sort(p) - np.sort(q))))
    assert wasserstein1(p, q, n_boot=0).value == pytest.approx(ref, rel=1e-12)


# ---------------------------------------------------------------- quadrature ---------------------
def _gauss_pdf(mu, var):
    return lambda x: math.exp(-(x - mu) ** 2 / (2 * var)) / math.sqrt(2 * math.pi * var)


KL_01_12 = math.log(math.sqrt(2)) + (1 + 1) / (2 * 2) - 0.5  # KL(N(0,1) || N(1, var 2))


def _quad_tol(res, exact):
    return QUADRATURE.rtol * abs(exact) + QUADRATURE.atol + 10 * res.abserr


@pytest.mark.parametrize("p,q", [(norm(0, 1), norm(1, math.sqrt(2))),
                                 (_gauss_pdf(0, 1), _gauss_pdf(1, 2))],
                         ids=["scipy-frozen-logpdf", "plain-callables"])
def test_kl_quadrature_gaussians(p, q):
    res = kl_quadrature(p, q, lo=-math.inf, hi=math.inf, breakpoints=[0.0, 1.0])
    assert res.abserr <= QUAD_MAX_ERROR
    assert abs(res.value - KL_01_12) <= _quad_tol(res, KL_01_12)
    finite = kl_quadrature(p, q, lo=-30, hi=30)
    assert abs(finite.value - KL_01_12) <= _quad_tol(finite, KL_01_12)


def test_kl_quadrature_planted_density_error():
    # q off by 0.1% (scaled by 1.001) shifts KL by -log(1.001) ~ -1e-3, far beyond tolerance.
    p, q = _gauss_pdf(0, 1), _gauss_pdf(1, 2)
    res = kl_quadrature(p, lambda x: 1.001 * q(x), lo=-30, hi=30)
    assert abs(res.value - KL_01_12) > 1e3 * _quad_tol(res, KL_01_12)
    assert res.value - KL_01_12 == pytest.approx(-math.log(1.001), rel=1e-6)


@pytest.mark.parametrize("mu", [0.5, 1.0, 3.0])
def test_tv_quadrature_gaussians(mu):
    # TV(N(0,1), N(mu,1)) = 2 Phi(mu/2) - 1 = erf(mu / (2 sqrt 2)); the densities cross at mu/2.
    exact = float(erf(mu / (2 * math.sqrt(2))))
    res = tv_quadrature(norm(0, 1), _gauss_pdf(mu, 1), lo=-40, hi=40, breakpoints=[mu / 2])
    assert abs(res.value - exact) <= _quad_tol(res, exact)
    planted = tv_quadrature(norm(0, 1), _gauss_pdf(1.001 * mu, 1), lo=-40, hi=40,
                            breakpoints=[mu / 2])
    assert abs(planted.value - exact) > 1e3 * _quad_tol(res, exact)


def test_quadrature_refuses_large_error_estimate():
    with pytest.raises(ValueError, match="max_error"):
        kl_quadrature(norm(0, 1), norm(1, 1), lo=-10, hi=10, max_error=1e-300)
    with pytest.raises(ValueError, match="max_error"):
        tv_quadrature(norm(0, 1), norm(1, 1), lo=-10, hi=10, max_error=1e-300)


def test_kl_quadrature_infinite_when_q_vanishes():
    uniform = lambda x: 1.0 if 0 <= x <= 1 else 0.0  # noqa: E731
    half = lambda x: 2.0 if 0 <= x <= 0.5 else 0.0  # noqa: E731
    with pytest.raises(ValueError, match="infinite"):
        kl_quadrature(uniform, half, lo=0, hi=1, breakpoints=[0.5])
    # the other direction is finite: KL(U[0,.5] || U[0,1]) = log 2
    res = kl_quadrature(half, uniform, lo=0, hi=1, breakpoints=[0.5])
    assert res.value == pytest.approx(math.log(2), rel=1e-10)


# ---------------------------------------------------------------- bad input ---------------------
GOOD = np.linspace(-1, 1, 50)


@pytest.mark.parametrize("fn", [histogram_kl, histogram_js])
@pytest.mark.parametrize("kwargs,arg", [
    (dict(p_samples=np.array([0.0, np.nan])), "p_samples"),
    (dict(q_samples=np.array([0.0, np.inf])), "q_samples"),
    (dict(p_samples=np.array([])), "p_samples"),
    (dict(q_samples=np.zeros((5, 3))), "q_samples"),
    (dict(p_samples=np.zeros((5, 2))), "dimension"),
    (dict(p_samples=np.array(["a", "b"])), "p_samples"),
    (dict(bins=0), "bins"),
    (dict(bins=-3), "bins"),
    (dict(bins=2.5), "bins"),
    (dict(bins=True), "bins"),
    (dict(range=(1.0, 1.0)), "range"),
    (dict(range=(2.0, -2.0)), "range"),
    (dict(range=(np.nan, 1.0)), "range"),
    (dict(range=(0.0, np.inf)), "range"),
    (dict(range=None), "range"),
    (dict(range=(5.0, 6.0)), "range"),  # no sample in range
    (dict(alpha=-1e-3), "alpha"),
    (dict(alpha=np.nan), "alpha"),
    (dict(n_boot=1), "n_boot"),
    (dict(n_boot=-2), "n_boot"),
    (dict(seed="x"), "seed"),
])
def test_histogram_bad_input(fn, kwargs, arg):
    args = dict(p_samples=GOOD, q_samples=GOOD + 0.1, bins=10, range=(-2.0, 2.0), n_boot=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=arg):
        fn(args.pop("p_samples"), args.pop("q_samples"), **args)


def test_histogram_2d_bad_bins_and_range():
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match="bins"):
        histogram_kl(x, x, bins=(10,), range=(-1, 1))
    with pytest.raises(ValueError, match="bins"):
        histogram_kl(x, x, bins=(10, 0), range=(-1, 1))
    with pytest.raises(ValueError, match="range"):
        histogram_kl(x, x, bins=10, range=((-1, 1), (1, -1)))
    with pytest.raises(ValueError, match="range"):
        histogram_kl(x, x, bins=10, range=((-1, 1), (0, 1), (0, 1)))


def test_wasserstein1_bad_input():
    with pytest.raises(ValueError, match="p_samples"):
        wasserstein1(np.array([1.0, np.nan]), GOOD)
    with pytest.raises(ValueError, match="q_samples"):
        wasserstein1(GOOD, np.array([]))
    with pytest.raises(ValueError, match="1D"):
        wasserstein1(np.zeros((4, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="n_boot"):
        wasserstein1(GOOD, GOOD, n_boot=1)


@pytest.mark.parametrize("fn", [tv_quadrature, kl_quadrature])
def test_quadrature_bad_input(fn):
    p, q = norm(0, 1), norm(1, 1)
    with pytest.raises(ValueError, match="lo"):
        fn(p, q, lo=1.0, hi=1.0)
    with pytest.raises(ValueError, match="lo"):
        fn(p, q, lo=2.0, hi=-2.0)
    with pytest.raises(ValueError, match="lo"):
        fn(p, q, lo=np.nan, hi=1.0)
    with pytest.raises(ValueError, match="p must"):
        fn(3.0, q, lo=-1, hi=1)
    with pytest.raises(ValueError, match="q must"):
        fn(p, "q", lo=-1, hi=1)
    with pytest.raises(ValueError, match="q returned"):
        fn(p, lambda x: -1.0, lo=-1, hi=1)
    with pytest.raises(ValueError, match="p returned"):
        fn(lambda x: math.nan, q, lo=-1, hi=1)
    with pytest.raises(ValueError, match="breakpoints"):
        fn(p, q, lo=-1, hi=1, breakpoints=[np.nan])
    with pytest.raises(ValueError, match="max_error"):
        fn(p, q, lo=-1, hi=1, max_error=0.0)
