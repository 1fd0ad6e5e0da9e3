"""sftheory.theory.gaussian_nd: the d-dim Gaussian KL(p0 || q~_T) and L(h) of [OS] (full-matrix
Lyapunov ODEs) against an independent route: the eigenbasis of Sigma0 decouples the problem
into d 1D problems (sigma0^2 = eigenvalue), so KL and L are sums of ``odesde`` values."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftheory.testing.random import rotation, spd_from
from sftheory.testing.strategies import spd_matrices
from sftheory.theory import odesde
from sftheory.theory.gaussian_nd import gaussian_kl_nd, gaussian_L_nd

# both routes integrate with DOP853 at rtol 1e-12, atol 1e-14: 1e-8 relative leaves a wide margin
RTOL = 1e-8
ATOL = 1e-13


def eig_sum(fn, Sigma0, *args):
    lam = np.linalg.eigvalsh(np.asarray(Sigma0, dtype=np.float64))
    return sum(fn(math.sqrt(l), *args) for l in lam)


@pytest.mark.parametrize("case", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("h", [0.0, 1.0, 2.5])
def test_d1_equals_the_1d_functions(case, h):
    for s0 in (0.4, 1.3):
        assert gaussian_L_nd([[s0 ** 2]], 2.0, h, case) == pytest.approx(
            odesde.gaussian_L(s0, 2.0, h, case), rel=RTOL, abs=ATOL)
        assert gaussian_kl_nd([[s0 ** 2]], 2.0, h, 0.1, case) == pytest.approx(
            odesde.gaussian_kl(s0, 2.0, h, 0.1, case), rel=RTOL, abs=ATOL)


def test_callable_h_and_case_d1():
    def h(t):
        return 0.5 + 0.5 * t

    def c(t):
        return math.cos(t)

    assert gaussian_L_nd([[0.5]], 1.5, h, c) == pytest.approx(
        odesde.gaussian_L(math.sqrt(0.5), 1.5, h, c), rel=RTOL)


@settings(max_examples=12)
@given(Sigma0=spd_matrices(st.integers(2, 3), min_eig=0.2, max_eig=3.0),
       case=st.sampled_from([1, 3, 4, 5]), h=st.floats(0.0, 1.5),
       eps=st.floats(-0.2, 0.2).filter(lambda e: abs(e) > 1e-3))
def test_eigenbasis_reduction_random_spd(Sigma0, case, h, eps):
    L = gaussian_L_nd(Sigma0, 1.0, h, case)
    assert L == pytest.approx(eig_sum(odesde.gaussian_L, Sigma0, 1.0, h, case), rel=RTOL, abs=ATOL)
    kl = gaussian_kl_nd(Sigma0, 1.0, h, eps, case)
    assert kl == pytest.approx(eig_sum(odesde.gaussian_kl, Sigma0, 1.0, h, eps, case),
                               rel=RTOL, abs=ATOL)


def test_rotation_invariance_and_kl_over_eps_sq():
    S = spd_from([0.3, 0.7, 1.6], rotation(3, 3))
    D = np.diag([0.3, 0.7, 1.6])
    assert gaussian_L_nd(S, 2.0, 1.0, 3) == pytest.approx(gaussian_L_nd(D, 2.0, 1.0, 3), rel=RTOL)
    L = gaussian_L_nd(S, 2.0, 1.0, 1)
    # KL/eps^2 = L + O(eps): the O(eps) term shrinks linearly
    r = [abs(gaussian_kl_nd(S, 2.0, 1.0, e, 1) / e ** 2 - L) for e in (1e-2, 5e-3)]
    assert r[1] < 0.6 * r[0] and r[0] < 0.05 * L
    assert gaussian_kl_nd(S, 2.0, 1.0, 0.0, 1) == 0.0


def test_additivity_isotropic():
    # Sigma0 = s^2 I_d: d copies of the 1D problem
    for d in (2, 3):
        assert gaussian_L_nd(0.36 * np.eye(d), 2.0, 2.0, 1) == pytest.approx(
            d * odesde.gaussian_L(0.6, 2.0, 2.0, 1), rel=RTOL)


@pytest.mark.parametrize("bad, match", [
    ([[1.0, 2.0], [2.0, 1.0]], "Sigma0 is not positive definite"),
    ([[1.0, 0.5], [0.0, 1.0]], "Sigma0 is not symmetric"),
    ([1.0, 2.0], "Sigma0 must have 2 dimension"),
    ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], "Sigma0 must be square"),
    ([[math.nan]], "Sigma0 contains NaN"),
])
def test_bad_sigma0(bad, match):
    with pytest.raises(ValueError, match=match):
        gaussian_L_nd(bad, 1.0, 1.0, 1)
    with pytest.raises(ValueError, match=match):
        gaussian_kl_nd(bad, 1.0, 1.0, 0.1, 1)


def test_bad_other_arguments():
    S = np.eye(2)
    with pytest.raises(ValueError, match="T"):
        gaussian_L_nd(S, 0.0, 1.0, 1)
    with pytest.raises(ValueError, match="h must be >= 0"):
        gaussian_L_nd(S, 1.0, -1.0, 1)
    with pytest.raises(ValueError, match="case"):
        gaussian_L_nd(S, 1.0, 1.0, 7)
    with pytest.raises(ValueError, match="eps"):
        gaussian_kl_nd(S, 1.0, 1.0, math.nan, 1)
