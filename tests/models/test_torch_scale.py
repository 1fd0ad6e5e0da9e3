"""Torch at scale (issue 11), on CPU: the augmented-GEMM empirical-score tiler and its fast
(half-precision, SDPA) routes in sftheory/models/_esf_gemm.py, the fused mixture score and the
device-resident Euler-Maruyama sampler in sftheory/_kernels/torch_mixture.py.

Independent routes: scipy's logsumexp / softmax over the explicit differences (empirical score),
the numba kernels of sftheory/_kernels/mixture.py (mixture score, to 1e-12 relative in float64),
and for the sampler the exact law of the Euler-Maruyama recursion with a Gaussian target (a linear
recursion: mean and covariance by a float64 numpy recursion) against Monte Carlo moments with
their standard errors. CUDA-only parts run in benchmarks/bench_gpu.py.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import logsumexp, softmax

from sftheory import OU, GaussianMixture
from sftheory._kernels import mixture as nb
from sftheory._kernels import torch_mixture as tm
from sftheory.models import _esf_gemm as eg
from sftheory.samplers._core import euler_maruyama_coefficients

EPS = np.finfo(np.float64).eps


def esf_problem(d, n, nq, seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n, d)) + 0.5
    x = y[rng.integers(0, n, nq)] * 0.9 + 0.7 * rng.normal(size=(nq, d))
    return y, x


def scipy_ref(x, y, a, w):
    """(logsumexp_j -|x - a y_j|^2 / 2w, softmax-weighted mean of y) from the differences."""
    lg = -((x[:, None, :] - a * y[None]) ** 2).sum(-1) / (2 * np.reshape(w, (-1, 1)))
    return logsumexp(lg, axis=1), softmax(lg, axis=1) @ y


def logit_bound(x, y, a, w, eps):
    """The documented rounding estimate of the expanded logits (eg.expanded_logit_error)."""
    ymax = np.sqrt((y * y).sum(1).max())
    xn = np.sqrt((x * x).sum(1))
    return eps * np.sqrt(x.shape[1]) * (xn + abs(a) * ymax) ** 2 / (2 * w)


# ---- empirical score: the augmented-GEMM tiler --------------------------------------------------
@pytest.mark.parametrize("d", [1, 5, 784])
@pytest.mark.parametrize("per_row", [False, True])
def test_tiler_float64_matches_scipy(d, per_row, monkeypatch):
    """float64, tiles of <= 100 points and a budget that forces several query chunks (neither
    divides n or N): |lse - ref| and |ybar - ref| within the cancellation bound 2 delta (+ n eps
    for the sums) of tests/models/test_esf_gemm.py's derivation."""
    n, nq = (301 if d == 784 else 997), 37
    y, x = esf_problem(d, n, nq, seed=d)
    rng = np.random.default_rng(d + 1)
    a = 0.8
    w = rng.uniform(0.3, 2.0, nq) if per_row else 0.6
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    at = torch.full((nq,), a, dtype=torch.float64) if per_row else a
    wt = torch.from_numpy(w) if per_row else w
    monkeypatch.setattr(eg, "QUERY_MIN", 1)
    d_aug = eg._pad8(d + 4)
    budget = 100 * (2 * d_aug * 8 + 2 * (d_aug + 8) * 8) + 10 * ((2 * d_aug + 8) * 8 + 100 * 16)
    assert eg._tiles_torch(nq, n, d_aug, 8, budget, 100) == (10, 100)
    lse, yb = eg.lse_average_torch(xt, yt, at, wt, budget_bytes=budget, key_block=100)
    lse = lse.numpy() - (x * x).sum(1) * (0.5 / np.asarray(w))
    l_ref, y_ref = scipy_ref(x, y, a, w)
    delta = logit_bound(x, y, a, np.asarray(w), EPS)
    ymax = np.sqrt((y * y).sum(1).max())
    big = np.sqrt((x * x).sum(1)) + a * ymax
    ne = (n + d) * EPS
    assert np.all(np.abs(lse - l_ref) <= 2 * delta + ne * (1 + big ** 2 / (2 * np.asarray(w))))
    err_y = np.abs(yb.numpy() - y_ref).max(1)
    assert np.all(err_y <= 4 * delta * ymax + ne * ymax), err_y.max()


def test_tiler_planted_error_is_caught():
    """A 0.1 % error in the scale a (planted in the caller's argument) breaks the same bound."""
    y, x = esf_problem(16, 500, 20, seed=3)
    l_ref, y_ref = scipy_ref(x, y, 0.8, 0.6)
    _, yb = eg.lse_average_torch(torch.from_numpy(x), torch.from_numpy(y), 0.8 * 1.001, 0.6)
    delta = logit_bound(x, y, 0.8, 0.6, EPS)
    ymax = np.sqrt((y * y).sum(1).max())
    assert np.any(np.abs(yb.numpy() - y_ref).max(1) > 4 * delta * ymax + 600 * EPS * ymax)


def test_tiler_memory_is_bounded_by_the_budget():
    """n = 1e6 points with a 4 MiB budget: every tile fits, nothing of size N x n is formed."""
    d_aug = eg._pad8(784 + 4)
    for budget in (1 << 22, 1 << 30):
        bq, bk = eg._tiles_torch(4096, 10**6, d_aug, 8, budget, eg.KEY_BLOCK_ACCEL)
        used = bq * (2 * d_aug + 8) * 8 + bk * 4 * (d_aug + 4) * 8 + bq * bk * 16
        assert used <= budget and bq * bk < 4096 * 10**6
    with pytest.raises(ValueError, match="budget_bytes=100 is too small for one row"):
        eg.lse_average_torch(torch.zeros(3, 784, dtype=torch.float64),
                             torch.zeros(5, 784, dtype=torch.float64), 1.0, 1.0, budget_bytes=100)


