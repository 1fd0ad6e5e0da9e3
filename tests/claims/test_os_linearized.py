"""os.prop32 ([OS] Prop. 3.2, eq. (10)): quick mode on the correct library, its numbers against
independent values, and planted errors (source 0.1 % off, NaN score) that must refute it."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sftheory.claims import Context, run_check, select
from sftheory.claims.checks import os_linearized as check_mod
from sftheory.models.path import MixturePath
from sftheory.theory import linearized
from sftheory.claims.runner import run_claim

# a smaller configuration for the planted-error runs (same check function, fewer cases)
SMALL = {"sigmas": (0.5,), "gaussian": [(1.0, 1), (0.0, 3)], "mixture": [(1.0, 5)]}


def _run(cid="os.prop32"):
    return run_claim(cid).to_json()


def _closed_form_L(sigma0, T, h):
    """L for c = +-1 (cases 1/2), h > 0: ((1+h^2)/h^2)^2 (1 - r^{h^2})^2/4, r = sigma0^2/(e^T
    sigma_T^2) ([OS] App. G.1, written out here)."""
    H = h * h
    r = sigma0 ** 2 / (math.exp(T) * (1 + (sigma0 ** 2 - 1) * math.exp(-T)))
    return ((1 + H) / H) ** 2 * (1 - r ** H) ** 2 / 4


def test_prop32_confirmed_in_quick_mode():
    rec = _run()
    assert rec["status"] == "ran", rec["error"]
    assert rec["verdict"] == "confirmed", rec["reason"]
    rows = rec["rows"]
    gauss = [r for r in rows if r["p0"].startswith("N(")]
    mix = [r for r in rows if not r["p0"].startswith("N(")]
    assert gauss and mix
    for r in gauss:
        if r["case"] in (1, 2) and r["h"] > 0:
            assert r["L_pde"] == pytest.approx(_closed_form_L(0.5, 2.0, r["h"]), rel=2e-5)
        assert abs(r["rel_diff"]) < 2e-5
    for r in mix:
        assert abs(r["rel_diff"]) < 2e-5
        assert r["excess"] <= 1
        assert r["remainder_order_in_eps"] == pytest.approx(1.0, abs=0.1)
        # KL(eps)/eps^2 brackets L: the O(eps^3) term flips sign with eps
        k = r["kl_over_eps2"]
        assert min(k["+0.005"], k["-0.005"]) < r["L_from_kl"] < max(k["+0.005"], k["-0.005"])
    assert rec["measured"]["gaussian_pde_vs_exact"] <= 1
    assert rec["measured"]["mixture_pde_vs_kl_of_perturbed"] <= 1


@pytest.mark.parametrize("factor", [1.001, math.nan])
def test_planted_source_error_refutes(monkeypatch, factor):
    monkeypatch.setattr(check_mod, "QUICK", SMALL)
    orig = linearized._source_factor
    monkeypatch.setattr(linearized, "_source_factor", lambda h2, c: factor * orig(h2, c))
    rec = _run()
    assert rec["status"] == "ran", rec["error"]
    assert rec["verdict"] == "refuted", rec["reason"]
    for key in ("gaussian_pde_vs_exact", "mixture_pde_vs_kl_of_perturbed"):
        v = rec["measured"][key]
        assert v == "nan" or v > 10, (key, v)


def test_planted_nan_score_refutes(monkeypatch):
    monkeypatch.setattr(check_mod, "QUICK", SMALL)

    def nan_score(self, x, t, **kw):
        n = np.asarray(x).shape[0]
        return np.full(n, np.nan), np.full((n, 1), np.nan)

    monkeypatch.setattr(MixturePath, "logpdf_and_score", nan_score)
    rec = _run()
    assert rec["status"] == "ran", rec["error"]
    assert rec["verdict"] == "refuted", rec["reason"]
    assert rec["measured"]["gaussian_pde_vs_exact"] == "nan"
    assert rec["measured"]["mixture_pde_vs_kl_of_perturbed"] == "nan"


def test_planted_error_in_the_kl_route_refutes(monkeypatch):
    """The reference route can fail the check too: its eps-forcing 0.1 % off."""
    monkeypatch.setattr(check_mod, "QUICK", SMALL)
    orig = check_mod.perturbed_density_deviation
    def off(p0, T, h, case, eps, x, **k):
        return orig(p0, T, h, case, 1.001 * eps, x, **k)

    monkeypatch.setattr(check_mod, "perturbed_density_deviation", off)
    rec = _run()
    assert rec["verdict"] == "refuted", rec["reason"]
    assert rec["measured"]["mixture_pde_vs_kl_of_perturbed"] > 10
    assert rec["measured"]["gaussian_pde_vs_exact"] <= 1
