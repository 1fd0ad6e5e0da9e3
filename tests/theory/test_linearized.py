"""sftheory.theory.linearized: the linearized Fokker-Planck solution v_T and L(h) of [OS]
Prop. 3.2 / eq. (10) for 1D laws.

References, each computed another way: the exact Gaussian L (``odesde.gaussian_L``, an ODE for
the variance sensitivity, no PDE) and the exact Gaussian v_T = u d/dA N(0, A); for a mixture,
KL(p0 || q~_T)/eps^2 of the perturbed process from a separate density solve
(``sftheory.claims.checks.os_linearized.kl_route_L``); translation invariance and a mixture of
identical components. Planted errors (source 0.1 % off, NaN score) must be caught.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from sftheory.models import EmpiricalDistribution, Gaussian, GaussianMixture
from sftheory.models.path import MixturePath
from sftheory.processes import OU
from sftheory.theory import linearized, odesde
from sftheory.theory.linearized import linearized_grid, linearized_L, linearized_solution

T = 2.0


def _gauss(s, mu=0.0):
    return Gaussian([mu], [[s * s]])


def _tol(sol, exact):
    """The solution's own error estimate (grid: |L - L_coarse|, ~10x the actual error of the
    6th-order scheme; time: 10 rtol |L|) + 1e-12 (absolute floor of the exact ODE route)."""
    return sol.error_estimate + 1e-12


# ---- (1) Gaussian: agreement with the exact L --------------------------------------------------
GAUSS_CONFIGS = ([(0.4, h, c) for h in (0.0, 1.0, 4.47) for c in (1, 2, 3, 4, 5)]
                 + [(2.0, 0.0, 1), (2.0, 1.0, 3), (2.0, 4.47, 4), (0.25, 0.0, 5)])


@pytest.mark.parametrize("sigma0, h, case", GAUSS_CONFIGS)
def test_gaussian_L_matches_exact(sigma0, h, case):
    sol = linearized_solution(_gauss(sigma0), T, h, case)
    exact = odesde.gaussian_L(sigma0, T, h, case)
    assert abs(sol.L - exact) <= _tol(sol, exact), (sol.L, exact, sol.error_estimate)
    # the estimate is sharp enough to see a 0.1 % error in the source (0.2 % in L)
    if exact > 1e-6:
        assert sol.error_estimate < 2e-4 * exact
    assert abs(sol.mass) < 1e-5 * max(1.0, math.sqrt(exact))  # int v_T = 0 (mass conserved)


@pytest.mark.parametrize("sigma0", [0.5, 1.0])
def test_gaussian_L_other_horizon_and_callables(sigma0):
    """T = 1, a time-varying h(t) and c(t), against the exact ODE route with the same callables."""
    h = lambda t: 0.5 + t          # noqa: E731
    c = lambda t: math.cos(3 * t)  # noqa: E731
    sol = linearized_solution(_gauss(sigma0), 1.0, h, c)
    exact = odesde.gaussian_L(sigma0, 1.0, h, c)
    assert abs(sol.L - exact) <= _tol(sol, exact)


def test_callables_equal_builtin_case_and_constant_h():
    p0 = _gauss(0.6)
    a = linearized_L(p0, T, 1.0, 1)
    b = linearized_L(p0, T, lambda t: 1.0, lambda t: 1.0)
    assert a == pytest.approx(b, rel=1e-12)


def test_spatial_order_is_six():
    """Errors against the exact L at two grid spacings (tight time tolerance): slope ~ 6."""
    p0, exact = _gauss(0.3), odesde.gaussian_L(0.3, T, 1.0, 5)
    errs = [abs(linearized_L(p0, T, 1.0, 5, points_per_sd=pps, rtol=1e-9) - exact)
            for pps in (3.0, 4.5)]
    order = math.log(errs[0] / errs[1]) / math.log(1.5)
    assert 5.0 < order < 7.0, (errs, order)


def test_gaussian_v_T_is_the_exact_variance_perturbation():
    """v_T = u d/dA N(x; 0, A) at A = sigma0^2 (the Gaussian q~_T = N(0, sigma0^2 + eps u)),
    u = dVar/deps from odesde's sensitivity ODE."""
    s = 0.5
    sol = linearized_solution(_gauss(s), T, 1.0, 3)
    hfun = lambda t: 1.0  # noqa: E731
    cfun, br = odesde._case_function(3, T)
    u = odesde._sensitivity(s, T, hfun, cfun, br)
    x, A = sol.x, s * s
    pdf = np.exp(-x * x / (2 * A)) / math.sqrt(2 * math.pi * A)
    exact = u * pdf * (x * x / (2 * A * A) - 1 / (2 * A))
    assert np.max(np.abs(sol.v_T - exact)) < 1e-5 * np.max(np.abs(exact))
    assert sol.psi_T == pytest.approx(sol.v_T / np.sqrt(pdf), abs=1e-6 * np.max(np.abs(sol.psi_T)))


def test_L_is_translation_invariant_and_mixture_of_equal_components():
    """N(mu, s^2) has the same L as N(0, s^2) (the mean of the linear SDE stays exact); a mixture
    of two identical components is the Gaussian itself."""
    s, h, case = 0.4, 1.0, 1
    exact = odesde.gaussian_L(s, T, h, case)
    shifted = linearized_solution(_gauss(s, mu=1.3), T, h, case)
    assert abs(shifted.L - exact) <= _tol(shifted, exact)
    twin = GaussianMixture([0.3, 0.7], [[0.2], [0.2]], [s * s, s * s])
    mix = linearized_solution(twin, T, h, case)
    assert abs(mix.L - exact) <= _tol(mix, exact)


