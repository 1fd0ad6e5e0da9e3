"""os.bound17, os.prop36, os.appF1 ([OS] Props 3.4, 3.6, App. E-F): quick mode on the correct
theory (verdicts measured: all three ``confirmed``), key numbers against independent values,
and planted errors (a constant 0.1 % off, NaN, a bound or identity broken) turning each verdict
to ``refuted``. Planted runs use the checks' measurement functions on small grids."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from sftheory.claims import Context, run_check, select
from sftheory.claims.checks import os_bounds as OB
from sftheory.claims.verdicts import within
from sftheory.theory import bounds, gaussian_nd, odesde
from sftheory.claims.runner import run_claim


def _run(cid):
    return run_claim(cid).to_json()


@pytest.fixture(scope="module")
def records(quick_record):
    return {cid: quick_record(cid) for cid in ("os.bound17", "os.prop36", "os.appF1")}


# ---- the measured verdicts ----------------------------------------------------------------------
def test_bound17_confirmed(records):
    rec = records["os.bound17"]
    assert rec["status"] == "ran", rec["error"]
    assert rec["verdict"] == "confirmed", rec["reason"]
    meas = rec["measured"]
    # the bound holds by > 4 decades everywhere on the quick grid; tightest near s = T
    assert meas["worst_log10_L_over_bound17"] < -4 and meas["worst_at"]["tau_s"] == 0.05
    assert meas["literal_reading_worst_log10_L_over_bound"] < 0
    # (37) and Prop. E.2 hold with the constants of (30); Lemma E.5's printed M^{-2} breaks (37)
    assert meas["lemmaE5_eq37_ratio"] < 1 and meas["propE2_ratio"] < 1
    assert meas["literal_reading_worst_eq37_propE2_ratios"][0] > 10
    assert 5.4 < meas["h_lb_range"][0] <= meas["h_lb_range"][1] < 7.1  # sqrt(30 + 20 sigma^4)
    assert 1 < meas["rho0_over_p0_max"] < 4  # (29)
    for r in rec["rows"]:
        assert r["h"] >= r["h_lb"]
        # independent: the score pulse, L = (1+h^2)^2 G^2 / (4 s0^4), log G = tau - (1+h^2) int 1/sigma^2
        if r["kind"] == "score":
            s0, tau, H = r["sigma0"], r["tau_s"], r["h"] ** 2
            logG = tau - (1 + H) * (tau + math.log(1 + (s0 ** 2 - 1) * math.exp(-tau)) - 2 * math.log(s0))
            assert r["log_L"] == pytest.approx(2 * math.log1p(H) + 2 * logG - math.log(4 * s0 ** 4),
                                               rel=1e-12)


def test_prop36_confirmed(records):
    rec = records["os.prop36"]
    assert rec["status"] == "ran", rec["error"]
    assert rec["verdict"] == "confirmed", rec["reason"]
    lim = rec["measured"]["limits"]
    assert lim["0.8/case1"] == pytest.approx(0.25, abs=1e-9)
    assert lim["0.8/case3"] == pytest.approx(1 / 16, rel=1e-5)
    assert lim["d=2"] == pytest.approx(0.5, abs=1e-9)
    assert rec["measured"]["limit_over_bound18_max"] == pytest.approx(0.25, rel=1e-6)
    lo, hi = rec["measured"]["gap_order_in_h_sq_range"]
    assert 0.8 < lo <= hi < 1.1  # algebraic approach ~ 1/h^2, not exponential
    assert set(rec["measured"]["sympy"].values()) == {"0"}


def test_appF1_confirmed(records):
    rec = records["os.appF1"]
    assert rec["status"] == "ran", rec["error"]
    assert rec["verdict"] == "confirmed", rec["reason"]
    limits = rec["measured"]["limits"]
    # sigma0 = 0.6: cases 1-3 with E = c grad log p, cases 1, 3 with E = c; one 2x2 Sigma0
    assert len(limits) == 6
    for key, (spec, large_h) in limits.items():
        where, case, kind = key.split("/")
        c_T = {"1": 1.0, "2": -1.0, "3": 0.5}[case[-1]]
        if kind == "const":  # first Hermite mode: 1/2 (alpha_1/lambda_1)^2 = c^2 sigma0^2 / 2
            assert spec == pytest.approx(c_T ** 2 * float(where) ** 2 / 2, rel=1e-12)
        else:  # second mode per axis: d c^2 / 4
            assert spec == pytest.approx((2 if where == "nd" else 1) * c_T ** 2 / 4, rel=1e-12)
        assert large_h == pytest.approx(spec, rel=2e-5)
    assert rec["measured"]["limit_over_bound18_max"] == pytest.approx(1.0, rel=1e-12)
    assert rec["measured"]["const_error_limit_over_bound18"] == pytest.approx([1.0, 1.0], rel=1e-12)
    score_rows = [r for r in rec["rows"] if r.get("error") == "score"]
    assert all(r["limit_over_bound18"] == pytest.approx(0.25, rel=1e-9) for r in score_rows)


# ---- planted errors: os.bound17 -----------------------------------------------------------------
def _bound17_small():
    # sigma0 = 0.9, s near T, h = 16: the tightest row of the quick grid (L/bound ~ 1e-4.8)
    return OB.measure_bound17((0.9,), (0.05,), (16.0,), e2_grid=((0.0,), (2.0,)))


def test_bound17_small_grid_confirms():
    assert within(_bound17_small()["excess"]).verdict == "confirmed"


def _scaled(fn, factor):
    return lambda *a, **k: fn(*a, **k) * factor


@pytest.mark.parametrize("plant, key", [
    ("C_h", "C_h_closed_vs_quad"),
    ("C2", "exponent_closed_vs_quad"),
    ("pulse", "pulse_L_closed_vs_quad"),
    ("bound", "L_over_bound17"),
    ("nan", "pulse_L_closed_vs_gaussian_L_fd"),
    ("E5", "lemmaE5_eq37_ratio"),
])
def test_bound17_planted(monkeypatch, plant, key):
    if plant == "E5":  # xi and varsigma of (30) 100 times too small: (37) must fail
        monkeypatch.setattr(bounds, "xi", _scaled(bounds.xi, 0.01))
        monkeypatch.setattr(bounds, "varsigma", _scaled(bounds.varsigma, 0.01))
    elif plant == "C_h":
        monkeypatch.setattr(bounds, "_C_h_closed", _scaled(bounds._C_h_closed, 1.001))
    elif plant == "C2":  # the paper's constant (30) 0.1 % off
        monkeypatch.setattr(bounds, "C2", _scaled(bounds.C2, 1.001))
    elif plant == "pulse":
        orig = bounds.gaussian_pulse_log_L
        monkeypatch.setattr(bounds, "gaussian_pulse_log_L",
                            lambda *a, **k: orig(*a, **k) + math.log(1.001))
    elif plant == "bound":  # a bound 1e6 times too small: only the inequality can catch it
        orig17 = bounds.gaussian_bound17
        monkeypatch.setattr(bounds, "gaussian_bound17", lambda *a, **k: dataclasses.replace(
            orig17(*a, **k), log_bound=orig17(*a, **k).log_bound - 6 * math.log(10)))
    else:
        monkeypatch.setattr(odesde, "gaussian_L", lambda *a, **k: math.nan)
    m = _bound17_small()
    v = within(m["excess"])
    assert v.verdict == "refuted"
    val = v.measured[key]
    assert math.isnan(val) or val > 1


# ---- planted errors: os.prop36 ------------------------------------------------------------------
def _prop36_small():
    return OB.measure_prop36((0.8,), (1,), ())


def test_prop36_small_grid_confirms():
    assert within(_prop36_small()["excess"]).verdict == "confirmed"


@pytest.mark.parametrize("plant, key", [
    ("fisher", "bound18_closed_vs_quad"),
    ("bound18", "limit_over_bound18"),
    ("nan", "limit_over_bound18"),
    ("sympy", "appF2_sympy"),
])
def test_prop36_planted(monkeypatch, plant, key):
    if plant == "fisher":
        monkeypatch.setattr(bounds, "gaussian_fisher_nd", _scaled(bounds.gaussian_fisher_nd, 1.001))
    elif plant == "bound18":  # (18) five times too small: below the limit
        monkeypatch.setattr(bounds, "bound18", _scaled(bounds.bound18, 0.2))
    elif plant == "nan":
        monkeypatch.setattr(odesde, "gaussian_L", lambda *a, **k: math.nan)
    else:
        monkeypatch.setattr(bounds, "appF2_identity", lambda: (1, {}, False))
    v = within(_prop36_small()["excess"])
    assert v.verdict == "refuted"
    val = v.measured[key]
    assert math.isnan(val) or val > 1


def test_prop36_planted_nd_nan(monkeypatch):
    monkeypatch.setattr(gaussian_nd, "gaussian_L_nd", lambda *a, **k: math.nan)
    m = OB.measure_prop36((), (), ((2, 0.25),))
    v = within(m["excess"])
    assert v.verdict == "refuted" and math.isnan(v.measured["nd_limit_over_bound18"])


# ---- planted errors: os.appF1 -------------------------------------------------------------------
def _appF1_small():
    return OB.measure_appF1((0.8,), (3,), (), const_cases=(1,))


def test_appF1_small_grid_confirms():
    assert within(_appF1_small()["excess"]).verdict == "confirmed"


@pytest.mark.parametrize("plant, key", [
    ("spectral", "spectral_vs_large_h_L"),
    ("alpha", "alpha_closed_vs_projection"),
    ("nan", "spectral_vs_large_h_L"),
    ("bound18", "limit_over_bound18"),
])
def test_appF1_planted(monkeypatch, plant, key):
    if plant == "spectral":
        monkeypatch.setattr(bounds, "spectral_limit", _scaled(bounds.spectral_limit, 1.001))
    elif plant == "alpha":
        orig = bounds.hermite_spectrum_gaussian

        def wrong(*a, **k):
            kk, al, la = orig(*a, **k)
            return kk, al * 1.001, la

        monkeypatch.setattr(bounds, "hermite_spectrum_gaussian", wrong)
    elif plant == "bound18":  # (18) 0.1 % too small: the constant error attains it, so it fails
        monkeypatch.setattr(bounds, "bound18", _scaled(bounds.bound18, 0.999))
    else:
        monkeypatch.setattr(odesde, "gaussian_L", lambda *a, **k: math.nan)
    v = within(_appF1_small()["excess"])
    assert v.verdict == "refuted"
    val = v.measured[key]
    assert math.isnan(val) or val > 1


def test_appF1_planted_nd(monkeypatch):
    orig = bounds.gaussian_spectral_limit_nd
    monkeypatch.setattr(bounds, "gaussian_spectral_limit_nd", _scaled(orig, 1.001))
    m = OB.measure_appF1((), (), (([[0.8, 0.1], [0.1, 0.9]], 1),))
    v = within(m["excess"])
    assert v.verdict == "refuted" and v.measured["nd_spectral_vs_large_h_L"] > 1


def test_extrapolation_is_exact_for_a_cubic_in_inverse_h_sq():
    H = np.array(OB.H_SQ)
    lim, err = OB.extrapolate_limit(0.3 + 0.2 / H - 0.7 / H ** 2 + 0.1 / H ** 3)
    assert lim == pytest.approx(0.3, rel=1e-12) and err < 1e-4
    assert math.isnan(OB.extrapolate_limit([0.1, math.nan, 0.2, 0.3])[0])


def test_bound17_claim_end_to_end_planted_constant(monkeypatch):
    """The registered check itself (quick mode) with (30)'s C2 0.1 % off: refuted."""
    monkeypatch.setattr(bounds, "C2", _scaled(bounds.C2, 1.001))
    rec = _run("os.bound17")
    assert rec["status"] == "ran", rec["error"]
    assert rec["verdict"] == "refuted" and "exponent_closed_vs_quad" in rec["reason"]