def test_tiler_bad_inputs():
    x = torch.zeros(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="precision"):
        eg.lse_average_torch(x, x, 1.0, 1.0, precision="fp8")
    with pytest.raises(TypeError, match="tf32"):
        eg.lse_average_torch(x, x, 1.0, 1.0, precision="tf32")
    with pytest.raises(ValueError, match="same d"):
        eg.lse_average_torch(x, torch.zeros(3, 5, dtype=torch.float64), 1.0, 1.0)
    with pytest.raises(TypeError, match="float32 or float64"):
        eg.lse_average_torch(x.half(), x.half(), 1.0, 1.0)
    with pytest.raises(ValueError, match="precision"):
        eg.posterior_average_sdpa(x, x, 1.0, 1.0, precision="int8")
    with pytest.raises(ValueError, match="w > 0"):
        eg.posterior_average_sdpa(x, x, 1.0, -1.0)


@pytest.mark.parametrize("precision,eps", [("exact", 2.0**-24), ("fp16", 2.0**-11),
                                           ("bf16", 2.0**-8)])
def test_fast_precisions_within_their_rounding_bound(precision, eps):
    """float32 / half-precision GEMM inputs: the ybar error stays within 4 delta ymax with delta
    the documented logit estimate at that precision's unit roundoff (2x margin), and is not
    exact (the route really rounds)."""
    y, x = esf_problem(64, 2000, 50, seed=11)
    a, w = 0.8, 2.0
    _, y_ref = scipy_ref(x, y, a, w)
    xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    _, yb = eg.lse_average_torch(xt, yt, a, w, precision=precision, key_block=512)
    err = np.abs(yb.double().numpy() - y_ref).max(1)
    ymax = np.sqrt((y * y).sum(1).max())
    bound = 2 * 4 * logit_bound(x, y, a, w, eps) * ymax + 1e-6
    assert np.all(err <= bound), (err.max(), bound.min())
    assert err.max() > 1e-9


@pytest.mark.parametrize("precision,eps", [("fp32", 2.0**-24), ("fp16", 2.0**-11),
                                           ("bf16", 2.0**-8)])
def test_sdpa_route_matches_scipy(precision, eps):
    """The attention route (centred points, split norm term): ybar within 4 delta ymax with delta
    the logit estimate at the precision's roundoff for the centred problem (2x margin)."""
    y, x = esf_problem(64, 2000, 50, seed=12)
    a, w = 0.8, 2.0
    _, y_ref = scipy_ref(x, y, a, w)
    yb = eg.posterior_average_sdpa(torch.from_numpy(x), torch.from_numpy(y), a, w,
                                   precision=precision, query_block=16)
    c = y.mean(0)
    yc, xc = y - c, x - a * c
    ymax = np.sqrt((yc * yc).sum(1).max())
    bound = 2 * 4 * logit_bound(xc, yc, a, w, eps) * ymax + 1e-6
    err = np.abs(yb.numpy() - y_ref).max(1)
    assert np.all(err <= bound), (err.max(), bound.min())


def test_evaluate_empirical_torch_engine_uses_the_tiler(monkeypatch):
    """The public dispatcher routes torch (no autograd, expanded form) through the tiler."""
    calls = []
    real = eg.lse_average_torch
    monkeypatch.setattr(eg, "lse_average_torch", lambda *a, **k: calls.append(1) or real(*a, **k))
    y, x = esf_problem(16, 300, 10, seed=5)
    store = eg.EmpiricalStore(y)
    nx = __import__("sftheory.backend", fromlist=["get_backend"]).get_backend(torch.zeros(1))
    lp, yb = eg.evaluate_empirical(nx, torch.from_numpy(x), 0.9, 0.5, True, store,
                                   form="expanded", engine="torch")
    assert calls
    _, y_ref = scipy_ref(x, y, 0.9, 0.5)
    assert np.abs(yb.numpy() - y_ref).max() < 1e-12


# ---- fused mixture score -------------------------------------------------------------------------
def random_mixture(kind, k, d, seed):
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(k))
    mu = 3 * rng.normal(size=(k, d))
    if kind == "full":
        a = rng.normal(size=(k, d, d))
        cov = a @ np.swapaxes(a, 1, 2) + 0.3 * np.eye(d)
    else:
        cov = rng.uniform(0.2, 2.0, size=k)
    return GaussianMixture(w, mu, cov)


def numba_eval(gm, x, m, v, posterior):
    p = gm._params
    return nb.evaluate(x, m, v, nb.kernel_layout(p.means, p.logw, p.lam, p.rot), posterior)


def rel_err(got, ref):
    got = np.asarray(got, dtype=np.float64)
    return np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1.0))


