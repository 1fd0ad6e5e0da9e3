"""sm.prop3, sm.eq17, sm.eq13, sm.lemma4, sm.cor5, sm.prop6 ([SM] Sec. 3.2-3.4): quick-mode
verdicts on the correct theory, key numbers, and planted errors (0.1 % off or NaN) in the
toolkit's formulas turning each verdict to refuted."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from sftheory.claims import Context, run_check, select
from sftheory.claims.checks import sm_flows
from sftheory.theory import smoothing_flow as sf
from sftheory.claims.runner import run_claim


def _run(cid):
    return run_claim(cid).to_json()


def test_prop3_corrected_only_at_the_endpoint():
    rec = _run("sm.prop3")
    assert rec["status"] == "ran", rec["error"]
    assert rec["verdict"] == "corrected", rec["reason"]
    fixed = rec["measured"]["fixed_version"]
    assert all(v <= 1 for v in fixed.values())
    assert fixed["flow_map_vs_ode"] < 1e-3 and fixed["regions_kept"] < 1e-3
    assert rec["measured"]["paper_version"]["endpoint_t_eq_1_over_kappa"] == "nan"
    assert rec["measured"]["worst"]["endpoint_x_ne_0_only"] < 1e-3  # (12) holds off x = 0 there
    row = rec["measured"]["endpoint_rows"][0]
    assert row["ode_at_x0"] == 0.0 and row["eq12_printed_at_x0"] == "nan"


def test_eq17_corrected_second_case():
    rec = _run("sm.eq17")
    assert rec["status"] == "ran", rec["error"]
    assert rec["verdict"] == "corrected", rec["reason"]
    m = rec["measured"]
    assert m["as_printed_starts_without_a_case"] > 0
    assert m["as_printed_max_abs_error_where_defined"] > 0.5  # O(D), not rounding
    assert m["paper_version"]["phi0_as_printed_vs_ode"] < 1e-3  # phi_{0|t} is right as printed
    assert all(v <= 1 for v in m["fixed_version"].values())


def test_eq17_as_printed_second_case_directly():
    y = np.linspace(-1, 1, 3)
    t, kappa = 0.02, 0.4
    x = np.array([-0.5, 0.99])  # interpolating region; region of y_n
    printed = sm_flows.eq17_as_printed(x, 0.0, t, y, kappa)
    assert printed[0] == pytest.approx(1 + math.sqrt(0) * (x[0] - 1))  # sent to y_n: wrong
    assert math.isnan(printed[1])  # no case
    np.testing.assert_allclose(sf.flow_map(x, 0.0, t, y, kappa),
                               [(0.5 * -0.5 - (-0.5) * math.sqrt(kappa * t)) / (0.5 - math.sqrt(kappa * t)), 1.0])


@pytest.mark.parametrize("cid", ["sm.eq13", "sm.lemma4", "sm.cor5"])
def test_confirmed(cid):
    rec = _run(cid)
    assert rec["status"] == "ran", rec["error"]
    assert rec["verdict"] == "confirmed", rec["reason"]
    if cid == "sm.cor5":
        assert rec["measured"]["min_slack"] > math.log(2)  # the proof's detour through [0, tau]
        assert 0 < rec["measured"]["max_kl_over_bound"] < 1


def test_prop6_corrected_coordinates_shrink():
    rec = _run("sm.prop6")
    assert rec["status"] == "ran", rec["error"]
    assert rec["verdict"] == "corrected", rec["reason"]
    m = rec["measured"]
    assert m["paper_version"]["prop6_as_printed_coord1_vs_ode"] <= 1  # first coordinate is right
    assert m["paper_version"]["prop6_as_printed_coords_ge2_vs_ode"] > 1e3  # the zeros are not
    lo, hi = m["coords_ge2_log_slope_range"]
    assert abs(lo - 0.5) < 1e-6 and abs(hi - 0.5) < 1e-6
    assert all(v <= 1 for v in m["fixed_version"].values())


# ---- planted errors -----------------------------------------------------------------------------
def _scaled(fn, factor):
    def wrapped(*a, **k):
        out = fn(*a, **k)
        return factor * np.asarray(out) if factor == factor else np.full(np.shape(out), np.nan)
    return wrapped


# each claim: its key toolkit function 0.1 % off and NaN; plus one 0.1 % error in each other
# formula a check relies on
PLANTED = [("sm.prop3", "flow_map", 1.001), ("sm.prop3", "flow_map", math.nan),
           ("sm.eq17", "flow_map", 1.001), ("sm.eq17", "flow_map", math.nan),
           ("sm.eq17", "flow_map_to_zero", 1.001),
           ("sm.prop6", "flow_map_d", 1.001), ("sm.prop6", "flow_map_d", math.nan),
           ("sm.cor5", "kl_bound_cor5", 1.001), ("sm.cor5", "kl_bound_cor5", math.nan)]


@pytest.mark.parametrize("cid,name,factor", PLANTED)
def test_planted_function_error_is_caught(monkeypatch, cid, name, factor):
    orig = getattr(sf, name)
    wrapped = _scaled(orig, factor)
    if name == "kl_bound_cor5":
        wrapped = (lambda *a, **k: float(_scaled(orig, factor)(*a, **k)))  # noqa: E731
    monkeypatch.setattr(sf, name, wrapped)
    rec = _run(cid)
    assert rec["verdict"] == "refuted", rec["reason"]


@pytest.mark.parametrize("cid,factor", [("sm.eq13", 1.001), ("sm.eq13", math.nan),
                                        ("sm.lemma4", 1.001), ("sm.lemma4", math.nan),
                                        ("sm.cor5", 1.001)])
def test_planted_pushforward_density_error_is_caught(monkeypatch, cid, factor):
    orig = sf.Pushforward.pdf
    monkeypatch.setattr(sf.Pushforward, "pdf", lambda self, z: factor * orig(self, z))
    rec = _run(cid)
    assert rec["verdict"] == "refuted", rec["reason"]


def test_planted_pushforward_weight_error_is_caught(monkeypatch):
    orig = sf.pushforward

    def planted(*a, **k):
        pf = orig(*a, **k)
        return dataclasses.replace(pf, weights=1.001 * np.asarray(pf.weights))
    monkeypatch.setattr(sf, "pushforward", planted)
    rec = _run("sm.eq13")
    assert rec["verdict"] == "refuted", rec["reason"]
