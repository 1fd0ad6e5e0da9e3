"""The vectorizable exp of the kernels (sftheory/_kernels/fastexp.py) against mpmath, and the
particle-minor block form of the isotropic mixture score (``_iso_block_score``, the samplers'
``loop_iso_block``) against the point-wise form, bit for bit."""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from sftheory._kernels import sampler as S
from sftheory._kernels.fastexp import EXP_MIN_ARG, exp_weights
from sftheory._kernels.mixture import _iso_block_score, _iso_coefs, _iso_point


def _ulps_vs_mpmath(y: np.ndarray, got: np.ndarray) -> np.ndarray:
    """|got - exp(y)| in units of the spacing of float64 at exp(y), exp(y) by mpmath (40 digits)."""
    mpmath.mp.dps = 40
    out = np.empty(y.size)
    for i, (yi, gi) in enumerate(zip(y, got)):
        exact = mpmath.exp(mpmath.mpf(float(yi)))
        out[i] = float(abs(mpmath.mpf(float(gi)) - exact)) / np.spacing(float(exact))
    return out


def test_exp_weight_is_within_1_3_ulp_of_the_exact_value():
    rng = np.random.default_rng(0)
    y = np.concatenate([-rng.random(1500) * 708.0, -rng.random(1500) * 2.0,
                        -rng.random(500) * 1e-8, rng.random(200) * 709.0,
                        # the rounding boundaries of the reduction: y near (n + 1/2) ln 2
                        -(np.arange(1, 400) + 0.5) * math.log(2.0) + rng.normal(0, 1e-12, 399)])
    got = np.empty_like(y)
    exp_weights(y, got)
    ulps = _ulps_vs_mpmath(y, got)
    # the docstring promises 1.3 ulp (Horner in float64 of a 14-term Taylor series); a planted
    # error of one part in 1e15 in a coefficient would already show as > 4 ulp near y = -0.35
    assert ulps.max() <= 1.3, ulps.max()


def test_exp_weight_edges():
    y = np.array([0.0, -0.0, -1e-300, -np.inf, np.nan, EXP_MIN_ARG, EXP_MIN_ARG - 1e-9, -745.2,
                  -1e300])
    got = np.empty_like(y)
    exp_weights(y, got)
    assert got[0] == 1.0 and got[1] == 1.0 and got[2] == 1.0  # the largest weight is exactly 1
    assert got[3] == 0.0
    assert np.isnan(got[4])  # NaN propagates, never a silent number
    assert got[5] == pytest.approx(math.exp(EXP_MIN_ARG), rel=3e-16)
    assert got[6] == 0.0 and got[7] == 0.0 and got[8] == 0.0  # below e^-708: zero weight


@njit(cache=False)
def _both_forms(x, m, v, means, lam, logw, equal):
    """(point-wise scores, block scores) of the iso score at the rows of x (n <= 64)."""
    n, d = x.shape
    k_count = means.shape[0]
    inv = np.empty(k_count)
    lnorm = np.empty(k_count)
    _iso_coefs(m, v, d, lam, logw, equal, inv, lnorm)
    point = np.empty((n, d))
    lp1 = np.empty(k_count)
    acc = np.empty(d)
    for i in range(n):
        row = x[i].copy()
        _iso_point(row, m, means, lam, inv, lnorm, False, lp1, acc)
        point[i] = acc
    xt = np.ascontiguousarray(x.T)
    lp = np.empty((k_count, n))
    mxv = np.empty(n)
    tot = np.empty(n)
    accb = np.empty((d, n))
    _iso_block_score(xt, n, m, means, lam, inv, lnorm, lp, mxv, tot, accb, np.empty(d),
                     np.empty(d))
    return point, accb.T.copy()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 32), st.integers(1, 5), st.integers(1, 64), st.integers(0, 2**32 - 1),
       st.floats(1e-6, 1.0), st.floats(1e-6, 4.0), st.booleans())
def test_block_score_equals_point_score_bit_for_bit(k, d, n, seed, m, v, equal):
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 3, (k, d))
    lam = np.full(k, rng.uniform(1e-4, 2.0)) if equal else rng.uniform(1e-4, 2.0, k)
    logw = np.log(rng.dirichlet(np.ones(k)))
    x = rng.normal(0, 4, (n, d))
    x[rng.random(n) < 0.1] *= 1e155  # every term overflows: the fallback path
    point, block = _both_forms(x, m, v, means, lam, logw, equal)
    assert np.all(np.isfinite(block))
    np.testing.assert_array_equal(block, point)


def _loops(loop, x0, noise, seed=7):
    k_count, n_steps = 4, 30
    rng = np.random.default_rng(1)
    means = rng.normal(0, 1, (k_count, x0.shape[1]))
    lam = np.full(k_count, 0.05**2)
    logw = np.log(np.full(k_count, 0.25))
    ts = np.linspace(2.0, 0.01, n_steps + 1)
    dt = ts[:-1] - ts[1:]
    m_s, v_s = np.exp(-ts[:-1] / 2), 1.0 - np.exp(-ts[:-1])
    inv, lnorm = S.step_constants_iso(m_s, v_s, x0.shape[1], lam, logw, True)
    states = np.empty((x0.shape[0], 4), np.uint64)
    S.seed_states(np.uint64(seed), 0, x0.shape[0], states)
    x = x0.copy()
    loop(x, 1 + 0.5 * dt, dt.copy(), np.sqrt(dt), m_s, inv, lnorm, means, lam, noise, states, 2)
    return x


@pytest.mark.parametrize("given_noise", [False, True])
def test_block_step_loop_equals_the_point_loop_bit_for_bit(given_noise):
    """Same score arithmetic and the same random stream: 130 particles (two full blocks and a
    partial one), 3 coordinates, 30 steps, with the loops' own stream or given normals."""
    x0 = np.random.default_rng(2).normal(size=(130, 3))
    noise = (np.random.default_rng(3).standard_normal((30, 130, 3)) if given_noise
             else np.zeros((0, 130, 3)))
    a = _loops(S.loop_iso, x0, noise)
    b = _loops(S.loop_iso_block, x0, noise)
    assert np.all(np.isfinite(a))
    np.testing.assert_array_equal(b, a)
    # and the comparison can fail: another seed gives other particles
    assert not np.array_equal(_loops(S.loop_iso_block, x0, noise, seed=8), a) or given_noise


def test_numba_cache_is_dropped_when_any_kernel_source_changes(tmp_path):
    from sftheory._kernels import _drop_stale_cache

    (tmp_path / "mixture.py").write_text("A = 1\n")
    (tmp_path / "sampler.py").write_text("B = 1\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    (cache / "sampler.loop-1.py311.nbi").write_text("x")
    _drop_stale_cache(tmp_path)  # no stamp yet: dropped
    assert not (cache / "sampler.loop-1.py311.nbi").exists()
    (cache / "sampler.loop-1.py311.nbi").write_text("x")
    _drop_stale_cache(tmp_path)  # sources unchanged: kept
    assert (cache / "sampler.loop-1.py311.nbi").exists()
    (tmp_path / "mixture.py").write_text("A = 2\n")  # an inlined dependency changed
    _drop_stale_cache(tmp_path)
    assert not (cache / "sampler.loop-1.py311.nbi").exists()
