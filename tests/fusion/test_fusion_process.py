"""fusion._process.barycenter_sampler_terminal_law: the exact terminal law of the backward SDE
(16) of [SF] driven by lambda-weighted Gaussian scores, against independent values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sftheory.fusion import barycenter
from sftheory.fusion._process import barycenter_sampler_terminal_law
from sftheory.models import Gaussian
from sftheory.processes import OU, VE, VP

C1 = np.array([[1.0, 0.3], [0.3, 0.5]])
C2 = np.array([[0.4, -0.1], [-0.1, 2.0]])


def _refs(equal):
    return [Gaussian([1.0, -0.5], C1), Gaussian([-1.0, 2.0], C1 if equal else C2)]


@pytest.mark.parametrize("proc", [OU(), VP(beta_min=1.0, beta_max=5.0), VE()])
def test_equal_covariances_barycenter_start_is_exact(proc):
    # equal covariances: sum_i lam_i grad log p^i_t is the score of N(m sum lam_i mu_i, C), the
    # diffusion of the barycenter, so the reverse SDE from gamma_T ends exactly at mu_lambda
    w = [0.3, 0.7]
    law = barycenter_sampler_terminal_law(_refs(True), w, proc, 2.0, start="barycenter")
    b = barycenter(_refs(True), w)
    np.testing.assert_allclose(law.mean, b.mean, atol=1e-9)
    np.testing.assert_allclose(law.cov, b.cov, atol=1e-9)


def test_single_reference_reverse_sde_recovers_it():
    g = Gaussian([0.7, -1.2], C2)
    law = barycenter_sampler_terminal_law([g], [1.0], OU(), 3.0, start="barycenter")
    np.testing.assert_allclose(law.mean, g.mean, atol=1e-9)
    np.testing.assert_allclose(law.cov, g.cov, atol=1e-9)


def test_stationary_start_error_decays_with_T():
    g = Gaussian([2.0], 0.3)
    errs = [abs(barycenter_sampler_terminal_law([g], [1.0], OU(), T).mean[0] - 2.0)
            for T in (2.0, 4.0)]
    # one reference: the stationary start N(0, 1) differs from p_T by O(m(T)) = O(e^{-T/2}), and
    # that is the only error left at t = 0; doubling T from 2 to 4 must shrink it by > e^{-1/2}
    assert errs[1] < errs[0] * math.exp(-0.5)


def test_one_dim_closed_form_h_zero_single_reference():
    # h = 0 (probability-flow ODE) on OU(a=1/2), one reference N(mu, s2): the flow maps
    # N(m_T mu, m_T^2 s2 + v_T) exactly to N(mu, s2) (transport of the true marginals)
    g = Gaussian([1.3], 0.25)
    law = barycenter_sampler_terminal_law([g], [1.0], OU(), 1.5, start="barycenter", h=0.0)
    assert law.mean[0] == pytest.approx(1.3, abs=1e-9)
    assert law.cov[0, 0] == pytest.approx(0.25, abs=1e-9)


def test_unequal_covariances_gap_is_T_independent():
    w = [0.3, 0.7]
    b = barycenter(_refs(False), w)
    laws = [barycenter_sampler_terminal_law(_refs(False), w, VP(), T, start="barycenter")
            for T in (1.0, 2.0)]
    gap = np.abs(laws[0].mean - b.mean).max()
    assert gap > 0.1
    np.testing.assert_allclose(laws[0].mean, laws[1].mean, atol=1e-7)
    np.testing.assert_allclose(laws[0].cov, laws[1].cov, atol=1e-7)


def test_h_changes_the_law_with_unequal_covariances():
    w = [0.5, 0.5]
    a = barycenter_sampler_terminal_law(_refs(False), w, OU(), 3.0, h=None)
    b = barycenter_sampler_terminal_law(_refs(False), w, OU(), 3.0, h=lambda t: 1.0)
    np.testing.assert_allclose(a.mean, b.mean, atol=1e-9)  # OU: g = 1, so h = 1 is h = g
    c = barycenter_sampler_terminal_law(_refs(False), w, OU(), 3.0, h=0.0)
    assert np.abs(c.cov - a.cov).max() > 1e-3


@pytest.mark.parametrize("kwargs, word", [
    ({"gaussians": []}, "gaussians"),
    ({"gaussians": "ab"}, "gaussians"),
    ({"gaussians": [Gaussian([0.0], 1.0), Gaussian([0.0, 1.0], 1.0)]}, "dimension"),
    ({"weights": [0.5, 0.6]}, "weights"),
    ({"weights": [1.0]}, "weights"),
    ({"weights": [math.nan, 1.0]}, "weights"),
    ({"process": "OU"}, "process"),
    ({"T": 0.0}, "T"),
    ({"T": -1.0}, "T"),
    ({"T": math.nan}, "T"),
    ({"start": "pi"}, "start"),
    ({"h": -1.0}, "h"),
    ({"h": math.inf}, "h"),
    ({"process": VE()}, "stationary"),
])
def test_validation(kwargs, word):
    args = {"gaussians": [Gaussian([0.0], 1.0), Gaussian([1.0], 2.0)], "weights": [0.5, 0.5],
            "process": OU(), "T": 1.0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=word):
        barycenter_sampler_terminal_law(**args)