@pytest.mark.parametrize("kind", ["full", "spherical"])
@pytest.mark.parametrize("d", [1, 2, 3, 12])
@pytest.mark.parametrize("posterior", [False, True])
@pytest.mark.parametrize("per_point", [False, True])
def test_mixture_eval_matches_numba(kind, d, posterior, per_point):
    """Eager torch vs the numba kernels, float64: 1e-12 relative (max(|ref|, 1) denominators)."""
    gm = random_mixture(kind, 16, d, seed=d)
    rng = np.random.default_rng(100 + d)
    x = 4 * rng.normal(size=(500, d))
    if per_point:
        m, v = rng.uniform(0.2, 1.0, 500), rng.uniform(0.05, 1.0, 500)
        mt, vt = torch.from_numpy(m), torch.from_numpy(v)
    else:
        m, v = 0.7, 0.4
        mt, vt = m, v
    lp_ref, vec_ref = numba_eval(gm, x, m, v, posterior)
    xt = torch.from_numpy(x)
    lp, vec = tm.mixture_eval(xt, mt, vt, *tm.mixture_tensors(gm._params, xt), posterior)
    assert lp.dtype == torch.float64 and vec.shape == (500, d)
    assert rel_err(lp.numpy(), lp_ref) <= 1e-12
    assert rel_err(vec.numpy(), vec_ref) <= 1e-12


def test_mixture_eval_overflow_rows_match_numba():
    """|x| = 1e155: log p = -inf and the nearest component's score, as the numba kernel."""
    gm = random_mixture("full", 4, 2, seed=1)
    x = np.array([[1e155, 1e155], [-1e155, 3e154], [0.5, -0.2]])
    lp_ref, vec_ref = numba_eval(gm, x, 1.0, 0.0, False)
    xt = torch.from_numpy(x)
    lp, vec = tm.mixture_eval(xt, 1.0, 0.0, *tm.mixture_tensors(gm._params, xt), False)
    assert np.all(lp.numpy()[:2] == -np.inf) and np.isfinite(lp.numpy()[2])
    assert rel_err(vec.numpy(), vec_ref) <= 1e-12


def test_mixture_eval_planted_error_is_caught(monkeypatch):
    """A 0.1 % error in the variances (planted in the core) breaks the 1e-12 parity."""
    gm = random_mixture("full", 16, 2, seed=2)
    x = 2 * np.random.default_rng(0).normal(size=(200, 2))
    lp_ref, vec_ref = numba_eval(gm, x, 0.7, 0.4, False)
    real = tm.mixture_eval_core
    monkeypatch.setattr(tm, "mixture_eval_core",
                        lambda x, m, v, mu, lw, lam, rot, p: real(x, m, v, mu, lw, lam * 1.001,
                                                                  rot, p))
    xt = torch.from_numpy(x)
    lp, vec = tm.mixture_eval(xt, 0.7, 0.4, *tm.mixture_tensors(gm._params, xt), False)
    assert rel_err(vec.numpy(), vec_ref) > 1e-6


def test_mixture_eval_float32_and_bad_inputs():
    gm = random_mixture("full", 16, 2, seed=3)
    x = np.random.default_rng(1).normal(size=(300, 2))
    lp_ref, vec_ref = numba_eval(gm, x, 0.7, 0.4, False)
    xt = torch.from_numpy(x).float()
    tens = tm.mixture_tensors(gm._params, xt)
    lp, vec = tm.mixture_eval(xt, 0.7, 0.4, *tens, False)
    assert vec.dtype == torch.float32 and rel_err(vec.numpy(), vec_ref) < 1e-4
    with pytest.raises(ValueError, match="means is on"):
        tm.mixture_eval(xt.double(), 0.7, 0.4, *tens, False)
    with pytest.raises(TypeError, match="float32 or float64"):
        tm.mixture_eval(xt.half(), 0.7, 0.4, *tens, False)
    with pytest.raises(ValueError, match="m must be"):
        tm.mixture_eval(xt, float("nan"), 0.4, *tens, False)
    with pytest.raises(ValueError, match="overflow"):
        tm.mixture_eval(xt, 0.7, 0.4, *tens, False, overflow="maybe")


@pytest.mark.slow
def test_compiled_mixture_matches_numba():
    """torch.compile (inductor, C++ codegen on CPU; ~30 s to compile on 2 shared cores): same
    1e-12 parity; a compile failure is recorded (reason), never silent."""
    gm = random_mixture("full", 16, 2, seed=4)
    x = 3 * np.random.default_rng(2).normal(size=(4000, 2))
    lp_ref, vec_ref = numba_eval(gm, x, 0.6, 0.5, False)
    xt = torch.from_numpy(x)
    cm = tm.CompiledMixture()
    lp, vec = tm.mixture_eval(xt, 0.6, 0.5, *tm.mixture_tensors(gm._params, xt), False,
                              compiled=cm)
    assert cm.is_compiled, cm.reason
    assert rel_err(lp.numpy(), lp_ref) <= 1e-12 and rel_err(vec.numpy(), vec_ref) <= 1e-12


def test_compiled_mixture_falls_back_with_a_reason(monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("no backend")
    monkeypatch.setattr(torch, "compile", broken)
    cm = tm.CompiledMixture()
    assert not cm.is_compiled and "no backend" in cm.reason
    gm = random_mixture("spherical", 3, 2, seed=5)
    xt = torch.zeros(4, 2, dtype=torch.float64)
    lp, vec = tm.mixture_eval(xt, 1.0, 0.1, *tm.mixture_tensors(gm._params, xt), False,
                              compiled=cm)
    assert torch.isfinite(vec).all()


# ---- device-resident Euler-Maruyama --------------------------------------------------------------
def em_gaussian_law(mu, cov, alpha, beta, sigma, ms, vs, mean0, cov0):
    """Exact law of the EM recursion x <- alpha x + beta s(x) + sigma z for the score of
    N(m mu, m^2 Cov + v I): x' = A x + beta S^-1 m mu + sigma z with A = alpha I - beta S^-1, so
    mean' = A mean + beta S^-1 m mu, cov' = A cov A^T + sigma^2 I (float64 numpy)."""
    d = mu.shape[0]
    mean, c = mean0.copy(), cov0.copy()
    for al, be, sg, m, v in zip(alpha, beta, sigma, ms, vs):
        s_inv = np.linalg.inv(m * m * cov + v * np.eye(d))
        a_mat = al * np.eye(d) - be * s_inv
        mean = a_mat @ mean + be * s_inv @ (m * mu)
        c = a_mat @ c @ a_mat.T + sg * sg * np.eye(d)
    return mean, c


def run_em(n, gm, proc, ts, seed, sigma_scale=1.0):
    alpha, beta, sigma = euler_maruyama_coefficients(proc, ts, None)
    ms = np.array([proc.mean_coef(t) for t in ts[:-1]])
    vs = np.array([proc.var(t) for t in ts[:-1]])
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, gm.dim, generator=gen, dtype=torch.float64) * np.sqrt(vs[0])
    tens = tm.mixture_tensors(gm._params, x0)
    x = tm._em_sample_mixture(x0, alpha, beta, sigma * sigma_scale, ms, vs, *tens,
                              generator=gen)
    return x.numpy(), (alpha, beta, sigma, ms, vs)


