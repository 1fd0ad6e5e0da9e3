"""The fused numba quadrature kernel of vanilla fusion (sftheory/_kernels/quadrature.py) against
the numpy reference FusionObjective._parts_numpy and, independently, against the Gaussian closed
forms; a planted error must be caught; Frank-Wolfe gives the same weights either way.

Metric: log Z, the means E_{p_lambda}[h_i] and log-densities compare by |a - b| / max(|b|, 1)
(on log Z an absolute error is the relative error of Z); a covariance entry by
|a - b| / max(sqrt(C_ii C_ll), 1) (off-diagonal entries can be ~0, so relative to their own size
would divide by ~0; sqrt(C_ii C_ll) bounds |C_il|; the floor 1 as for the means, since with the
mass on one node both routes compute C ~ 0 from rounding noise of the mean). Tolerance 1e-12:
both routes sum the same terms in different orders, rounding is ~N^(1/2) eps ~ 1e-13 for N ~ 1e6
nodes."""
from __future__ import annotations

import types

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sftheory import use_kernels
from sftheory._kernels import quadrature as kq
from sftheory.fusion import FusionObjective, vanilla_fusion
from sftheory.fusion._vanilla import FusionObjective as _FO
from sftheory.models import Gaussian, GaussianMixture

TOL = 1e-12


def _reference(H, lam, logw, order):
    """The numpy reference on raw nodes (the method reads only _H and _logw)."""
    return _FO._parts_numpy(types.SimpleNamespace(_H=H, _logw=logw), lam, order)


def _diffs(kern, ref):
    """(log Z diff, mean diff, cov diff) in the module docstring's metrics."""
    dz = abs(kern[0] - ref[0]) / max(abs(ref[0]), 1.0)
    dm = float(np.max(np.abs(kern[1] - ref[1]) / np.maximum(np.abs(ref[1]), 1.0)))
    scale = np.maximum(np.sqrt(np.outer(np.diag(ref[2]), np.diag(ref[2]))), 1.0)
    dc = float(np.max(np.abs(kern[2] - ref[2]) / scale))
    return dz, dm, dc


def _assert_parity(kern, ref):
    d = _diffs(kern, ref)
    assert all(np.isfinite(d)) and max(d) <= TOL, d


@st.composite
def node_sets(draw):
    """Random nodes: N spanning 1, < BLOCK, several blocks; k in 1..10; log-densities with
    spreads up to 1e3 (a_j far outside exp's range, so overflow-safety is exercised)."""
    n = draw(st.sampled_from([1, 7, kq.BLOCK - 1, kq.BLOCK, kq.BLOCK + 1, 3 * kq.BLOCK + 17,
                              5000]))
    k = draw(st.integers(1, 10))
    seed = draw(st.integers(0, 2**32 - 1))
    spread = draw(st.sampled_from([1e-3, 1.0, 30.0, 1e3]))
    offset = draw(st.sampled_from([-800.0, -5.0, 0.0, 750.0]))
    rng = np.random.default_rng(seed)
    H = np.ascontiguousarray(offset + spread * rng.standard_normal((n, k)) - rng.exponential(
        spread, size=(n, 1)))
    logw = np.log(rng.uniform(0.1, 1.0, n)) - np.log(n)
    alpha = draw(st.sampled_from([0.05, 1.0, 20.0]))
    lam = rng.dirichlet(np.full(k, alpha))
    if draw(st.booleans()) and k > 1:  # a face of the simplex (never the largest entry)
        i = int(rng.integers(k))
        if i != int(np.argmax(lam)):
            lam[i] = 0.0
            lam /= lam.sum()
    return H, lam, logw


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(node_sets())
def test_kernel_matches_numpy_reference(nodes):
    H, lam, logw = nodes
    ref = _reference(H, lam, logw, 2)
    if H.shape[0] == 1:  # one node: the covariance is exactly 0 in both
        z, m, c = kq.lse_moments(H, lam, logw, 2)
        assert z == pytest.approx(ref[0], rel=TOL, abs=TOL)
        np.testing.assert_allclose(m, ref[1], rtol=TOL)
        assert np.all(c == 0.0)
        return
    _assert_parity(kq.lse_moments(H, lam, logw, 2), ref)
    full = kq.lse_moments(H, lam, logw, 2)
    for order in (0, 1):  # lower orders: the same numbers, the rest left out
        z, m, c = kq.lse_moments(H, lam, logw, order)
        assert z == full[0]
        if order == 1:
            np.testing.assert_array_equal(m, full[1])


