"""sftheory.fields: any callable s(x, t) as a score field; weighted sums and perturbations."""
from __future__ import annotations

import numpy as np
import pytest

from sftheory.fields import ScoreField, as_field, perturbed, weighted
from sftheory.models import Gaussian, GaussianMixture
from sftheory.processes import OU, VP
from sftheory.testing.tolerances import EXACT_FLOAT64, KERNEL_PARITY


def _paths():
    g = Gaussian([1.0, -1.0], [[1.0, 0.3], [0.3, 0.5]]).path(VP())
    mix = GaussianMixture([0.4, 0.6], [[0.0, 2.0], [-2.0, 0.0]], [1.0, 0.5]).path(VP())
    return g, mix


def test_weighted_is_the_lambda_weighted_sum_at_per_point_times():
    """[SF] Thm. 2: the process-level barycenter score is sum_i lambda_i s_i(x, t)."""
    g, mix = _paths()
    user = lambda x, t: -x  # noqa: E731  a user's own callable (numpy in, numpy out)
    field = weighted([g, mix, as_field(user, dim=2)], [0.2, 0.5, 0.3])
    assert isinstance(field, ScoreField) and field.dim == 2
    x = np.random.default_rng(0).normal(size=(6, 2))
    ts = np.linspace(0.05, 0.9, 6)
    ref = 0.2 * g.score(x, ts) + 0.5 * mix.score(x, ts) + 0.3 * (-x)
    np.testing.assert_allclose(field(x, ts), ref, rtol=EXACT_FLOAT64.rtol, atol=EXACT_FLOAT64.atol)
    np.testing.assert_allclose(field(x, 0.4), 0.2 * g.score(x, 0.4) + 0.5 * mix.score(x, 0.4) - 0.3 * x,
                               rtol=EXACT_FLOAT64.rtol, atol=EXACT_FLOAT64.atol)


def test_weighted_gaussian_scores_are_the_barycenter_score_at_time_zero():
    """Independent route: for Gaussians the weighted score is the score of the precision-weighted
    Gaussian N(P^{-1} sum l_i P_i mu_i, P^{-1}), P = sum l_i P_i ([SF] Thm. 1 at t = 0)."""
    c1, c2 = np.array([[1.0, 0.3], [0.3, 0.5]]), np.diag([2.0, 0.7])
    m1, m2 = np.array([1.0, -1.0]), np.array([-0.5, 2.0])
    lam = [0.3, 0.7]
    p1, p2 = np.linalg.inv(c1), np.linalg.inv(c2)
    prec = lam[0] * p1 + lam[1] * p2
    mean = np.linalg.solve(prec, lam[0] * p1 @ m1 + lam[1] * p2 @ m2)
    field = weighted([Gaussian(m1, c1).path(OU()), Gaussian(m2, c2).path(OU())], lam)
    x = np.random.default_rng(1).normal(size=(5, 2))
    np.testing.assert_allclose(field(x, 0.0), -(x - mean) @ prec.T, rtol=1e-12, atol=1e-13)


def test_perturbed_is_s_plus_eps_e():
    g, _ = _paths()
    err = as_field(lambda x, t: np.sin(x) * (1 + t if np.ndim(t) == 0 else 1 + t[:, None]), dim=2)
    field = perturbed(g, err, 0.01)
    x = np.random.default_rng(2).normal(size=(4, 2))
    ts = np.array([0.1, 0.2, 0.3, 0.4])
    ref = g.score(x, ts) + 0.01 * np.sin(x) * (1 + ts[:, None])
    np.testing.assert_allclose(field(x, ts), ref, rtol=EXACT_FLOAT64.rtol, atol=EXACT_FLOAT64.atol)
    np.testing.assert_array_equal(perturbed(g, err, 0.0)(x, 0.3), g.score(x, 0.3))


