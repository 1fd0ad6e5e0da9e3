"""Torch (float64, CPU and CUDA when present) vs the numpy route (numba kernels) on
hypothesis-generated models: paths, marginals, process coefficients, score-field combinators,
samplers given the same Brownian path, autograd, float32 (issue 11).

Tolerance (one rule, derived, not tuned). Both routes evaluate the same formula
(:func:`sftheory.models._formulas.mixture_path_eval`) in float64 with the operations in another
order, so they differ by rounding only. Entrywise relative error is not a rounding bound where a
value is the sum of terms that cancel (a score vanishes at a mode, log p_t crosses 0), so each
entry is compared relative to the magnitude of the terms it is computed from (Higham's condition
number of a sum, sum |terms| / |sum|):

* log p_t(x): the terms of each component's exponent, L = max_k (|log w_k| + d/2 log 2 pi
  + 1/2 sum_a |log s_ka| + 1/2 (|x| + m |mu_k|)^2 / min_a s_ka), s_ka = m^2 lam_ka + v. The
  quadratic term is written with (|x| + m|mu_k|)^2, not |y|^2, because the expanded form
  |x|^2 - 2 m x.mu + m^2 |mu|^2 (the empirical GEMM engine) rounds at that size.
* responsibilities r_k = softmax of those exponents: a rounding error eps L in an exponent is a
  relative error eps L in r_k, so an average sum_k r_k g_k of component values g_k errs by
  eps (1 + L) max_k |g_k|; scores: |g_k| <= G = max_k (|x| + m |mu_k|) / min_a s_ka; posterior
  means: |g_k| <= P = max_k (|mu_k| + m max_a lam_ka (|x| + m |mu_k|) / min_a s_ka).

So ``|torch - numpy| <= RTOL max(|numpy|, scale)`` entrywise with scale L, G (1 + L) or
P (1 + L). Each entry costs O(d K) <= 60 floating-point operations (d <= 3, K <= 20) plus an
exp within 1.3 ulp (sftheory/_kernels/fastexp.py), so the constant in front of eps is <= ~100:
RTOL = 1e-12 (= 4500 eps64, the issue's number) holds with a margin of > 40 (measured on these
strategies: worst error / allowance 3e-4 for log p, 6e-5 for scores, i.e. ~1 eps of the scale),
while a 0.1 % error exceeds it 1e9-fold where |value| ~ scale and still 1e3-fold where
|value| = 1e-6 scale (the planted tests below). Non-finite values on either side always fail.

Samplers (Euler-Maruyama, exponential, probability-flow ODE) run the numba loop on numpy and the
Python loop on torch with one shared :class:`~sftheory.samplers.BrownianPath`; their final points
are compared with the rounding injected per step carried through each step's Jacobian
(:func:`sampler_bound`). Process coefficients of torch times are torch tensors
(sftheory/processes/_base.py), equal to the numpy values.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed: pip install torch")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sftheory.backend import kernel_impl  # noqa: E402
from sftheory.fields import perturbed, scaled, weighted  # noqa: E402
from sftheory.models import EmpiricalDistribution, Gaussian, GaussianMixture  # noqa: E402
from sftheory.samplers import (BrownianPath, initial_points, sample_euler_maruyama,  # noqa: E402
                               sample_exponential, sample_ode)
from sftheory.samplers import _fused  # noqa: E402
from sftheory.samplers._core import (euler_maruyama_coefficients,  # noqa: E402
                                     exponential_coefficients)
from sftheory.testing import strategies as sst  # noqa: E402
from sftheory.testing import textbook  # noqa: E402

pytestmark = pytest.mark.torch

# torchsde's practice: every torch test on the CPU, and on CUDA when a GPU is present
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

EPS32 = float(np.finfo(np.float32).eps)
RTOL = 1e-12
"""float64 parity: 4500 eps64 >= 40 x the <= ~100 eps of an O(dK) evaluation (module docstring)."""
RTOL32 = 100 * EPS32
"""float32 vs float64: the same <= ~100 roundings, now of eps32 each, plus the rounding of the
parameters and of (m, v) to float32 (relative eps32/2 perturbations, whose effect the same
condition scales L, G (1 + L), P (1 + L) bound), so 100 eps32 = 1.2e-5 relative to the scale."""
TINY32 = float(np.finfo(np.float32).tiny)
"""Parameters or intermediates below the float32 normal range (a mean of 1e-70) round with an
absolute error <= TINY32, not a relative one: the float32 comparison adds an absolute allowance
100 TINY32 (1 + max 1/s) (1 + L) (the same <= 100 roundings, each multiplied at most by 1/s and
carried through the softmax), ~1e-33 for the variances here, far below any value that did not
underflow."""
LOG_2PI = math.log(2.0 * math.pi)

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---- models and their condition scales ----------------------------------------------------------

def laws(dim=st.integers(1, 3)):
    """Every law family: Gaussian (full/diag/iso), mixtures with full, diagonal and isotropic
    covariances, empirical laws."""
    return st.one_of(sst.gaussians(dim),
                     sst.gaussian_mixtures(dim=dim, cov_kinds=("full",)),
                     sst.gaussian_mixtures(dim=dim, cov_kinds=("diag",)),
                     sst.gaussian_mixtures(dim=dim, cov_kinds=("iso",)),
                     sst.empirical_distributions(n=(1, 20), dim=dim))


@st.composite
def path_cases(draw, n=(1, 12)):
    """(law, process, points (N, d), one time, one time per point (N,))."""
    law = draw(laws())
    proc = draw(sst.processes())
    x = draw(sst.points_for(law.dim, n))
    t = draw(sst.diffusion_times())
    ts = np.array(draw(st.lists(sst.diffusion_times(), min_size=len(x), max_size=len(x))))
    return law, proc, x, t, ts


def _components(law):
    """(weights (K,), means (K, d), covariance eigenvalues (K, d)) from the law's public
    parameters (empirical law: atoms, eigenvalues 0)."""
    if isinstance(law, EmpiricalDistribution):
        n = law.n_points
        return np.full(n, 1.0 / n), np.asarray(law.points), np.zeros((n, law.dim))
    if isinstance(law, Gaussian):
        return np.ones(1), law.mean[None], np.abs(np.linalg.eigvalsh(law.cov))[None]
    return law.weights, law.means, np.abs(np.linalg.eigvalsh(law.covs))


def scales(law, x, m, v):
    """Per point (N,): the condition scales L (log p), G (1 + L) (score), P (1 + L) (posterior
    mean) of the module docstring, for m, v floats or (N,) arrays."""
    w, mu, lam = _components(law)
    n, d = x.shape
    m = np.broadcast_to(np.asarray(m, dtype=np.float64), (n,))
    v = np.broadcast_to(np.asarray(v, dtype=np.float64), (n,))
    s = m[:, None, None] ** 2 * lam[None] + v[:, None, None]  # (N, K, d)
    smin = s.min(axis=2)
    r = np.linalg.norm(x, axis=1)[:, None] + np.abs(m)[:, None] * np.linalg.norm(mu, axis=1)[None]
    big_l = (np.abs(np.log(w))[None] + 0.5 * d * LOG_2PI + 0.5 * np.abs(np.log(s)).sum(axis=2)
             + 0.5 * r * r / smin).max(axis=1)
    big_g = (r / smin).max(axis=1)
    big_p = (np.linalg.norm(mu, axis=1)[None]
             + np.abs(m)[:, None] * lam.max(axis=1)[None] * r / smin).max(axis=1)
    inv_s = (1.0 / smin).max(axis=1)
    return {"logpdf": big_l, "score": big_g * (1 + big_l), "posterior": big_p * (1 + big_l),
            "underflow32": 100 * TINY32 * (1 + inv_s) * (1 + big_l)}


def _np(a):
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)


def assert_parity(measured, reference, scale, what, *, rtol=RTOL, atol=0.0):
    """Entrywise |measured - reference| <= rtol max(|reference|, scale) + atol; ``scale`` and
    ``atol`` per point (N,) (broadcast over coordinates), per entry, or a number. Non-finite
    values on either side fail (never a silent pass). Returns the largest error / allowance
    (<= 1 when it passes)."""
    a, b = _np(measured), _np(reference)
    if a.shape != b.shape:
        raise AssertionError(f"{what}: shape {a.shape} vs {b.shape}")
    sc = np.asarray(scale, dtype=np.float64)
    at = np.asarray(atol, dtype=np.float64)
    if sc.ndim == 1 and a.ndim == 2:
        sc = sc[:, None]
    if at.ndim == 1 and a.ndim == 2:
        at = at[:, None]
    allow = rtol * np.maximum(np.abs(b), sc) + at
    finite = np.isfinite(a) & np.isfinite(b) & np.isfinite(allow)
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.abs(a - b)
        ratio = np.where(finite, np.where(err == 0, 0.0, err / allow), np.nan)
    if not finite.all() or not np.all(ratio <= 1.0):
        i = np.unravel_index(int(np.nanargmax(np.where(finite, ratio, np.inf))), a.shape)
        sc_i = np.broadcast_to(sc, a.shape)[i]
        raise AssertionError(
            f"{what}: {int((~finite).sum())} non-finite entries; worst at {i}: measured {a[i]!r}, "
            f"reference {b[i]!r}, |err| {np.abs(a[i] - b[i]):.3e} > allowance {allow[i]:.3e} "
            f"(rtol {rtol:g} x max(|reference|, condition scale {sc_i:.3e}))")
    return float(ratio.max(initial=0.0))


def _tensor(a, device, dtype=torch.float64):
    return torch.tensor(np.asarray(a), dtype=dtype, device=device)


def _check_torch(out, like):
    assert isinstance(out, torch.Tensor), type(out)
    assert out.dtype == like.dtype and out.device == like.device, (out.dtype, out.device)


# ---- paths: logpdf, score, posterior mean, marginal ---------------------------------------------

def check_path_parity(path_t, path_n, law, proc, x, t, ts, device):
    """path_t on torch float64 vs path_n on numpy (numba) at one time t (as a float and as a 0-d
    tensor) and at one time per point ts (N,)."""
    assert kernel_impl() == "numba"  # the numpy route under test is the compiled one
    xt = _tensor(x, device)
    cases = [(t, t), (_tensor(t, device), t), (_tensor(ts, device), ts)]
    for tt, tn in cases:
        m, v = proc.conditional(tn) if np.ndim(tn) == 0 else proc.conditional_many(tn)
        sc = scales(law, x, m, v)
        lp_t, s_t = path_t.logpdf_and_score(xt, tt)
        lp_n, s_n = path_n.logpdf_and_score(x, tn)
        for out in (lp_t, s_t):
            _check_torch(out, xt)
        assert lp_t.shape == (len(x),) and s_t.shape == x.shape
        assert_parity(lp_t, lp_n, sc["logpdf"], f"logpdf_and_score[0] at t={tn}")
        assert_parity(s_t, s_n, sc["score"], f"logpdf_and_score[1] at t={tn}")
        assert_parity(path_t.logpdf(xt, tt), path_n.logpdf(x, tn), sc["logpdf"], "logpdf")
        assert_parity(path_t.score(xt, tt), path_n.score(x, tn), sc["score"], "score")
        pm_t = path_t.posterior_mean(xt, tt)
        _check_torch(pm_t, xt)
        assert_parity(pm_t, path_n.posterior_mean(x, tn), sc["posterior"], "posterior_mean")
    # posterior means accept t = 0 (X_0 = X_t): a scalar 0, and a per-point time 0 on row 0
    ts0 = ts.copy()
    ts0[0] = 0.0
    m, v = proc.conditional_many(ts0)
    sc = scales(law, x, m, np.where(v == 0, 1.0, v))["posterior"]  # rows at t = 0: no formula
    if isinstance(law, EmpiricalDistribution):  # no density at 0: the row is x itself
        sc[0] = 0.0
    else:  # the formula at v = 0: mu + (lam / lam)(x - mu), the scale with s = lam
        sc[0] = scales(law, x[:1], 1.0, 0.0)["posterior"][0]
    pm_t = path_t.posterior_mean(xt, _tensor(ts0, device))
    _check_torch(pm_t, xt)
    assert_parity(pm_t, path_n.posterior_mean(x, ts0), sc, "posterior_mean, a time 0")
    assert_parity(path_t.posterior_mean(xt, 0.0), x, 0.0, "posterior_mean at t = 0 is x")
    assert_parity(path_n.posterior_mean(x, 0.0), x, 0.0, "posterior_mean at t = 0 is x")


@pytest.mark.parametrize("device", DEVICES)
@SETTINGS
@given(case=path_cases())
def test_path_torch_matches_numba(device, case):
    law, proc, x, t, ts = case
    path = law.path(proc)
    check_path_parity(path, path, law, proc, x, t, ts, device)


@st.composite
def empirical_cases(draw):
    law = draw(sst.empirical_distributions(n=(1, 30), dim=st.integers(1, 6)))
    proc = draw(sst.processes())
    x = draw(sst.points_for(law.dim, (1, 12)))
    t = draw(sst.diffusion_times())
    ts = np.array(draw(st.lists(sst.diffusion_times(), min_size=len(x), max_size=len(x))))
    return law, proc, x, t, ts


@SETTINGS
@given(case=empirical_cases())
def test_empirical_torch_engine_matches_numpy(case):
    """The torch-ops engine of the empirical law (what CUDA tensors run; CPU tensors take the
    numpy route on zero-copy views, so it is forced here with engine="torch"), in its three
    forms of the logits, vs the numpy route (numba kernel for d <= 4, BLAS above): the
    expanded form's cancellation, eps sqrt(d) (|x| + m |y|)^2 / 2v, is within the quadratic term
    of the scale L."""
    from sftheory.backend import get_backend
    from sftheory.models._esf_gemm import evaluate_empirical

    law, proc, x, t, ts = case
    path = law.path(proc)
    store = law._mixture_params().store
    xt = _tensor(x, "cpu")
    for tn in (t, ts):
        m, v = proc.conditional(tn) if np.ndim(tn) == 0 else proc.conditional_many(tn)
        sc = scales(law, x, m, v)
        lp_n, s_n = path.logpdf_and_score(x, tn)
        pm_n = path.posterior_mean(x, tn)
        for form in ("auto", "expanded", "diff"):
            lp, sco = evaluate_empirical(get_backend(xt), xt, m, v, False, store, form=form,
                                         engine="torch")
            _, pm = evaluate_empirical(get_backend(xt), xt, m, v, True, store, form=form,
                                       engine="torch")
            for out in (lp, sco, pm):
                _check_torch(out, xt)
            assert_parity(lp, lp_n, sc["logpdf"], f"empirical {form} logpdf")
            assert_parity(sco, s_n, sc["score"], f"empirical {form} score")
            assert_parity(pm, pm_n, sc["posterior"], f"empirical {form} posterior_mean")


def _mv_tol(m):
    """Relative rounding of m = exp(-kappa theta) (condition number |log m| of exp) and of
    v = -expm1(-2 kappa theta) / 2 kappa (condition <= 1 + 2 |log m|): RTOL (1 + 2 |log m|)."""
    return RTOL * (1.0 + 2.0 * abs(math.log(m)))


@pytest.mark.parametrize("device", DEVICES)
@SETTINGS
@given(case=path_cases(n=(1, 6)))
def test_marginal_parameters_and_densities(device, case):
    """path.marginal(t) for a float and a 0-d tensor t: the same law; its parameters are the
    closed form N(m mu_k, m^2 Sigma_k + v I) with (m, v) from the textbook SDE (mpmath); its
    density and score on torch match the numba route and the path at t."""
    law, proc, x, t, _ = case
    path = law.path(proc)
    mt, mn = path.marginal(_tensor(t, device)), path.marginal(t)
    m, v = textbook.exact_mv(proc, t)
    tol = _mv_tol(m)
    w, mu, _ = _components(law)
    if isinstance(law, Gaussian):
        means, covs, cov0 = mn.mean[None], mn.cov[None], law.cov[None]
        assert np.array_equal(mt.mean, mn.mean) and np.array_equal(mt.cov, mn.cov)
    else:
        means, covs = mn.means, mn.covs
        cov0 = (np.zeros((len(w), law.dim, law.dim)) if isinstance(law, EmpiricalDistribution)
                else law.covs)
        assert np.array_equal(mt.means, mn.means) and np.array_equal(mt.covs, mn.covs)
        assert np.array_equal(mn.weights, w)
    closed = m * m * cov0 + v * np.eye(law.dim)
    assert_parity(means, m * mu, np.abs(mu), "marginal means", rtol=tol)
    assert_parity(covs, closed, m * m * np.abs(cov0) + v, "marginal covariances", rtol=tol)
    xt = _tensor(x, device)
    m_lib, v_lib = proc.conditional(t)
    sc = scales(law, x, m_lib, v_lib)
    lp_t, s_t = mt.logpdf_and_score(xt)
    _check_torch(lp_t, xt)
    lp_n, s_n = mn.logpdf_and_score(x)
    assert_parity(lp_t, lp_n, sc["logpdf"], "marginal logpdf")
    assert_parity(s_t, s_n, sc["score"], "marginal score")
    lp_p, s_p = path.logpdf_and_score(xt, t)
    assert_parity(lp_t, lp_p, sc["logpdf"], "marginal logpdf vs path")
    assert_parity(s_t, s_p, sc["score"], "marginal score vs path")


@st.composite
def mixture_points(draw):
    law = draw(st.one_of(*[sst.gaussian_mixtures(n_components=(1, 5), cov_kinds=(k,))
                           for k in ("full", "diag", "iso")]))
    return law, draw(sst.points_for(law.dim, (1, 10)))


@pytest.mark.parametrize("device", DEVICES)
@SETTINGS
@given(case=mixture_points())
def test_mixture_responsibilities_on_torch(device, case):
    """GaussianMixture.responsibilities on torch (x's dtype and device) vs numpy, and both vs
    w_k N(x; mu_k, Sigma_k) normalized with scipy's multivariate_normal: an exponent error
    eps L is a relative error eps L of r_k, so the scale is (1 + L) r_k; responsibilities
    below the normal range (< 2.2e-308) carry an absolute error, allowed as 1e-300."""
    from scipy.special import softmax
    from scipy.stats import multivariate_normal

    law, x = case
    r_t = law.responsibilities(_tensor(x, device))
    _check_torch(r_t, _tensor(x, device))
    r_n = law.responsibilities(x)
    logc = np.stack([math.log(w) + np.atleast_1d(multivariate_normal(mu, c).logpdf(x))
                     for w, mu, c in zip(law.weights, law.means, law.covs)], axis=1)
    ref = softmax(logc, axis=1)
    big_l = scales(law, x, 1.0, 0.0)["logpdf"][:, None]
    assert_parity(r_t, r_n, (1 + big_l) * r_n, "responsibilities torch vs numpy", atol=1e-300)
    assert_parity(r_t, ref, (1 + big_l) * ref, "responsibilities vs scipy", atol=1e-300)
    r32 = law.responsibilities(_tensor(x, device, torch.float32))
    assert r32.dtype == torch.float32


# ---- the planted errors: the helper notices 0.1 % and NaN ---------------------------------------

class _Planted:
    """A torch-side double of a path with one planted error: ``spoil`` ("score", "logpdf" or
    "posterior") is 1.001 times the true value, or has a NaN in one entry (``nan``)."""

    def __init__(self, path, spoil, nan=False):
        self.path, self.spoil, self.nan = path, spoil, nan

    def _spoil(self, a, what):
        if what != self.spoil:
            return a
        a = a * 1.001
        if self.nan:
            a = a.clone()
            a.view(-1)[0] = math.nan
        return a

    def logpdf_and_score(self, x, t):
        lp, s = self.path.logpdf_and_score(x, t)
        return self._spoil(lp, "logpdf"), self._spoil(s, "score")

    def logpdf(self, x, t):
        return self.logpdf_and_score(x, t)[0]

    def score(self, x, t):
        return self.logpdf_and_score(x, t)[1]

    def posterior_mean(self, x, t):
        return self._spoil(self.path.posterior_mean(x, t), "posterior")


@pytest.mark.parametrize("spoil,nan", [("score", False), ("score", True), ("logpdf", False),
                                       ("posterior", False)],
                         ids=["score-0.1%", "score-nan", "logpdf-0.1%", "posterior-0.1%"])
@settings(max_examples=10, deadline=None)
@given(case=path_cases(n=(1, 4)))
def test_planted_error_fails_the_parity_check(spoil, nan, case):
    """Every generated model: a torch double with its score (log-density, posterior mean) 0.1 %
    off, or a NaN, fails. A point one unit off the law's mean is added, so that the score there
    is not 0 (0.1 % of 0 is 0)."""
    law, proc, x, t, ts = case
    x = np.vstack([x, law.mean + 1.0])
    ts = np.append(ts, t)
    path = law.path(proc)
    first = {"score": r"logpdf_and_score\[1\]", "logpdf": r"logpdf_and_score\[0\]",
             "posterior": "posterior_mean"}[spoil]  # the first check that sees it
    with pytest.raises(AssertionError, match=first):
        check_path_parity(_Planted(path, spoil, nan), path, law, proc, x, t, ts, "cpu")


def test_assert_parity_fails_on_nan_and_passes_on_equal():
    from sftheory.processes import VP

    law = GaussianMixture([0.3, 0.7], [[-1.0, 0.0], [1.0, 0.5]], [0.5, 0.2])
    x = np.array([[0.1, 0.2], [2.0, -1.0]])
    ref = law.path(VP()).score(x, 0.3)
    bad = ref.copy()
    bad[1, 0] = math.nan
    with pytest.raises(AssertionError, match="1 non-finite"):
        assert_parity(bad, ref, 1.0, "score")
    with pytest.raises(AssertionError, match="1 non-finite"):
        assert_parity(ref, bad, 1.0, "score")  # a NaN reference fails too
    with pytest.raises(AssertionError, match="allowance"):
        assert_parity(ref * 1.001, ref, 1.0, "score")
    assert assert_parity(ref, ref, 0.0, "score") == 0.0


# ---- process coefficients --------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@SETTINGS
@given(proc=sst.processes(), times=st.lists(sst.diffusion_times(), min_size=1, max_size=8),
       d=st.integers(1, 3))
def test_process_coefficients_torch_matches_numpy(device, proc, times, d):
    """m(t), v(t) (conditional, conditional_many), drift, diffusion, clock and drift_coef on
    torch times / points vs numpy: torch in -> torch out (t's device), same values; (m, v) also
    vs the textbook SDE in mpmath."""
    t_np = np.array(times)
    t_t = _tensor(t_np, device)
    for u in times:
        assert proc.conditional(_tensor(u, device)) == proc.conditional(u)
        m, v = textbook.exact_mv(proc, u)
        mm, vv = proc.conditional(u)
        assert_parity([mm, vv], [m, v], 0.0, f"conditional({u}) vs textbook", rtol=_mv_tol(m))
    m_t, v_t = proc.conditional_many(t_t)
    m_n, v_n = proc.conditional_many(t_np)
    for a, b in ((m_t, m_n), (v_t, v_n)):
        _check_torch(a, t_t)
        assert_parity(a, b, 0.0, "conditional_many")
    for name in ("diffusion", "clock", "drift_coef", "time_change"):
        a, b = getattr(proc, name)(t_t), getattr(proc, name)(t_np)
        _check_torch(a, t_t)
        assert_parity(a, b, 0.0, name)
    assert_parity(proc.clock_inverse(proc.clock(t_t)), t_np, 0.0, "clock_inverse(clock(t))",
                  rtol=RTOL * 10)  # expm1/log1p round trip: a few ulps (condition <= 2)
    x = np.random.default_rng(len(times)).uniform(-4, 4, size=(len(times), d))
    xt = _tensor(x, device)
    for tt, tn in ((t_t, t_np), (float(times[0]), float(times[0]))):
        a = proc.drift(xt, tt)
        _check_torch(a, xt)
        ref = textbook.drift(proc, x, tn)
        assert_parity(a, ref, 0.0, "drift vs textbook", rtol=RTOL)
        assert_parity(a, proc.drift(x, tn), 0.0, "drift torch vs numpy")
    # float32 times stay float32: one rounding of the float64 value (relative eps32 / 2)
    t32 = t_t.float()
    g32 = proc.diffusion(t32)
    assert g32.dtype == torch.float32 and g32.device == t32.device
    assert_parity(g32, proc.diffusion(_np(t32)), 0.0, "diffusion float32", rtol=EPS32)


def test_time_coefficients_refuse_a_time_that_requires_grad():
    from sftheory.processes import VP

    t = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    for name in ("diffusion", "clock", "drift_coef", "conditional_many"):
        with pytest.raises(ValueError, match="requires grad"):
            getattr(VP(), name)(t)
    assert VP().diffusion(torch.tensor(1)).dtype == torch.float64  # integer times: float64
    assert VP().diffusion(torch.tensor(0.5)).shape == ()  # 0-d in, 0-d out


# ---- score fields: weighted, perturbed, scaled ---------------------------------------------------

@st.composite
def field_cases(draw):
    d = draw(st.integers(1, 3))
    proc = draw(sst.processes())
    ls = draw(st.lists(laws(st.just(d)), min_size=2, max_size=3))
    lam = draw(sst.simplex_weights(len(ls)))
    eps = draw(st.floats(-1.0, 1.0))
    x = draw(sst.points_for(d, (1, 8)))
    t = draw(sst.diffusion_times())
    ts = np.array(draw(st.lists(sst.diffusion_times(), min_size=len(x), max_size=len(x))))
    return ls, proc, lam, eps, x, t, ts


def _factor(t):
    return 1.0 + math.sin(t)  # a factor of forward time, in [0, 2]


@pytest.mark.parametrize("device", DEVICES)
@SETTINGS
@given(case=field_cases())
def test_score_field_combinators_torch_matches_numba(device, case):
    """weighted (the [SF] Thm. 2 barycenter score), perturbed ([OS] eq. (6)), scaled by a number
    and by a factor of time, nested: torch vs numba at one time and at one time per point. The
    scale of a combination sum_i c_i s_i is sum_i |c_i| scale_i (errors add, and the combination
    rounds at that size)."""
    ls, proc, lam, eps, x, t, ts = case
    paths = [law.path(proc) for law in ls]
    xt = _tensor(x, device)
    for tt, tn in ((t, t), (_tensor(ts, device), ts)):
        m, v = proc.conditional(tn) if np.ndim(tn) == 0 else proc.conditional_many(tn)
        sc = [scales(law, x, m, v)["score"] for law in ls]
        c = np.array([_factor(u) for u in np.broadcast_to(tn, (len(x),))])
        fields = {
            "weighted": (weighted(paths, lam), sum(w * s for w, s in zip(lam, sc))),
            "perturbed": (perturbed(paths[0], paths[1], eps), sc[0] + abs(eps) * sc[1]),
            "scaled-number": (scaled(paths[0], 2.5), 2.5 * sc[0]),
            "scaled-time": (scaled(paths[1], _factor), c * sc[1]),
            "nested": (perturbed(weighted(paths, lam), scaled(paths[0], _factor), eps),
                       sum(w * s for w, s in zip(lam, sc)) + abs(eps) * c * sc[0]),
        }
        for name, (field, scale) in fields.items():
            out = field(xt, tt)
            _check_torch(out, xt)
            assert_parity(out, field(x, tn), scale, f"{name} at t={tn}")


# ---- autograd ------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@SETTINGS
@given(case=path_cases())
def test_autograd_of_logpdf_is_the_score(device, case):
    """torch.autograd.grad(path.logpdf(x, t).sum(), x) == path.score(x, t): the derivative of
    the same formula evaluated by the chain rule, so the score's rounding scale applies; also
    against the numba score."""
    law, proc, x, t, ts = case
    path = law.path(proc)
    for tt, tn in ((t, t), (_tensor(ts, device), ts)):
        m, v = proc.conditional(tn) if np.ndim(tn) == 0 else proc.conditional_many(tn)
        sc = scales(law, x, m, v)["score"]
        xt = _tensor(x, device).requires_grad_(True)
        (grad,) = torch.autograd.grad(path.logpdf(xt, tt).sum(), xt)
        _check_torch(grad, xt)
        assert_parity(grad, path.score(xt.detach(), tt), sc, f"autograd vs torch score, t={tn}")
        assert_parity(grad, path.score(x, tn), sc, f"autograd vs numba score, t={tn}")


# ---- float32 ----------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@SETTINGS
@given(case=path_cases())
def test_float32_stays_float32_within_its_rounding_bound(device, case):
    """float32 tensors in -> float32 out, equal to the float64 (numba) values at the same
    (float32) points within RTOL32 of the condition scales (module docstring)."""
    law, proc, x, t, ts = case
    path = law.path(proc)
    x32 = _tensor(x, device, torch.float32)
    x64 = _np(x32)
    for tt, tn in ((t, t), (_tensor(ts, device), ts)):
        m, v = proc.conditional(tn) if np.ndim(tn) == 0 else proc.conditional_many(tn)
        sc = scales(law, x64, m, v)
        lp, s = path.logpdf_and_score(x32, tt)
        pm = path.posterior_mean(x32, tt)
        for out in (lp, s, pm):
            _check_torch(out, x32)
        lp64, s64 = path.logpdf_and_score(x64, tn)
        under = sc["underflow32"]
        assert_parity(lp, lp64, sc["logpdf"], "float32 logpdf", rtol=RTOL32, atol=under)
        assert_parity(s, s64, sc["score"], "float32 score", rtol=RTOL32, atol=under)
        assert_parity(pm, path.posterior_mean(x64, tn), sc["posterior"], "float32 posterior",
                      rtol=RTOL32, atol=under)


# ---- samplers given the same Brownian path ---------------------------------------------------

def _jacobians(field, x, t):
    """d field / dx per point, (N, d, d), by autograd on the torch formula (float64, CPU)."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    out = field(xt, t)
    n, d = x.shape
    rows = [torch.autograd.grad(out[:, j].sum(), xt, retain_graph=j < d - 1)[0] for j in range(d)]
    jac = torch.stack(rows, dim=1).numpy()  # (N, d, d): jac[n, j, :] = grad of output j
    return jac


def sampler_bound(field, factor, law, proc, snaps, ts, alpha, beta, sigma, noise):
    """First-order bound on |x_N(torch) - x_N(numba)| per point (N,) for the chain
    x_{k+1} = alpha_k x_k + beta_k S(x_k, t_k) + sigma_k xi_k: each step injects at most
    RTOL (|alpha_k| |x_k| + |beta_k| sqrt(d) scale_k + |sigma_k| |xi_k|) (the score's rounding
    scale, times the field's factor), and carries the earlier error through the step's Jacobian,
    ||alpha_k I + beta_k J_k(x_k)||_2 (J by autograd at the numba route's snapshots)."""
    n, d = snaps[0].shape
    bound = np.zeros(n)
    eye = np.eye(d)
    for k in range(len(ts) - 1):
        x, t = snaps[k], float(ts[k])
        m, v = proc.conditional(t)
        sc = abs(factor(t)) * scales(law, x, m, v)["score"] * math.sqrt(d)
        jac = _jacobians(field, x, t)
        amp = np.linalg.norm(alpha[k] * eye[None] + beta[k] * jac, ord=2, axis=(1, 2))
        xi = 0.0
        if sigma[k] > 0:
            xi = np.linalg.norm(noise.increment(t, float(ts[k + 1])), axis=1) / math.sqrt(
                t - float(ts[k + 1]))
        local = RTOL * (abs(alpha[k]) * np.linalg.norm(x, axis=1) + abs(beta[k]) * sc
                        + abs(sigma[k]) * xi)
        bound = amp * bound + local
    return bound


def _assert_within(a, b, bound, what):
    """Per point |a - b|_2 <= bound (N,); non-finite values fail. Returns max error / bound."""
    a, b = _np(a), _np(b)
    err = np.linalg.norm(a - b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(np.isfinite(err), np.where(err == 0, 0.0, err / bound), np.inf)
    if not np.all(ratio <= 1.0):
        i = int(np.argmax(ratio))
        raise AssertionError(f"{what}: point {i}: |torch - numba| = {err[i]:.3e} > accumulated "
                             f"rounding bound {bound[i]:.3e} ({int((~np.isfinite(err)).sum())} "
                             f"non-finite)")
    return float(ratio.max(initial=0.0))


@st.composite
def sampler_cases(draw):
    law = draw(st.one_of(sst.gaussians(st.integers(1, 2)),
                         sst.gaussian_mixtures(dim=st.integers(1, 2), cov_kinds=("full",)),
                         sst.gaussian_mixtures(dim=st.integers(1, 2), cov_kinds=("iso",)),
                         sst.empirical_distributions(n=(2, 10), dim=st.integers(1, 2),
                                                     min_separation=0.2)))
    proc = draw(sst.processes(kinds=("OU", "VP", "VE-geometric")))
    T = draw(st.floats(0.3, 1.5))
    t_end = draw(sst.diffusion_times(1e-2, 0.1))
    seed = draw(st.integers(0, 2**16))
    return law, proc, T, t_end, seed


def _sampler_fields(path):
    """(name, field, factor(t)): the path and one combinator that keeps the compiled route, each
    c(t) times the path's score."""
    return [("path", path, lambda t: 1.0),
            ("perturbed-scaled", perturbed(path, scaled(path, _factor), -0.2),
             lambda t: 1.0 + 0.2 * _factor(t))]


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=sampler_cases())
def test_samplers_torch_matches_numba_given_the_noise(device, case):
    """Euler-Maruyama and the exponential integrator (h = g and h = 0) on torch (Python loop,
    the BrownianPath's increments) vs the compiled numba loop with the same BrownianPath: the
    final points within the accumulated rounding bound of :func:`sampler_bound`."""
    law, proc, T, t_end, seed = case
    path = law.path(proc)
    ts = np.linspace(T, t_end, 16)
    x0 = initial_points(12, proc, T, law=law, seed=seed)
    for name, field, factor in _sampler_fields(path):
        assert _fused.exact_form(field) is not None  # numpy: the compiled loop, not Python
        for sampler, coefficients in ((sample_euler_maruyama, euler_maruyama_coefficients),
                                      (sample_exponential, exponential_coefficients)):
            for h in (None, 0.0):
                bp = BrownianPath(x0.shape, seed=seed + 1)
                ref = sampler(field, x0, ts, proc, h=h, noise=bp, save_at=ts, disable=True)
                out = sampler(field, _tensor(x0, device), ts, proc, h=h, noise=bp, disable=True)
                _check_torch(out.x, _tensor(x0, device))
                alpha, beta, sigma = coefficients(proc, ts, h)
                bound = sampler_bound(field, factor, law, proc, ref.snapshots, ts, alpha, beta,
                                      sigma, bp)
                _assert_within(out.x, ref.x, bound, f"{sampler.__name__} h={h} {name}")


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=sampler_cases())
def test_ode_sampler_torch_matches_numpy(device, case):
    """sample_ode (scipy DOP853 on float64 in both cases; the rhs from the torch formula vs the
    numba kernel): the same number of rhs evaluations (the adaptive controller took the same
    steps) and final points within a Gronwall bound: between reported times t_k > t_{k+1} an rhs
    error <= RTOL (kappa g^2 |x| + g^2/2 sqrt(d) scale) grows at most by
    exp(dt max ||kappa g^2 I + g^2/2 J||) (J by autograd at the reported points)."""
    law, proc, T, t_end, seed = case
    path = law.path(proc)
    ts = np.linspace(T, t_end, 16)
    x0 = initial_points(8, proc, T, law=law, seed=seed)
    ref = sample_ode(path, x0, ts, proc, save_at=ts, disable=True)
    out = sample_ode(path, _tensor(x0, device), ts, proc, disable=True)
    _check_torch(out.x, _tensor(x0, device))
    assert out.nfe == ref.nfe
    n, d = x0.shape
    bound = np.zeros(n)
    kappa = proc.kappa
    for k in range(len(ts) - 1):
        dt = float(ts[k] - ts[k + 1])
        amps, locs = [], []
        for j in (k, k + 1):
            x, t = ref.snapshots[j], float(ts[j])
            g2 = float(proc.diffusion(t)) ** 2
            m, v = proc.conditional(t)
            jac = _jacobians(path, x, t)
            amps.append(np.linalg.norm(kappa * g2 * np.eye(d)[None] + 0.5 * g2 * jac, ord=2,
                                       axis=(1, 2)))
            locs.append(RTOL * (kappa * g2 * np.linalg.norm(x, axis=1)
                                + 0.5 * g2 * math.sqrt(d) * scales(law, x, m, v)["score"]))
        growth = np.exp(dt * np.maximum(*amps))
        bound = growth * (bound + dt * np.maximum(*locs))
    _assert_within(out.x, ref.x, bound, "sample_ode")


def test_planted_sampler_error_breaks_the_bound():
    """A torch-side field 0.1 % off the path's score (and one with a NaN) fails the sampler
    parity check of the test above."""
    from sftheory.fields import as_field
    from sftheory.processes import OU

    law = GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.0, -0.5]], [0.3, 0.2])
    proc = OU()
    path = law.path(proc)
    ts = np.linspace(1.0, 0.02, 16)
    x0 = initial_points(12, proc, 1.0, law=law, seed=0)
    bp = BrownianPath(x0.shape, seed=1)
    ref = sample_euler_maruyama(path, x0, ts, proc, noise=bp, save_at=ts, disable=True)
    alpha, beta, sigma = euler_maruyama_coefficients(proc, ts, None)
    bound = sampler_bound(path, lambda t: 1.0, law, proc, ref.snapshots, ts, alpha, beta, sigma,
                          bp)
    good = sample_euler_maruyama(path, torch.tensor(x0), ts, proc, noise=bp, disable=True)
    assert _assert_within(good.x, ref.x, bound, "control") <= 1.0
    off = as_field(lambda x, t: 1.001 * path.score(x, t), 2)
    bad = sample_euler_maruyama(off, torch.tensor(x0), ts, proc, noise=bp, disable=True)
    with pytest.raises(AssertionError, match="accumulated rounding bound"):
        _assert_within(bad.x, ref.x, bound, "planted 0.1%")
    nan_x = good.x.clone()
    nan_x[3, 1] = math.nan
    with pytest.raises(AssertionError, match="1 non-finite"):
        _assert_within(nan_x, ref.x, bound, "planted NaN")