def moment_z_scores(x, mean, cov):
    """z-scores of the sample mean and covariance entries against the exact Gaussian moments:
    SE(mean_a) = sqrt(C_aa / N), SE(C_ab) = sqrt((C_aa C_bb + C_ab^2) / N) (Gaussian)."""
    n = x.shape[0]
    zm = (x.mean(0) - mean) / np.sqrt(np.diag(cov) / n)
    sc = np.cov(x.T, bias=False)
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov ** 2) / n)
    return np.concatenate([zm, ((sc - cov) / se)[np.triu_indices(x.shape[1])]])


def test_em_sampler_law_matches_the_exact_recursion():
    """Gaussian target (K = 1, full covariance, d = 2) under OU, 40 EM steps, N = 1e5: the
    recursion is linear, so the law of the output is exactly Gaussian with the recursion's
    moments; 5 moment z-scores |z| < 4.5 (a false alarm has probability < 4e-5)."""
    gm = GaussianMixture([1.0], [[1.0, -2.0]], [[[1.5, 0.6], [0.6, 0.8]]])
    proc = OU()
    ts = np.linspace(3.0, 0.05, 41)
    x, (al, be, sg, ms, vs) = run_em(100_000, gm, proc, ts, seed=0)
    mean, cov = em_gaussian_law(np.array([1.0, -2.0]), np.array([[1.5, 0.6], [0.6, 0.8]]),
                                al, be, sg, ms, vs, np.zeros(2), vs[0] * np.eye(2))
    z = moment_z_scores(x, mean, cov)
    assert np.all(np.isfinite(z)) and np.all(np.abs(z) < 4.5), z


def test_em_sampler_planted_noise_error_is_caught():
    """The same test with the noise scaled by 1.02 (planted): the variance z-scores blow up."""
    gm = GaussianMixture([1.0], [[1.0, -2.0]], [[[1.5, 0.6], [0.6, 0.8]]])
    proc = OU()
    ts = np.linspace(3.0, 0.05, 41)
    x, (al, be, sg, ms, vs) = run_em(100_000, gm, proc, ts, seed=0, sigma_scale=1.02)
    mean, cov = em_gaussian_law(np.array([1.0, -2.0]), np.array([[1.5, 0.6], [0.6, 0.8]]),
                                al, be, sg, ms, vs, np.zeros(2), vs[0] * np.eye(2))
    assert np.max(np.abs(moment_z_scores(x, mean, cov))) > 4.5


def test_em_sampler_never_syncs_inside_the_loop(monkeypatch):
    """Host reads of tensor values (bool(), item(), tolist(), numpy()) happen only at entry and
    exit: counted while a 200-step run goes, there are exactly two (the two finiteness checks)."""
    gm = random_mixture("full", 16, 2, seed=6)
    proc = OU()
    ts = np.linspace(2.0, 0.1, 201)
    alpha, beta, sigma = euler_maruyama_coefficients(proc, ts, None)
    ms = np.array([proc.mean_coef(t) for t in ts[:-1]])
    vs = np.array([proc.var(t) for t in ts[:-1]])
    x0 = torch.zeros(64, 2, dtype=torch.float64)
    tens = tm.mixture_tensors(gm._params, x0)
    count = [0]
    for name in ("__bool__", "item", "tolist", "numpy", "__float__"):
        real = getattr(torch.Tensor, name)

        def spy(self, *a, _real=real, **k):
            count[0] += 1
            return _real(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, spy)
    out = tm._em_sample_mixture(x0, alpha, beta, sigma, ms, vs, *tens,
                                generator=torch.Generator().manual_seed(1))
    monkeypatch.undo()
    assert count[0] == 2 and out.shape == (64, 2)


def test_em_sampler_bad_inputs_and_nonfinite_output():
    gm = random_mixture("spherical", 2, 2, seed=7)
    x0 = torch.zeros(8, 2, dtype=torch.float64)
    tens = tm.mixture_tensors(gm._params, x0)
    one = np.ones(3)
    with pytest.raises(ValueError, match="beta has 2 steps"):
        tm._em_sample_mixture(x0, one, np.ones(2), one, one, one, *tens)
    with pytest.raises(ValueError, match="sigma contains non-finite"):
        tm._em_sample_mixture(x0, one, one, np.array([1, np.nan, 1.0]), one, one, *tens)
    with pytest.raises(ValueError, match="x0 contains NaN"):
        tm._em_sample_mixture(x0 + float("nan"), one, one, one, one, one, *tens)
    with pytest.raises(TypeError, match="generator"):
        tm._em_sample_mixture(x0, one, one, one, one, one, *tens, generator=0)
    # a step size that blows up (alpha = 1e200 per step): raised once, at the end
    with pytest.raises(FloatingPointError, match="non-finite|NaN or infinite"):
        tm._em_sample_mixture(x0 + 1.0, np.full(3, 1e200), one, one, one, one, *tens)


