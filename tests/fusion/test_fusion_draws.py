"""Counter-based ScoreFusion draws (``score_fusion(..., draws="indexed")``, ``fusion_draws``):
each draw a pure function of (seed, global draw index), computed on the target's device.

Checks: (1) splitting the draws by global index changes no number (bit for bit), so sharded
Monte Carlo equals the one-process estimate; (2) the numpy and torch routes agree to
KERNEL_PARITY (same counters; normals to an ulp); (3) the draws have the laws Algorithm 1
asks for -- t ~ U(0, T~] (KS test), every epoch a permutation of the targets, z standard normal
(moments within MC_SIGMAS standard errors) -- and the estimate of G agrees with the
generator route's (independent samples of one estimator) within MC_SIGMAS combined standard
errors; each check fails on a planted error.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sftheory.fusion import _score_fusion as sfm
from sftheory.fusion import dsm_contributions, fusion_draws, score_fusion
from sftheory.models import Gaussian
from sftheory.processes import OU, VP
from sftheory.testing.tolerances import KERNEL_PARITY, MC_SIGMAS

torch = pytest.importorskip("torch", reason="torch not installed: pip install torch==2.13.0")

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="CUDA not available (torch.cuda.is_available() is False)"))]
AUX = [Gaussian([0.0, 1.0], np.eye(2)), Gaussian([1.0, -1.0], [[1.0, 0.3], [0.3, 0.6]])]
X = np.random.default_rng(0).standard_normal((100, 2)) + 0.3
FIELDS = ("v", "z", "x_t", "gamma")


def _np(a):
    return a.cpu().numpy() if hasattr(a, "cpu") else np.asarray(a)


def _rel(a, b) -> float:
    """max |a - b| / max(|b|, 1); inf when anything is not finite."""
    a, b = np.asarray(_np(a), dtype=float), np.asarray(_np(b), dtype=float)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return math.inf
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1.0)))


@pytest.mark.parametrize("device", DEVICES)
def test_draws_split_by_global_index_equal_the_whole(device):
    """Draws split at offsets inside and at the ends of epochs (100 targets: cuts 1, 57, 250,
    300, 499 of 537) are the draws of one call, bit for bit; on numpy and on torch (where they
    also agree with numpy to an ulp of the normals)."""
    cuts = [0, 1, 57, 250, 300, 499, 537]
    for x in (X, torch.tensor(X, device=device)):
        whole = fusion_draws(x, OU(), 0.5, 537, seed=3)
        parts = [fusion_draws(x, OU(), 0.5, b - a, seed=3, start=a)
                 for a, b in zip(cuts[:-1], cuts[1:])]
        assert np.array_equal(whole.t, np.concatenate([p.t for p in parts]))
        for f in FIELDS:
            assert np.array_equal(_np(getattr(whole, f)),
                                  np.concatenate([_np(getattr(p, f)) for p in parts])), f
    t_draws = fusion_draws(torch.tensor(X, device=device), OU(), 0.5, 500, seed=3)
    n_draws = fusion_draws(X, OU(), 0.5, 500, seed=3)
    assert np.array_equal(t_draws.t, n_draws.t)
    for f in FIELDS:
        assert _rel(getattr(t_draws, f), getattr(n_draws, f)) <= KERNEL_PARITY.rtol, f


def test_split_draws_give_the_one_process_quadratic():
    """Per-draw terms of two shards, merged as fusion_quadratic merges ranks (a mean over all
    draws), equal score_fusion's G, b, c with the same seed to rounding."""
    from sftheory.distributed import fusion_quadratic

    proc = VP()
    res = score_fusion(AUX, X, proc, 0.6, n_mc=700, seed=9, n_boot=0, draws="indexed")
    parts = [fusion_draws(X, proc, 0.6, n, seed=9, start=s) for s, n in ((0, 333), (333, 367))]
    S = np.concatenate([np.stack([a.path(proc).score(p.x_t, p.t) for a in AUX], 1)
                        for p in parts])
    z = np.concatenate([p.z for p in parts])
    v = np.concatenate([p.v for p in parts])
    g = np.concatenate([p.gamma for p in parts])
    fq = fusion_quadratic(S, z, v, g)
    assert _rel(fq["gram"], res.gram) <= 1e-13 and _rel(fq["linear"], res.linear) <= 1e-13
    assert _rel(fq["const"], res.const) <= 1e-13
    assert np.allclose(fq["qp"].weights, res.weights, atol=1e-9)
    Gj = dsm_contributions(S, z, v, g)[0]
    assert _rel(0.5 * (Gj.mean(0) + Gj.mean(0).T), res.gram) <= 1e-13


