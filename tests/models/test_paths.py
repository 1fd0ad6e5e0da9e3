"""law.path(process): scores, log-densities and posterior means at any time, one time per point.

References are independent of the path machinery: scipy's multivariate normal on the marginal
parameters written out from the SDE definition (m, v in mpmath), and finite differences.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import sftheory.testing.strategies as sst
from sftheory import use_kernels
from sftheory.models import EmpiricalDistribution, Gaussian, GaussianMixture, MixturePath
from sftheory.processes import OU, VE, VP
from sftheory.testing import finite_difference_gradient
from sftheory.testing.tolerances import EXACT_FLOAT64, KERNEL_PARITY, SCORE_FD

_COV = [[1.0, 0.4], [0.4, 0.6]]


def _mix():
    return GaussianMixture([0.2, 0.5, 0.3], [[-1.0, 0.0], [1.5, 1.0], [0.0, -2.0]],
                           [_COV, np.diag([0.3, 2.0]), np.eye(2)])


def _ref_logpdf(mix, m, v, x):
    """log p_t(x) for one point with scipy, from the marginal parameters m^2 Sigma + v I."""
    terms = [np.log(w) + multivariate_normal(m * mu, m * m * c + v * np.eye(len(mu))).logpdf(x)
             for w, mu, c in zip(mix.weights, mix.means, mix.covs) if w > 0]
    return logsumexp(terms)


@pytest.mark.parametrize("impl", ["numba", "numpy"])
@pytest.mark.parametrize("process", [OU(), VP(), VE(), VE(sigma=25.0)], ids=repr)
def test_per_point_times_match_scipy_and_single_time_calls(process, impl, exact_mv):
    mix = _mix()
    path = mix.path(process)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 2)) * 2
    ts = np.array([1e-6, 0.01, 0.1, 0.3, 0.7, 1.0, 0.0])
    with use_kernels(impl):
        lp = path.logpdf(x, ts)
        sc = path.score(x, ts)
        pm = path.posterior_mean(x, ts)
    for i, t in enumerate(ts):
        m, v = exact_mv(process, t)
        np.testing.assert_allclose(lp[i], _ref_logpdf(mix, m, v, x[i]), rtol=1e-11)
        single = path.score(x[i:i + 1], float(t))
        np.testing.assert_allclose(sc[i], single[0], rtol=KERNEL_PARITY.rtol, atol=KERNEL_PARITY.atol)
        np.testing.assert_allclose(pm[i], path.posterior_mean(x[i:i + 1], float(t))[0],
                                   rtol=KERNEL_PARITY.rtol, atol=KERNEL_PARITY.atol)
        np.testing.assert_allclose(sc[i], mix.marginal(process, t).score(x[i:i + 1])[0],
                                   rtol=KERNEL_PARITY.rtol, atol=KERNEL_PARITY.atol)


@given(sst.gaussian_mixtures(n_components=(1, 3), dim=st.integers(1, 3)), sst.processes(),
       st.data())
def test_path_score_is_gradient_of_path_logpdf_at_per_point_times(mix, process, data):
    n = 5
    ts = np.array([data.draw(sst.diffusion_times(1e-3, 2.0)) for _ in range(n)])
    x = mix.sample(n, seed=data.draw(st.integers(0, 2**31)))
    path = mix.path(process)
    scale = min(1.0, float(np.sqrt(np.linalg.eigvalsh(mix.covs).min())))
    fd = finite_difference_gradient(lambda z: path.logpdf(z, ts), x, length_scale=scale)
    s = path.score(x, ts)
    np.testing.assert_allclose(s, fd, rtol=SCORE_FD.rtol, atol=SCORE_FD.atol * (1 + np.abs(s).max()))


@given(sst.empirical_distributions(n=(1, 8), dim=st.integers(1, 3), min_separation=0.1),
       sst.processes(), st.data())
def test_empirical_path_posterior_mean_is_softmax_average(emp, process, data):
    n = 4
    ts = np.array([data.draw(sst.diffusion_times(1e-2, 3.0)) for _ in range(n)])
    x = data.draw(sst.points_for(emp.dim, n=n))
    y = emp.points
    got = emp.path(process).posterior_mean(x, ts)
    for i, t in enumerate(ts):
        m, v = process.conditional(float(t))
        logits = -((x[i] - m * y) ** 2).sum(1) / (2 * v)
        r = np.exp(logits - logits.max())
        ref = (r / r.sum()) @ y
        np.testing.assert_allclose(got[i], ref, rtol=EXACT_FLOAT64.rtol,
                                   atol=1e-13 * (1 + np.abs(y).max() * (1 + np.abs(x).max() ** 2 / v)))


def test_time_argument_shapes():
    path = _mix().path(VP())
    x = np.zeros((3, 2))
    for t in (0.3, np.float64(0.3), np.array(0.3)):
        assert path.score(x, t).shape == (3, 2)
    assert path.logpdf(x, np.full(3, 0.3)).shape == (3,)
    with pytest.raises(ValueError, match=r"shape \(3,\).*got shape \(1,\)"):
        path.score(x, np.array([0.3]))
    np.testing.assert_array_equal(path.score(x[:1], np.array([0.3])), path.score(x[:1], 0.3))
    with pytest.raises(ValueError, match=r"got shape \(2,\)"):
        path.score(x, [0.1, 0.2])
    with pytest.raises(ValueError, match=r"got shape \(3, 1\)"):
        path.score(x, np.full((3, 1), 0.3))
    with pytest.raises(ValueError, match=">= 0"):
        path.score(x, np.array([0.1, -0.2, 0.3]))
    with pytest.raises(ValueError, match="NaN"):
        path.score(x, np.array([0.1, np.nan, 0.3]))
    with pytest.raises(ValueError, match="real"):
        path.score(x, True)
    # marginal(t) needs one time; shape (1,) is not a scalar for numpy or torch
    with pytest.raises(ValueError, match="scalar"):
        path.marginal(np.array([0.3]))


def test_torch_times():
    torch = pytest.importorskip("torch")
    path = _mix().path(VP())
    x = torch.zeros((3, 2), dtype=torch.float64)
    with pytest.raises(ValueError, match=r"got shape \(2,\)"):
        path.score(x, torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="scalar"):
        path.marginal(torch.tensor([0.3]))
    with pytest.raises(ValueError, match="scalar"):
        _mix().marginal(VP(), torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="requires grad"):
        path.score(x, torch.tensor(0.3, requires_grad=True))
    with pytest.raises(ValueError, match="requires grad"):
        _mix().marginal(VP(), torch.tensor(0.3, requires_grad=True))
    out = path.score(x, torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64))
    ref = path.score(x.numpy(), np.array([0.1, 0.2, 0.3]))
    np.testing.assert_allclose(out.numpy(), ref, rtol=KERNEL_PARITY.rtol, atol=KERNEL_PARITY.atol)
    np.testing.assert_allclose(path.score(x, torch.tensor(0.3, dtype=torch.float64)).numpy(), path.score(x.numpy(), 0.3),
                               rtol=KERNEL_PARITY.rtol, atol=KERNEL_PARITY.atol)


def test_empirical_path_needs_positive_time_except_posterior_identity():
    emp = EmpiricalDistribution([[0.0, 1.0], [2.0, -1.0]])
    path = emp.path(VE())
    x = np.array([[0.5, 0.5]])
    with pytest.raises(ValueError, match="> 0"):
        path.score(x, 0.0)
    np.testing.assert_array_equal(path.posterior_mean(x, 0.0), x)
    assert path.marginal(0.0) is emp


def test_path_is_a_score_field_and_validates_its_inputs():
    path = Gaussian([0.0, 1.0], 2.0).path(OU())
    assert isinstance(path, MixturePath) and path.dim == 2
    x = np.array([[1.0, 1.0]])
    np.testing.assert_array_equal(path(x, 0.5), path.score(x, 0.5))
    with pytest.raises(ValueError, match="law must be"):
        MixturePath("not a law", OU())
    with pytest.raises(ValueError, match="process must be"):
        Gaussian([0.0], 1.0).path("VP")


def test_marginal_shorthand_is_path_marginal():
    mix = _mix()
    a, b = mix.marginal(VP(), 0.4), mix.path(VP()).marginal(0.4)
    np.testing.assert_array_equal(a.means, b.means)
    np.testing.assert_array_equal(a.covs, b.covs)


def test_layers_import_downwards_only():
    """processes import no models/fields/claims; fields import no models; models no claims."""
    import ast
    from pathlib import Path

    import sftheory

    root = Path(sftheory.__file__).parent
    forbidden = {"processes": ("models", "fields", "claims", "testing"),
                 "models": ("claims", "testing"),
                 "fields.py": ("models", "claims", "testing")}
    for pkg, bad in forbidden.items():
        files = [root / pkg] if pkg.endswith(".py") else (root / pkg).glob("*.py")
        for f in files:
            for node in ast.walk(ast.parse(f.read_text())):
                lvl = 1 if pkg.endswith(".py") else 2  # fields.py sits in the package root
                if isinstance(node, ast.ImportFrom) and node.level >= lvl and node.module:
                    assert node.module.split(".")[0] not in bad, f"{f.name} imports {node.module}"
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    parts = node.module.split(".")
                    assert not (parts[0] == "sftheory" and len(parts) > 1 and parts[1] in bad), f.name
