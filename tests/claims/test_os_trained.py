"""os.fig5 / os.appI (trained score networks, slow checks): quick runs skip them; tiny versions
run the whole plumbing; the verdict functions turn planted errors into `refuted`."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sftheory.claims import Context, run_check, select  # noqa: E402
from sftheory.claims.checks import os_trained as ot  # noqa: E402
from sftheory.fields import as_field  # noqa: E402
from sftheory.training import ScoreMLP  # noqa: E402


def _check(cid):
    (check,) = [c for c in select(cid) if c.id == cid]
    return check


@pytest.mark.parametrize("cid", ["os.fig5", "os.appI"])
def test_quick_runs_record_the_slow_checks_as_skipped(cid):
    check = _check(cid)
    assert check.slow
    rec = run_check(check, Context(quick=True, seed=0, out_dir=None)).to_json()
    assert rec["status"] == "skipped" and "--full" in rec["reason"] and rec["verdict"] is None


# ---- tiny versions of the full checks (monkeypatched sizes) ------------------------------------
def _tiny_fig5(monkeypatch):
    train, measure = ot.train_swiss_roll, ot.measure_fig5
    monkeypatch.setattr(ot, "train_swiss_roll", lambda seed, cache=True, device="cpu": train(
        seed, steps=60, batch_size=100, lr_every=30, cache=False, device=device))
    monkeypatch.setattr(ot, "measure_fig5", lambda fields, seed=0: measure(
        fields, alphas=(0.0, 2.0), step_grid=(20, 60), step_alphas=(0.0, 2.0), n=80, seed=seed))


def test_fig5_tiny_full_run_plumbing(monkeypatch, tmp_path):
    _tiny_fig5(monkeypatch)
    rec = run_check(_check("os.fig5"), Context(quick=False, seed=0, out_dir=tmp_path)).to_json()
    assert rec["status"] == "ran", rec["error"]
    assert rec["verdict"] in ("confirmed", "refuted")
    w1 = rec["measured"]["w1_vs_alpha_mean_se"]
    assert set(w1) == {"0", "2"} and all(math.isfinite(v[0]) and v[0] > 0 for v in w1.values())
    assert rec["figures"] and (tmp_path / rec["figures"][0]).is_file()


def test_fig5_nan_network_is_refuted(monkeypatch):
    _tiny_fig5(monkeypatch)
    monkeypatch.setattr(ScoreMLP, "forward", lambda self, x, t: x * float("nan"))
    rec = run_check(_check("os.fig5"), Context(quick=False, seed=0, out_dir=None)).to_json()
    assert rec["status"] == "ran", rec["error"]
    assert rec["verdict"] == "refuted" and "nan" in rec["reason"]


def test_w1_exact_against_a_known_transport():
    a = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    b = a[[2, 0, 1]] + np.array([3.0, 4.0])  # the same cloud shifted by |(3, 4)| = 5
    assert ot.w1_exact(a, b) == pytest.approx(5.0, rel=1e-12)
    assert math.isnan(ot.w1_exact(a, b * np.nan))
    with pytest.raises(ValueError):
        ot.w1_exact(a, b[:2])


def _table(w1_alpha, ode_steps, sde_steps):
    return {"alphas": [0.0, 1.0, 4.0], "step_alphas": [0.0, 1.0], "step_grid": [100, 1000, 20000],
            "w1_alpha": np.asarray(w1_alpha),
            "w1_steps": np.stack([np.asarray(ode_steps), np.asarray(sde_steps)], axis=1)}


# three repetitions: W1 falls with h, the ODE is flat in the step count, the SDE improves
GOOD_ALPHA = [[0.30, 0.22, 0.15], [0.32, 0.23, 0.16], [0.29, 0.21, 0.15]]
GOOD_ODE = [[0.35, 0.31, 0.30], [0.36, 0.33, 0.32], [0.33, 0.30, 0.29]]
GOOD_SDE = [[0.50, 0.30, 0.22], [0.52, 0.31, 0.23], [0.49, 0.29, 0.21]]


def test_fig5_verdict_on_planted_tables():
    v, ex = ot.fig5_verdict(_table(GOOD_ALPHA, GOOD_ODE, GOOD_SDE))
    assert v.verdict == "confirmed", v.reason
    # W1 grows with h: refuted
    v, ex = ot.fig5_verdict(_table(np.asarray(GOOD_ALPHA)[:, ::-1], GOOD_ODE, GOOD_SDE))
    assert v.verdict == "refuted" and "w1_falls_largest_h" in v.reason
    assert 2.0 < ex["w1_falls_largest_h"] < math.inf  # the wrong sign: a finite failure
    # the ODE keeps improving with more steps (30 % between the two finest grids): refuted
    ode = np.asarray(GOOD_ODE).copy()
    ode[:, 1] = ode[:, 2] * 1.3
    v, _ = ot.fig5_verdict(_table(GOOD_ALPHA, ode, GOOD_SDE))
    assert v.verdict == "refuted" and "ode_stalls" in v.reason
    # differences inside the Monte Carlo band are not evidence: refuted
    noisy = np.asarray(GOOD_ALPHA).copy()
    noisy[:, 2] = noisy[:, 0] + np.array([-0.05, 0.04, -0.01])
    v, _ = ot.fig5_verdict(_table(noisy, GOOD_ODE, GOOD_SDE))
    assert v.verdict == "refuted"
    # one NaN cell (a run that blew up): refuted
    nan = np.asarray(GOOD_ALPHA).copy()
    nan[1, 1] = np.nan
    v, _ = ot.fig5_verdict(_table(nan, GOOD_ODE, GOOD_SDE))
    assert v.verdict == "refuted" and "nan" in v.reason


# ---- os.appI ------------------------------------------------------------------------------------
TS = (0.01, 0.05, 0.5, 1.0)


def _profiled_fields(profile, reps=3):
    """Exact mixture scores times (1 + c_w(t)): known relative errors (c_w / c_default)^2."""
    path = ot.appI_law().path(ot.fig5_process())
    out = []
    for r in range(reps):
        jit = 1.0 + 0.02 * r
        out.append({w: as_field(lambda x, t, c=c: path.score(x, t) * (1.0 + jit * c(t)), dim=2)
                    for w, c in profile.items()})
    return out


PAPER_LIKE = {"default": lambda t: 0.1,
              "noise": lambda t: 0.2 if t < 0.2 else 0.05,   # more error early, less late
              "data": lambda t: 0.05 if t < 0.2 else 0.2}


def test_appI_measure_and_verdict_on_planted_fields():
    m = ot.measure_appI(_profiled_fields(PAPER_LIKE), ts=TS, n=300)
    v, ex, contrast, logr = ot.appI_verdict(m)
    assert v.verdict == "confirmed", v.reason
    # ratios are (c_w / c_default)^2 exactly, whatever the sample: log 4 early, log 1/4 late
    assert logr[0, 1, 0] == pytest.approx(math.log(4.0), rel=1e-9)
    assert contrast[0, 1] == pytest.approx(math.log(0.25) - math.log(4.0), rel=1e-9)
    # the weightings' labels swapped: refuted
    swapped = dict(PAPER_LIKE, noise=PAPER_LIKE["data"], data=PAPER_LIKE["noise"])
    v, *_ = ot.appI_verdict(ot.measure_appI(_profiled_fields(swapped), ts=TS, n=300))
    assert v.verdict == "refuted"
    # every net = exact score x 1.001 (no movement in time): refuted
    flat = {w: (lambda t: 0.001) for w in PAPER_LIKE}
    v, *_ = ot.appI_verdict(ot.measure_appI(_profiled_fields(flat), ts=TS, n=300))
    assert v.verdict == "refuted"
    # a NaN network: refuted
    nan = dict(PAPER_LIKE, noise=lambda t: float("nan"))
    v, *_ = ot.appI_verdict(ot.measure_appI(_profiled_fields(nan), ts=TS, n=300))
    assert v.verdict == "refuted" and "nan" in v.reason


def test_appI_tiny_full_run_plumbing(monkeypatch, tmp_path):
    train, measure = ot.train_appI, ot.measure_appI
    monkeypatch.setattr(ot, "train_appI", lambda w, seed, cache=True, device="cpu": train(
        w, seed, steps=40, lr_every=20, batch_size=100, cache=False, device=device))
    monkeypatch.setattr(ot, "measure_appI", lambda fields, seed=0: measure(
        fields, ts=TS, n=100, seed=seed))
    rec = run_check(_check("os.appI"), Context(quick=False, seed=0, out_dir=tmp_path)).to_json()
    assert rec["status"] == "ran", rec["error"]
    assert rec["verdict"] in ("confirmed", "refuted")
    assert set(rec["measured"]["contrast_mean_se"]) == {"noise", "data"}
    assert rec["figures"] and (tmp_path / rec["figures"][0]).is_file()


@pytest.mark.parametrize("cid,name", [("os.fig5", "train_swiss_roll"), ("os.appI", "train_appI")])
def test_the_validate_device_reaches_the_trainer(monkeypatch, cid, name):
    """`sftheory validate --device cuda` trains the networks on the GPU: the check hands
    ctx.device to its trainer, which hands it to train_dsm (spied; the run stops there)."""
    import sftheory.training as training

    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("device"))
        raise RuntimeError("stop after the spy")

    monkeypatch.setattr(training, "train_dsm", spy)
    ctx = Context(quick=False, seed=0, out_dir=None)
    ctx.device = "sentinel-device"
    rec = run_check(_check(cid), ctx).to_json()
    assert rec["status"] == "crashed" and seen == ["sentinel-device"], (rec["status"], seen)