def test_fields_receive_per_point_times_in_x_backend():
    seen = {}

    def spy(x, t):
        seen["t"] = t
        return np.zeros_like(x)

    f = as_field(spy, dim=2)
    f(np.zeros((3, 2)), np.array([0.1, 0.2, 0.3]))
    assert isinstance(seen["t"], np.ndarray) and seen["t"].shape == (3,)
    f(np.zeros((3, 2)), 0.5)
    assert isinstance(seen["t"], float)


def test_torch_module_is_a_field_with_autograd():
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2, dtype=torch.float64)

        def forward(self, x, t):
            tt = t if isinstance(t, float) else t[:, None]
            return self.lin(x) * (1.0 + tt)

    net = Net()
    g, _ = _paths()
    field = weighted([as_field(net, dim=2), g], [0.5, 0.5])
    x = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    ts = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    out = field(x, ts)
    assert isinstance(out, torch.Tensor) and out.shape == (4, 2)
    ref = 0.5 * net(x, ts) + 0.5 * g.score(x, ts)
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), rtol=KERNEL_PARITY.rtol)
    out.sum().backward()
    assert x.grad is not None and torch.all(torch.isfinite(x.grad))


def test_bad_fields_and_weights_raise():
    g, mix = _paths()
    with pytest.raises(ValueError, match="sum to one"):
        weighted([g, mix], [0.5, 0.6])
    with pytest.raises(ValueError, match="non-negative"):
        weighted([g, mix], [1.5, -0.5])
    with pytest.raises(ValueError, match="2 fields"):
        weighted([g, mix], [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match="different dimensions"):
        weighted([g, Gaussian([0.0], 1.0).path(VP())], [0.5, 0.5])
    with pytest.raises(ValueError, match="empty"):
        weighted([], [])
    with pytest.raises(ValueError, match="dim is required"):
        as_field(lambda x, t: x)
    with pytest.raises(ValueError, match="callable"):
        as_field(3.0, dim=1)
    with pytest.raises(ValueError, match="eps must be finite"):
        perturbed(g, mix, float("nan"))
    with pytest.raises(ValueError, match="eps must be a real"):
        perturbed(g, mix, None)
    with pytest.raises(ValueError, match="dim"):
        perturbed(g, Gaussian([0.0], 1.0).path(VP()), 0.1)
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"returned shape \(3, 1\)"):
        as_field(lambda x, t: x[:, :1], dim=2)(x, 0.1)
    with pytest.raises(ValueError, match="NaN"):
        as_field(lambda x, t: x * np.nan, dim=2)(x, 0.1)
    with pytest.raises(ValueError, match=r"expected \(N, 2\)"):
        weighted([g, mix], [0.5, 0.5])(np.zeros((3, 3)), 0.1)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        weighted([g, mix], [0.5, 0.5])(x, np.array([0.1, 0.2]))


