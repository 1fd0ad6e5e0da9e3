"""core.samplers.routes (sftheory/claims/checks/core_samplers.py): its reference and that it
refutes planted errors (a score 0.1 % off on one route, a NaN, a shard at the wrong offset)."""
from __future__ import annotations

import numpy as np
import pytest

from sftheory.claims.checks import core_samplers as cs
from sftheory.claims.verdicts import within
from sftheory.models import Gaussian, GaussianMixture
from sftheory.processes import OU, VP
from sftheory.samplers import IndexedNoise

pytest.importorskip("torch")

ZOO = [("Gaussian[d=2]", Gaussian(np.array([0.5, -1.0]), np.array([[0.6, 0.2], [0.2, 0.4]]))),
       ("Mixture[K=2,d=1]", GaussianMixture(np.array([0.3, 0.7]), np.array([[-1.0], [1.5]]),
                                            np.array([0.2, 0.5]), covariance_type="spherical"))]
ROUTES = ["numba", "torch-device", "torch-shards"]


def _measure(run=cs.run_routes):
    return cs.measure_sampler_routes(ZOO, [OU(), VP()], np.random.default_rng(4),
                                     n_particles=9, n_steps=12, routes=ROUTES, run=run)


def test_the_routes_follow_the_textbook_chain():
    m = _measure()
    assert within(m.excess).verdict == "confirmed"
    assert all(r["sensitivity"] > 0 and np.isfinite(r["sensitivity"]) for r in m.rows)


def test_the_textbook_score_is_the_gradient_of_its_log_density():
    """The reference score against central differences of the reference log density (an
    independent check of the reference itself): step 1e-5, error O(h^2 f''') ~ 1e-9."""
    law, proc = ZOO[0][1], VP()
    x = np.array([[0.3, -0.2], [1.5, 0.7]])
    s, _ = cs.textbook_score(law, proc, x, 0.4)
    h = 1e-5
    fd = np.stack([(cs.textbook_score(law, proc, x + h * e, 0.4)[1]
                    - cs.textbook_score(law, proc, x - h * e, 0.4)[1]) / (2 * h)
                   for e in np.eye(2)], axis=1)
    assert np.max(np.abs(fd - s)) < 1e-8


def _planted(kind):
    def run(law, process, x0, ts, noise, routes):
        out = cs.run_routes(law, process, x0, ts, noise, routes)
        if kind == "score":  # one route runs a score 0.1 % too large
            from sftheory.fields import scaled
            from sftheory.samplers import sample_euler_maruyama

            out["numba"] = sample_euler_maruyama(scaled(law.path(process), 1.001), x0, ts,
                                                 process, noise=noise, disable=True).x
        elif kind == "nan":
            out["torch-device"] = out["torch-device"].copy()
            out["torch-device"][0, 0] = np.nan
        elif kind == "offset":  # the second shard keyed from particle 0 instead of its offset
            import torch

            from sftheory.samplers import sample_euler_maruyama
            from sftheory.samplers._core import run_shard

            cut = x0.shape[0] // 2 + 1
            xt = torch.from_numpy(x0)
            path = law.path(process)
            a = sample_euler_maruyama(path, xt[:cut], ts, process, noise=noise, disable=True).x
            b = run_shard(sample_euler_maruyama, path, xt[cut:], ts, process, particle_offset=0,
                          noise=noise, disable=True).x
            out["torch-shards"] = torch.cat([a, b]).numpy()
        return out
    return run


@pytest.mark.parametrize("kind,route", [("score", "numba"), ("nan", "torch-device"),
                                        ("offset", "torch-shards")])
def test_planted_errors_are_refuted(kind, route):
    m = _measure(_planted(kind))
    v = within(m.excess)
    assert v.verdict == "refuted"
    assert not (m.excess[route].value <= 1.0)  # NaN or > 1 on the planted route
    others = [r for r in ROUTES if r != route]
    assert all(m.excess[r].value <= 1.0 for r in others)


def test_the_reference_uses_the_noise_it_is_given():
    law, proc = ZOO[0][1], OU()
    x0 = np.zeros((3, 2))
    ts = np.linspace(1.0, 0.1, 5)
    n1, n2 = IndexedNoise(1), IndexedNoise(2)
    a = cs.textbook_chain(law, proc, x0, ts, lambda k: n1.normals(0, k, x0))
    b = cs.textbook_chain(law, proc, x0, ts, lambda k: n2.normals(0, k, x0))
    assert np.max(np.abs(a - b)) > 1e-2
