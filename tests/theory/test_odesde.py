"""sftheory.theory.odesde: exact 1D Gaussian KL(p0 || q~_T) and L(h) of the ODE-vs-SDE paper.

Every check compares with something computed another way: the exact-score identity (Lemma B.1),
finite differences / regression of gaussian_kl in eps, the exact variance of the Euler-Maruyama
chain of the linear SDE, closed forms (App. G.1 and the constant-c integral), the paper's
qualitative statements (Props 3.4-3.6, Fig. 6) and Table 3.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad

from sftheory.theory import odesde
from sftheory.theory.odesde import gaussian_kl, gaussian_L

CASES = (1, 2, 3, 4, 5)


def kl_direct(a, b):
    """KL(N(0, a) || N(0, b)), App. G.1's formula written out (fine when KL >> 1e-16)."""
    return 0.5 * math.log(b / a) + a / (2 * b) - 0.5


def deviation(sigma0, T, h, eps, case):
    """Var(Y~_T) - sigma0^2 as the package integrates it (private; used to compare variances)."""
    hfun = h if callable(h) else (lambda t: h)
    cfun, br = odesde._case_function(case, T)
    return odesde._deviation(sigma0, T, hfun, cfun, br, eps)


def c_of(case, T):
    return odesde._case_function(case, T)[0]


# ---- independent references ------------------------------------------------------------------
def em_chain_variance(sigma0, T, h, eps, case, n):
    """Exact variance of the Euler-Maruyama chain Y_{k+1} = (1 + a_k dt) Y_k + h_k sqrt(dt) xi_k of
    the linear generative SDE, Y_0 ~ p_T: s_{k+1}^2 = (1 + a_k dt)^2 s_k^2 + h_k^2 dt, written in
    closed form with suffix products. a_k from the paper's App. G.1 SDE, independently of the
    package: a = 1/2 + (1 + h^2)/2 * (-1/sigma_{T-t}^2) * (1 + eps c)."""
    dt = T / n
    t = np.arange(n) * dt
    sig2 = sigma0 ** 2 * np.exp(-(T - t)) + 1 - np.exp(-(T - t))
    h2 = np.array([h(x) ** 2 for x in t]) if callable(h) else np.full(n, float(h) ** 2)
    c = np.array([c_of(case, T)(x) for x in t]) if not callable(case) else np.array(
        [case(x) for x in t])
    a = 0.5 + (1 + h2) / 2 * (-1 / sig2) * (1 + eps * c)
    f = 1 + a * dt
    assert f.min() > 0
    logf = 2 * np.log(f)
    suffix = np.concatenate([np.cumsum(logf[::-1])[::-1], [0.0]])  # suffix[k] = sum_{j>=k}
    s0 = sigma0 ** 2 * math.exp(-T) + 1 - math.exp(-T)
    return s0 * math.exp(suffix[0]) + float(np.sum(h2 * dt * np.exp(suffix[1:])))


def paper_g1_variance(sigma0, T, h, eps, case):
    """App. G.1: Var(Y~_T) = G_T^-2 Var(Y~_0) + int_0^T G_T^-2 G_t^2 h^2 dt, G_t = exp(-int_0^t a),
    with alpha_s = -c(s)/sigma_{T-s}^2 (ansatz (43)); nested scipy quad, constant h."""
    c = c_of(case, T)
    pts = [0.95 * T, 0.99 * T]

    def a(s):
        sig2 = sigma0 ** 2 * math.exp(-(T - s)) + 1 - math.exp(-(T - s))
        return 0.5 + (1 + h * h) / 2 * (-1 / sig2 + eps * (-c(s) / sig2))

    def int_a(lo, hi):
        p = [x for x in pts if lo < x < hi]
        return quad(a, lo, hi, points=p or None, epsabs=1e-14, epsrel=1e-12, limit=200)[0]

    var0 = sigma0 ** 2 * math.exp(-T) + 1 - math.exp(-T)
    first = math.exp(2 * int_a(0, T)) * var0
    second = quad(lambda t: math.exp(2 * int_a(t, T)) * h * h, 0, T, points=pts,
                  epsabs=0, epsrel=1e-12, limit=200)[0]
    return first + second


