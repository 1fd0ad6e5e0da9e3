"""Both fusion methods on torch tensors ([SF] Theorem 1, problem (9) with Remark 2 / Prop. 1,
regression (10) / Algorithm 1): tensors in -> tensors out (dtype, device), autograd in the weights,
and parity of the torch route (CPU, and CUDA when present) with the numba/numpy route.

Metric: |a - b| <= rtol * max(|b|, 1) elementwise (KERNEL_PARITY, 1e-12: same formula, different
operation order; the floor 1 guards entries that vanish). Non-finite differences fail.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch", reason="torch not installed: pip install torch==2.13.0")

from sftheory.fusion import (FusionObjective, KLBarycenter, barycenter,  # noqa: E402
                             dsm_contributions, dsm_loss, score_fusion, simplex_qp,
                             vanilla_fusion)
from sftheory.models import Gaussian, GaussianMixture  # noqa: E402
from sftheory.processes import OU, VP  # noqa: E402
from sftheory.testing import strategies as sst  # noqa: E402
from sftheory.testing.tolerances import FLOAT32, KERNEL_PARITY  # noqa: E402

pytestmark = pytest.mark.torch

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="CUDA not available (torch.cuda.is_available() is False)"))]
HYP = settings(max_examples=8, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TOL = KERNEL_PARITY.rtol


def _np(a):
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _rel(a, b) -> float:
    """max |a - b| / max(|b|, 1); inf when anything is non-finite (never passes)."""
    a, b = np.asarray(_np(a), dtype=np.float64), np.asarray(_np(b), dtype=np.float64)
    if a.shape != b.shape or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return np.inf
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1.0), initial=0.0))


def _refs():
    return [GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], [0.5, 1.0]),
            Gaussian([0.5, 1.0], [[1.0, 0.2], [0.2, 0.8]]),
            Gaussian([0.0, -1.0], np.eye(2))]


def _x(n=40, d=2, seed=0):
    return np.random.default_rng(seed).uniform(-2.5, 2.5, size=(n, d))


# ---- the barycenter ([SF] Theorem 1) -------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_kl_barycenter_tensor_in_tensor_out_and_parity(device):
    refs, w = _refs(), np.array([0.2, 0.5, 0.3])
    bar, x = KLBarycenter(refs, w, n_logz=20_000), _x()
    for dtype, tol in ((torch.float64, KERNEL_PARITY), (torch.float32, FLOAT32)):
        xt = torch.tensor(x, dtype=dtype, device=device)
        for name in ("logpdf", "score", "normalized_logpdf"):
            out, ref = getattr(bar, name)(xt), getattr(bar, name)(x)
            assert isinstance(out, torch.Tensor) and out.dtype == dtype
            assert out.device == xt.device and tuple(out.shape) == ref.shape
            # float32: FLOAT32 (eps32 times O(1e2) operations); float64: KERNEL_PARITY
            assert _rel(out, ref) <= tol.rtol, (name, dtype, _rel(out, ref))


@pytest.mark.parametrize("device", DEVICES)
def test_kl_barycenter_autograd_in_the_weights(device):
    """d/d lambda_i sum_j logpdf(x_j) = sum_j log p_i(x_j) (logpdf = sum_i lambda_i log p_i),
    against the references' own numpy logpdf; the score's derivative in lambda_i is grad log p_i."""
    refs, x = _refs(), _x()
    lam = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64, device=device, requires_grad=True)
    bar = barycenter(refs, lam)
    assert isinstance(bar, KLBarycenter)
    xt = torch.tensor(x, dtype=torch.float64, device=device)
    (g,) = torch.autograd.grad(bar.logpdf(xt).sum(), lam)
    expect = np.array([r.logpdf(x).sum() for r in refs])
    assert _rel(g, expect) <= TOL, _rel(g, expect)
    (gs,) = torch.autograd.grad(bar.score(xt)[:, 0].sum(), lam)
    expect_s = np.array([r.score(x)[:, 0].sum() for r in refs])
    assert _rel(gs, expect_s) <= TOL
    # planted: a 0.1 % error in one weight's derivative is noticed
    assert _rel(g * torch.tensor([1.001, 1.0, 1.0], dtype=g.dtype, device=device), expect) > TOL


@pytest.mark.parametrize("device", DEVICES)
def test_gaussian_barycenter_on_tensors(device):
    gs = [Gaussian([0.5, 1.0], [[1.0, 0.2], [0.2, 0.8]]), Gaussian([0.0, -1.0], np.eye(2))]
    w = np.array([0.3, 0.7])
    bar = barycenter(gs, torch.tensor(w, dtype=torch.float64, device=device))
    assert isinstance(bar, Gaussian)
    x = _x()
    for dtype, tol in ((torch.float64, KERNEL_PARITY), (torch.float32, FLOAT32)):
        xt = torch.tensor(x, dtype=dtype, device=device)
        out = bar.logpdf(xt)
        assert out.dtype == dtype and out.device == xt.device
        assert _rel(out, bar.logpdf(x)) <= tol.rtol
    with pytest.raises(ValueError, match="weights requires grad.*KLBarycenter"):
        barycenter(gs, torch.tensor(w, dtype=torch.float64, requires_grad=True))


def test_barycenter_bad_tensor_weights():
    refs, x = _refs(), torch.tensor(_x())
    with pytest.raises(TypeError, match="weights must be a float32 or float64 tensor"):
        KLBarycenter(refs, torch.tensor([0.2, 0.5, 0.3], dtype=torch.float16))
    bar = KLBarycenter(refs, torch.tensor([0.2, 0.5, 0.3], dtype=torch.float32))
    with pytest.raises(ValueError, match="weights has dtype torch.float32.*torch.float64"):
        bar.logpdf(x)
    if torch.cuda.is_available():
        bar = KLBarycenter(refs, torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64,
                                              device="cuda"))
        with pytest.raises(ValueError, match="weights is on device cuda"):
            bar.logpdf(x)


# ---- vanilla fusion ([SF] (9), Remark 2, Prop. 1) ------------------------------------------------
@st.composite
def _vanilla_problems(draw):
    """(references, target samples, lam, method): 2-3 mixtures in d <= 2, samples of another."""
    d = draw(st.integers(1, 2))
    k = draw(st.integers(2, 3))
    refs = [draw(sst.gaussian_mixtures(n_components=(1, 2), dim=d, mean_scale=2.0, min_eig=0.3,
                                       max_eig=3.0)) for _ in range(k)]
    target = draw(sst.gaussian_mixtures(n_components=(1, 2), dim=d, mean_scale=2.0, min_eig=0.3,
                                        max_eig=3.0))
    x = target.sample(60, seed=draw(st.integers(0, 2**31)))
    lam = draw(sst.simplex_weights(k, min_weight=0.01))
    return refs, x, lam, draw(st.sampled_from(["quadrature", "mc"]))


def _parity_vanilla(pn, pt, lam, device):
    """Worst relative difference, torch route vs numba route: value, grad, hessian (closed forms),
    and autograd's gradient and Hessian of the torch value vs Remark 2 and Prop. 1."""
    lt = torch.tensor(lam, dtype=torch.float64, device=device, requires_grad=True)
    v = pt.value(lt)
    assert isinstance(v, torch.Tensor) and v.device == lt.device and v.dtype == torch.float64
    (g_auto,) = torch.autograd.grad(v, lt)
    h_auto = torch.autograd.functional.hessian(pt.value, lt.detach())
    return max(_rel(v, pn.value(lam)), _rel(pt.grad(lt), pn.grad(lam)),
               _rel(pt.hessian(lt), pn.hessian(lam)), _rel(pt.log_normalizer(lt),
                                                           pn.log_normalizer(lam)),
               _rel(g_auto, pn.grad(lam)), _rel(h_auto, pn.hessian(lam)),
               # numpy lam on a torch problem: computed on the device, returned on the host
               _rel(pt.grad(lam), pn.grad(lam)))


