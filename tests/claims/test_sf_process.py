"""sf.lemma6 and sf.thm2 ([SF] Lemma 6, Theorem 2): measured verdicts in quick mode (both
corrected: they hold only for equal covariances / x-independent drift differences), key numbers,
and planted errors (0.1 % off weight or value, NaN) that turn each verdict to refuted."""
from __future__ import annotations

import math
import types

import numpy as np
import pytest

from sftheory import fusion
from sftheory.claims import Context, run_check, select
from sftheory.claims.checks import sf_process
from sftheory.fusion import _process
from sftheory.claims.runner import run_claim


def _run(cid):
    return run_claim(cid).to_json()


def _refuted(rec):
    assert rec["status"] == "ran", rec.get("error")
    assert rec["verdict"] == "refuted", rec["reason"]


@pytest.fixture(scope="module")
def lemma6(quick_record):
    return quick_record("sf.lemma6")


@pytest.fixture(scope="module")
def thm2(quick_record):
    return quick_record("sf.thm2")


def test_lemma6_corrected(lemma6):
    assert lemma6["status"] == "ran", lemma6.get("error")
    assert lemma6["verdict"] == "corrected", lemma6["reason"]
    m = lemma6["measured"]
    assert m["fixed_version"]["gap"] <= 1.0
    # the unequal-covariance gap is O(1) and the same for every long enough horizon
    gaps = list(m["unequal_cov_gap"].values())
    assert min(gaps) > 0.3
    assert max(gaps[1:]) - min(gaps[1:]) < 1e-3
    assert m["monte_carlo_1d"]["mc_gap_to_barycenter_over_se"] > 10


def test_thm2_corrected(thm2):
    assert thm2["status"] == "ran", thm2.get("error")
    assert thm2["verdict"] == "corrected", thm2["reason"]
    m = thm2["measured"]
    assert m["different_slopes"]["best_linear_drift_improvement"] > 1e-3
    assert m["same_slope"]["best_linear_drift_improvement"] < 1e-9


def _plant_terminal(monkeypatch, how):
    orig = _process.barycenter_sampler_terminal_law

    def planted(gaussians, weights, *a, **k):
        if how == "weight":
            w = np.array(weights, float)
            w[0] *= 1.001
            w[1:] *= (1 - w[0]) / w[1:].sum()
            return orig(gaussians, w, *a, **k)
        law = orig(gaussians, weights, *a, **k)
        if how == "nan":
            return types.SimpleNamespace(mean=law.mean * math.nan, cov=law.cov, dim=law.dim)
        return types.SimpleNamespace(mean=law.mean, cov=law.cov * 1.001, dim=law.dim)

    monkeypatch.setattr(_process, "barycenter_sampler_terminal_law", planted)


@pytest.mark.parametrize("how", ["weight", "cov", "nan"])
def test_lemma6_planted_terminal_law(monkeypatch, how):
    _plant_terminal(monkeypatch, how)
    _refuted(_run("sf.lemma6"))


def test_lemma6_planted_barycenter(monkeypatch):
    orig = fusion.barycenter

    def planted(models, weights, **k):
        b = orig(models, weights, **k)
        return types.SimpleNamespace(mean=b.mean * 1.001, cov=b.cov, dim=b.dim)

    monkeypatch.setattr(sf_process.fusion, "barycenter", planted)
    _refuted(_run("sf.lemma6"))


@pytest.mark.parametrize("how", ["weight", "nan"])
def test_thm2_planted_weighted_field(monkeypatch, how):
    orig = sf_process.weighted

    def planted(fields, weights):
        if how == "nan":
            return lambda x, t: np.full_like(np.asarray(x, float), math.nan)
        w = np.array(weights, float)
        w[0] *= 1.001
        w[1:] *= (1 - w[0]) / w[1:].sum()
        return orig(fields, w)

    monkeypatch.setattr(sf_process, "weighted", planted)
    _refuted(_run("sf.thm2"))


@pytest.mark.parametrize("factor", [1.001, math.nan])
def test_thm2_planted_start_barycenter(monkeypatch, factor):
    orig = fusion.barycenter

    def planted(models, weights, **k):
        b = orig(models, weights, **k)
        return types.SimpleNamespace(mean=b.mean, cov=b.cov * factor, dim=b.dim)

    monkeypatch.setattr(sf_process.fusion, "barycenter", planted)
    _refuted(_run("sf.thm2"))