@pytest.mark.slow
def test_em_sampler_compiled_step_matches_eager():
    """The compiled step (inductor) gives the eager path's points to rounding (same noise)."""
    gm = random_mixture("full", 16, 2, seed=8)
    proc = OU()
    ts = np.linspace(2.0, 0.1, 11)
    alpha, beta, sigma = euler_maruyama_coefficients(proc, ts, None)
    ms = np.array([proc.mean_coef(t) for t in ts[:-1]])
    vs = np.array([proc.var(t) for t in ts[:-1]])
    x0 = torch.randn(1000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    tens = tm.mixture_tensors(gm._params, x0)
    outs, info = [], {}
    for comp in (False, True):
        outs.append(tm._em_sample_mixture(x0, alpha, beta, sigma, ms, vs, *tens, compile=comp,
                                          generator=torch.Generator().manual_seed(3), info=info))
    assert info["compiled"], info["compile_reason"]
    assert torch.allclose(outs[0], outs[1], rtol=1e-12, atol=1e-12)


def test_sdpa_prepared_keys_give_the_same_answer():
    y, x = esf_problem(32, 500, 20, seed=13)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    prep = eg.prepare_sdpa_keys(yt, "fp16")
    a1 = eg.posterior_average_sdpa(xt, yt, 0.8, 1.5, precision="fp16", prepared=prep)
    a2 = eg.posterior_average_sdpa(xt, yt, 0.8, 1.5, precision="fp16")
    assert torch.equal(a1, a2)
    with pytest.raises(ValueError, match="another precision"):
        eg.posterior_average_sdpa(xt, yt, 0.8, 1.5, precision="bf16", prepared=prep)


# ---- CUDA (run where a GPU is present; skipped in CI) --------------------------------------------
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")


@cuda
@pytest.mark.parametrize("compiled", [False, True])
def test_cuda_mixture_matches_numba(compiled):
    gm = random_mixture("full", 16, 2, seed=20)
    x = 3 * np.random.default_rng(20).normal(size=(20000, 2))
    lp_ref, vec_ref = numba_eval(gm, x, 0.6, 0.5, False)
    xt = torch.from_numpy(x).cuda()
    cm = tm.CompiledMixture() if compiled else None
    lp, vec = tm.mixture_eval(xt, 0.6, 0.5, *tm.mixture_tensors(gm._params, xt), False,
                              compiled=cm)
    if compiled:
        assert cm.is_compiled, cm.reason
    assert rel_err(lp.cpu().numpy(), lp_ref) <= 1e-12
    assert rel_err(vec.cpu().numpy(), vec_ref) <= 1e-12


@cuda
def test_cuda_tiler_exact_ignores_global_tf32_and_restores_it():
    """With TF32 switched on globally, precision="exact" float32 stays within the float32 bound
    (TF32's 10-bit mantissa would break it by ~1e3x), and the global setting is restored."""
    y, x = esf_problem(256, 3000, 64, seed=21)
    a, w = 0.8, 2.0
    _, y_ref = scipy_ref(x, y, a, w)
    xt, yt = torch.from_numpy(x).float().cuda(), torch.from_numpy(y).float().cuda()
    with eg.tf32_matmul(True):
        _, yb = eg.lse_average_torch(xt, yt, a, w, precision="exact", key_block=1024)
        mm = torch.backends.cuda.matmul
        assert getattr(mm, "fp32_precision", "tf32") == "tf32" or mm.allow_tf32
    err = np.abs(yb.double().cpu().numpy() - y_ref).max(1)
    ymax = np.sqrt((y * y).sum(1).max())
    assert np.all(err <= 2 * 4 * logit_bound(x, y, a, w, 2.0**-24) * ymax + 1e-6)
    # float64 from the float64 data (xt.double() would carry float32's input rounding, ~1e-7)
    _, yb64 = eg.lse_average_torch(torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda(), a, w)
    assert np.abs(yb64.cpu().numpy() - y_ref).max() < 1e-10


@cuda
def test_cuda_em_sampler_syncs_a_fixed_number_of_times():
    """torch.cuda sync debug mode counts host synchronizations: the count does not grow with the
    number of steps (entry and exit checks only), and the law test's moments hold on the GPU."""
    import warnings

    gm = GaussianMixture([1.0], [[1.0, -2.0]], [[[1.5, 0.6], [0.6, 0.8]]])
    proc = OU()
    counts = []
    for steps in (5, 50):
        ts = np.linspace(3.0, 0.05, steps + 1)
        alpha, beta, sigma = euler_maruyama_coefficients(proc, ts, None)
        ms = np.array([proc.mean_coef(t) for t in ts[:-1]])
        vs = np.array([proc.var(t) for t in ts[:-1]])
        x0 = torch.zeros(200_000, 2, dtype=torch.float64, device="cuda")
        tens = tm.mixture_tensors(gm._params, x0)
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                x = tm._em_sample_mixture(x0, alpha, beta, sigma, ms, vs, *tens,
                                          generator=torch.Generator("cuda").manual_seed(0))
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counts.append(sum("synchroniz" in str(r.message).lower() for r in rec))
    assert counts[0] == counts[1], counts
    mean, cov = em_gaussian_law(np.array([1.0, -2.0]), np.array([[1.5, 0.6], [0.6, 0.8]]),
                                alpha, beta, sigma, ms, vs, np.zeros(2), np.zeros((2, 2)))
    z = moment_z_scores(x.cpu().numpy(), mean, cov)
    assert np.all(np.abs(z) < 4.5), z


@cuda
@pytest.mark.parametrize("precision,eps", [("fp16", 2.0**-11), ("bf16", 2.0**-8)])
def test_cuda_fast_routes_within_their_bound(precision, eps):
    y, x = esf_problem(784, 4000, 128, seed=22)
    a, w = 0.8, 20.0
    _, y_ref = scipy_ref(x, y, a, w)
    xt, yt = torch.from_numpy(x).float().cuda(), torch.from_numpy(y).float().cuda()
    ymax = np.sqrt((y * y).sum(1).max())
    _, yb = eg.lse_average_torch(xt, yt, a, w, precision=precision)
    bound = 2 * 4 * logit_bound(x, y, a, w, eps) * ymax + 1e-5
    assert np.all(np.abs(yb.double().cpu().numpy() - y_ref).max(1) <= bound)
    yb2 = eg.posterior_average_sdpa(xt, yt, a, w, precision=precision)
    c = y.mean(0)
    bound2 = 2 * 4 * logit_bound(x - a * c, y - c, a, w, eps) * np.sqrt(
        ((y - c) ** 2).sum(1).max()) + 1e-5
    assert np.all(np.abs(yb2.double().cpu().numpy() - y_ref).max(1) <= bound2)


@pytest.mark.parametrize("precision,eps", [("tf32", 2.0**-24), ("fp16", 2.0**-11)])
def test_evaluate_empirical_fast_precision_option(precision, eps):
    """The public dispatcher's opt-in ``precision``: posterior mean within the route's bound
    (float32 / fp16 roundoff, 2x margin), output in x's dtype; numpy inputs and form='diff'
    refuse it with a clear error."""
    from sftheory.backend import get_backend

    y, x = esf_problem(64, 1500, 40, seed=14)
    store = eg.EmpiricalStore(y)
    xt = torch.from_numpy(x)
    lp, pm = eg.evaluate_empirical(get_backend(xt), xt, 0.8, 1.2, True, store,
                                   precision=precision)
    assert pm.dtype == torch.float64 and torch.isfinite(lp).all()
    _, y_ref = scipy_ref(x, y, 0.8, 1.2)
    ymax = np.sqrt((y * y).sum(1).max())
    bound = 2 * 4 * logit_bound(x, y, 0.8, 1.2, eps) * ymax + 1e-6
    assert np.all(np.abs(pm.numpy() - y_ref).max(1) <= bound)
    with pytest.raises(ValueError, match="needs torch tensors"):
        eg.evaluate_empirical(get_backend(x), x, 0.8, 1.2, True, store, precision=precision)
    with pytest.raises(ValueError, match="form='diff'"):
        eg.evaluate_empirical(get_backend(xt), xt, 0.8, 1.2, True, store, form="diff",
                              precision=precision)
    with pytest.raises(ValueError, match="precision must be"):
        eg.evaluate_empirical(get_backend(xt), xt, 0.8, 1.2, True, store, precision="fp8")


# ---- the fast route (lse_average_fast): centred points, one half GEMM, softmax, one GEMM ---------
def fast_bound(x, y, a, w, precision, c=None):
    """The documented error model (eg.fast_logit_error), computed here from its formula: logit
    error delta = 2u |a (x - ac)| max|y - c| / w with u the GEMM input roundoff; ybar error <=
    2 (delta + u_w) * 2 max|y - c| + u_w max|y - c| (u_w: rounding of the weights and values)."""
    c = y.mean(0) if c is None else c
    ymc = np.sqrt(((y - c) ** 2).sum(1).max())
    u = {"fp16": 2.0**-11, "bf16": 2.0**-8, "tf32": 2.0**-10}[precision]
    uw = {"fp16": 2.0**-11, "bf16": 2.0**-8, "tf32": 0.0}[precision]
    delta = 2 * u * a * np.sqrt(((x - a * c) ** 2).sum(1)) * ymc / w
    return delta, 2 * (delta + uw) * 2 * ymc + uw * ymc + 1e-6


@pytest.mark.parametrize("precision", ["fp16", "bf16", "tf32"])
@pytest.mark.parametrize("budget", [None, 200_000])
def test_fast_route_within_its_documented_bound(precision, budget):
    """ybar and logsumexp against scipy (float64, differences): within the documented bound with
    a 2x margin, for one tile and for a budget that splits the points into 16 tiles merged by
    their log-sum-exp; the route really rounds (error > 1e-9)."""
    y, x = esf_problem(64, 2000, 50, seed=31)
    a, w = 0.8, 2.0
    l_ref, y_ref = scipy_ref(x, y, a, w)
    if budget is not None:
        assert eg._fast_tiles(50, 2000, 64, 2, budget, False)[1] < 2000  # points tiled
    lse, yb = eg.lse_average_fast(torch.from_numpy(x), torch.from_numpy(y), a, w,
                                  precision=precision, budget_bytes=budget)
    assert lse.dtype == yb.dtype == torch.float32
    delta, ybound = fast_bound(x, y, a, w, precision)
    err = np.abs(yb.double().numpy() - y_ref).max(1)
    assert np.all(err <= 2 * ybound), (err.max(), ybound.min())
    assert err.max() > 1e-9
    uw = 0.0 if precision == "tf32" else {"fp16": 2.0**-11, "bf16": 2.0**-8}[precision]
    # lse: delta from the logits, uw from the rounded weights' sum, float32 of |x - ac|^2 / 2w
    big = ((x - a * y.mean(0)) ** 2).sum(1) / (2 * w)
    lerr = np.abs(lse.double().numpy() - l_ref)
    assert np.all(lerr <= 2 * (delta + uw + 64 * 2.0**-24 * big)), lerr.max()


def test_fast_route_per_row_times_and_dispatcher():
    """Per-query (a, w) tensors, and evaluate_empirical(precision="fp16-fast"): log p and the
    posterior mean against scipy within the bound; the prepared keys are cached in the store."""
    from sftheory.backend import get_backend

    y, x = esf_problem(32, 1200, 30, seed=32)
    rng = np.random.default_rng(33)
    w = rng.uniform(0.8, 2.5, 30)
    _, y_ref = scipy_ref(x, y, 0.9, w)
    _, yb = eg.lse_average_fast(torch.from_numpy(x), torch.from_numpy(y),
                                torch.full((30,), 0.9), torch.from_numpy(w), precision="fp16")
    _, ybound = fast_bound(x, y, 0.9, w, "fp16")
    assert np.all(np.abs(yb.double().numpy() - y_ref).max(1) <= 2 * ybound)
    store = eg.EmpiricalStore(y)
    xt = torch.from_numpy(x)
    lp, pm = eg.evaluate_empirical(get_backend(xt), xt, 0.9, 1.3, True, store,
                                   precision="fp16-fast")
    lp0, _ = scipy_ref(x, y, 0.9, 1.3)
    lp0 = lp0 - np.log(1200) - 0.5 * 32 * np.log(2 * np.pi * 1.3)
    _, y_ref = scipy_ref(x, y, 0.9, 1.3)
    delta, ybound = fast_bound(x, y, 0.9, 1.3, "fp16")
    assert pm.dtype == torch.float64
    assert np.all(np.abs(pm.numpy() - y_ref).max(1) <= 2 * ybound)
    assert np.all(np.abs(lp.numpy() - lp0) <= 2 * (delta + 2.0**-11) + 1e-3)
    assert any(k[0] == "fast" for k in store._shared if isinstance(k, tuple))


def test_fast_route_memory_budget_is_respected(monkeypatch):
    """Every logit tile the route forms (recorded by a spy on the GEMM) fits the budget with its
    weights: bq * bk * 6 bytes plus the per-query and per-point terms <= budget."""
    y, x = esf_problem(16, 3000, 40, seed=34)
    seen = []
    real = eg._mm32
    monkeypatch.setattr(eg, "_mm32", lambda a, b: seen.append(a.shape[0] * b.shape[1]) or
                        real(a, b))
    budget = 150_000
    bq, bk = eg._fast_tiles(40, 3000, 16, 2, budget, False)
    d_aug = eg._pad8(16 + 4)
    used = bq * (4 * 16 + 2 * d_aug + 8 * d_aug + 64) + bk * (4 * 16 + 8 + 2 * d_aug) + bq * bk * 6
    assert used <= budget and bk < 3000
    eg.lse_average_fast(torch.from_numpy(x), torch.from_numpy(y), 0.8, 1.0, precision="fp16",
                        budget_bytes=budget)
    assert max(seen) * 6 <= budget and len(seen) > 2
    for budget in (1 << 22, 1 << 30):  # n = 1e6, d = 784, B = 4096: never B x n
        bq, bk = eg._fast_tiles(4096, 10**6, 784, 2, budget, False)
        assert bq * bk * 6 <= budget and bq * bk < 4096 * 10**6


def test_fast_route_bad_inputs():
    x = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="budget_bytes=100 is too small for one row"):
        eg.lse_average_fast(x, x, 1.0, 1.0, budget_bytes=100)
    with pytest.raises(ValueError, match="precision must be one of"):
        eg.lse_average_fast(x, x, 1.0, 1.0, precision="fp8")
    with pytest.raises(TypeError, match="float32 or float64"):
        eg.lse_average_fast(x.half(), x, 1.0, 1.0)
    with pytest.raises(TypeError, match="keys must be float32 or float64"):
        eg.lse_average_fast(x, x.half(), 1.0, 1.0)
    with pytest.raises(ValueError, match="same d"):
        eg.lse_average_fast(x, torch.zeros(3, 5), 1.0, 1.0)
    with pytest.raises(ValueError, match="w > 0"):
        eg.lse_average_fast(x, x, 1.0, 0.0)
    with pytest.raises(ValueError, match="fuse"):
        eg.lse_average_fast(x, x, 1.0, 1.0, fuse="triton")
    prep = eg.prepare_fast_keys(x, "fp16")
    with pytest.raises(ValueError, match="another precision"):
        eg.lse_average_fast(x, x, 1.0, 1.0, precision="bf16", prepared=prep)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="keys are on"):
            eg.lse_average_fast(x.cuda(), x, 1.0, 1.0)
    # fp16 overflow of the GEMM inputs (|a x / w| > 65504) is an error, not a silent NaN
    with pytest.raises(ValueError, match="non-finite"):
        eg.lse_average_fast(torch.full((2, 4), 1e3), torch.zeros(5, 4) + torch.arange(5.)[:, None],
                            1.0, 1e-3, precision="fp16")