@pytest.mark.parametrize("device", DEVICES)
@HYP
@given(problem=_vanilla_problems())
def test_vanilla_torch_parity_and_autograd(device, problem):
    refs, x, lam, method = problem
    pn = FusionObjective(refs, x, method=method, n_mc=3000, seed=5)
    pt = FusionObjective(refs, torch.tensor(x, device=device), method=method, n_mc=3000, seed=5)
    assert pt.is_torch and not pn.is_torch
    # KERNEL_PARITY: identical nodes (same seed), the same sums in another order
    err = _parity_vanilla(pn, pt, lam, device)
    assert err <= TOL, err


@pytest.mark.parametrize("device", DEVICES)
@HYP
@given(gs=st.lists(sst.gaussians(dim=2, mean_scale=2.0, min_eig=0.3, max_eig=3.0), min_size=2,
                   max_size=3), seed=st.integers(0, 2**31))
def test_vanilla_gaussian_route_autograd_vs_closed_forms(device, gs, seed):
    """Gaussian route: autograd of the closed-form log Z ([SF] (19)) vs the closed-form moments of
    Remark 2 / Prop. 1 (independent formulas; EXACT-level agreement, condition numbers <= 10)."""
    x = Gaussian([0.2, -0.1], np.eye(2)).sample(50, seed=seed)
    lam = np.full(len(gs), 1.0 / len(gs))
    pn, pt = FusionObjective(gs, x), FusionObjective(gs, torch.tensor(x, device=device))
    assert pt.method == "gaussian"
    err = _parity_vanilla(pn, pt, lam, device)
    assert err <= 1e-11, err  # rounding x condition number of P (<= 10): see EXACT_FLOAT64