@pytest.mark.parametrize("device", DEVICES)
def test_indexed_score_fusion_torch_parity_and_planted_seed(device):
    """Same seed -> the same counter-based draws on both routes: G, b, c, their standard errors,
    the loss and the bootstrap spread agree to KERNEL_PARITY; another seed does not."""
    kw = dict(n_mc=3000, seed=11, n_boot=4, draws="indexed")
    rn = score_fusion(AUX, X, OU(), 0.5, **kw)
    rt = score_fusion(AUX, torch.tensor(X, device=device), OU(), 0.5, **kw)
    quantities = ("gram", "linear", "const", "gram_se", "linear_se", "loss")
    worst = max(_rel(getattr(rt, q), getattr(rn, q)) for q in quantities)
    assert worst <= KERNEL_PARITY.rtol, worst
    # the bootstrap weights are QP solutions: parity of (G, b) times the QP's condition number
    # (~1/tangent_min_eig, about 1e2 here) -> 1e-10
    assert _rel(rt.diagnostics["weights_se"], rn.diagnostics["weights_se"]) <= 1e-10
    assert rn.diagnostics["draws"] == "indexed" and rn.diagnostics["seed"] == 11
    other = score_fusion(AUX, torch.tensor(X, device=device), OU(), 0.5, **{**kw, "seed": 12})
    assert max(_rel(getattr(other, q), getattr(rn, q)) for q in quantities) > KERNEL_PARITY.rtol


