"""log_likelihood against exact densities.

References are independent of the code under test: for an exact path (Gaussian or Gaussian
mixture), the probability-flow ODE started at t_min = 0 and the prior = the exact p_T (the
closed-form ``law.marginal(process, T)``) must return ``law.logpdf(x0)`` (closed form).

Tolerance TOL = 1e-6: the ODE is solved at rtol = 1e-8, atol = 1e-10 on O(1) quantities
(log-density changes of a few nats), and the central finite-difference divergence errs by
O(delta^2 |s'''|) with delta ~ 1e-4 (~1e-8 for these laws' scores, whose variances are >= 0.2),
so the expected error is ~1e-8; measured errors are 1e-10 (Gaussians) to 2e-8 (mixtures).
A score 0.1 % off moves logp by >= 1e-4, i.e. 100 x TOL.
"""
from __future__ import annotations

import numpy as np
import pytest

from sftheory.fields import as_field
from sftheory.models import Gaussian, GaussianMixture
from sftheory.processes import OU, VE, VP
from sftheory.samplers.likelihood import LikelihoodResult, log_likelihood

TOL = 1e-6
T = 1.0

LAWS = {
    "gauss1": Gaussian([0.7], [[0.3]]),
    "gauss2": Gaussian([0.5, -0.2], [[0.4, 0.15], [0.15, 0.2]]),
    "mix1": GaussianMixture([0.3, 0.7], [[-1.0], [1.0]], [0.2, 0.3]),
    "mix2": GaussianMixture([0.4, 0.6], [[-1.0, 0.5], [1.0, -0.5]],
                           [[[0.3, 0.1], [0.1, 0.2]], [[0.2, -0.08], [-0.08, 0.25]]]),
}
PROCESSES = {"OU": OU(), "VP": VP()}


def _points(law, n=5):
    return law.sample(n, seed=1)


@pytest.mark.parametrize("proc_name", sorted(PROCESSES))
@pytest.mark.parametrize("law_name", sorted(LAWS))
def test_exact_path_recovers_logpdf(law_name, proc_name):
    law, process = LAWS[law_name], PROCESSES[proc_name]
    x0 = _points(law)
    res = log_likelihood(law.path(process), x0, process, T, prior=law.marginal(process, T))
    assert isinstance(res, LikelihoodResult)
    assert res.logp.shape == (5,) and res.x_T.shape == (5, law.dim)
    assert np.all(res.stderr == 0.0) and res.nfe > 0
    np.testing.assert_allclose(res.logp, law.logpdf(x0), rtol=0, atol=TOL)


def test_ve_with_explicit_prior():
    law, process = LAWS["mix2"], VE()
    x0 = _points(law)
    res = log_likelihood(law.path(process), x0, process, T, prior=law.marginal(process, T))
    np.testing.assert_allclose(res.logp, law.logpdf(x0), rtol=0, atol=TOL)


def test_nonzero_t_min_recovers_marginal_logpdf():
    law, process = LAWS["mix1"], VP()
    path = law.path(process)
    x = _points(law)
    res = log_likelihood(path, x, process, T, prior=law.marginal(process, T), t_min=0.3)
    np.testing.assert_allclose(res.logp, path.logpdf(x, 0.3), rtol=0, atol=TOL)


@pytest.mark.parametrize("law_name", ["gauss2", "mix2"])
def test_planted_score_error_is_detected(law_name):
    law, process = LAWS[law_name], VP()
    path = law.path(process)
    x0 = _points(law)
    wrong = as_field(lambda x, t: 1.001 * path.score(x, t), dim=law.dim)
    res = log_likelihood(wrong, x0, process, T, prior=law.marginal(process, T))
    assert np.all(np.abs(res.logp - law.logpdf(x0)) > 100 * TOL)


@pytest.mark.parametrize("law_name", ["gauss1", "mix2"])
def test_stationary_prior_large_T(law_name):
    # VP at T = 8: theta(T) = 0.8 + 19.9 * 32, m(T) = exp(-theta / 2) ~ 1e-139, so p_T is N(0, I)
    # to machine precision and the default (stationary) prior costs nothing.
    law, process = LAWS[law_name], VP()
    x0 = _points(law)
    res = log_likelihood(law.path(process), x0, process, 8.0)
    assert np.all(np.isfinite(res.logp))
    np.testing.assert_allclose(res.logp, law.logpdf(x0), rtol=0, atol=TOL)