@pytest.mark.parametrize("device", DEVICES)
def test_vanilla_planted_lam_perturbation_fails_parity(device):
    refs, x = _refs(), _x(80, seed=3)
    pn = FusionObjective(refs, x, method="quadrature")
    pt = FusionObjective(refs, torch.tensor(x, device=device), method="quadrature")
    lam = np.array([0.2, 0.5, 0.3])
    assert _parity_vanilla(pn, pt, lam, device) <= TOL
    bad = lam.copy()
    bad[0], bad[1] = bad[0] * 1.001, bad[1] - 0.001 * bad[0]  # 0.1 % of lambda_0 moved
    lt = torch.tensor(bad, dtype=torch.float64, device=device)
    assert _rel(pt.grad(lt), pn.grad(lam)) > TOL
    assert _rel(pt.value(lt), pn.value(lam)) > TOL
    # float32 problem: tensors stay float32 on the device, within FLOAT32 of the float64 route
    p32 = FusionObjective(refs, torch.tensor(x, dtype=torch.float32, device=device),
                          method="quadrature")
    l32 = torch.tensor(lam, dtype=torch.float32, device=device, requires_grad=True)
    v32 = p32.value(l32)
    (g32,) = torch.autograd.grad(v32, l32)
    assert v32.dtype == torch.float32 and g32.dtype == torch.float32
    for a, b in ((v32, pn.value(lam)), (g32, pn.grad(lam)), (p32.hessian(l32), pn.hessian(lam))):
        assert _rel(a, b) <= FLOAT32.rtol, _rel(a, b)