def closed_form_deviation(sigma0, T, h, eps, c):
    """Constant c and h: y(T) = -(1+h^2) eps c int_0^T Phi(t, T) dt with Phi = e^tau (sigma0^2 /
    (e^tau sigma_tau^2))^m, tau = T - t, m = (1+h^2)(1+eps c), integrated by w = e^tau + sigma0^2 - 1."""
    m = (1 + h * h) * (1 + eps * c)
    s0 = sigma0 ** 2
    wT = math.exp(T) * (s0 * math.exp(-T) + 1 - math.exp(-T))
    integral = s0 * math.log(wT / s0) if m == 1 else (s0 ** m * wT ** (1 - m) - s0) / (1 - m)
    return -(1 + h * h) * eps * c * integral


def closed_form_L(sigma0, T, h, c):
    """L = u^2/(4 sigma0^4), u = d/d eps of closed_form_deviation at eps = 0."""
    s0 = sigma0 ** 2
    wT = math.exp(T) * (s0 * math.exp(-T) + 1 - math.exp(-T))
    m = 1 + h * h
    integral = s0 * math.log(wT / s0) if h == 0 else (s0 ** m * wT ** (1 - m) - s0) / (1 - m)
    u = -(1 + h * h) * c * integral
    return u * u / (4 * s0 * s0)


def h_ramp(t):
    return 0.5 + 0.5 * t  # a time-dependent diffusion coefficient (generative time)


# ---- (1) exact score: no error for any h -------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("h", [0.0, 0.5, 1.0, 3.0, h_ramp])
def test_eps_zero_gives_zero_kl(case, h):
    for sigma0 in (0.2, 1.0, 2.5):
        assert gaussian_kl(sigma0, 2.0, h, 0.0, case) == 0.0
        assert abs(gaussian_kl(sigma0, 2.0, h, 1e-14, case)) < 1e-12


@pytest.mark.parametrize("h", [0.0, 1.0, 3.0, h_ramp])
def test_raw_variance_ode_keeps_exact_law_at_eps_zero(h):
    """Lemma B.1 through the raw variance ODE (V) (not the deviation form): Var(Y_T) = sigma0^2."""
    for sigma0 in (0.2, 1.0, 2.5):
        hfun = h if callable(h) else (lambda t: h)
        v = odesde._variance_full(sigma0, 2.0, hfun, lambda t: 1.0, (), 0.0)
        assert abs(v / sigma0 ** 2 - 1) < 1e-11
        # and (V) agrees with (D) away from eps = 0
        v = odesde._variance_full(sigma0, 2.0, hfun, lambda t: 1.0, (), 0.05)
        assert v == pytest.approx(sigma0 ** 2 + deviation(sigma0, 2.0, h, 0.05, 1), rel=1e-10)


# ---- (2) gaussian_L against gaussian_kl at small eps (and a closed form) ----------------------
def richardson_L(sigma0, T, h, case, e=1e-3):
    """F(e) = (KL(e) + KL(-e)) / (2 e^2) = L + O(e^2); Richardson (4F(e/2) - F(e))/3 = L + O(e^4)."""
    def F(x):
        return (gaussian_kl(sigma0, T, h, x, case) + gaussian_kl(sigma0, T, h, -x, case)) / (2 * x * x)
    return (4 * F(e / 2) - F(e)) / 3


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("h", [0.0, 1.0, 3.0, h_ramp])
@pytest.mark.parametrize("sigma0", [0.3, 1.0, 3.0])
def test_L_matches_richardson_of_kl(sigma0, h, case):
    # Tolerance: truncation O(e^4) ~ 1e-12 relative; KL's own error ~1e-11 relative (rtol 1e-12
    # on the eps-normalised deviation) amplified by 1/e^2 cancellation-free sums: 1e-7 is ample,
    # and four orders below the 0.2% a 0.1% planted coefficient error produces.
    L = gaussian_L(sigma0, 2.0, h, case)
    R = richardson_L(sigma0, 2.0, h, case)
    assert R == pytest.approx(L, rel=1e-7, abs=1e-18)


