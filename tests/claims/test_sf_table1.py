"""sf.table1 ([SF] Sec. 5.1, Tables 1/4): the verdict rule on synthetic tables, the standardized
auxiliaries against Monte Carlo moments, the settings, and a planted NaN / a planted broken fusion
(a sampler that ignores the auxiliaries) turning the verdict to refuted. The check itself runs in
quick mode in tests/test_claims.py."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sftheory.claims.checks import sf_table1 as T


def _table(rows):
    """rows: n -> (baseline mean, se, fusion mean, se)."""
    return {"rows": [{"n": n, "baseline_w1": (b, bse), "fusion_exact_own_w1": (f, fse)}
                     for n, (b, bse, f, fse) in rows.items()]}


def test_verdict_reproduced_when_far_below_and_caught_up():
    m = _table({32: (10.0, 0.2, 0.4, 0.02), 64: (5.0, 0.1, 0.5, 0.03),
                128: (3.0, 0.1, 0.4, 0.02), 1024: (0.15, 0.02, 0.30, 0.02)})
    v = T.table1_verdict(m)
    assert v.verdict == "reproduced", v.reason
    assert v.measured["advantage_z_by_n"]["32"] == pytest.approx((10.0 - 0.4) / math.hypot(0.2, 0.02))


def test_verdict_corrected_when_better_but_not_far_or_no_crossover():
    # our measured shape: ScoreFusion better by ~1.2-2x, the baseline never catches up
    m = _table({32: (1.40, 0.03, 1.17, 0.06), 128: (1.17, 0.02, 0.90, 0.05),
                1024: (0.42, 0.02, 0.20, 0.01)})
    v = T.table1_verdict(m)
    assert v.verdict == "corrected", v.reason
    assert "not 'far'" in v.reason and "not caught up" in v.reason
    # far below but no crossover: still corrected, only the crossover is named
    m = _table({32: (10.0, 0.1, 0.4, 0.02), 1024: (2.0, 0.02, 0.30, 0.02)})
    v = T.table1_verdict(m)
    assert v.verdict == "corrected" and "not 'far'" not in v.reason


def test_verdict_refuted_when_not_better_or_not_finite():
    m = _table({32: (1.0, 0.05, 1.1, 0.05), 1024: (0.2, 0.02, 0.3, 0.02)})
    assert T.table1_verdict(m).verdict == "refuted"
    m = _table({32: (10.0, 0.2, float("nan"), 0.02), 1024: (0.15, 0.02, 0.30, 0.02)})
    v = T.table1_verdict(m)
    assert v.verdict == "refuted" and "not finite" in v.reason
    # a z-score right at the threshold does not count as better (> 3 SE is required)
    m = _table({32: (1.0 + 3.0 * math.hypot(0.1, 0.1) - 1e-9, 0.1, 1.0, 0.1),
                1024: (0.2, 0.02, 0.3, 0.02)})
    assert T.table1_verdict(m).verdict == "refuted"


def test_standardized_auxiliary_has_mean_zero_and_unit_sd():
    law = T.Setting("notebook").aux[1]  # 0.7 N(-7, 1) + 0.3 N(9, 1): mean -2.2, sd sqrt(54.76)
    z = T._standardized(law)
    x = np.asarray(z.sample(400_000, seed=3)).ravel()
    se = 1.0 / math.sqrt(x.size)
    assert abs(x.mean()) < 5 * se
    assert abs(x.std() - 1.0) < 5 * se * math.sqrt(2.0)  # the sd of a sample sd, bimodal: < sqrt(2)
    # closed form written out: modes (-7 + 2.2) / sqrt(54.76) and (9 + 2.2) / sqrt(54.76)
    sd = math.sqrt(0.7 * 50.0 + 0.3 * 82.0 - 2.2**2)
    np.testing.assert_allclose(z.means[:, 0], [(-7 + 2.2) / sd, (9 + 2.2) / sd], rtol=1e-14)
    np.testing.assert_allclose(z.covs[:, 0, 0], [1 / sd**2] * 2, rtol=1e-14)


def test_settings_are_the_authors_and_the_hull_target_is_a_barycenter():
    nb = T.Setting("notebook")
    np.testing.assert_allclose(nb.target.means[:, 0], [-6.0, 6.0])
    np.testing.assert_allclose(nb.target.covs[:, 0, 0], [0.64, 0.64])
    assert len(T.Setting("scripts").aux) == 3
    hull = T.Setting("hull")
    x = np.linspace(-12, 14, 7)[:, None]
    lp = hull.target.logpdf(x) - (0.6 * hull.aux[0].logpdf(x) + 0.4 * hull.aux[1].logpdf(x))
    assert np.ptp(lp) < 1e-9  # log p_bary - sum lambda_i log p_i is the constant -log Z
    with pytest.raises(ValueError, match="frame"):
        T.Setting("notebook", frame="elsewhere")


def _tiny(monkeypatch=None):
    return T.measure_table1("notebook", (32, 1024), train_steps=40, em_steps=20, n_draws=2,
                            draw=256, seed=0, networks=False, frames=("own",))


def test_planted_nan_in_the_fused_samples_refutes(monkeypatch):
    real = T._reverse_em

    def planted(field, n, steps, process, rng):
        out = real(field, n, steps, process, rng)
        if "Weighted" in type(field).__name__:
            out[0, 0] = np.nan
        return out

    monkeypatch.setattr(T, "_reverse_em", planted)
    v = T.table1_verdict(_tiny())
    assert v.verdict == "refuted" and "not finite" in v.reason


def test_planted_fusion_that_ignores_the_auxiliaries_refutes(monkeypatch):
    """A broken phase II (the fused score replaced by the score of N(0, v(t)), i.e. samples of
    N(0, ~1e-3) in the standardized frame) cannot beat the baseline: refuted."""
    import sftheory.fields as F
    from sftheory.models import Gaussian

    real = T._reverse_em

    def planted(field, n, steps, process, rng):
        if "Weighted" in type(field).__name__:
            field = Gaussian(np.zeros(1), 1e-6).path(process)
        return real(field, n, steps, process, rng)

    monkeypatch.setattr(T, "_reverse_em", planted)
    m = _tiny()
    v = T.table1_verdict(m)
    assert v.verdict == "refuted", v.reason
    assert F is not None