@pytest.mark.parametrize("device", DEVICES)
def test_vanilla_fusion_on_tensors(device):
    """Frank-Wolfe on host floats with device gradients: both routes stop with gap <= gap_tol, so
    F(w) - F* <= gap_tol for each and |F(w_torch) - F(w_numpy)| <= gap_tol (+ rounding)."""
    refs, x = _refs(), _x(150, seed=4)
    kw = dict(method="mc", n_mc=4000, seed=0)  # identical importance draws on both routes
    r_np = vanilla_fusion(refs, x, gap_tol=1e-9, **kw)
    r_t = vanilla_fusion(refs, torch.tensor(x, device=device), gap_tol=1e-9, **kw)
    assert isinstance(r_t.weights, np.ndarray) and r_t.weights.dtype == np.float64
    F = r_np.problem.value
    assert abs(F(r_t.weights) - F(r_np.weights)) <= 1e-9 + 1e-12 * abs(F(r_np.weights))
    # float32: the gradient carries ~1e-6 relative rounding, so gap_tol 1e-5 (module docstring)
    r32 = vanilla_fusion(refs, torch.tensor(x, dtype=torch.float32, device=device), gap_tol=1e-5,
                         **kw)
    assert F(r32.weights) - F(r_np.weights) <= 1e-5 + FLOAT32.rtol * abs(F(r_np.weights))


def test_vanilla_bad_tensor_input():
    refs, x = _refs(), _x()
    with pytest.raises(TypeError, match="target must be a float32 or float64 tensor"):
        FusionObjective(refs, torch.tensor(x, dtype=torch.float16))
    bad = torch.tensor(x)
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="target contains NaN"):
        FusionObjective(refs, bad)
    pt = FusionObjective(refs, torch.tensor(x), method="quadrature")
    lam = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    with pytest.raises(ValueError, match="lam has dtype torch.float32"):
        pt.value(lam.float())
    with pytest.raises(ValueError, match="lam is on device meta"):
        pt.value(lam.to("meta"))
    with pytest.raises(TypeError, match="lam must be a float32 or float64 tensor"):
        pt.grad(lam.half())
    with pytest.raises(ValueError, match="lam must sum to one"):
        pt.value(lam * 2)


# ---- ScoreFusion ([SF] (10), Algorithm 1) --------------------------------------------------------
class _Net(torch.nn.Module):
    """A tiny score network s(x, t) = -x / (1 + t) (torch in, torch out)."""

    def forward(self, x, t):
        return -x / (1.0 + t[:, None])


def _sf_quantities(res):
    return {"gram": res.gram, "linear": res.linear, "const": res.const, "gram_se": res.gram_se,
            "linear_se": res.linear_se, "loss": res.loss}


def _parity_sf(rn, rt) -> float:
    err = max(_rel(rt_v, rn_v) for rt_v, rn_v in zip(_sf_quantities(rt).values(),
                                                       _sf_quantities(rn).values()))
    if rn.diagnostics["identifiable"]:  # weights are a Lipschitz function of (G, b) only then
        err = max(err, _rel(rt.weights, rn.weights) * 1e-2)
    return err


@st.composite
def _sf_problems(draw):
    d = draw(st.integers(1, 2))
    aux = [draw(sst.gaussian_mixtures(n_components=(1, 2), dim=d, mean_scale=2.0, min_eig=0.3,
                                      max_eig=3.0)) for _ in range(draw(st.integers(2, 3)))]
    x = draw(sst.gaussian_mixtures(n_components=1, dim=d, mean_scale=2.0, min_eig=0.3,
                                   max_eig=3.0)).sample(40, seed=draw(st.integers(0, 2**31)))
    return aux, x


@pytest.mark.parametrize("device", DEVICES)
@HYP
@given(problem=_sf_problems(), seed=st.integers(0, 2**31))
def test_score_fusion_torch_parity(device, problem, seed):
    """Same seed -> identical draws (one numpy Generator on both routes): G, b, c, their standard
    errors and the loss agree to KERNEL_PARITY (the scores of the exact paths are parity-tested to
    it); the QP weights to 1e-10 when identifiable (their condition ~ 1/tangent_min_eig)."""
    aux, x = problem
    kw = dict(n_mc=800, seed=seed, n_boot=0, batch_size=20)
    rn = score_fusion(aux, x, VP(), 0.6, **kw)
    rt = score_fusion(aux, torch.tensor(x, device=device), VP(), 0.6, **kw)
    assert isinstance(rt.gram, np.ndarray) and rt.gram.dtype == np.float64
    assert _parity_sf(rn, rt) <= TOL, _parity_sf(rn, rt)