@pytest.mark.parametrize("case", [1, 3, 5])
def test_L_matches_paper_style_regression(case):
    """App. G.3 estimates L by regression of KL on eps; over eps in [1e-4, 1e-3] with the eps^3 and
    eps^4 terms in the model it reproduces the exact L to ~1e-8."""
    eps = np.linspace(1e-4, 1e-3, 6)
    for h in (0.0, 1.0, 3.0):
        kl = np.array([gaussian_kl(0.5, 2.0, h, e, case) for e in eps])
        X = np.stack([eps ** 2, eps ** 3, eps ** 4], axis=1)
        coef = np.linalg.lstsq(X, kl, rcond=None)[0]
        assert coef[0] == pytest.approx(gaussian_L(0.5, 2.0, h, case), rel=1e-6)


@pytest.mark.parametrize("sigma0", [0.2, 0.7, 1.0, 3.0])
@pytest.mark.parametrize("h", [0.0, 0.3, 1.0, 4.47])
def test_cases_1_2_closed_forms(sigma0, h):
    for case, c in ((1, 1.0), (2, -1.0)):
        assert gaussian_L(sigma0, 2.0, h, case) == pytest.approx(closed_form_L(sigma0, 2.0, h, c),
                                                                 rel=1e-9)
        for eps in (0.02, -0.3):
            d = closed_form_deviation(sigma0, 2.0, h, eps, c)
            assert gaussian_kl(sigma0, 2.0, h, eps, case) == pytest.approx(
                kl_direct(sigma0 ** 2, sigma0 ** 2 + d), rel=1e-8)


def test_L_limit_large_h_cases_1_2():
    """Closed form: L = ((1 + h^2)/h^2)^2 / 4 * (1 - r^{h^2})^2, r = sigma0^2 / (e^T sigma_T^2) < 1,
    so L -> 1/4 as h -> infinity (cases 1, 2), for every sigma0."""
    for sigma0 in (0.2, 1.0, 3.0):
        assert gaussian_L(sigma0, 2.0, 20 ** 0.5, 1) == pytest.approx(1.05 ** 2 / 4, rel=1e-4)


# ---- (3) the variance ODE against the exact variance of the Euler-Maruyama chain --------------
@pytest.mark.parametrize("sigma0,h,case,tol", [
    (0.5, 1.0, 1, 1e-9), (0.5, 1.0, 4, 1e-9), (1.5, 0.0, 5, 1e-9), (0.3, 2.0, 3, 1e-7),
    (0.8, h_ramp, 2, 1e-8)])
def test_variance_ode_vs_euler_maruyama_chain(sigma0, h, case, tol):
    T, eps = 2.0, 0.05
    ode = sigma0 ** 2 + deviation(sigma0, T, h, eps, case)
    ns = [100 * 2 ** j for j in (7, 8, 9)]  # grids contain the jumps 0.95T, 0.99T of cases 4, 5
    v = [em_chain_variance(sigma0, T, h, eps, case, n) for n in ns]
    err = [x - ode for x in v]
    # first order: the error halves with dt ...
    assert 1.9 < err[0] / err[1] < 2.1 and 1.9 < err[1] / err[2] < 2.1
    # ... and two Richardson levels remove O(dt) and O(dt^2) (measured third-order remainder <= 1e-9)
    r1 = [2 * v[1] - v[0], 2 * v[2] - v[1]]
    r2 = (4 * r1[1] - r1[0]) / 3
    assert abs(r2 / ode - 1) < tol
    # the eps effect is resolved far beyond the tolerance
    assert abs(ode - sigma0 ** 2) > 1e3 * tol * ode
    # KL through the public function agrees with the chain's extrapolated variance
    assert gaussian_kl(sigma0, T, h, eps, case) == pytest.approx(kl_direct(sigma0 ** 2, r2),
                                                                 rel=1e3 * tol)


def test_em_chain_at_eps_zero_converges_to_p0():
    v = [em_chain_variance(0.5, 2.0, 1.0, 0.0, 1, 100 * 2 ** j) for j in (7, 8, 9)]
    r2 = (4 * (2 * v[2] - v[1]) - (2 * v[1] - v[0])) / 3
    assert abs(r2 / 0.25 - 1) < 1e-9


