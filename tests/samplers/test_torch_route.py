"""The samplers on torch tensors (sftheory/samplers/_core.py, _fused.py): the device-resident route
for exact mixture fields and the Python loop for other torch fields, on CPU.

Independent references: (1) for a Gaussian p0 the chain x <- alpha x + beta S + sigma xi is linear
and its exact Gaussian law follows by a recursion written here from the textbook SDE (Euler-
Maruyama by definition; the exponential integrator of OU, dX = -a X dt + s dW, in closed form:
alpha = e^{a D}, beta = s^2 (e^{a D} - 1)/a, sigma^2 = s^2 (e^{2 a D} - 1)/(2 a)); the torch
route's moments must match it within MC_SIGMAS standard errors in float64 and float32; (2) for a
4-component mixture, the torch route and the compiled numba route (its own tests: parity with the
Python loop given the noise) sample the same law (two-sample z on means and second moments);
(3) host synchronizations are counted by spies on every Tensor -> host conversion and on the
backend's finiteness check: their number must not grow with the number of steps.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from sftheory.backend import TorchBackend
from sftheory.fields import as_field, perturbed, scaled
from sftheory.models import EmpiricalDistribution, Gaussian, GaussianMixture
from sftheory.processes import OU, VP
from sftheory.samplers import (BrownianPath, IndexedNoise, initial_points,
                               sample_euler_maruyama, sample_exponential)
from sftheory.testing import textbook
from sftheory.testing.tolerances import MC_SIGMAS

torch = pytest.importorskip("torch")
# torchsde's practice: every torch test on the CPU, and on CUDA when a GPU is present
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

MU2 = np.array([0.7, -0.4])
SIG2 = np.array([[0.3, 0.1], [0.1, 0.2]])
MEANS = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
MIX = GaussianMixture(np.array([0.1, 0.2, 0.3, 0.4]), MEANS, np.full(4, 0.2 ** 2),
                      covariance_type="spherical")


def _textbook_coeffs(kind, process, ts):
    """(alpha, beta, sigma) per step for h = g, from the SDE's definition (not the library's)."""
    out = []
    for hi, lo in zip(ts[:-1], ts[1:]):
        dt = hi - lo
        a, g2 = float(textbook.drift_coef(process, hi)), float(textbook.diffusion_sq(process, hi))
        if kind == "em":
            out.append((1 + dt * a, dt * g2, math.sqrt(dt * g2)))
        else:  # OU only: a, g^2 constant
            out.append((math.exp(a * dt), g2 * math.expm1(a * dt) / a,
                        math.sqrt(g2 * math.expm1(2 * a * dt) / (2 * a))))
    return out


def _chain_law(kind, process, ts, mu, sig):
    """Exact mean and covariance of the linear chain started from p_T, score -C_t^{-1}(x - m mu),
    C_t = m^2 Sigma + v I (m, v from the textbook SDE)."""
    d = mu.shape[0]
    m, v = textbook.exact_mv(process, float(ts[0]))
    mean, cov = m * mu, m * m * sig + v * np.eye(d)
    for k, (al, be, si) in enumerate(_textbook_coeffs(kind, process, ts)):
        m, v = textbook.exact_mv(process, float(ts[k]))
        cinv = np.linalg.inv(m * m * sig + v * np.eye(d))
        a = al * np.eye(d) - be * cinv
        mean = a @ mean + be * cinv @ (m * mu)
        cov = a @ cov @ a.T + si * si * np.eye(d)
    return mean, cov


def _moment_z(x, mean, cov):
    """z-scores of the sample mean (each coordinate) and the sample covariance entries against
    the exact Gaussian law (var of the (i, j) entry: (C_ii C_jj + C_ij^2) / n)."""
    n, d = x.shape
    zm = (x.mean(0) - mean) / np.sqrt(np.diag(cov) / n)
    c = np.cov(x.T, bias=True).reshape(d, d)
    zc = [(c[i, j] - cov[i, j]) / math.sqrt((cov[i, i] * cov[j, j] + cov[i, j] ** 2) / n)
          for i in range(d) for j in range(i, d)]
    return np.concatenate([zm, zc])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind,process", [("em", VP()), ("exp", OU())], ids=["em-VP", "exp-OU"])
@pytest.mark.parametrize("cov", ["iso-1d", "full-2d"])
@pytest.mark.parametrize("device", DEVICES)
def test_torch_route_has_the_exact_chain_law(dtype, kind, process, cov, device):
    if cov == "iso-1d":
        mu, sig, law = np.array([0.7]), np.array([[0.3]]), Gaussian([0.7], 0.3)
    else:
        mu, sig, law = MU2, SIG2, Gaussian(MU2, SIG2)
    sampler = sample_euler_maruyama if kind == "em" else sample_exponential
    ts = np.linspace(1.0, 0.02, 31)
    n = 20_000
    x0 = torch.from_numpy(initial_points(n, process, 1.0, law=law, seed=5)).to(
        device=device, dtype=getattr(torch, dtype))
    res = sampler(law.path(process), x0, ts, process, seed=7, disable=True)
    assert res.x.dtype == x0.dtype and res.x.device == x0.device and res.nfe == 30
    mean, c = _chain_law(kind, process, ts, mu, sig)
    z = _moment_z(res.x.double().cpu().numpy(), mean, c)
    assert np.all(np.isfinite(z)) and np.max(np.abs(z)) <= MC_SIGMAS, z


def test_torch_route_and_numba_route_sample_the_same_mixture_law():
    proc = OU()
    path = MIX.path(proc)
    ts = np.linspace(3.0, 0.01, 61)
    n = 20_000
    x0 = initial_points(n, proc, 3.0, law=MIX, seed=1)
    a = sample_euler_maruyama(path, torch.from_numpy(x0), ts, proc, seed=2, disable=True).x.numpy()
    b = sample_euler_maruyama(path, x0, ts, proc, seed=3, disable=True).x  # numba route
    for f in (lambda x: x, lambda x: x * x, lambda x: x[:, :1] * x[:, 1:]):
        fa, fb = f(a), f(b)
        z = (fa.mean(0) - fb.mean(0)) / np.sqrt(fa.var(0) / n + fb.var(0) / n)
        assert np.all(np.abs(z) <= MC_SIGMAS), z


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-4)])
@pytest.mark.parametrize("device", DEVICES)
def test_torch_route_equals_the_torch_python_loop_given_the_seed(dtype, tol, device):
    """Same generator, same draws (torch's normal_ and randn share the stream on CPU): the
    device-resident loop and the per-step Python loop agree to rounding, for scaled / perturbed
    fields and with snapshots."""
    proc = OU()
    path = MIX.path(proc)
    ts = np.linspace(3.0, 0.01, 41)
    x0 = torch.from_numpy(initial_points(200, proc, 3.0, law=MIX, seed=1)).to(
        device=device, dtype=getattr(torch, dtype))
    field = perturbed(path, scaled(path, lambda t: 1.0 + math.sin(t)), -0.2)
    for sampler in (sample_euler_maruyama, sample_exponential):
        kw = dict(seed=11, save_at=ts[[0, 20, 40]], disable=True)
        a = sampler(field, x0, ts, proc, **kw)
        b = sampler(field, x0, ts, proc, callback=lambda s: None, **kw)  # the Python loop
        assert torch.allclose(a.x, b.x, rtol=0, atol=tol)
        assert torch.equal(a.x, sampler(field, x0, ts, proc, **kw).x)  # reproducible
        assert list(a.times) == list(b.times) == list(ts[[0, 20, 40]])
        for sa, sb in zip(a.snapshots, b.snapshots):
            assert torch.allclose(sa, sb, rtol=0, atol=tol)
        assert not torch.equal(a.x, sampler(field, x0, ts, proc, seed=12, disable=True).x)
    assert torch.equal(x0, torch.from_numpy(initial_points(200, proc, 3.0, law=MIX, seed=1))
                       .to(x0.device, x0.dtype))  # the caller's tensor untouched


def test_a_planted_nan_in_the_score_raises_at_the_end(monkeypatch):
    from sftheory._kernels import torch_mixture

    proc = OU()
    path = MIX.path(proc)
    ts = np.linspace(3.0, 0.01, 21)
    x0 = torch.from_numpy(initial_points(50, proc, 3.0, law=MIX, seed=1))
    calls = []
    core = torch_mixture.mixture_eval_core

    def planted(x, m, v, *args):
        logp, vec, mx = core(x, m, v, *args)
        calls.append(1)
        if len(calls) == 7:
            vec = vec.clone()
            vec[3, 0] = math.nan
        return logp, vec, mx

    monkeypatch.setattr(torch_mixture, "mixture_eval_core", planted)
    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        sample_euler_maruyama(path, x0, ts, proc, seed=0, disable=True)
    assert len(calls) == 20  # the loop ran to the end: no per-step check

    # the Python loop on torch: a network-like callable with a NaN at one step
    n_calls = []

    def net(x, t):
        n_calls.append(t)
        out = -x
        return out * math.nan if len(n_calls) == 5 else out

    with pytest.raises(FloatingPointError, match="score field returned NaN"):
        sample_euler_maruyama(as_field(net, 2), x0, ts, proc, seed=0, disable=True)
    assert len(n_calls) == 20

    def drops_nan(x, t):  # a NaN in the score that x does not keep is still seen
        n_calls.append(t)
        return torch.full_like(x, math.nan) if len(n_calls) == 30 else -x

    with pytest.raises(FloatingPointError, match="score field returned NaN"):
        sample_euler_maruyama(as_field(drops_nan, 2), x0, ts, proc, h=0.0, disable=True,
                              callback=lambda s: s["x"].nan_to_num_(0.0))


_SYNC_METHODS = ("item", "__bool__", "__float__", "__int__", "tolist", "numpy", "cpu")


def _count_syncs(run):
    count = [0]
    with pytest.MonkeyPatch.context() as mp:
        for name in _SYNC_METHODS:
            orig = getattr(torch.Tensor, name)

            def spy(self, *a, _orig=orig, **k):
                count[0] += 1
                return _orig(self, *a, **k)

            mp.setattr(torch.Tensor, name, spy)
        orig_af = TorchBackend.all_finite

        def af(self, a):
            count[0] += 1
            return orig_af(self, a)

        mp.setattr(TorchBackend, "all_finite", af)
        run()
    return count[0]


@pytest.mark.parametrize("route", ["device", "device-indexed", "python-loop-net",
                                   "python-loop-indexed", "python-loop-path-noise",
                                   "python-loop-empirical-fast"])
@pytest.mark.parametrize("device", DEVICES)
def test_no_per_step_host_synchronization(route, device):
    """The number of host syncs (Tensor -> host conversions, finiteness checks) is the same for
    5 and 40 steps: none happens inside the loop."""
    proc = VP()
    path = MIX.path(proc)
    x0 = torch.from_numpy(initial_points(64, proc, 1.0, law=MIX, seed=1)).to(device)
    net = as_field(lambda x, t: -x / (1.0 + t), 2)

    def run(n_steps):
        ts = np.linspace(1.0, 0.05, n_steps + 1)
        if route == "device":
            return lambda: sample_euler_maruyama(path, x0, ts, proc, seed=0, disable=True)
        if route == "device-indexed":
            return lambda: sample_euler_maruyama(path, x0, ts, proc, noise=IndexedNoise(3),
                                                 disable=True)
        if route == "python-loop-net":
            return lambda: sample_exponential(net, x0, ts, proc, seed=0, disable=True)
        if route == "python-loop-indexed":
            return lambda: sample_exponential(net, x0, ts, proc, noise=IndexedNoise(3),
                                              disable=True)
        if route == "python-loop-empirical-fast":  # the fast route's own check is off in loops;
            emp = EmpiricalDistribution(MEANS, precision="bf16-fast")  # keys prepared once per law
            return lambda: sample_euler_maruyama(emp.path(proc), x0, ts, proc, seed=0,
                                                 disable=True)
        noise = BrownianPath(tuple(x0.shape), seed=1)
        return lambda: sample_euler_maruyama(scaled(path, 0.9), x0, ts, proc, noise=noise,
                                             disable=True)

    few, many = _count_syncs(run(5)), _count_syncs(run(40))
    # entry + exit checks (all_finite counts twice); the fast empirical route also prepares its
    # keys once per law (two host reads of the norms' maximum): 85 syncs for 40 steps before
    # the loop turned its per-call finiteness check off and the scalar split stopped using tensors
    bound = 8 if route == "python-loop-empirical-fast" else 6
    assert few == many and many <= bound, (few, many)


def test_fast_empirical_overflow_is_still_caught_without_the_per_call_check():
    """The loop turns the fast route's own finiteness check off (a sync per step); an fp16
    overflow of its inputs (|a x / w| > 65504) must still end the run with FloatingPointError,
    from the loop's once-at-the-end check. The same call outside the loop raises the route's own
    ValueError."""
    proc = VP()
    emp = EmpiricalDistribution(MEANS * 3e4, precision="fp16-fast")
    x0 = torch.full((8, 2), 3e4, dtype=torch.float64)
    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        sample_euler_maruyama(emp.path(proc), x0, np.linspace(1.0, 0.05, 6), proc, seed=0,
                              disable=True)
    with pytest.raises(ValueError, match="fp16"):
        emp.path(proc).score(x0, 0.5)


def test_one_dimensional_torch_points_and_bad_outputs():
    proc = OU()
    law = Gaussian([0.5], 0.2)
    x0 = torch.from_numpy(initial_points(100, proc, 2.0, law=law, seed=0))[:, 0]
    ts = np.linspace(2.0, 0.1, 11)
    res = sample_euler_maruyama(law.path(proc), x0, ts, proc, seed=0, disable=True)
    assert res.x.shape == (100,) and res.x.dtype == torch.float64
    bad = as_field(lambda x, t: (-x).float(), 1)
    with pytest.raises(ValueError, match="dtype"):
        sample_euler_maruyama(bad, x0, ts, proc, seed=0, disable=True)
    with pytest.raises(ValueError, match="NaN or infinite"):
        sample_euler_maruyama(law.path(proc), torch.full((3,), math.nan), ts, proc, disable=True)


def test_the_checks_see_planted_errors(monkeypatch):
    """A per-step finiteness check (the fields' own ``_eval``) is counted by the spies, and a
    step coefficient 3 % off moves the moments by more than MC_SIGMAS standard errors."""
    from sftheory.samplers import _core, _fused

    proc = VP()
    x0 = torch.from_numpy(initial_points(64, proc, 1.0, law=MIX, seed=1))
    net = as_field(lambda x, t: -x / (1.0 + t), 2)
    monkeypatch.setattr(_core, "_torch_score", lambda f, x, t: f._eval(x, t))
    counts = [_count_syncs(lambda: sample_exponential(
        net, x0, np.linspace(1.0, 0.05, n + 1), proc, seed=0, disable=True)) for n in (5, 40)]
    assert counts[1] > counts[0], counts

    law = Gaussian(MU2, SIG2)
    ts = np.linspace(1.0, 0.02, 31)
    x0 = torch.from_numpy(initial_points(20_000, proc, 1.0, law=law, seed=5))
    coefficients = _fused._path_coefficients

    def off(form, grid, beta):
        b, m, v = coefficients(form, grid, beta)
        return 1.03 * b, m, v

    monkeypatch.setattr(_fused, "_path_coefficients", off)
    res = sample_euler_maruyama(law.path(proc), x0, ts, proc, seed=7, disable=True)
    z = _moment_z(res.x.numpy(), *_chain_law("em", proc, ts, MU2, SIG2))
    assert np.max(np.abs(z)) > MC_SIGMAS, z


def test_host_solvers_refuse_points_that_require_grad():
    """sample_ode and log_likelihood integrate with scipy on the host: an x that requires grad
    would silently lose its graph, so it raises, naming the argument and the way out."""
    from sftheory.samplers import log_likelihood, sample_ode

    proc = VP()
    x = torch.zeros((4, 2), dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="x requires grad"):
        sample_ode(MIX.path(proc), x, np.linspace(1.0, 0.1, 5), proc)
    with pytest.raises(ValueError, match="x0 requires grad"):
        log_likelihood(MIX.path(proc), x, proc, 1.0, divergence="autograd")
    res = sample_ode(MIX.path(proc), x.detach(), np.linspace(1.0, 0.1, 5), proc)
    assert torch.is_tensor(res.x) and torch.all(torch.isfinite(res.x))


def test_initial_points_on_a_device_are_the_numpy_draws():
    """initial_points(..., device=, dtype=) returns the numpy draws of the same seed as a tensor
    (float64: bit for bit; float32: rounded once), and refuses other dtypes and bad devices."""
    from sftheory.samplers import initial_points

    a = initial_points(50, VP(), 1.0, law=MIX, seed=4)
    b = initial_points(50, VP(), 1.0, law=MIX, seed=4, device="cpu")
    c = initial_points(50, VP(), 1.0, law=MIX, seed=4, dtype=torch.float32)
    assert torch.is_tensor(b) and b.dtype == torch.float64 and np.array_equal(b.numpy(), a)
    assert c.dtype == torch.float32 and torch.equal(c, torch.from_numpy(a).float())
    with pytest.raises(ValueError, match="dtype"):
        initial_points(5, VP(), 1.0, dim=2, dtype=torch.float16)
    with pytest.raises(ValueError, match="device"):
        initial_points(5, VP(), 1.0, dim=2, device="no-such-device")


def test_scalar_arguments_may_be_0d_tensors():
    """h, eps, factor, T_tilde accept 0-d tensors as t does (same results as the floats); a
    tensor that requires grad, a 1-element array and a bool tensor are refused by name."""
    from sftheory.fusion import score_fusion

    proc = VP()
    path = MIX.path(proc)
    x0 = torch.from_numpy(initial_points(20, proc, 1.0, law=MIX, seed=1))
    ts = np.linspace(1.0, 0.1, 6)
    a = sample_euler_maruyama(path, x0, ts, proc, h=0.5, seed=0, disable=True).x
    b = sample_euler_maruyama(path, x0, ts, proc, h=torch.tensor(0.5), seed=0, disable=True).x
    assert torch.equal(a, b)
    assert perturbed(path, path, torch.tensor(0.25, dtype=torch.float64)).eps == 0.25
    assert scaled(path, torch.tensor(0.5)).factor == 0.5
    tgt = np.random.default_rng(0).standard_normal((40, 2))
    kw = dict(n_mc=200, n_boot=0, seed=0)
    ra = score_fusion([Gaussian([0, 0], np.eye(2)), MIX], tgt, proc, 0.5, **kw)
    rb = score_fusion([Gaussian([0, 0], np.eye(2)), MIX], tgt, proc, torch.tensor(0.5), **kw)
    assert np.array_equal(ra.gram, rb.gram)
    with pytest.raises(ValueError, match="eps requires grad"):
        perturbed(path, path, torch.tensor(0.1, requires_grad=True))
    with pytest.raises(ValueError, match="eps must be a real number"):
        perturbed(path, path, torch.tensor([0.1]))
    with pytest.raises(ValueError, match="h must be"):
        sample_euler_maruyama(path, x0, ts, proc, h=torch.tensor(True), disable=True)
