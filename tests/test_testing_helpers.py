"""sftheory.testing: the strategies respect their bounds, reject bad bounds, and the assert_*
helpers do fail on wrong models (so tests built on them can fail)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument, NoSuchExample

from sftheory.models import EmpiricalDistribution, Gaussian, GaussianMixture
from sftheory.processes import OU, VE, VP
from sftheory.testing import (
    assert_density_normalized,
    assert_fokker_planck,
    assert_moments_match,
    assert_score_is_gradient,
    finite_difference_gradient,
    measure_backend_parity,
    measure_normalization,
    tolerances,
)
import sftheory.testing.strategies as sst
from sftheory.testing.tolerances import EXACT_FLOAT64, KERNEL_PARITY, SCORE_FD

# eigenvalues of a symmetric matrix are computed to ~eps * ||A||: allow that much
EIG_SLACK = EXACT_FLOAT64.rtol


# ---- strategies: bounds ------------------------------------------------------------------------
@given(st.data(), st.integers(1, 4), st.floats(1e-3, 10.0), st.floats(1.0, 1e3))
def test_spd_matrices_eigenvalues_within_bounds(data, dim, min_eig, ratio):
    max_eig = min_eig * ratio
    a = data.draw(sst.spd_matrices(dim, min_eig=min_eig, max_eig=max_eig))
    assert a.shape == (dim, dim)
    np.testing.assert_array_equal(a, a.T)
    lam = np.linalg.eigvalsh(a)
    assert lam.min() >= min_eig * (1 - EIG_SLACK) - EIG_SLACK * max_eig
    assert lam.max() <= max_eig * (1 + EIG_SLACK)


@given(st.data(), st.integers(1, 8), st.floats(0.0, 0.12))
def test_simplex_weights_on_simplex_with_min_weight(data, k, min_weight):
    w = data.draw(sst.simplex_weights(k, min_weight=min_weight))
    assert w.shape == (k,)
    assert abs(w.sum() - 1.0) <= EXACT_FLOAT64.rtol
    assert np.all(w >= min_weight * (1 - EXACT_FLOAT64.rtol))


@given(st.data(), st.floats(0.05, 1.0), st.floats(2.0, 6.0), st.integers(1, 3))
def test_point_clouds_separation_and_box(data, sep, scale, dim):
    cells = int(2 * scale // (2 * sep))
    n_max = min(15, cells**dim)
    if n_max < 1:  # pragma: no cover - sep <= 1 < scale makes cells >= 1
        return
    pts = data.draw(sst.point_clouds(n=(1, n_max), dim=dim, scale=scale, min_separation=sep))
    assert pts.ndim == 2 and pts.shape[1] == dim and 1 <= len(pts) <= n_max
    assert np.all(np.abs(pts) <= scale)
    if len(pts) > 1:
        dist = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
        dist = dist[~np.eye(len(pts), dtype=bool)]
        assert dist.min() >= sep * (1 - EXACT_FLOAT64.rtol)


@given(sst.point_clouds(n=(1, 10), dim=2, scale=1.5))
def test_point_clouds_without_separation_stay_in_box(pts):
    assert np.all(np.abs(pts) <= 1.5)


@given(sst.gaussians(dim=st.integers(1, 3), mean_scale=2.0, min_eig=0.2, max_eig=5.0))
def test_gaussians_respect_bounds(g):
    assert np.all(np.abs(g.mean) <= 2.0)
    lam = np.linalg.eigvalsh(g.cov)
    assert lam.min() >= 0.2 * (1 - EIG_SLACK) - EIG_SLACK * 5.0
    assert lam.max() <= 5.0 * (1 + EIG_SLACK)


@given(sst.gaussian_mixtures(n_components=(2, 4), dim=2, mean_scale=1.0, min_eig=0.3,
                             max_eig=3.0, min_weight=0.05))
def test_gaussian_mixtures_respect_bounds(mix):
    assert 2 <= mix.n_components <= 4 and mix.dim == 2
    assert np.all(np.abs(mix.means) <= 1.0)
    assert np.all(mix.weights >= 0.05 * (1 - EXACT_FLOAT64.rtol))
    lam = np.linalg.eigvalsh(mix.covs)
    assert lam.min() >= 0.3 * (1 - EIG_SLACK) - EIG_SLACK * 3.0
    assert lam.max() <= 3.0 * (1 + EIG_SLACK)


@given(sst.empirical_distributions(n=(2, 8), dim=2, scale=2.0, min_separation=0.3))
def test_empirical_distributions_respect_bounds(emp):
    assert isinstance(emp, EmpiricalDistribution) and 2 <= emp.n_points <= 8
    y = emp.points
    dist = np.sqrt(((y[:, None] - y[None]) ** 2).sum(-1))[~np.eye(len(y), dtype=bool)]
    assert dist.min() >= 0.3 * (1 - EXACT_FLOAT64.rtol)


@given(sst.diffusion_times(0.01, 2.0))
def test_diffusion_times_within_bounds_up_to_rounding(t):
    # exp(log(t)) may differ from t by one ulp (see test_diffusion_times_exact_bounds)
    assert 0.01 * (1 - 4 * np.finfo(float).eps) <= t <= 2.0 * (1 + 4 * np.finfo(float).eps)


def test_diffusion_times_exact_bounds():
    with pytest.raises(NoSuchExample):
        find(sst.diffusion_times(0.1, 3.0), lambda t: not (0.1 <= t <= 3.0),
             settings=settings(max_examples=300, database=None))


@given(sst.processes())
def test_processes_strategy_bounds(p):
    if isinstance(p, OU):
        assert 0.1 <= p.a <= 2.0 and 0.5 <= p.sigma <= 2.0
    elif isinstance(p, VP):
        assert 0.05 <= p.beta_min <= 1.0 and p.beta_min <= p.beta_max <= 20.0
    else:
        assert isinstance(p, VE)
        assert p.sigma is None or 2.0 <= p.sigma <= 50.0


@given(sst.points_for(3, n=(2, 5), scale=1.0))
def test_points_for(x):
    assert x.shape[1] == 3 and 2 <= len(x) <= 5 and np.all(np.abs(x) <= 1.0)


def test_shrinking_targets():
    """Minimal examples are what the docstrings say."""
    g = find(sst.gaussians(dim=2, cov_kinds=("iso",)), lambda g: True)
    np.testing.assert_array_equal(g.mean, [0.0, 0.0])
    w = find(sst.simplex_weights(3), lambda w: True)
    np.testing.assert_allclose(w, np.full(3, 1 / 3), rtol=EXACT_FLOAT64.rtol)
    assert find(sst.diffusion_times(1e-3, 5.0), lambda t: True) == pytest.approx(5.0, rel=1e-15)


# ---- strategies: bad bounds ---------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: sst.spd_matrices(2, min_eig=0.0),
    lambda: sst.spd_matrices(2, min_eig=2.0, max_eig=1.0),
    lambda: sst.spd_matrices(2, min_eig=1.0, max_eig=math.inf),
    lambda: sst.spd_matrices(0),
    lambda: sst.simplex_weights(3, min_weight=-0.1),
    lambda: sst.simplex_weights(3, min_weight=0.5),
    lambda: sst.simplex_weights((3, 1)),
    lambda: sst.simplex_weights(0),
    lambda: sst.gaussian_mixtures(min_eig=0.0),
    lambda: sst.gaussian_mixtures(min_eig=3.0, max_eig=1.0),
    lambda: sst.gaussian_mixtures(n_components=(0, 2)),
    lambda: sst.gaussian_mixtures(mean_scale=-1.0),
    lambda: sst.gaussians(mean_scale=-1.0),
    lambda: sst.gaussians(cov_kinds=("bogus",)),
    lambda: sst.gaussians(cov_kinds=()),
    lambda: sst.point_clouds(scale=0.0),
    lambda: sst.point_clouds(min_separation=-1.0),
    lambda: sst.point_clouds(n=5, dim=1, scale=1.0, min_separation=1.0),
    lambda: sst.diffusion_times(0.0, 1.0),
    lambda: sst.diffusion_times(2.0, 1.0),
    lambda: sst.diffusion_times(1.0, math.inf),
    lambda: sst.processes(kinds=("OU", "bogus")),
    lambda: sst.processes(kinds=()),
], ids=["spd-min0", "spd-min>max", "spd-inf", "spd-dim0", "simplex-neg", "simplex-infeasible",
        "simplex-range", "simplex-k0", "mix-min0", "mix-min>max", "mix-k0", "mix-scale",
        "gauss-scale", "gauss-kinds", "gauss-nokinds", "cloud-scale", "cloud-sep",
        "cloud-infeasible", "times-0", "times-order", "times-inf", "proc-kinds", "proc-none"])
def test_bad_bounds_raise_invalid_argument(make):
    """Raised eagerly or, for bounds that depend on drawn sizes, at the first draw."""
    with pytest.raises(InvalidArgument):
        find(make(), lambda _: True)


def test_gaussians_checks_eigenvalue_bounds_eagerly():
    with pytest.raises(InvalidArgument):
        sst.gaussians(min_eig=0.0)


# ---- assert helpers: they pass on right models and fail on wrong ones ---------------------------
class ScoreOffBy:
    """A model whose score is shifted by ``delta`` (relative to its size, plus absolute)."""

    def __init__(self, model, delta):
        self.model, self.delta, self.dim = model, delta, model.dim
        self.mean, self.cov = model.mean, model.cov

    def logpdf(self, x):
        return self.model.logpdf(x)

    def score(self, x):
        s = self.model.score(x)
        return s * (1 + self.delta) + self.delta


class ScaledDensity:
    """A density multiplied by ``factor`` (unnormalized when factor != 1)."""

    def __init__(self, model, factor):
        self.model, self.factor, self.dim = model, factor, model.dim
        self.mean, self.cov = model.mean, model.cov
        if hasattr(model, "means"):
            self.means = model.means

    def pdf(self, x):
        return self.factor * self.model.pdf(x)


_MIX2 = GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.0, -0.5]],
                        [[[1.0, 0.3], [0.3, 0.6]], [[0.5, 0.0], [0.0, 0.8]]])
_X2 = np.random.default_rng(0).uniform(-2, 2, size=(10, 2))


@pytest.mark.parametrize("model", [Gaussian([0.3], 0.7), _MIX2], ids=["gauss-d1", "mix-d2"])
def test_assert_score_is_gradient_fails_on_wrong_score(model):
    x = _X2[:, : model.dim]
    assert_score_is_gradient(model, x)  # the right score passes
    with pytest.raises(AssertionError, match="SCORE_FD"):
        assert_score_is_gradient(ScoreOffBy(model, 1e-3), x)
    with pytest.raises(AssertionError):
        assert_score_is_gradient(ScoreOffBy(model, 1e-5), x)  # 10x the tolerance still caught


_EMP_MARGINAL = EmpiricalDistribution([[0.0, 0.0], [1.0, 1.0]]).marginal(VE(), 0.2)


@pytest.mark.parametrize("model", [Gaussian([0.3], 0.7), _MIX2, _EMP_MARGINAL],
                         ids=["gauss-d1", "mix-d2", "emp-d2"])
def test_assert_density_normalized_fails_on_unnormalized(model):
    assert_density_normalized(model)
    with pytest.raises(AssertionError, match="integrates to"):
        assert_density_normalized(ScaledDensity(model, 1.001))
    with pytest.raises(AssertionError):
        assert_density_normalized(ScaledDensity(model, 1 + 1e-6))


def test_measure_normalization_rejects_high_dimension():
    with pytest.raises(ValueError, match="d <= 2"):
        measure_normalization(Gaussian(np.zeros(3), 1.0))


class WrongMarginal:
    """A model whose marginals come from another process than the one checked."""

    def __init__(self, model, used):
        self.model, self.used = model, used

    def marginal(self, process, t):
        return self.model.marginal(self.used, t)


def test_assert_fokker_planck_fails_on_wrong_dynamics():
    g = Gaussian([0.5, -0.3], [[1.0, 0.2], [0.2, 0.7]])
    x = _X2[:4]
    assert_fokker_planck(g, OU(), 0.4, x)
    with pytest.raises(AssertionError, match="Fokker-Planck"):
        assert_fokker_planck(WrongMarginal(g, VE()), OU(), 0.4, x)
    with pytest.raises(AssertionError, match="Fokker-Planck"):  # 0.1% off in the drift
        assert_fokker_planck(WrongMarginal(g, OU(a=0.5 * (1 + 1e-3))), OU(), 0.4, x)


def test_assert_fokker_planck_on_wide_laws_with_large_g2():
    """VE(sigma=2) at t = 5 (v ~ 740, g^2 ~ 1400): with a fixed x-step of 1e-4 the rounding of
    the second differences alone gave a residual of 1e-4, above the tolerance (found by the
    getting-started example's hypothesis run); with the step relative to sqrt(v) it passes, and
    a process 0.1 % off (VE(sigma) with sigma 0.1 % larger) is still caught."""
    from sftheory.models import GaussianMixture

    mix = GaussianMixture([1.0], [[0.3, -0.5]], [0.7])
    x = np.array([[0.22217911, -9.02049255], [1.0, 2.0], [30.0, -20.0]])
    assert_fokker_planck(mix, VE(sigma=2.0), 5.0, x)
    with pytest.raises(AssertionError, match="Fokker-Planck"):
        assert_fokker_planck(WrongMarginal(mix, VE(sigma=2.0 * (1 + 1e-3))), VE(sigma=2.0), 5.0,
                             x)


def test_assert_moments_match_passes_and_fails():
    rng = np.random.default_rng(1)
    cov = np.array([[1.0, 0.5], [0.5, 2.0]])
    x = rng.multivariate_normal([1.0, -1.0], cov, size=100_000)
    assert assert_moments_match(x, [1.0, -1.0], cov) < tolerances.MC_SIGMAS
    se = np.sqrt(np.diag(cov) / len(x))
    with pytest.raises(AssertionError, match="standard errors"):
        assert_moments_match(x, np.array([1.0, -1.0]) + 8 * se, cov)  # mean 8 SE off
    with pytest.raises(AssertionError, match="standard errors"):
        assert_moments_match(x, [1.0, -1.0], cov * 1.03)  # variance 3% off (~7 SE at n=1e5)


def test_finite_difference_gradient_on_known_function():
    def f(x):
        return np.sin(x[:, 0]) * np.exp(0.3 * x[:, 1])

    x = np.random.default_rng(2).uniform(-2, 2, size=(20, 2))
    ref = np.column_stack([np.cos(x[:, 0]) * np.exp(0.3 * x[:, 1]),
                           0.3 * np.sin(x[:, 0]) * np.exp(0.3 * x[:, 1])])
    np.testing.assert_allclose(finite_difference_gradient(f, x), ref, rtol=SCORE_FD.rtol,
                               atol=SCORE_FD.atol)


class SkewedKernel:
    """Delegates to a model but perturbs the numba output by 1e-9 relative."""

    def __init__(self, model):
        self.model = model

    def logpdf_and_score(self, x, impl=None):
        lp, s = self.model.logpdf_and_score(x, impl=impl)
        if impl == "numba":
            return lp * (1 + 1e-9), s * (1 + 1e-9)
        return lp, s


def test_measure_backend_parity_detects_a_discrepancy():
    good = measure_backend_parity(_MIX2, _X2)
    assert good["numba_vs_numpy"] <= KERNEL_PARITY.rtol
    bad = measure_backend_parity(SkewedKernel(_MIX2), _X2)
    assert bad["numba_vs_numpy"] > KERNEL_PARITY.rtol


# ---- non-finite measured values fail every helper ----------------------------------------------
class NaNKernel:
    """Delegates to a model but its numba kernel returns NaN (a broken kernel)."""

    def __init__(self, model, where="score"):
        self.model, self.where = model, where

    def logpdf_and_score(self, x, impl=None):
        lp, s = self.model.logpdf_and_score(x, impl=impl)
        if impl == "numba":
            return (lp * np.nan, s) if self.where == "logpdf" else (lp, s * np.nan)
        return lp, s


@pytest.mark.parametrize("where", ["score", "logpdf"])
def test_measure_backend_parity_reports_nan_for_a_nan_kernel(where):
    """Was 0.0: Python's max(0.0, nan) dropped the NaN."""
    bad = measure_backend_parity(NaNKernel(_MIX2, where), _X2)
    assert math.isnan(bad["numba_vs_numpy"]), bad


def test_rel_pair_keeps_nan_and_inf_in_either_argument():
    from sftheory.testing.asserts import _rel_pair

    ok = np.ones(3)
    for bad in (np.array([1.0, np.nan, 1.0]), np.array([1.0, np.inf, 1.0])):
        assert math.isnan(_rel_pair(ok, bad, ok, ok))
        assert math.isnan(_rel_pair(bad, ok, ok, ok))
        assert math.isnan(_rel_pair(ok, ok, ok, bad))
    assert _rel_pair(ok, ok, ok, ok) == 0.0


def test_measure_backend_parity_says_when_torch_did_not_run(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    res = measure_backend_parity(_MIX2, _X2)
    assert res["torch_vs_numpy"].startswith("not run: ")
    assert res["numba_vs_numpy"] <= KERNEL_PARITY.rtol


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_assert_moments_match_fails_on_non_finite_samples(bad):
    """Was a pass: the NaN z-scores compared False with n_sigma."""
    x = np.full((1000, 2), bad)
    with pytest.raises(AssertionError, match="standard errors"):
        assert_moments_match(x, [0.0, 0.0], np.eye(2))
    x = np.random.default_rng(3).standard_normal((1000, 2))
    x[17, 1] = bad
    with pytest.raises(AssertionError, match="non-finite"):
        assert_moments_match(x, [0.0, 0.0], np.eye(2))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_measurement_summaries_keep_non_finite_values(bad):
    from sftheory.testing.asserts import compare

    meas = compare([1.0, bad, 2.0], [1.0, 1.0, 2.0])
    assert not math.isfinite(meas.max_abs_err) and not math.isfinite(meas.max_rel_err)
    assert not math.isfinite(meas.excess(EXACT_FLOAT64)) and not meas.ok(EXACT_FLOAT64)
    assert meas.non_finite == 1
    same = compare([bad], [bad])  # a non-finite value equal to a non-finite reference still fails
    assert not same.ok(EXACT_FLOAT64)


class NaNScore(ScoreOffBy):
    def score(self, x):
        return self.model.score(x) * np.nan


class NaNDensity(ScaledDensity):
    def pdf(self, x):
        return self.model.pdf(x) * np.nan

    def logpdf(self, x):
        return self.model.logpdf(x) * np.nan

    def marginal(self, process, t):
        return NaNDensity(self.model.marginal(process, t), 1.0)


def test_every_assert_fails_on_nan():
    g = Gaussian([0.5, -0.3], [[1.0, 0.2], [0.2, 0.7]])
    with pytest.raises(AssertionError, match="non-finite"):
        assert_score_is_gradient(NaNScore(g, 0.0), _X2)
    with pytest.raises(AssertionError, match="integrates to nan"):
        assert_density_normalized(NaNDensity(g, 1.0))
    with pytest.raises(AssertionError, match="Fokker-Planck"):
        assert_fokker_planck(NaNDensity(g, 1.0), OU(), 0.4, _X2[:4])


def test_tolerances_registry():
    for name, tol in tolerances.ALL.items():
        assert tol.name == name and tol.why and 0 <= tol.atol and 0 <= tol.rtol < 1
        assert tol.rtol > 0 or tol.atol > 0
        assert tol.as_dict()["name"] == name
    assert 0 < tolerances.KS_ALPHA < 1e-3 and tolerances.MC_SIGMAS >= 4


def test_strategies_importable_from_package_in_fresh_interpreter():
    import subprocess
    import sys

    code = "from sftheory.testing import strategies; print(strategies.gaussians)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-500:]