@pytest.mark.parametrize("device", DEVICES)
def test_score_fusion_networks_bootstrap_and_planted(device):
    aux = [Gaussian([0.0, 1.0], np.eye(2)), _Net(), lambda x, t: -(x - 1.0)]
    x = _x(100, seed=2)
    kw = dict(n_mc=3000, seed=11, n_boot=4)
    rn = score_fusion(aux, x, OU(), 0.5, **kw)
    rt = score_fusion(aux, torch.tensor(x, device=device), OU(), 0.5, **kw)
    assert _parity_sf(rn, rt) <= TOL
    assert _rel(rt.diagnostics["weights_se"], rn.diagnostics["weights_se"]) <= 1e-10
    # planted: G off by 0.1 % in one entry, and a NaN, are noticed by the parity metric
    rt.gram[0, 0] *= 1.001
    assert _parity_sf(rn, rt) > TOL
    rt.gram[0, 0] = np.nan
    assert _parity_sf(rn, rt) > TOL


@pytest.mark.parametrize("device", DEVICES)
def test_score_fusion_float32_and_softmax_sgd(device):
    aux = [Gaussian([0.0, 1.0], np.eye(2)), Gaussian([1.0, -1.0], [[1.0, 0.3], [0.3, 0.6]])]
    x = _x(100, seed=2)
    r64 = score_fusion(aux, x, OU(), 0.5, n_mc=2000, seed=1, n_boot=0)
    r32 = score_fusion(aux, torch.tensor(x, dtype=torch.float32, device=device), OU(), 0.5,
                       n_mc=2000, seed=1, n_boot=0)
    scale = np.abs(r64.gram).max()
    # FLOAT32 relative to the scale of G (eps32 x a few hundred accumulated products)
    assert np.abs(r32.gram - r64.gram).max() <= FLOAT32.rtol * scale
    kw = dict(n_mc=500, seed=1, n_boot=0, method="softmax-sgd", steps=30, batch_size=50)
    s64 = score_fusion(aux, x, OU(), 0.5, **kw)
    st_ = score_fusion(aux, torch.tensor(x, device=device), OU(), 0.5, **kw)
    # identical draws, same Adam steps: the SGD iterates agree up to rounding (30 steps)
    assert _rel(st_.diagnostics["sgd_weights"], s64.diagnostics["sgd_weights"]) <= 1e-10


@pytest.mark.parametrize("device", DEVICES)
def test_dsm_loss_autograd_is_twice_g_lam_minus_b(device):
    """grad_lam of the directly evaluated DSM loss (torch autograd) = 2 (G lam - b) with G, b the
    means of the per-draw terms, computed by the numpy route of dsm_contributions."""
    rng = np.random.default_rng(0)
    n, k, d = 500, 3, 2
    S, z = rng.normal(size=(n, k, d)), rng.normal(size=(n, d))
    v = rng.uniform(0.05, 1.0, n)
    gam = v.copy()
    Gj, bj, _ = dsm_contributions(S, z, v, gam)
    G, b = Gj.mean(0), bj.mean(0)
    lam0 = np.array([0.2, 0.5, 0.3])
    T = [torch.tensor(a, device=device) for a in (S, z, v, gam)]
    lam = torch.tensor(lam0, device=device, requires_grad=True)
    (g,) = torch.autograd.grad(dsm_loss(lam, *T), lam)
    assert _rel(g, 2.0 * (G @ lam0 - b)) <= TOL
    # through the paper's softmax parametrization (Alg. 1): chain rule J^T 2 (G lam - b)
    theta = torch.tensor(np.log(lam0), device=device, requires_grad=True)
    (gt,) = torch.autograd.grad(dsm_loss(torch.softmax(theta, 0), *T), theta)
    J = np.diag(lam0) - np.outer(lam0, lam0)
    assert _rel(gt, J @ (2.0 * (G @ lam0 - b))) <= TOL
    # and the result's quadratic form
    res = score_fusion([Gaussian([0.0], 1.0), Gaussian([1.0], 2.0)], np.zeros((10, 1)), OU(), 0.3,
                       n_mc=200, seed=0, n_boot=0)
    lt = torch.tensor([0.4, 0.6], dtype=torch.float64, device=device, requires_grad=True)
    (gq,) = torch.autograd.grad(res.objective(lt), lt)
    assert _rel(gq, 2.0 * (res.gram @ _np(lt) - res.linear)) <= TOL
    # planted: 0.1 % off b is noticed
    assert _rel(g, 2.0 * (G @ lam0 - 1.001 * b)) > TOL