def fast_bound_fp32(x, y, a, w):
    """The same model with u = 2^-24 (float32 arithmetic throughout, no weight rounding): the
    route's arithmetic for precision="tf32" on a CPU, which has no TF32 units."""
    c = y.mean(0)
    ymc = np.sqrt(((y - c) ** 2).sum(1).max())
    delta = 2 * 2.0**-24 * a * np.sqrt(((x - a * c) ** 2).sum(1)) * ymc / w
    return 2 * delta * 2 * ymc + 2 * 2.0**-24 * ymc


def test_fast_route_fp32_arithmetic_is_tight():
    """precision="tf32" on CPU is IEEE float32: ybar within the float32 instance of the error
    model (2x margin). This bound is tight enough (~1e-4) to see the planted errors below."""
    y, x = esf_problem(64, 2000, 50, seed=35)
    _, y_ref = scipy_ref(x, y, 0.8, 2.0)
    _, yb = eg.lse_average_fast(torch.from_numpy(x), torch.from_numpy(y), 0.8, 2.0,
                                precision="tf32")
    err = np.abs(yb.double().numpy() - y_ref).max(1)
    bound = fast_bound_fp32(x, y, 0.8, 2.0)
    assert np.all(err <= 2 * bound), (err.max(), bound.min())



def _split_values():
    """float32 values for the scalar split: random magnitudes 1e-8..1e8, format edges (fp16 max
    and its overflow tie, bf16 carries), infinities, and exact bf16 ties (low 16 bits 0x8000)."""
    rng = np.random.default_rng(0)
    ties = (np.arange(1, 200, dtype=np.uint32) << 16 | 0x8000).view(np.float32)
    return np.concatenate([rng.standard_normal(400) * 10.0 ** rng.uniform(-8, 8, 400),
                           [0.0, -0.0, 65504.0, 65520.0, -1e9, 3.0e38, 1 + 2 ** -8, np.inf],
                           ties, -ties])