@pytest.mark.parametrize("law_name", ["gauss2", "mix2"])
def test_hutchinson_unbiased(law_name):
    law, process = LAWS[law_name], OU()
    path, prior = law.path(process), law.marginal(process, T)
    x0 = _points(law, 4)
    exact = log_likelihood(path, x0, process, T, prior=prior)
    hutch = log_likelihood(path, x0, process, T, prior=prior, divergence="hutchinson",
                           n_probes=64, seed=3)
    assert hutch.stderr.shape == (4,)
    # the laws have correlated coordinates, so the estimator has real spread (the test has teeth)
    assert np.all(hutch.stderr > 1e-3)
    assert np.all(np.abs(hutch.logp - exact.logp) <= 5 * hutch.stderr + TOL)
    # the flow itself does not depend on the probes
    np.testing.assert_allclose(hutch.x_T, exact.x_T, rtol=0, atol=1e-8)
    again = log_likelihood(path, x0, process, T, prior=prior, divergence="hutchinson",
                           n_probes=64, seed=3)
    np.testing.assert_array_equal(again.logp, hutch.logp)


def test_hutchinson_is_exact_in_1d():
    # a Rademacher probe in d = 1 is +-1, so v s'(x) v = s'(x): no spread, the exact answer
    law, process = LAWS["mix1"], VP()
    x0 = _points(law)
    res = log_likelihood(law.path(process), x0, process, T, prior=law.marginal(process, T),
                         divergence="hutchinson", n_probes=2, seed=0)
    np.testing.assert_allclose(res.logp, law.logpdf(x0), rtol=0, atol=TOL)
    assert np.all(res.stderr < 1e-10)


@pytest.mark.parametrize("kwargs, name", [
    ({"T": 0.0}, "T"),
    ({"T": 1.0, "t_min": 1.0}, "T"),
    ({"T": 1.0, "t_min": -0.1}, "t_min"),
    ({"T": float("nan")}, "T"),
    ({"divergence": "trace"}, "divergence"),
    ({"divergence": "hutchinson", "n_probes": 1}, "n_probes"),
    ({"divergence": "hutchinson", "n_probes": 2.5}, "n_probes"),
    ({"n_probes": 4}, "n_probes"),
    ({"rtol": 0.0}, "rtol"),
    ({"atol": -1.0}, "atol"),
    ({"prior": object()}, "prior"),
])
def test_bad_arguments(kwargs, name):
    law, process = LAWS["gauss2"], VP()
    args = {"T": 1.0, **kwargs}
    with pytest.raises(ValueError, match=name):
        log_likelihood(law.path(process), _points(law), process, **args)


def test_bad_shapes_and_process():
    law, process = LAWS["gauss2"], VP()
    with pytest.raises(ValueError, match="x"):
        log_likelihood(law.path(process), np.zeros((3, 3)), process, 1.0)
    with pytest.raises(ValueError, match="x"):
        log_likelihood(law.path(process), np.zeros(3), process, 1.0)
    with pytest.raises(ValueError, match="process"):
        log_likelihood(law.path(process), np.zeros((3, 2)), "VP", 1.0)
    with pytest.raises(ValueError, match="prior"):
        log_likelihood(law.path(VE()), np.zeros((3, 2)), VE(), 1.0)


# ---- torch inputs ------------------------------------------------------------------------------
def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("divergence", ["exact", "autograd"])
@pytest.mark.parametrize("law_name", ["gauss2", "mix2"])
def test_torch_points_recover_logpdf(law_name, divergence):
    """torch x0: the field runs on tensors, the result comes back as float64 tensors on x0's
    device and equals the closed-form log-density (the same TOL; the autograd trace has no
    finite-difference error at all)."""
    torch = _torch()
    law, process = LAWS[law_name], VP()
    x0 = _points(law)
    res = log_likelihood(law.path(process), torch.from_numpy(x0), process, T,
                         prior=law.marginal(process, T), divergence=divergence)
    assert isinstance(res.logp, torch.Tensor) and res.logp.dtype == torch.float64
    assert res.x_T.shape == (5, law.dim) and bool(torch.all(res.stderr == 0))
    np.testing.assert_allclose(res.logp.numpy(), law.logpdf(x0), rtol=0, atol=TOL)