# ---- (4) the paper: App. G.1 formula, Props 3.4-3.6 / Fig. 6 orderings, Table 3 ----------------
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("h", [0.0, 1.0, 2.0])
def test_paper_g1_explicit_formula(case, h):
    for sigma0, eps in ((0.4, 0.02), (1.5, -0.2)):
        ref = paper_g1_variance(sigma0, 2.0, h, eps, case)
        ours = sigma0 ** 2 + deviation(sigma0, 2.0, h, eps, case)
        assert ours == pytest.approx(ref, rel=1e-10)
        assert gaussian_kl(sigma0, 2.0, h, eps, case) == pytest.approx(
            kl_direct(sigma0 ** 2, ref), rel=1e-6, abs=1e-15)


def test_ode_vs_sde_orderings_fig6():
    T = 2.0
    for sigma0 in (0.2, 0.5, 1.0):
        # case 4 (error only early in the generative process): the SDE beats the ODE, and L decays
        # exponentially in h^2 (Prop. 3.4)
        L4 = [gaussian_L(sigma0, T, h2 ** 0.5, 4) for h2 in (0, 1, 4, 9, 16)]
        assert all(x > y for x, y in zip(L4, L4[1:]))
        assert gaussian_kl(sigma0, T, 1.0, 0.02, 4) < gaussian_kl(sigma0, T, 0.0, 0.02, 4)
        logs = np.log(L4[1:])
        slope = np.polyfit([1, 4, 9, 16], logs, 1)[0]
        assert slope < -0.1
        # case 5 (error only at the end): the ODE beats the SDE, L grows with h (Prop. 3.5)
        L5 = [gaussian_L(sigma0, T, h, 5) for h in (0.0, 0.5, 1.0, 2.0)]
        assert all(x < y for x, y in zip(L5, L5[1:]))
        assert gaussian_kl(sigma0, T, 1.0, 0.02, 5) > gaussian_kl(sigma0, T, 0.0, 0.02, 5)
    # small sigma0, general error (cases 1-3): increasing h suppresses the error (App. G.2)
    for case in (1, 2, 3):
        assert gaussian_L(0.2, T, 1.0, case) < gaussian_L(0.2, T, 0.0, case)


def test_prop36_case3_limit_is_quarter_of_case1():
    """E_T for case 3 is half of case 1's, so L(inf) is a quarter (Prop. 3.6, App. G.3)."""
    for sigma0 in (0.2, 0.5):
        gap = [abs(gaussian_L(sigma0, 2.0, h, 3) / gaussian_L(sigma0, 2.0, h, 1) - 0.25)
               for h in (2.0, 4.0, 8.0)]
        # the gap closes like c'(T) sigma0^2 / h^2 (Phi concentrates within ~sigma0^2/h^2 of T)
        assert gap[0] > 2.5 * gap[1] > 2.5 ** 2 * gap[2] and gap[2] < 0.01


TABLE3 = {  # sigma0: (case 1, case 2, case 3) at h^2 ~ 20, the paper's regression estimates
    0.2: (0.2567, 0.3032, 0.0658), 0.4: (0.2569, 0.3028, 0.0636), 0.6: (0.2570, 0.3018, 0.0597),
    0.8: (0.2569, 0.3023, 0.0544), 1.5: (0.2570, 0.3017, 0.0321), 2.0: (0.2564, 0.3022, 0.0198),
    3.0: (0.2566, 0.3020, 0.0121)}


@pytest.mark.parametrize("sigma0", [0.2, 1.5])
def test_table3_is_exact_L_plus_finite_eps_bias(sigma0):
    """The exact L is even in c (cases 1, 2 share L = 1.05^2/4 = 0.2756 at h^2 = 20); Table 3's
    case 1 < L < case 2 is the O(eps^3) term of a finite-eps regression, whose sign follows c.
    A regression of KL on eps^2 (with intercept) over eps in [0.01, 0.1] lands within 3% of
    Table 3's cases 1 and 2 for every sigma0, and of case 3 for sigma0 <= 0.8; for sigma0 >= 1.5
    case 3 is 4-7% below both our L and our regression (reported, not asserted)."""
    h = 4.47
    p1, p2, p3 = TABLE3[sigma0]
    L1, L3 = gaussian_L(sigma0, 2.0, h, 1), gaussian_L(sigma0, 2.0, h, 3)
    assert gaussian_L(sigma0, 2.0, h, 2) == pytest.approx(L1, rel=1e-12)
    assert p1 < L1 < p2
    eps = np.linspace(0.01, 0.1, 5)
    for case, p in ((1, p1), (2, p2), (3, p3))[: 3 if sigma0 < 1 else 2]:
        kl = [gaussian_kl(sigma0, 2.0, h, e, case) for e in eps]
        assert np.polyfit(eps ** 2, kl, 1)[0] == pytest.approx(p, rel=0.03)