def _split_mismatches(split):
    bad = 0
    for v in _split_values():
        for prec in ("fp16", "bf16", "tf32"):
            h, lo = eg._split_lowp(torch.tensor([float(v)], dtype=torch.float32), prec)
            want = np.array([float(h.float()[0]), float(lo.float()[0])])
            got = np.array(split(float(v), prec))
            bad += not np.array_equal(got, want, equal_nan=True)
    return bad


def test_scalar_split_is_the_tensor_split_without_tensors():
    """The host split of a scalar (numpy bit arithmetic, so the fast route converts no tensor to
    the host per call) equals torch's conversion bit for bit, ties to even included."""
    assert _split_mismatches(eg._split_scalar) == 0


def test_scalar_split_check_sees_round_half_up():
    """Planted error: bf16 rounding half up instead of to even differs on the exact ties."""
    def half_up(val, prec):
        if prec != "bf16":
            return eg._split_scalar(val, prec)
        def rnd(v):
            b = np.array(np.float32(v)).view(np.uint32).astype(np.uint64)
            return np.array((b + 0x8000) & 0xFFFF0000, dtype=np.uint32).view(np.float32)[()]
        v = np.float32(val)
        if not np.isfinite(v):
            return eg._split_scalar(val, prec)
        hi = rnd(v)
        return float(hi), float(rnd(np.float32(v - hi)))
    assert _split_mismatches(half_up) > 0