def test_kernel_is_independent_of_thread_count():
    import numba

    rng = np.random.default_rng(3)
    H = rng.normal(size=(20 * kq.BLOCK + 5, 6)) * 4
    lam, logw = rng.dirichlet(np.ones(6)), np.full(H.shape[0], -3.0)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = kq.lse_moments(H, lam, logw, 2)
        numba.set_num_threads(old)
        many = kq.lse_moments(H, lam, logw, 2)
    finally:
        numba.set_num_threads(old)
    assert one[0] == many[0]
    np.testing.assert_array_equal(one[1], many[1])
    np.testing.assert_array_equal(one[2], many[2])


def test_minus_infinite_blocks_and_nan():
    rng = np.random.default_rng(1)
    n = 4 * kq.BLOCK
    H = rng.normal(size=(n, 3))
    lam = np.array([0.2, 0.3, 0.5])
    logw = np.zeros(n)
    logw[:2 * kq.BLOCK + 3] = -np.inf  # whole blocks and part of one contribute nothing
    _assert_parity(kq.lse_moments(H, lam, logw, 2), _reference(H, lam, logw, 2))
    assert kq.lse_moments(H, lam, np.full(n, -np.inf), 0)[0] == -np.inf
    Hn = H.copy()
    Hn[-1, 1] = np.nan  # NaN anywhere: every output NaN, as the reference's log Z
    z, m, c = kq.lse_moments(Hn, lam, logw, 2)
    assert np.isnan(z) and np.all(np.isnan(m)) and np.all(np.isnan(c))
    assert np.isnan(_reference(Hn, lam, logw, 0)[0])


def _mixture(rng, n_comp, d, spread, sd):
    a = rng.normal(size=(n_comp, d, d)) * 0.3 * sd
    covs = np.einsum("kab,kcb->kac", a, a) + sd ** 2 * np.eye(d)
    return GaussianMixture(rng.dirichlet(np.full(n_comp, 3.0)),
                           rng.uniform(-spread, spread, (n_comp, d)), covs)


@pytest.mark.parametrize("method", ["quadrature", "mc"])
def test_fusion_objective_numba_equals_numpy(method):
    rng = np.random.default_rng(7)
    refs = [_mixture(rng, 4, 2, 2.0, 1.0) for _ in range(3)]
    prob = FusionObjective(refs, _mixture(rng, 3, 2, 2.0, 1.0), method=method, n_mc=20000,
                           seed=1)
    for lam in (np.full(3, 1 / 3), np.array([0.7, 0.0, 0.3]), np.array([0.0, 1.0, 0.0])):
        kern = (prob.log_normalizer(lam), prob.grad(lam), prob.hessian(lam))
        with use_kernels("numpy"):
            ref = (prob.log_normalizer(lam), prob.grad(lam), prob.hessian(lam))
        _assert_parity(kern, ref)  # grad = -E_nu h + E_p h: the same metric as on the mean
        assert prob.value(lam) == pytest.approx(-prob.target_moments @ lam + ref[0], rel=TOL)


