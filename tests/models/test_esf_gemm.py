"""The GEMM engine of the empirical score / posterior mean (sftheory/models/_esf_gemm.py) against
independent routes: the numpy reference formula (``use_kernels("numpy")``: difference-form
broadcast of ``_formulas.mixture_path_eval``), the numba kernel, and scipy's logsumexp / softmax
written out here. Every comparison uses one bound, derived below from the rounding of each route,
and a planted 0.1 % error in the scale m is shown to break it.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp, softmax

from sftheory import OU, VE, VP, EmpiricalDistribution, GaussianMixture
from sftheory.backend import get_backend, use_kernels
from sftheory.models import _esf_gemm as eg
from sftheory.models._esf_gemm import EmpiricalStore, evaluate_empirical, lse_average

EPS = np.finfo(np.float64).eps
EPS32 = float(np.finfo(np.float32).eps)
NP = get_backend(np.zeros(1))
TT = get_backend(torch.zeros(1))


def scipy_reference(x, y, a, w):
    """log p, ybar of (1/n) sum_j N(a y_j, w I) at x, from the differences, in float64 (scipy)."""
    x = np.asarray(x, dtype=np.float64)
    d2 = ((x[:, None, :] - a * y[None]) ** 2).sum(-1)
    lg = -d2 / (2 * w)
    n, d = y.shape
    lp = logsumexp(lg, axis=1) - np.log(n) - 0.5 * d * np.log(2 * np.pi * w)
    return lp, softmax(lg, axis=1) @ y


def bounds(x, y, a, w, *, expanded, eps=EPS):
    """Per-row absolute bounds (logp, ybar, score) for comparing two float64-or-better routes.

    delta: the logit error of the expanded form (its documented estimate
    :func:`expanded_logit_error`; 0 for the difference form): every responsibility is then off by
    a factor exp(+-2 delta), so ybar is off by <= 2 delta max_j |y_j - ybar| <= 4 delta ymax.
    Both routes also round sums of n terms: <= n eps relative on each sum (sequential worst case),
    on magnitudes ymax (ybar), |x| + a ymax (x - a y) and (|x| + a ymax)^2 / 2w (the logits).
    """
    x = np.asarray(x, dtype=np.float64)
    n, d = y.shape
    ymax = np.sqrt((y * y).sum(1).max())
    xn = np.sqrt((x * x).sum(1))
    big = xn + abs(a) * ymax
    delta = eg.expanded_logit_error(NP, x, a, w, ymax, eps) if expanded else 0.0 * xn
    if expanded == "auto":  # the dispatcher's choice: the difference form above the tolerance
        delta = np.where(delta <= eg.EXPANDED_LOGIT_TOL, delta, 0.0)
    ne = (n + d) * eps
    b_y = 4 * delta * ymax + ne * ymax
    b_lp = 2 * delta + ne * (1 + big ** 2 / (2 * w))
    b_s = (abs(a) * b_y + ne * big) / w
    return b_lp, b_y[:, None], b_s[:, None]


def check(lp, vec, lp_ref, vec_ref, b_lp, b_vec, what, rtol=0.0):
    """NaN fails; |got - ref| <= bound (+ rtol |ref|, the rounding of a float32 output)."""
    lp, vec = np.asarray(lp, dtype=np.float64), np.asarray(vec, dtype=np.float64)
    assert np.all(np.isfinite(vec)), what
    ok_lp = np.abs(lp - lp_ref) <= b_lp + rtol * np.abs(lp_ref)
    ok_lp |= (lp == lp_ref)  # -inf rows (overflow)
    ok_v = np.abs(vec - vec_ref) <= b_vec + rtol * np.abs(vec_ref)
    assert np.all(ok_lp), (what, "logpdf", np.max(np.abs(lp - lp_ref) - b_lp))
    assert np.all(ok_v), (what, "vector", np.max(np.abs(vec - vec_ref) - b_vec))


def problem(d, n, nq, seed, far=0.0):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n, d)) + 0.5
    x = y[rng.integers(0, n, nq)] * 0.9 + 0.7 * rng.normal(size=(nq, d))
    if far:
        x[: nq // 3] += far
    return y, x


# ---- parity of the public path with the reference formula and the numba kernel ------------------
@pytest.mark.parametrize("d", [1, 2, 64, 784])
@pytest.mark.parametrize("process,t", [(VE(), 1e-8), (VP(), 1e-3), (VP(), 0.5), (OU(), 1e2)],
                         ids=["VE-1e-8", "VP-1e-3", "VP-0.5", "OU-1e2"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_path_matches_reference_formula(d, process, t, dtype):
    y, x = problem(d, 300 if d == 784 else 500, 23, seed=d)
    x = x.astype(dtype)
    path = EmpiricalDistribution(y).path(process)
    m, v = process.conditional(t)
    lp, sc = path.logpdf_and_score(x, t)
    post = path.posterior_mean(x, t)
    assert lp.dtype == dtype and sc.dtype == dtype and post.dtype == dtype
    with use_kernels("numpy"):
        lp_r, sc_r = path.logpdf_and_score(x.astype(np.float64), t)
        post_r = path.posterior_mean(x.astype(np.float64), t)
    lp_s, y_s = scipy_reference(x, y, m, v)
    b_lp, b_y, b_s = bounds(x, y, m, v, expanded="auto")
    rtol = 0.0 if dtype == np.float64 else EPS32  # float32 outputs: rounded once
    check(lp, post, lp_r, post_r, b_lp, b_y, "posterior vs reference", rtol)
    check(lp, sc, lp_r, sc_r, b_lp, b_s, "score vs reference", rtol)
    check(lp, post, lp_s, y_s, b_lp, b_y, "posterior vs scipy", rtol)
    # torch CPU: same values, dtype kept
    lp_t, sc_t = path.logpdf_and_score(torch.from_numpy(x), t)
    assert sc_t.dtype == torch.from_numpy(x).dtype
    check(lp_t.numpy(), sc_t.numpy(), lp_r, sc_r, b_lp, b_s, "torch score", rtol)


@pytest.mark.parametrize("d", [1, 2, 64, 784])
@pytest.mark.parametrize("form", ["expanded", "diff"])
@pytest.mark.parametrize("engine", ["numpy", "torch"])
@pytest.mark.parametrize("v", [1e-3, 1.0, 1e2])
def test_engine_forms_match_scipy(d, form, engine, v, monkeypatch):
    """Each form in each backend's ops (forced), tiles of 10 queries x 100 points: they divide
    neither n = 997 / 301 nor N = 37 (ragged last tiles in both directions)."""
    n, nq = (301 if d == 784 else 997), 37
    y, x = problem(d, n, nq, seed=7 + d)
    a = 0.8
    store = EmpiricalStore(y)
    monkeypatch.setattr(eg, "KEY_BLOCK", 100)
    monkeypatch.setattr(eg, "QUERY_MIN", 1)
    per_q, per_k = (3 * d + 8) * 8, (d + 2) * 8
    per_qk = 3 * 8 if form == "expanded" else (d + 3) * 8
    budget = 100 * per_k + 10 * (per_q + 100 * per_qk) + per_q // 2
    assert eg._tiles(nq, n, d, 8, budget, form, False) == (10, 100)
    xin = x if engine == "numpy" else torch.from_numpy(x)
    nx = get_backend(xin)
    lp, yb = evaluate_empirical(nx, xin, a, v, True, store, form=form, budget_bytes=budget,
                                engine="torch")
    lp_s, y_s = scipy_reference(x, y, a, v)
    b_lp, b_y, _ = bounds(x, y, a, v, expanded=form == "expanded")
    check(get_backend(lp).to_numpy(lp), get_backend(yb).to_numpy(yb), lp_s, y_s, b_lp, b_y,
          f"{engine} {form}")


def test_planted_scale_error_is_caught():
    """A 0.1 % wrong scale (m -> 1.001 m) fails the same bound that the engine passes."""
    y, x = problem(64, 400, 20, seed=3)
    store = EmpiricalStore(y)
    m, v = 0.9, 0.5
    lp_s, y_s = scipy_reference(x, y, m, v)
    b_lp, b_y, _ = bounds(x, y, m, v, expanded=True)
    lp, yb = evaluate_empirical(NP, x, m, v, True, store)
    check(lp, yb, lp_s, y_s, b_lp, b_y, "engine")
    lp_bad, yb_bad = evaluate_empirical(NP, x, m * 1.001, v, True, store)
    with pytest.raises(AssertionError):
        check(lp_bad, yb_bad, lp_s, y_s, b_lp, b_y, "planted")
    with pytest.raises(AssertionError):  # NaN is a failure
        check(lp, np.where(np.arange(64) == 3, np.nan, yb), lp_s, y_s, b_lp, b_y, "nan")


# ---- the expanded / difference decision -----------------------------------------------------------
def test_regime_large_v_takes_expanded_form():
    y, x = problem(64, 500, 30, seed=11)
    store = EmpiricalStore(y)
    m, v = 0.9, 0.3
    est = eg.expanded_logit_error(NP, x, m, v, store.ymax, EPS)
    assert np.all(est <= eg.EXPANDED_LOGIT_TOL)
    auto = evaluate_empirical(NP, x, m, v, True, store)
    forced = evaluate_empirical(NP, x, m, v, True, store, form="expanded")
    np.testing.assert_array_equal(auto[1], forced[1])  # the dispatcher chose the GEMM form


def test_regime_small_v_takes_difference_form_and_needs_it():
    """Pairs of atoms 1e-6 apart and v = 1e-13, queries a quarter of the way between them: the two
    share the weight (logit gap ~ 2.5). The expanded form's cancellation (~eps |x| |y| / v ~ 0.1
    on each logit) would misplace the responsibilities; the dispatcher takes the difference form,
    which agrees with scipy to rounding (logit error ~ eps (|x| + |y|) |x - y| / v ~ 1e-7, i.e.
    ~1e-13 on ybar), while the forced expanded form is off by ~1e-7."""
    rng = np.random.default_rng(12)
    y = rng.normal(size=(500, 64)) + 0.5
    u = rng.normal(size=(30, 64))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    y[30:60] = y[:30] + 1e-6 * u
    x = y[:30] + 0.25e-6 * u
    store = EmpiricalStore(y)
    m, v = 1.0, 1e-13
    est = eg.expanded_logit_error(NP, x, m, v, store.ymax, EPS)
    assert np.all(est > eg.EXPANDED_LOGIT_TOL)
    lp_s, y_s = scipy_reference(x, y, m, v)
    w30 = softmax(-((x[:, None, :] - y[None]) ** 2).sum(-1) / (2 * v), axis=1)[:, 30:60]
    assert 0.05 < np.median(np.diagonal(w30)) < 0.95  # the two atoms really share
    tol_y = 1e-12  # see docstring: ~1e-13 from the differences, 1e-12 with n-term sums
    for nx, xin, kw in ((NP, x, {}), (TT, torch.from_numpy(x), {"engine": "torch"})):
        lp, yb = (nx.to_numpy(a) for a in evaluate_empirical(nx, xin, m, v, True, store, **kw))
        np.testing.assert_allclose(yb, y_s, rtol=0, atol=tol_y)
        np.testing.assert_allclose(lp, lp_s, rtol=1e-12)
    forced = evaluate_empirical(NP, x, m, v, True, store, form="expanded")[1]
    assert np.max(np.abs(forced - y_s)) > 1e3 * tol_y


def test_per_query_routing_mixed_batch():
    """One batch with near and far queries: far rows take the difference form, near rows GEMM;
    all rows agree with scipy."""
    y, x = problem(64, 600, 40, seed=13, far=3e4)
    store = EmpiricalStore(y)
    m, v = 0.9, 0.5
    est = eg.expanded_logit_error(NP, x, m, v, store.ymax, EPS)
    assert np.any(est > eg.EXPANDED_LOGIT_TOL) and np.any(est <= eg.EXPANDED_LOGIT_TOL)
    lp_s, y_s = scipy_reference(x, y, m, v)
    ok = est <= eg.EXPANDED_LOGIT_TOL
    for nx, xin, kw in ((NP, x, {}), (TT, torch.from_numpy(x), {"engine": "torch"})):
        lp, yb = evaluate_empirical(nx, xin, m, v, True, store, **kw)
        lp, yb = nx.to_numpy(lp), nx.to_numpy(yb)
        b_lp, b_y, _ = bounds(x, y, m, v, expanded=True)
        b_lp2, b_y2, _ = bounds(x, y, m, v, expanded=False)
        check(lp, yb, lp_s, y_s, np.where(ok, b_lp, b_lp2), np.where(ok[:, None], b_y, b_y2),
              "mixed batch")


# ---- far from the data: overflow regime -------------------------------------------------------------
@pytest.mark.parametrize("scale", [1e6, 1e200])
@pytest.mark.parametrize("route", ["numpy-auto", "numpy-diff", "torch"])
def test_far_points_nearest_atom(scale, route):
    """|x| = 1e6: the nearest atom takes the weight. |x| = 1e200: |x - a y|^2 overflows, log p =
    -inf and the average of the nearest atoms in floating point (x - y_j rounds to x, so all tie),
    as the reference formula (which this must equal) gives."""
    y, _ = problem(64, 200, 4, seed=14)
    rng = np.random.default_rng(1)
    u = rng.normal(size=(6, 64))
    x = scale * u / np.linalg.norm(u, axis=1, keepdims=True)
    path = EmpiricalDistribution(y).path(VE())
    t = 0.7
    with use_kernels("numpy"):
        lp_r, post_r = path.logpdf_and_score(x, t)[0], path.posterior_mean(x, t)
        sc_r = path.score(x, t)
    store = EmpiricalStore(y)
    if route == "numpy-auto":
        lp, post = path.logpdf(x, t), path.posterior_mean(x, t)
        sc = path.score(x, t)
    else:
        nx, xin = (NP, x) if route == "numpy-diff" else (TT, torch.from_numpy(x))
        kw = {"form": "diff"} if route == "numpy-diff" else {"engine": "torch"}
        lp, post = (nx.to_numpy(a) for a in evaluate_empirical(nx, xin, 1.0, t, True, store, **kw))
        sc = nx.to_numpy(evaluate_empirical(nx, xin, 1.0, t, False, store, **kw)[1])
    if scale < 1e100:  # nearest atom: argmax x.y - |y|^2 / 2
        nearest = y[np.argmax(x @ y.T - 0.5 * (y * y).sum(1), axis=1)]
    else:  # x - y_j rounds to x for every atom: all tie, the average of all (as the reference)
        nearest = np.broadcast_to(y.mean(0), x.shape)
    np.testing.assert_allclose(post, nearest, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(post, post_r, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sc, sc_r, rtol=1e-12, atol=0)
    if scale > 1e160:
        assert np.all(lp == -np.inf) and np.all(lp_r == -np.inf)
    else:
        np.testing.assert_allclose(lp, lp_r, rtol=1e-12)


# ---- per-point times, marginals, float32 arithmetic ---------------------------------------------------
def test_per_point_times():
    y, x = problem(64, 400, 25, seed=15)
    path = EmpiricalDistribution(y).path(VP())
    t = np.geomspace(1e-8, 10.0, 25)
    post, sc = path.posterior_mean(x, t), path.score(x, t)
    with use_kernels("numpy"):
        post_r, sc_r = path.posterior_mean(x, t), path.score(x, t)
    m, v = VP().conditional_many(t)
    for i in range(25):
        b_lp, b_y, b_s = bounds(x[i:i + 1], y, m[i], v[i], expanded="auto")
        assert np.all(np.abs(post[i] - post_r[i]) <= b_y[0]), i
        assert np.all(np.abs(sc[i] - sc_r[i]) <= b_s[0]), i
    pt = path.posterior_mean(torch.from_numpy(x), t).numpy()
    np.testing.assert_allclose(pt, post, rtol=0, atol=1e-12)


def test_marginal_shares_the_points_and_matches_a_mixture():
    y, x = problem(64, 300, 20, seed=16)
    emp = EmpiricalDistribution(y)
    p = emp.marginal(VP(), 0.2)
    m, v = VP().conditional(0.2)
    assert isinstance(p, GaussianMixture)
    assert p._params.store.data is emp._store.data  # no copy of the training set
    assert np.shares_memory(p._params.store.data, emp.points)
    mix = GaussianMixture.isotropic(np.full(300, 1 / 300), m * y, np.full(300, v))
    lp, sc = p.logpdf_and_score(x)
    lp_r, sc_r = mix.logpdf_and_score(x, impl="numpy")
    b_lp, _, b_s = bounds(x, y, m, v, expanded=True)
    check(lp, sc, lp_r, sc_r, b_lp, b_s, "marginal")
    np.testing.assert_allclose(p.means, m * y, rtol=1e-15)
    np.testing.assert_allclose(p.mean, mix.mean, rtol=1e-13, atol=1e-15)
    # the marginal's own path (scale m, variance v already applied) agrees with the reference
    q = p.path(VE())
    with use_kernels("numpy"):
        post_r = q.posterior_mean(x, 0.3)
    post = q.posterior_mean(x, 0.3)
    np.testing.assert_allclose(post, post_r, rtol=0, atol=1e-10 * np.abs(post_r).max())
    lpq, scq = q.logpdf_and_score(x, 0.3)
    with use_kernels("numpy"):
        lpq_r, scq_r = q.logpdf_and_score(x, 0.3)
    np.testing.assert_allclose(scq, scq_r, rtol=0, atol=1e-10 * np.abs(scq_r).max())
    np.testing.assert_allclose(lpq, lpq_r, rtol=1e-12)
    # low dimension (numba route) with a scale: the kernel's rescaled variances
    y2, x2 = problem(2, 300, 20, seed=17)
    p2 = EmpiricalDistribution(y2).marginal(VP(), 0.2).path(VP())
    with use_kernels("numpy"):
        ref2 = p2.posterior_mean(x2, 0.4)
    np.testing.assert_allclose(p2.posterior_mean(x2, 0.4), ref2, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("form", ["expanded", "diff"])
def test_float32_arithmetic_torch_ops(form):
    """float32 arithmetic (the accelerator case) through torch ops, against float64 scipy: the
    bound of the expanded form with float32 eps (it also bounds the difference form's logits,
    whose relative error eps32 acts on |x - a y|^2 / 2w <= (|x| + a ymax)^2 / 2w)."""
    y, x = problem(64, 300, 20, seed=18)
    a, w = 0.9, 2.0
    keys = torch.from_numpy(y.astype(np.float32))
    xt = torch.from_numpy(x.astype(np.float32))
    sq = (keys * keys).sum(1)
    lse, yb = lse_average(TT, xt, keys, a, w, form=form, budget_bytes=1 << 16, sqnorms=sq)
    if form == "expanded":
        lse = lse - (xt * xt).sum(1) * (0.5 / w)
    lp = lse.double().numpy() - np.log(300) - 32 * np.log(2 * np.pi * w)
    lp_s, y_s = scipy_reference(x.astype(np.float32), y.astype(np.float32), a, w)
    b_lp, b_y, _ = bounds(x, y, a, w, expanded=True, eps=EPS32)
    check(lp, yb.double().numpy(), lp_s, y_s, b_lp, b_y, "float32")


# ---- input validation ------------------------------------------------------------------------------------
def test_budget_too_small_for_one_row():
    y, x = problem(784, 50, 3, seed=19)
    store = EmpiricalStore(y)
    with pytest.raises(ValueError, match="budget_bytes=1000 is too small for one row"):
        evaluate_empirical(NP, x, 1.0, 0.5, True, store, budget_bytes=1000)
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match="budget_bytes"):
            evaluate_empirical(NP, x, 1.0, 0.5, True, store, budget_bytes=bad)
    with pytest.raises(ValueError, match="form"):
        evaluate_empirical(NP, x, 1.0, 0.5, True, store, form="gemm")
    # the smallest accepted budget runs (one query against one point per tile)
    need = (3 * 784 + 8) * 8 + (784 + 2) * 8 + 3 * 8
    lp, yb = evaluate_empirical(NP, x, 1.0, 0.5, True, store, budget_bytes=need, form="expanded")
    lp_s, y_s = scipy_reference(x, y, 1.0, 0.5)
    check(lp, yb, lp_s, y_s, *bounds(x, y, 1.0, 0.5, expanded=True)[:2], "one-by-one tiles")


def test_torch_autograd_still_supported():
    y, x = problem(64, 100, 5, seed=20)
    path = EmpiricalDistribution(y).path(VE())
    xt = torch.from_numpy(x).requires_grad_(True)
    lp = path.logpdf(xt, 0.5)
    (g,) = torch.autograd.grad(lp.sum(), xt)
    np.testing.assert_allclose(g.numpy(), path.score(x, 0.5), rtol=1e-10, atol=1e-12)
    assert math.isfinite(float(lp.detach().sum()))