# ---- (2) mixture: against the KL of the perturbed process ---------------------------------------
def test_mixture_L_matches_kl_of_perturbed_process():
    """p0 = 0.5 N(-1, 0.04) + 0.5 N(1, 0.04) (modes twice App. H.2's width, for speed), T = 1,
    h = 1, case 5 (error near the end only: the cheapest solve): L from (10) against
    (KL(e) + KL(-e))/(2e^2), extrapolated in e^2. (os.prop32 runs more cases.)"""
    from sftheory.claims.checks.os_linearized import EPS_PAIR, FP_RTOL, kl_route_L

    p0 = GaussianMixture([0.5, 0.5], [[-1.0], [1.0]], [0.04, 0.04])
    sol = linearized_solution(p0, 1.0, 1.0, 5)
    ref = kl_route_L(p0, 1.0, 1.0, 5, EPS_PAIR)
    # both routes' error estimates (grid + 10 rtol |L| time) + the eps-extrapolation remainder
    tol = sol.error_estimate + ref["disc_error"] + ref["eps_remainder"] + 10 * FP_RTOL * ref["L"]
    assert abs(sol.L - ref["L"]) <= tol, (sol.L, ref)
    assert tol < 1e-4 * ref["L"]  # sharp enough to see a 0.1 % error
    # the mixture's L differs from the Gaussian of the same variance: the check is not trivial
    assert abs(sol.L - odesde.gaussian_L(math.sqrt(1.04), 1.0, 1.0, 5)) > 0.05 * sol.L


def test_mixture_default_L_is_fast():
    import time

    p0 = GaussianMixture([0.5, 0.5], [[-1.0], [1.0]], [0.04, 0.04])
    linearized_L(p0, 1.0, 0.0, 5)  # warm (numba)
    t0 = time.process_time()
    L = linearized_L(p0, 1.0, 1.0, 3)
    assert time.process_time() - t0 < 4.0  # ~0.5 s CPU; generous for a shared machine
    assert L > 0


# ---- (3) planted errors ------------------------------------------------------------------------
def test_planted_source_error_is_caught(monkeypatch):
    orig = linearized._source_factor
    monkeypatch.setattr(linearized, "_source_factor", lambda h2, c: 1.001 * orig(h2, c))
    s, h, case = 0.5, 1.0, 1
    sol = linearized_solution(_gauss(s), T, h, case)
    exact = odesde.gaussian_L(s, T, h, case)
    assert abs(sol.L - exact) > 10 * _tol(sol, exact)
    assert sol.L / exact - 1 == pytest.approx(0.002001, rel=0.01)  # L is quadratic in the source


def test_nan_score_raises(monkeypatch):
    def nan_score(self, x, t, **kw):
        n = np.asarray(x).shape[0]
        return np.full(n, np.nan), np.full((n, 1), np.nan)

    monkeypatch.setattr(MixturePath, "logpdf_and_score", nan_score)
    with pytest.raises(FloatingPointError, match="not finite"):
        linearized_L(_gauss(0.5), T, 1.0, 1)


# ---- validation --------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, name", [
    ({"p0": Gaussian([0.0, 0.0], np.eye(2))}, "p0"),
    ({"p0": EmpiricalDistribution(np.array([[0.0], [1.0]]))}, "p0"),
    ({"p0": "N(0, 1)"}, "p0"),
    ({"T": 0.0}, "T"), ({"T": -1.0}, "T"), ({"T": math.nan}, "T"),
    ({"h": -0.5}, "h"), ({"h": math.nan}, "h"), ({"h": lambda t: -1.0}, "h"),
    ({"case": 6}, "case"), ({"case": "1"}, "case"), ({"case": lambda t: math.nan}, "case"),
    ({"n": 10}, "n"), ({"n": 300.5}, "n"), ({"rtol": 0.5}, "rtol"), ({"rtol": math.nan}, "rtol"),
])
def test_bad_inputs_raise_naming_the_argument(kwargs, name):
    args = {"p0": _gauss(0.5), "T": 1.0, "h": 1.0, "case": 1}
    extra = {k: kwargs.pop(k) for k in list(kwargs) if k in ("n", "rtol")}
    args.update(kwargs)
    for fn in (linearized_L, linearized_solution):
        with pytest.raises(ValueError, match=name):
            fn(args["p0"], args["T"], args["h"], args["case"], **extra)


def test_grid_covers_the_path_tails():
    p0 = GaussianMixture([0.5, 0.5], [[-1.0], [1.0]], [0.01, 0.01])
    x = linearized_grid(p0, 1.0)
    dx = x[1] - x[0]
    assert dx <= 0.1 / linearized.POINTS_PER_SD + 1e-12
    # at the edge every marginal is below exp(-8.5^2/2) ~ 2e-16 of its peak
    for tau in (0.0, 0.5, 1.0):
        logp = p0.path(OU()).logpdf(np.array([[x[-1]], [x[0]]]), tau)
        assert np.all(logp < math.log(1e-14))
    assert linearized_grid(p0, 1.0, n=301).shape == (301,)