def test_kernel_against_gaussian_closed_form_2d():
    """Independent route: 2-D Gaussian references, the grid kernel vs the closed forms of
    log Z (gaussian_log_normalizer), E h_i and Cov(h_i, h_j) (gaussian_log_ref_moments).
    Tolerance 1e-9: the grid is the only error (spectral, ~1e-13 by _grid's spacing rule)."""
    refs = [Gaussian([0.0, 0.5], [[1.0, 0.3], [0.3, 0.8]]), Gaussian([1.5, -0.5], 0.6),
            Gaussian([-1.0, 1.0], [[2.0, -0.4], [-0.4, 1.0]])]
    tgt = Gaussian([0.2, 0.1], 0.9)
    exact = FusionObjective(refs, tgt)
    grid = FusionObjective(refs, tgt, method="quadrature")
    assert exact.method == "gaussian"
    for lam in ([0.2, 0.5, 0.3], [0.0, 0.4, 0.6], [1.0, 0.0, 0.0]):
        assert grid.log_normalizer(lam) == pytest.approx(exact.log_normalizer(lam), abs=1e-9)
        np.testing.assert_allclose(grid.grad(lam), exact.grad(lam), atol=1e-9)
        np.testing.assert_allclose(grid.hessian(lam), exact.hessian(lam), atol=1e-9)


@pytest.mark.parametrize("plant", ["scale", "nan"])
def test_planted_kernel_error_is_caught(monkeypatch, plant):
    """A kernel 0.1 % off in its mean (or NaN) must fail the parity metric, and with NaN the
    Frank-Wolfe driver must refuse the gradient."""
    rng = np.random.default_rng(5)
    H = rng.normal(size=(3000, 4)) * 3
    lam, logw = rng.dirichlet(np.ones(4)), np.full(3000, -8.0)
    orig = kq.lse_moments

    def planted(H, lam, logw, order):
        z, m, c = orig(H, lam, logw, order)
        return (z, m * 1.001, c) if plant == "scale" else (z, m * np.nan, c)

    monkeypatch.setattr(kq, "lse_moments", planted)
    d = _diffs(kq.lse_moments(H, lam, logw, 2), _reference(H, lam, logw, 2))
    assert not (all(np.isfinite(d)) and max(d) <= TOL)
    with pytest.raises(AssertionError):
        _assert_parity(kq.lse_moments(H, lam, logw, 2), _reference(H, lam, logw, 2))
    refs = [Gaussian([0.0], 1.0), GaussianMixture([0.5, 0.5], [[-1.0], [1.0]], [0.5, 0.5])]
    prob = FusionObjective(refs, Gaussian([0.3], 1.2), method="quadrature")
    with use_kernels("numpy"):
        g_ref = prob.grad([0.5, 0.5])
    g = prob.grad([0.5, 0.5])  # routes through the planted kernel
    if plant == "scale":
        assert np.max(np.abs(g - g_ref)) > 1e-4
    else:
        assert np.all(np.isnan(g))
        with pytest.raises(ValueError, match="non-finite"):
            vanilla_fusion(refs, Gaussian([0.3], 1.2), method="quadrature")


@pytest.mark.parametrize("dim,method", [(1, "quadrature"), (2, "mc")])
def test_frank_wolfe_weights_unchanged(dim, method):
    """vanilla_fusion with the kernel and with the numpy reference: same weights to 1e-10."""
    rng = np.random.default_rng(11)
    refs = [_mixture(rng, 4, dim, 3.0, 0.8) for _ in range(4)]
    tgt = _mixture(rng, 5, dim, 3.0, 0.8)
    kw = dict(method=method, n_mc=20000, seed=2, gap_tol=1e-10)
    a = vanilla_fusion(refs, tgt, **kw)
    with use_kernels("numpy"):
        b = vanilla_fusion(refs, tgt, **kw)
    assert a.trace.converged and b.trace.converged
    assert np.max(np.abs(a.weights - b.weights)) <= 1e-10, (a.weights, b.weights)
    assert a.objective == pytest.approx(b.objective, rel=1e-12)