# ---- the laws of the draws ------------------------------------------------------------------------
def _law_checks(draws_fn, n_target=100, n=250, T_tilde=0.5):
    """(KS p-value of t / T~ against U(0, 1), whether epochs 0 and 1 are permutations of the
    targets, max |z| of the first four moments of z in standard errors)."""
    x = np.arange(n_target, dtype=float)[:, None] * np.ones((1, 3))  # row i is (i, i, i)
    dr = draws_fn(x, n, T_tilde)
    p_t = stats.kstest(dr.t / T_tilde, "uniform").pvalue
    m, v = OU().conditional_many(dr.t)
    idx = np.rint((dr.x_t[:, 0] - np.sqrt(v) * dr.z[:, 0]) / m).astype(int)  # X_0 recovered
    perms = all(np.array_equal(np.sort(idx[e * n_target:(e + 1) * n_target]), np.arange(n_target))
                for e in range(n // n_target))
    z = dr.z.ravel()
    k = z.size
    zs = [z.mean() / math.sqrt(1 / k), (z.var() - 1) / math.sqrt(2 / k),
          stats.skew(z) / math.sqrt(6 / k), stats.kurtosis(z) / math.sqrt(24 / k)]
    return p_t, perms, float(np.max(np.abs(zs)))


def _indexed(x, n, T_tilde):
    return fusion_draws(x, OU(), T_tilde, n, seed=5)


def test_indexed_draws_have_the_laws_of_algorithm_1():
    """t uniform (KS p > 1e-3), every epoch a permutation of the targets, z's moments within
    MC_SIGMAS standard errors; and epochs differ (not the same permutation twice)."""
    p_t, perms, z_worst = _law_checks(_indexed)
    assert p_t > 1e-3 and perms and z_worst < MC_SIGMAS, (p_t, perms, z_worst)
    big = fusion_draws(np.arange(50.0)[:, None], OU(), 0.5, 100, seed=5)
    m, v = OU().conditional_many(big.t)
    idx = np.rint((big.x_t[:, 0] - np.sqrt(v) * big.z[:, 0]) / m).astype(int)
    assert not np.array_equal(idx[:50], idx[50:])


def test_the_law_checks_see_planted_draws(monkeypatch):
    """Planted errors: t = T~ u^2 (not uniform), target indices drawn with replacement (not a
    permutation), z scaled by 1.05."""
    orig_batch = sfm._IndexedDraws.batch

    def squared_t(self, n):
        t, v, z, xt, gam = orig_batch(self, n)
        t2 = t * t / self.T_tilde
        m, v2 = self.process.conditional_many(t2)
        m0, _ = self.process.conditional_many(t)
        x0 = (xt - np.sqrt(v)[:, None] * z) / m0[:, None]
        return t2, v2, z, m[:, None] * x0 + np.sqrt(v2)[:, None] * z, gam

    def with_replacement(self, e0, e1):
        n_t = self.X.shape[0]
        return np.random.default_rng(e0).integers(0, n_t, (e1 - e0 + 1) * n_t)

    def scaled_z(self, n):
        t, v, z, xt, gam = orig_batch(self, n)
        return t, v, 1.05 * z, xt + np.sqrt(v)[:, None] * 0.05 * z, gam

    for name, plant in (("batch", squared_t), ("_permutations", with_replacement),
                        ("batch", scaled_z)):
        with monkeypatch.context() as mp:
            mp.setattr(sfm._IndexedDraws, name, plant)
            p_t, perms, z_worst = _law_checks(_indexed, n=4000 if plant is scaled_z else 250)
        assert not (p_t > 1e-3 and perms and z_worst < MC_SIGMAS), (plant.__name__, p_t, perms,
                                                                    z_worst)


def test_indexed_and_generator_estimates_agree():
    """Two independent Monte Carlo samples of one estimator: |G_indexed - G_generator| within
    MC_SIGMAS combined standard errors, entry by entry."""
    kw = dict(n_mc=20_000, seed=2, n_boot=0)
    a = score_fusion(AUX, X, OU(), 0.5, draws="indexed", **kw)
    b = score_fusion(AUX, X, OU(), 0.5, draws="generator", **kw)
    zg = np.abs(a.gram - b.gram) / np.hypot(a.gram_se, b.gram_se)
    zb = np.abs(a.linear - b.linear) / np.hypot(a.linear_se, b.linear_se)
    assert np.all(np.isfinite(zg)) and np.max(zg) < MC_SIGMAS and np.max(zb) < MC_SIGMAS


def test_bad_draw_options_raise():
    with pytest.raises(ValueError, match="draws must be"):
        score_fusion(AUX, X, OU(), 0.5, n_mc=10, draws="sobol")
    with pytest.raises(ValueError, match="integer seed"):
        score_fusion(AUX, X, OU(), 0.5, n_mc=10, draws="indexed",
                     seed=np.random.default_rng(0))
    with pytest.raises(ValueError, match="seed"):
        fusion_draws(X, OU(), 0.5, 10, seed=None)
    with pytest.raises(ValueError, match="seed"):
        fusion_draws(X, OU(), 0.5, 10, seed=-1)
    with pytest.raises(ValueError, match="n must be"):
        fusion_draws(X, OU(), 0.5, 0, seed=1)
    with pytest.raises(ValueError, match="start must be"):
        fusion_draws(X, OU(), 0.5, 10, seed=1, start=-3)
    with pytest.raises(ValueError, match="T_tilde"):
        fusion_draws(X, OU(), -0.5, 10, seed=1)
    with pytest.raises(ValueError, match="global indices below 2"):
        fusion_draws(X, OU(), 0.5, 4, seed=1, start=2**32 - 3)
    res = score_fusion(AUX, X, OU(), 0.5, n_mc=10, n_boot=0, draws="indexed", seed=None)
    assert 0 <= res.diagnostics["seed"] < 2**64