@pytest.mark.parametrize("plant", ["a", "center", "nan"])
def test_fast_route_planted_errors_are_caught(plant, monkeypatch):
    """Planted errors against the float32 bound of the previous test: (a) the scale a 0.1 % off
    (the caller's argument), (center) the centre forgotten on the query side and in the shift
    back, (nan) a NaN in the logit GEMM -- which raises instead of returning NaN. (The fp16
    bound, ~1e3 x looser, cannot resolve a 0.1 % error: that is the route's resolution.)"""
    y, x = esf_problem(64, 2000, 50, seed=35)
    a, w = 0.8, 2.0
    _, y_ref = scipy_ref(x, y, a, w)
    bound = fast_bound_fp32(x, y, a, w)
    prep = eg.prepare_fast_keys(torch.from_numpy(y), "tf32")
    a_used = a * 1.001 if plant == "a" else a
    if plant == "center":
        prep["center"] = prep["center"] * 0.0
    if plant == "nan":
        real = torch.mm

        def nan_mm(p, q, *args, **kw):
            out = real(p, q, *args, **kw)
            out[0, 0] = float("nan")
            return out
        monkeypatch.setattr(torch, "mm", nan_mm)
        with pytest.raises(ValueError, match="non-finite"):
            eg.lse_average_fast(torch.from_numpy(x), torch.from_numpy(y), a, w,
                                precision="tf32", prepared=prep)
        return
    _, yb = eg.lse_average_fast(torch.from_numpy(x), torch.from_numpy(y), a_used, w,
                                precision="tf32", prepared=prep)
    assert np.any(np.abs(yb.double().numpy() - y_ref).max(1) > 2 * bound)


@cuda
@pytest.mark.parametrize("precision", ["fp16", "bf16", "tf32"])
@pytest.mark.parametrize("fuse", ["eager", "compile"])
def test_cuda_fast_route_within_its_bound(precision, fuse):
    y, x = esf_problem(784, 4000, 128, seed=36)
    a, w = 0.8, 20.0
    _, y_ref = scipy_ref(x, y, a, w)
    xt, yt = torch.from_numpy(x).float().cuda(), torch.from_numpy(y).float().cuda()
    _, yb = eg.lse_average_fast(xt, yt, a, w, precision=precision, fuse=fuse)
    _, ybound = fast_bound(x, y, a, w, precision)
    assert np.all(np.abs(yb.double().cpu().numpy() - y_ref).max(1) <= 2 * ybound)