# ---- (5) validation ---------------------------------------------------------------------------
GOOD = dict(sigma0=0.5, T=2.0, h=1.0, eps=0.02, case=1)


@pytest.mark.parametrize("name,value", [
    ("sigma0", 0.0), ("sigma0", -1.0), ("sigma0", float("nan")), ("sigma0", "a"), ("sigma0", True),
    ("T", 0.0), ("T", -2.0), ("T", float("inf")), ("T", None),
    ("h", -0.1), ("h", float("nan")), ("h", "1"), ("h", lambda t: 1.0 - t),
    ("h", lambda t: float("nan")), ("h", lambda t: np.ones(2)),
    ("eps", float("nan")), ("eps", float("inf")), ("eps", "x"), ("eps", None),
    ("case", 0), ("case", 6), ("case", 1.0), ("case", True), ("case", "1"),
    ("case", lambda t: float("inf"))])
def test_bad_inputs_raise_naming_the_argument(name, value):
    kw = dict(GOOD, **{name: value})
    with pytest.raises(ValueError, match=name):
        gaussian_kl(**kw)
    if name != "eps":
        kw.pop("eps")
        with pytest.raises(ValueError, match=name):
            gaussian_L(**kw)


def test_callable_case_equals_builtin_case():
    c3 = lambda t: 0.5 * (1 + math.sin(2 * math.pi * t / 2.0))  # noqa: E731
    assert gaussian_L(0.5, 2.0, 1.0, c3) == pytest.approx(gaussian_L(0.5, 2.0, 1.0, 3), rel=1e-10)
    assert gaussian_kl(0.5, 2.0, 1.0, 0.1, lambda t: 1.0) == pytest.approx(
        gaussian_kl(0.5, 2.0, 1.0, 0.1, 1), rel=1e-10)
    assert gaussian_kl(0.5, 2.0, lambda t: 1.0, 0.1, 1) == pytest.approx(
        gaussian_kl(0.5, 2.0, 1.0, 0.1, 1), rel=1e-10)


# ---- (6) planted errors are caught -------------------------------------------------------------
def test_planted_drift_coefficient_error_is_caught():
    """-f coefficient 1/2 -> 0.5005 (0.1%): the exact-score identity and the EM chain both fail."""
    one = lambda t: 1.0  # noqa: E731
    v = odesde._variance_full(0.5, 2.0, one, one, (), 0.0, plant={"drift": 1.001})
    assert abs(v / 0.25 - 1) > 1e-4  # vs < 1e-11 unplanted
    d = odesde._deviation(0.5, 2.0, one, one, (), 0.05, plant={"drift": 1.001})
    ode = 0.25 + d
    em = [em_chain_variance(0.5, 2.0, 1.0, 0.05, 1, 100 * 2 ** j) for j in (7, 8, 9)]
    r2 = (4 * (2 * em[2] - em[1]) - (2 * em[1] - em[0])) / 3
    assert abs(r2 / ode - 1) > 1e-5  # vs tolerance 1e-9 unplanted


def test_planted_forcing_error_is_caught():
    """(1 + h^2) -> 1.001 (1 + h^2) in the eps forcing: L moves by 0.2%, Richardson tolerance 1e-7."""
    one = lambda t: 1.0  # noqa: E731
    u = odesde._sensitivity(0.5, 2.0, one, one, (), plant={"forcing": 1.001})
    L_planted = u * u / (4 * 0.5 ** 4)
    R = richardson_L(0.5, 2.0, 1.0, 1)
    assert abs(L_planted / R - 1) > 1e-3
    # and a 0.1% perturbed error callable is distinguished from case 1 by the closed form
    kl = gaussian_kl(0.5, 2.0, 1.0, 0.02, lambda t: 1.001)
    ref = kl_direct(0.25, 0.25 + closed_form_deviation(0.5, 2.0, 1.0, 0.02, 1.0))
    assert abs(kl / ref - 1) > 1e-3