def test_autograd_hutchinson_is_unbiased_and_exact_in_1d():
    torch = _torch()
    law, process = LAWS["mix2"], OU()
    path, prior = law.path(process), law.marginal(process, T)
    x0 = _points(law, 4)
    res = log_likelihood(path, torch.from_numpy(x0), process, T, prior=prior,
                         divergence="autograd", n_probes=24, seed=3)
    exact = law.logpdf(x0)
    se = res.stderr.numpy()
    assert np.all(se > 1e-3)  # correlated coordinates: real spread, the comparison has teeth
    assert np.all(np.abs(res.logp.numpy() - exact) <= 5 * se + TOL)
    law1 = LAWS["mix1"]
    x1 = _points(law1)
    one = log_likelihood(law1.path(process), torch.from_numpy(x1), process, T,
                         prior=law1.marginal(process, T), divergence="autograd", n_probes=2)
    np.testing.assert_allclose(one.logp.numpy(), law1.logpdf(x1), rtol=0, atol=TOL)


class _GaussianScoreNet:
    """A torch module-like score s(x, t) = -(x - m mu) / (m^2 s2 + v) of N(mu, s2 I) under OU,
    written with torch ops (differentiable), (m, v) of the OU process from its closed form."""

    def __init__(self, mu, s2, a=0.5, sigma=1.0):
        self.mu, self.s2, self.a, self.sig2 = mu, s2, a, sigma ** 2
        self.dim = len(mu)

    def __call__(self, x, t):
        torch = _torch()
        t = float(t)
        m = np.exp(-self.a * t)
        v = self.sig2 * (1 - np.exp(-2 * self.a * t)) / (2 * self.a)
        mu = torch.as_tensor(self.mu, dtype=x.dtype, device=x.device)
        return -(x - m * mu) / (m * m * self.s2 + v)


def test_a_torch_network_field_with_autograd_divergence():
    """A plain torch callable (not an exact path) of an isotropic Gaussian: log_likelihood with
    the autograd trace gives the Gaussian's closed-form log-density; the same net 0.1 % off is
    detected (> 100 TOL)."""
    torch = _torch()
    mu, s2 = np.array([0.4, -0.3, 0.2]), 0.5
    law = Gaussian(mu, s2 * np.eye(3))
    process = OU()
    net = _GaussianScoreNet(mu, s2)
    x0 = law.sample(6, seed=2)
    res = log_likelihood(as_field(net, 3), torch.from_numpy(x0), process, T,
                         prior=law.marginal(process, T), divergence="autograd")
    np.testing.assert_allclose(res.logp.numpy(), law.logpdf(x0), rtol=0, atol=TOL)
    off = as_field(lambda x, t: 1.001 * net(x, t), 3)
    bad = log_likelihood(off, torch.from_numpy(x0), process, T,
                         prior=law.marginal(process, T), divergence="autograd")
    assert np.all(np.abs(bad.logp.numpy() - law.logpdf(x0)) > 100 * TOL)
    f32 = log_likelihood(as_field(net, 3), torch.from_numpy(x0).float(), process, T,
                         prior=law.marginal(process, T), divergence="autograd")
    # float32: solve_ivp at its float32 defaults rtol 1e-5 / atol 1e-7 on a log-density change
    # of a few nats (error ~ 1e-5 x a few), plus ~1e-7 relative noise per evaluation: 1e-4
    np.testing.assert_allclose(f32.logp.numpy(), law.logpdf(x0), rtol=0, atol=1e-4)
    assert f32.nfe < 500  # the float32 defaults converge (at rtol 1e-8 it took ~4000 calls)
    with pytest.raises(ValueError, match="float32"):
        log_likelihood(as_field(net, 3), torch.from_numpy(x0).float(), process, T,
                       prior=law.marginal(process, T), divergence="exact")


def test_autograd_divergence_misuse_raises():
    torch = _torch()
    law, process = LAWS["gauss2"], VP()
    x0 = _points(law)
    with pytest.raises(ValueError, match="torch tensor"):
        log_likelihood(law.path(process), x0, process, T, divergence="autograd")
    detached = as_field(lambda x, t: law.path(process).score(x, t).detach(), 2)
    with pytest.raises(ValueError, match="differentiable"):
        log_likelihood(detached, torch.from_numpy(x0), process, T, divergence="autograd")
    with pytest.raises(ValueError, match="n_probes"):
        log_likelihood(law.path(process), torch.from_numpy(x0), process, T,
                       divergence="autograd", n_probes=1)