def test_score_fusion_bad_tensor_input():
    aux = [Gaussian([0.0], 1.0), Gaussian([1.0], 1.0)]
    x = torch.zeros(10, 1, dtype=torch.float64)
    with pytest.raises(TypeError, match="target_samples must be a float32 or float64 tensor"):
        score_fusion(aux, x.half(), OU(), 0.1)
    bad = x.clone()
    bad[2, 0] = float("nan")
    with pytest.raises(ValueError, match="target_samples contains NaN"):
        score_fusion(aux, bad, OU(), 0.1)
    with pytest.raises(ValueError, match="device = 'cuda' but target_samples is on cpu"):
        score_fusion(aux, x, OU(), 0.1, device="cuda", method="softmax-sgd")
    with pytest.raises(ValueError, match=r"scores\[1\].*returned dtype torch.float32"):
        score_fusion([aux[0], lambda x, t: x.float()], x, OU(), 0.1, n_mc=100)
    with pytest.raises(ValueError, match=r"scores\[1\].*NaN"):
        score_fusion([aux[0], lambda x, t: x * float("nan")], x, OU(), 0.1, n_mc=100)


def test_float32_gram_of_nearly_collinear_auxiliaries_passes_the_psd_check():
    """Two auxiliaries 1e-6 apart make G singular to float32 rounding: its smallest eigenvalue
    came out as -3e-8 to -6e-8 x max|G| (seeds 4, 5, 7, 8 of 0..9 refused at the float64 tolerance 1e-8). The
    tolerance now follows the format (gram_psd_tolerance, derived from the dot-product and
    reduction rounding); the float32 eigenvalue shift, measured against float64 on the same
    draws, stays inside it."""
    from sftheory.fusion._score_fusion import gram_psd_tolerance

    aux = [Gaussian([0.0, 1.0], np.eye(2)), Gaussian([0.0, 1.0 + 1e-6], np.eye(2)),
           Gaussian([1.0, 0.0], np.eye(2))]
    x = np.random.default_rng(0).standard_normal((200, 2))
    tol = gram_psd_tolerance(3, 2, 5000, float(np.finfo(np.float32).eps) / 2)
    refused = 0
    for seed in (4, 5, 6, 7):
        r32 = score_fusion(aux, torch.tensor(x, dtype=torch.float32), OU(), 0.5, n_mc=5000,
                           seed=seed, n_boot=0)
        r64 = score_fusion(aux, x, OU(), 0.5, n_mc=5000, seed=seed, n_boot=0)
        shift = abs(np.linalg.eigvalsh(r32.gram)[0] - np.linalg.eigvalsh(r64.gram)[0])
        assert shift <= tol * np.abs(r64.gram).max(), (seed, shift)
        assert abs(r32.weights.sum() - 1.0) < 1e-12 and np.all(r32.weights >= 0)
        try:  # the float64 default tolerance refuses such matrices
            simplex_qp(r32.gram, r32.linear)
        except ValueError as exc:
            refused += "positive semi-definite" in str(exc)
    assert refused >= 1
