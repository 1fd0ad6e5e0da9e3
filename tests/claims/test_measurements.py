"""Measuring functions fed test doubles, and the textbook references they rely on.

The checks' measuring functions take the processes and laws they measure as arguments; here they
get deliberately wrong ones (and a process whose library machinery refuses to run, to show the
textbook reference never touches it).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from sftheory.claims import within
from sftheory.claims.checks import core_kernels, core_models, core_processes, sm_esf
from sftheory.models import EmpiricalDistribution, GaussianMixture
from sftheory.processes import OU, VE, VP
from sftheory.testing import textbook as tb
from sftheory.testing import tolerances as tol

TS = np.linspace(0.0, 1.0, 11)[1:]
PROCS = [OU(), OU(a=2.0, sigma=0.5), VP(), VP(beta_min=1.0, beta_max=5.0), VE(), VE(sigma=25.0)]


# ---- textbook references --------------------------------------------------------------------------
class Untouchable(VP):
    """A VP whose library machinery raises: the textbook may read only beta_min, beta_max."""

    def _refuse(self, *a, **k):
        raise AssertionError("the textbook reference called the library")

    drift_coef = diffusion = clock = clock_inverse = clock_increment = conditional = _refuse
    transition = drift = _refuse


def test_textbook_reads_only_the_parameters():
    p = Untouchable(beta_min=0.3, beta_max=7.0)
    assert tb.drift_coef(p, 0.5) == pytest.approx(0.5 * (0.3 + 0.5 * 6.7), rel=1e-15)
    assert tb.diffusion_sq(p, 0.5) == pytest.approx(0.3 + 0.5 * 6.7, rel=1e-15)
    sol = tb.moment_ode(p, 0.0, 1.0, [1.0])
    m, v = tb.exact_mv(p, 1.0)
    assert abs(sol.y[0, -1] - m) / m < tol.FLOW_ODE.rtol and abs(sol.y[1, -1] - v) / v < tol.FLOW_ODE.rtol
    assert tb.clock(p, 1.0) == pytest.approx(0.3 + 6.7 / 2, rel=1e-15)
    np.testing.assert_allclose(tb.drift(p, np.ones((2, 3)), np.array([0.0, 1.0])),
                               -np.array([[0.15] * 3, [3.5] * 3]), rtol=1e-15)


@pytest.mark.parametrize("proc", PROCS, ids=repr)
def test_textbook_closed_forms_solve_the_textbook_moment_odes(proc):
    for s, t in ((0.0, 0.3), (0.2, 0.9)):
        sol = tb.moment_ode(proc, s, t)
        m, v = tb.exact_mv(proc, t, s)
        assert abs(sol.y[0, -1] - m) <= tol.FLOW_ODE.rtol * m
        assert abs(sol.y[1, -1] - v) <= tol.FLOW_ODE.rtol * v


def test_textbook_hand_values():
    # VP(0.1, 20) at t = 1: B(1) = 0.1 + 19.9 / 2 = 10.05, m = e^{-5.025}, v = 1 - e^{-10.05}
    m, v = tb.exact_mv(VP(), 1.0)
    assert m == pytest.approx(math.exp(-5.025), rel=1e-15) and v == pytest.approx(-math.expm1(-10.05), rel=1e-15)
    # OU(a=2, sigma=0.5) at t = 1: m = e^-2, v = 0.25 (1 - e^-4) / 4
    m, v = tb.exact_mv(OU(a=2.0, sigma=0.5), 1.0)
    assert m == pytest.approx(math.exp(-2.0), rel=1e-15) and v == pytest.approx(0.0625 * -math.expm1(-4.0), rel=1e-15)
    # VE(25) from 0.2 to 0.9: (25^1.8 - 25^0.4) / (2 ln 25)
    m, v = tb.exact_mv(VE(sigma=25.0), 0.9, 0.2)
    assert m == 1.0 and v == pytest.approx((25**1.8 - 25**0.4) / (2 * math.log(25)), rel=1e-14)
    assert tb.stationary_variance(OU(a=2.0, sigma=0.5)) == 0.0625 and tb.stationary_variance(VE()) is None
    with pytest.raises(TypeError):
        tb.exact_mv(object(), 1.0)


# ---- core.processes with process doubles ------------------------------------------------------------
class DriftOff(VP):
    def drift_coef(self, t):
        return 1.001 * super().drift_coef(t)


class DiffusionNaN(OU):
    def diffusion(self, t):
        return np.full_like(np.asarray(t, dtype=np.float64), np.nan)


class VarianceOff(VE):
    def conditional(self, t):
        m, v = super().conditional(t)
        return m, 1.01 * v


def test_measure_moments_passes_the_library():
    assert within(core_processes.measure_moments(PROCS, TS).excess).verdict == "confirmed"


@pytest.mark.parametrize(("double", "aggregate"), [
    (DriftOff(), "drift_coef"), (DriftOff(), "drift"), (DiffusionNaN(), "diffusion"),
    (VarianceOff(), "conditional_vs_closed_form"), (VarianceOff(), "conditional_vs_ode")])
def test_measure_moments_catches_a_wrong_process(double, aggregate):
    with np.errstate(invalid="ignore"):
        m = core_processes.measure_moments([VP(), double], TS)
    w = m.excess[aggregate]
    assert not w.value <= 1.0 and w.where == repr(double)
    assert within(m.excess).verdict == "refuted"


class ClockOff(VP):
    def clock(self, t):
        return 1.001 * super().clock(t)


def test_measure_time_change_catches_a_wrong_clock():
    assert within(core_processes.measure_time_change(PROCS, TS).excess).verdict == "confirmed"
    m = core_processes.measure_time_change([ClockOff()], TS)
    assert m.excess["clock_vs_closed_form"].value > 1 and m.excess["law_t_vs_canonical_at_theta"].value > 1


class WideSampler(OU):
    def sample_transition(self, x, t, *, s=0.0, seed=None):
        m, _ = self.transition(s, t)
        y = super().sample_transition(x, t, s=s, seed=seed)
        return m * x + 1.02 * (y - m * x)


def test_measure_transition_sampling_catches_a_wide_sampler():
    rng = np.random.default_rng(0)
    assert within(core_processes.measure_transition_sampling([OU()], 100_000, rng).excess).verdict == "confirmed"
    m = core_processes.measure_transition_sampling([WideSampler()], 100_000, rng)
    assert m.excess["mc_z_over_MC_SIGMAS"].value > 1


# ---- core.models / kernels / sm.esf with law doubles ------------------------------------------------
class PathScoreOff:
    """A path whose score is off by ``factor`` (logpdf and posterior mean intact)."""

    def __init__(self, path, factor):
        self.path, self.factor = path, factor

    def score(self, x, t):
        return self.factor * self.path.score(x, t)

    def logpdf(self, x, t):
        return self.path.logpdf(x, t)

    def posterior_mean(self, x, t):
        return self.path.posterior_mean(x, t)


def _esf_path(factor):
    return lambda pts: PathScoreOff(EmpiricalDistribution(pts).path(VE()), factor)


@pytest.mark.parametrize("factor", [1.001, np.nan])
def test_measure_esf_catches_a_wrong_score(factor):
    good = sm_esf.measure_esf(_esf_path(1.0), np.random.default_rng(0))
    assert all(w.value <= 1 for k, w in good.excess.items() if not k.startswith("eq19_paper"))
    bad = sm_esf.measure_esf(_esf_path(factor), np.random.default_rng(0))
    assert not bad.excess["eq6_score_vs_paper"].value <= 1
    assert not bad.excess["eq19_fixed_score_vs_formula"].value <= 1


def test_eq19_versions():
    x = np.array([[0.5, 1.0, -2.0, 3.0, 0.25]])
    y1 = np.array([-1.0, 0.0, 1.0])
    paper = sm_esf.eq19(x, y1, 3, 0.1, "paper")  # n = 3 < d = 5: i in {2, 3} only
    fixed = sm_esf.eq19(x, y1, 3, 0.1, "fixed")
    np.testing.assert_allclose(fixed[0, 1:], [-10.0, 20.0, -30.0, -2.5], rtol=1e-15)
    np.testing.assert_array_equal(paper[0, 1:3], fixed[0, 1:3])
    assert np.isnan(paper[0, 3:]).all() and np.isfinite(fixed).all()
    assert paper[0, 0] == fixed[0, 0]


class NaNNumba:
    """A density whose numba route returns NaN."""

    def __init__(self, d):
        self.d, self.dim, self.mean, self.cov = d, d.dim, d.mean, d.cov

    def sample(self, n, seed=None):
        return self.d.sample(n, seed=seed)

    def logpdf_and_score(self, x, impl=None):
        lp, s = self.d.logpdf_and_score(x, impl=impl)
        return (lp, s * np.nan) if impl == "numba" else (lp, s)


def test_measure_parity_catches_a_nan_kernel():
    mix = GaussianMixture([0.4, 0.6], [[0.0, 1.0], [1.0, 0.0]], [0.5, 2.0])
    rng = np.random.default_rng(0)
    good = core_kernels.measure_parity([("mix", mix)], rng)
    assert within(good.excess).verdict == "confirmed"
    assert isinstance(good.numbers["max_rel_diff_cuda_float64_vs_numpy"], str)  # not run, and says so
    bad = core_kernels.measure_parity([("mix", mix), ("nan", NaNNumba(mix))], rng)
    assert math.isnan(bad.excess["numba_vs_numpy"].value) and bad.excess["numba_vs_numpy"].where == "nan"


class ScoreOffLaw:
    """A law whose marginals' scores are off by 0.1 % (for the score-gradient check)."""

    def __init__(self, law):
        self.law, self.dim = law, law.dim

    def path(self, process):
        law = self.law

        class P:
            dim = law.dim

            def marginal(self, t):
                return _Off(law.marginal(process, t))

            def score(self, x, t):
                return 1.001 * law.path(process).score(x, t)

            def logpdf(self, x, t):
                return law.path(process).logpdf(x, t)
        return P()


class _Off:
    def __init__(self, d):
        self.d, self.dim, self.mean, self.cov, self.covs = d, d.dim, d.mean, d.cov, d.covs

    def sample(self, n, seed=None):
        return self.d.sample(n, seed=seed)

    def logpdf(self, x):
        return self.d.logpdf(x)

    def score(self, x):
        return 1.001 * self.d.score(x)


def test_measure_score_gradient_catches_a_wrong_score():
    mix = GaussianMixture([0.4, 0.6], [[0.0, 1.0], [1.0, 0.0]], [0.5, 2.0])
    rng = np.random.default_rng(0)
    good = core_models.measure_score_gradient([("mix", mix)], [VP()], (0.1,), rng)
    assert within(good.excess).verdict == "confirmed"
    bad = core_models.measure_score_gradient([("off", ScoreOffLaw(mix))], [VP()], (0.1,), rng)
    assert bad.excess["score_vs_fd"].value > 1 and bad.excess["path_score_per_point_t_vs_fd"].value > 1
