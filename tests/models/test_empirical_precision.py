"""EmpiricalDistribution(points, precision=..., budget_bytes=...): the public switch to the opt-in
fast GEMM routes of sftheory/models/_esf_gemm.py (issue 11).

References: the float64 evaluation of the same law (numpy; itself checked against scipy in
tests/models) and a worst-case rounding model per precision, derived here:
a logit l_ij = (a/w) x_i.y_j - a^2 |y_j|^2 / 2w computed from inputs rounded to unit roundoff u
errs by at most delta_i = 2u |a/w| |x_i| ymax (two input roundings per product, Cauchy-Schwarz
over the d products; the norm term is split into head + residual and carries ~u^2), so each
responsibility has relative error <= 2 delta_i and the posterior mean an error
<= 2 (delta_i + u_w) max_j |y_j - ybar_i| + u_w ymax (u_w: rounding of the weights and values).
On CPU the TF32 routes run IEEE float32 products, so they are held to float32 accuracy (four
times the exact float32 route's error plus 16 eps32 of scale).
"""
from __future__ import annotations

import numpy as np
import pytest

from sftheory.models import EmpiricalDistribution
from sftheory.models import _esf_gemm
from sftheory.processes import VP

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(7)
Y = RNG.uniform(-1.0, 1.0, size=(300, 24))
T = 0.3
HALF = {"fp16": 2.0 ** -11, "bf16": 2.0 ** -8, "fp16-fast": 2.0 ** -11, "bf16-fast": 2.0 ** -8}


def _queries(n=40):
    m, v = VP().conditional(T)
    idx = RNG.integers(0, len(Y), n)
    return m * Y[idx] + np.sqrt(v) * RNG.standard_normal((n, Y.shape[1]))


X = _queries()


def _reference():
    return EmpiricalDistribution(Y).path(VP()).posterior_mean(X, T)


def _bound(precision, ref):
    """Per-query worst-case error of the posterior mean in ``precision`` (module docstring)."""
    m, v = VP().conditional(T)
    a, w = m, v
    u = HALF[precision]
    c = Y.mean(0) if precision.endswith("-fast") else np.zeros(Y.shape[1])
    xc = X - a * c
    ymax = np.max(np.linalg.norm(Y - c, axis=1))
    delta = 2 * u * abs(a / w) * np.linalg.norm(xc, axis=1) * ymax
    spread = np.max(np.linalg.norm(Y[None] - ref[:, None], axis=2), axis=1)
    return 2 * (delta + u) * spread + u * ymax


@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp16-fast", "bf16-fast"])
def test_half_precisions_stay_within_their_rounding_model(precision):
    ref = _reference()
    law = EmpiricalDistribution(Y, precision=precision)
    got = law.path(VP()).posterior_mean(torch.from_numpy(X).float(), T)
    assert got.dtype == torch.float32
    err = np.linalg.norm(got.double().numpy() - ref, axis=1)
    bound = _bound(precision, ref)
    assert np.all(np.isfinite(err)) and np.all(err <= bound), np.max(err / bound)
    assert np.max(err) > 1e-6  # it really ran in half precision (float32 would be ~1e-7)


@pytest.mark.parametrize("precision", ["fp32-3xtf32", "tf32", "tf32-fast"])
def test_tf32_routes_on_cpu_have_float32_accuracy(precision):
    ref = _reference()
    exact32 = EmpiricalDistribution(Y).path(VP()).posterior_mean(torch.from_numpy(X).float(), T)
    got = EmpiricalDistribution(Y, precision=precision).path(VP()).posterior_mean(
        torch.from_numpy(X).float(), T)
    e_exact = np.max(np.abs(exact32.double().numpy() - ref))
    e_got = np.max(np.abs(got.double().numpy() - ref))
    assert e_got <= 4 * e_exact + 16 * np.finfo(np.float32).eps * np.max(np.abs(ref)), (e_got,
                                                                                     e_exact)


def test_the_precision_reaches_the_engine_and_every_diffused_copy(monkeypatch):
    seen = []
    orig = _esf_gemm.evaluate_empirical

    def spy(*args, **kwargs):
        seen.append((kwargs.get("precision"), kwargs.get("budget_bytes")))
        return orig(*args, **kwargs)

    import sftheory.models.empirical as emp

    monkeypatch.setattr(emp, "evaluate_empirical", spy)
    law = EmpiricalDistribution(Y, precision="bf16", budget_bytes=2 ** 22)
    xt = torch.from_numpy(X).float()
    law.path(VP()).score(xt, T)
    law.marginal(VP(), T).score(xt)
    law.path(VP()).score(X, T)  # numpy: always exact
    assert seen == [("bf16", 2 ** 22), ("bf16", 2 ** 22), ("exact", 2 ** 22)]
    assert "precision='bf16'" in repr(law)


