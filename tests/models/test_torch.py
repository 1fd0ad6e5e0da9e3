"""The torch seam: tensors in -> tensors out (dtype, device, shape), autograd, parity with numpy."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed: pip install torch==2.13.0")

from sftheory.models import EmpiricalDistribution, Gaussian, GaussianMixture  # noqa: E402
from sftheory.processes import OU, VE, VP  # noqa: E402
from sftheory.testing.tolerances import EXACT_FLOAT64, FLOAT32, KERNEL_PARITY  # noqa: E402

pytestmark = pytest.mark.torch

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="CUDA not available (torch.cuda.is_available() is False)"))]

_COV = [[1.0, 0.3], [0.3, 0.5]]
MODELS = [
    pytest.param(lambda: Gaussian([0.5, -1.0], _COV), id="gauss"),
    pytest.param(lambda: GaussianMixture([0.2, 0.3, 0.5], [[-1.0, 0.0], [1.0, 0.0], [0.0, 2.0]],
                                         [0.5, 1.0, 2.0]), id="mix-iso"),
    pytest.param(lambda: GaussianMixture([0.4, 0.0, 0.6], [[-1.0, 0.0], [9.0, 9.0], [0.0, 2.0]],
                                         [_COV, np.eye(2), [[0.3, 0.1], [0.1, 0.4]]]),
                 id="mix-full-zero-weight"),
    pytest.param(lambda: EmpiricalDistribution(np.random.default_rng(0).normal(size=(25, 2))),
                 id="emp"),
]
PROCESSES = [pytest.param(OU(), id="OU"), pytest.param(VP(), id="VP"),
             pytest.param(VE(sigma=25.0), id="VE25")]


def _x(n=30, d=2, scale=2.5, seed=1):
    return np.random.default_rng(seed).uniform(-scale, scale, size=(n, d))


def _floor1(a, b, tol):
    """|a - b| <= tol.rtol max(|b|, 1) elementwise (the metric of measure_backend_parity)."""
    a, b = np.asarray(a), np.asarray(b)
    return np.all(np.abs(a - b) <= tol.rtol * np.maximum(np.abs(b), 1.0)), np.abs(a - b).max()


@pytest.mark.parametrize("factory", MODELS)
@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("device", DEVICES)
def test_tensor_in_tensor_out_and_parity(factory, process, device):
    p = factory().marginal(process, 0.3)
    x = _x()
    xt = torch.tensor(x, dtype=torch.float64, device=device)
    lp, s = p.logpdf_and_score(xt)
    pa = factory().path(process)
    for out in (lp, s, p.logpdf(xt), p.score(xt), p.pdf(xt), pa.posterior_mean(xt, 0.3),
                pa.score(xt, 0.3), pa.logpdf(xt, torch.full((len(x),), 0.3, dtype=torch.float64))):
        assert isinstance(out, torch.Tensor)
        assert out.dtype == torch.float64 and out.device == xt.device
    assert lp.shape == (len(x),) and s.shape == x.shape
    lp_np, s_np = p.logpdf_and_score(x)
    ok, err = _floor1(lp.cpu().numpy(), lp_np, KERNEL_PARITY)
    assert ok, err
    ok, err = _floor1(s.cpu().numpy(), s_np, KERNEL_PARITY)
    assert ok, err
    ok, err = _floor1(pa.posterior_mean(xt, 0.3).cpu().numpy(), pa.posterior_mean(x, 0.3),
                      KERNEL_PARITY)
    assert ok, err


@pytest.mark.parametrize("factory", MODELS)
@pytest.mark.parametrize("device", DEVICES)
def test_float32_tensors_stay_float32(factory, device):
    p = factory().marginal(VP(), 0.1)
    x32 = torch.tensor(_x(), dtype=torch.float32, device=device)
    lp, s = p.logpdf_and_score(x32)
    assert lp.dtype == torch.float32 and s.dtype == torch.float32
    assert factory().path(VP()).posterior_mean(x32, 0.1).dtype == torch.float32
    lp64, s64 = p.logpdf_and_score(x32.double().cpu().numpy())
    np.testing.assert_allclose(lp.cpu().numpy(), lp64, rtol=FLOAT32.rtol, atol=FLOAT32.atol)
    np.testing.assert_allclose(s.cpu().numpy(), s64, rtol=FLOAT32.rtol,
                               atol=FLOAT32.atol * (1 + np.abs(s64).max()))


@pytest.mark.parametrize("factory", MODELS)
@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("t", [0.05, 1.0])
def test_autograd_of_logpdf_is_score(factory, process, t):
    p = factory().marginal(process, t)
    xt = torch.tensor(_x(seed=2), dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(p.logpdf(xt).sum(), xt)
    score = p.score(xt.detach())
    ok, err = _floor1(grad.numpy(), score.numpy(), KERNEL_PARITY)
    assert ok, err


def test_autograd_through_score_gives_gaussian_hessian():
    """d score / d x = -(m^2 Sigma + v I)^{-1} for a Gaussian marginal."""
    g = Gaussian([0.5, -1.0], _COV)
    m, v = VP().conditional(0.4)
    p = g.marginal(VP(), 0.4)
    xt = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda z: p.score(z)[0], xt)[:, 0, :]
    ref = -np.linalg.inv(m * m * np.array(_COV) + v * np.eye(2))
    np.testing.assert_allclose(jac.numpy(), ref, rtol=EXACT_FLOAT64.rtol, atol=EXACT_FLOAT64.atol)


def test_jacobian_of_posterior_mean_is_gaussian_gain():
    """Tweedie's second-order identity for a Gaussian prior: d E[X0|x] / dx = m Sigma (m^2 Sigma
    + v I)^{-1}."""
    g = Gaussian([0.5, -1.0], _COV)
    m, v = OU().conditional(0.7)
    p = g.path(OU())
    xt = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda z: p.posterior_mean(z, 0.7)[0], xt)[:, 0, :]
    cov = np.array(_COV)
    ref = m * cov @ np.linalg.inv(m * m * cov + v * np.eye(2))
    np.testing.assert_allclose(jac.numpy(), ref, rtol=EXACT_FLOAT64.rtol, atol=EXACT_FLOAT64.atol)


def test_1d_and_scalar_tensor_shapes():
    g = Gaussian([0.0], 2.0)
    x = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64)
    lp, s = g.logpdf_and_score(x)
    assert lp.shape == (3,) and s.shape == (3,)
    np.testing.assert_allclose(s.numpy(), -x.numpy() / 2.0, rtol=EXACT_FLOAT64.rtol)
    lp0, s0 = g.logpdf_and_score(torch.tensor(1.0, dtype=torch.float64))
    assert lp0.shape == () and s0.shape == ()


def test_half_precision_tensor_is_rejected():
    with pytest.raises(ValueError, match="float32 or float64 tensor"):
        Gaussian([0.0], 1.0).logpdf(torch.tensor([1.0, 2.0], dtype=torch.float16))


def test_nonfinite_tensor_is_rejected():
    with pytest.raises(ValueError, match="NaN or infinite"):
        Gaussian([0.0, 0.0], 1.0).logpdf(torch.tensor([[0.0, float("nan")]], dtype=torch.float64))


@pytest.mark.parametrize("device", DEVICES)
def test_sample_transition_and_drift_with_tensors(device):
    p = VP()
    x = torch.zeros((100_000, 2), dtype=torch.float32, device=device) + 1.0
    out = p.sample_transition(x, 0.5, seed=3)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.device == x.device
    torch.testing.assert_close(out, p.sample_transition(x, 0.5, seed=3))
    m, v = p.conditional(0.5)
    r = (out.double().cpu().numpy() - m)
    # mean within 5 SE, variance within 5 SE (SE of a normal sample variance: v sqrt(2 / n))
    assert np.all(np.abs(r.mean(0)) <= 5 * np.sqrt(v / len(r)))
    assert np.all(np.abs(r.var(0) - v) <= 5 * v * np.sqrt(2 / len(r)))
    drift = p.drift(x, 0.5)
    assert isinstance(drift, torch.Tensor)
    torch.testing.assert_close(drift, -float(p.drift_coef(0.5)) * x)


def test_torch_matches_numpy_far_from_a_single_gaussian():
    """One component: no responsibilities involved, so torch == numpy also at |x| = 1e6."""
    g = Gaussian([0.5, -1.0], _COV)
    x = np.array([[1e6, -1e6], [3e5, 2e5]])
    lp_t, s_t = g.logpdf_and_score(torch.tensor(x))
    lp_n, s_n = g.logpdf_and_score(x)
    np.testing.assert_allclose(lp_t.numpy(), lp_n, rtol=KERNEL_PARITY.rtol, atol=0)
    np.testing.assert_allclose(s_t.numpy(), s_n, rtol=KERNEL_PARITY.rtol,
                               atol=KERNEL_PARITY.rtol * np.abs(s_n).max())


def test_torch_far_point_between_components():
    mix = GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], [1.0, 1.0])
    x = torch.tensor([[0.3, 1e6]], dtype=torch.float64)
    s = mix.score(x)
    # both component scores have second coordinate -1e6: so does any mixture of them
    np.testing.assert_allclose(s[:, 1].numpy(), [-1e6], rtol=EXACT_FLOAT64.rtol, atol=0)


def test_tensor_subclasses_and_integer_tensors_take_the_torch_path():
    class MyTensor(torch.Tensor):
        pass

    g = Gaussian([0.5, -1.0], [[2.0, 0.3], [0.3, 1.0]])
    x = torch.tensor([[0.1, 0.2], [1.0, -3.0]], dtype=torch.float64)
    ref = g.score(x.numpy())
    sub = x.as_subclass(MyTensor)
    out = g.score(sub)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=KERNEL_PARITY.rtol, atol=KERNEL_PARITY.atol)
    xi = torch.tensor([[0, 1], [2, -3]])
    out_i = g.score(xi)
    assert isinstance(out_i, torch.Tensor) and out_i.dtype == torch.float64
    np.testing.assert_allclose(out_i.numpy(), g.score(xi.numpy()), rtol=KERNEL_PARITY.rtol,
                               atol=KERNEL_PARITY.atol)


def test_sample_transition_torch_accepts_a_numpy_generator():
    x = torch.zeros((4, 2), dtype=torch.float64)
    a = OU().sample_transition(x, 0.5, seed=np.random.default_rng(3))
    b = OU().sample_transition(x, 0.5, seed=np.random.default_rng(3))
    assert torch.equal(a, b) and a.dtype == torch.float64