def test_weighted_with_differentiable_weights_passes_gradients_to_them():
    """weights = a tensor with requires_grad: d/dw_i of sum(field(x, t)) is sum(field_i(x, t))
    (the definition of the weighted sum), through the field and through a sampler run, whose
    gradient along (1, -1) equals a central difference of the run in the weights (IndexedNoise:
    the same normals for every weight; difference error O(h^2) + rounding / h ~ 1e-8 relative).
    The same weights without requires_grad stay floats (no graph), and weights on another device
    than x raise."""
    torch = pytest.importorskip("torch")
    from sftheory.processes import VP
    from sftheory.samplers import IndexedNoise, sample_euler_maruyama

    p = GaussianMixture([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], [np.eye(2)] * 2).path(VP())
    q = Gaussian([0.3, -0.2], np.eye(2)).path(VP())
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((5, 2)))
    w = torch.tensor([0.4, 0.6], dtype=torch.float64, requires_grad=True)
    field = weighted([p, q], w)
    field(x, 0.3).sum().backward()
    want = [float(p.score(x, 0.3).sum()), float(q.score(x, 0.3).sum())]
    assert np.allclose(w.grad.numpy(), want, rtol=1e-13, atol=0)

    ts = np.linspace(1.0, 0.1, 6)
    w.grad = None
    res = sample_euler_maruyama(weighted([p, p, q], torch.cat([0.5 * w[:1], 0.5 * w[:1], w[1:]])),
                                x, ts, VP(), noise=IndexedNoise(1), disable=True)
    res.x.sum().backward()

    def run(a):
        ww = torch.tensor([0.5 * a, 0.5 * a, 1.0 - a], dtype=torch.float64)
        return float(sample_euler_maruyama(weighted([p, p, q], ww), x, ts, VP(),
                                           noise=IndexedNoise(1), disable=True).x.sum())

    h = 1e-5
    fd = (run(0.4 + h) - run(0.4 - h)) / (2 * h)
    ad = float(w.grad[0] - w.grad[1])
    assert abs(ad - fd) <= 1e-7 * max(1.0, abs(fd)), (ad, fd)

    # one path twice: the sampler's merged exact-mixture route would drop the graph; with
    # differentiable weights it is not taken (the field is p for any weights: equal gradients)
    w.grad = None
    sample_euler_maruyama(weighted([p, p], w), x, ts, VP(), noise=IndexedNoise(1),
                          disable=True).x.sum().backward()
    assert w.grad is not None and abs(float(w.grad[0] - w.grad[1])) <= 1e-12 * float(w.grad.abs().max())

    plain = weighted([p, q], torch.tensor([0.4, 0.6]))
    assert not plain(x, 0.3).requires_grad
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="device"):
            weighted([p, q], w.detach().cuda().requires_grad_())(x, 0.3)


def test_differentiable_weights_follow_in_place_updates_and_host_solvers_refuse_them():
    """An optimizer-style in-place update of the weights tensor is what both routes use next:
    torch and numpy evaluations agree after it, and ``weights`` reads the new values (checked to
    lie on the simplex). sample_ode / log_likelihood (scipy on the host) refuse a field whose
    weights require grad instead of silently dropping their gradient; numpy points still take
    the compiled route with the current weights."""
    torch = pytest.importorskip("torch")
    from sftheory.processes import VP
    from sftheory.samplers import log_likelihood, sample_euler_maruyama, sample_ode

    p = GaussianMixture([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], [np.eye(2)] * 2).path(VP())
    q = Gaussian([0.3, -0.2], np.eye(2)).path(VP())
    w = torch.tensor([0.4, 0.6], dtype=torch.float64, requires_grad=True)
    field = weighted([p, q], w)
    xn = np.random.default_rng(1).standard_normal((6, 2))
    with torch.no_grad():
        w.copy_(torch.tensor([0.9, 0.1], dtype=torch.float64))
    want = 0.9 * p.score(xn, 0.4) + 0.1 * q.score(xn, 0.4)
    assert np.allclose(field(xn, 0.4), want, rtol=1e-14, atol=1e-14)
    assert np.allclose(field(torch.from_numpy(xn), 0.4).detach().numpy(), want, rtol=1e-14,
                       atol=1e-14)
    assert np.array_equal(field.weights, [0.9, 0.1])
    with torch.no_grad():
        w.copy_(torch.tensor([2.0, 0.5]))
    with pytest.raises(ValueError, match="weights"):
        field.weights
    with torch.no_grad():
        w.copy_(torch.tensor([0.5, 0.5]))

    ts = np.linspace(1.0, 0.1, 5)
    xt = torch.from_numpy(xn)
    with pytest.raises(ValueError, match="weights that require grad"):
        sample_ode(field, xt, ts, VP())
    with pytest.raises(ValueError, match="weights that require grad"):
        log_likelihood(field, xt, VP(), 1.0, divergence="autograd")
    plain = weighted([p, q], [0.5, 0.5])
    a = sample_euler_maruyama(field, xn, ts, VP(), seed=3, disable=True).x
    b = sample_euler_maruyama(plain, xn, ts, VP(), seed=3, disable=True).x
    assert np.array_equal(a, b)  # the same compiled route and streams