def test_numpy_and_autograd_inputs_stay_exact():
    fast = EmpiricalDistribution(Y, precision="fp16").path(VP())
    exact = EmpiricalDistribution(Y).path(VP())
    assert np.array_equal(fast.score(X, T), exact.score(X, T))
    xg = torch.from_numpy(X).requires_grad_(True)
    g = fast.score(xg, T)
    ref = exact.score(X, T)
    assert np.max(np.abs(g.detach().numpy() - ref)) <= 1e-12 * np.max(np.abs(ref))
    assert g.requires_grad


def _per_roundoff(precision):
    """max error / unit roundoff of ``precision``'s posterior mean against float64."""
    ref = _reference()
    got = EmpiricalDistribution(Y, precision=precision).path(VP()).posterior_mean(
        torch.from_numpy(X).float(), T)
    return np.max(np.abs(got.double().numpy() - ref)) / HALF[precision]


def _same_constant(a, b):
    """Rounding errors are linear in the unit roundoff (the model above): the error per unit
    roundoff of two precisions of one route agree within a factor 4 (measured 1.2-1.3)."""
    return 0.25 <= a / b <= 4.0


@pytest.mark.parametrize("route", ["", "-fast"])
def test_errors_scale_with_the_unit_roundoff(route):
    """fp16 (u = 2^-11) and bf16 (u = 2^-8) of one route: the worst-case bound above is ~150x
    loose, so this is the sharper check that each precision really rounds to its own format."""
    assert _same_constant(_per_roundoff("fp16" + route), _per_roundoff("bf16" + route))


def test_a_planted_wrong_format_is_caught(monkeypatch):
    """Planted error: the engine runs 'fp16' requests in bf16 (an error ~8x fp16's); the
    unit-roundoff scaling check fails on it (the worst-case bound alone would not see it)."""
    import sftheory.models.empirical as emp

    orig = emp.evaluate_empirical

    def wrong_format(*args, **kwargs):
        if kwargs.get("precision") == "fp16":
            kwargs["precision"] = "bf16"
        return orig(*args, **kwargs)

    monkeypatch.setattr(emp, "evaluate_empirical", wrong_format)
    assert not _same_constant(_per_roundoff("fp16"), _per_roundoff("bf16"))


def test_samplers_use_the_laws_engine_and_precision(monkeypatch):
    """A torch sampler on an empirical path evaluates the score with the law's own GEMM engine
    (bounded memory, its precision), not the dense mixture kernel: the run calls
    evaluate_empirical with the law's precision at every step, and in float64 it equals the
    compiled numba run given the same IndexedNoise (to rounding over 10 steps: 1e-12)."""
    import sftheory.models.empirical as emp
    from sftheory.samplers import IndexedNoise, sample_euler_maruyama

    seen = []
    orig = emp.evaluate_empirical

    def spy(*args, **kwargs):
        seen.append(kwargs.get("precision"))
        return orig(*args, **kwargs)

    monkeypatch.setattr(emp, "evaluate_empirical", spy)
    proc = VP()
    ts = np.linspace(1.0, 0.2, 11)
    x0 = np.random.default_rng(3).standard_normal((16, Y.shape[1]))
    law = EmpiricalDistribution(Y, precision="bf16")
    sample_euler_maruyama(law.path(proc), torch.from_numpy(x0).float(), ts, proc,
                          noise=IndexedNoise(2), disable=True)
    assert seen == ["bf16"] * 10
    exact = EmpiricalDistribution(Y)
    a = sample_euler_maruyama(exact.path(proc), torch.from_numpy(x0), ts, proc,
                              noise=IndexedNoise(2), disable=True).x.numpy()
    b = sample_euler_maruyama(exact.path(proc), x0, ts, proc, noise=IndexedNoise(2),
                              disable=True).x
    assert np.max(np.abs(a - b)) <= 1e-12 * np.max(np.abs(b))


@pytest.mark.parametrize("kwargs, match", [({"precision": "fp8"}, "precision"),
                                           ({"budget_bytes": 0}, "budget_bytes"),
                                           ({"budget_bytes": 1.5}, "budget_bytes")])
def test_bad_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EmpiricalDistribution(Y, **kwargs)
    with pytest.raises(ValueError, match="too small"):
        EmpiricalDistribution(Y, budget_bytes=64).path(VP()).score(X, T)
