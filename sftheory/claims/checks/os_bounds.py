"""``os.*``: the bounds and limits of the ODE-vs-SDE paper ([OS] Props 3.4, 3.6, App. E, F),
measured with the exact Gaussian theory (:mod:`sftheory.theory.odesde`,
:mod:`sftheory.theory.gaussian_nd`) against the formulas of :mod:`sftheory.theory.bounds`.

Independent routes written out here (never the closed forms under test):

* quadrature of the definitions: Z_V = int e^{-V} (scipy ``quad``), d log Z_V / dtau by
  central differences of it, C_h = (1/2) int (div(p_s E))^2 / rho_s with div(p_s E) by a
  complex-step derivative, the exponent of (17) as ``quad`` over time of the paper's pointwise
  constants (16), (30); int (div(p0 E))^2 / p0 for (18); the Hermite coefficients alpha_k by
  projection and lambda_k as Rayleigh quotients ([OS] Lemma D.1);
* the exact L(h) of a pulse from first principles: the mean / variance sensitivity ODE
  integrated as ``quad`` of the drift coefficient (log space), and, where L is resolvable, a
  Richardson central difference of ``odesde.gaussian_L`` in the horizon (a pulse at s is minus
  the T'-derivative of the error window [s, T], i.e. of case 1 with horizon T' = T - s);
* the large-h limit of ``gaussian_L`` / ``gaussian_L_nd``, extrapolated in 1/h^2 (cubic
  through h^2 = 25, 50, 100, 200), with the spread of two extrapolations as its error estimate.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.integrate import IntegrationWarning, quad, solve_ivp
from scipy.optimize import minimize_scalar
from scipy.special import eval_hermitenorm

from ...testing.tolerances import BOUND_REL
from ...theory import bounds, gaussian_nd, odesde
from ..record import Context, Record
from ..registry import claim
from ..verdicts import within
from .os_gaussian import sigma_sq

T_HORIZON = 2.0
# quad (epsrel 1e-12) of smooth Gaussian integrands against closed forms: 1e-9 relative leaves
# a 1000x margin over quad's own accuracy and is 1e6x finer than a 0.1 % planted error
QUAD_RTOL = 1e-9
# d log Z / dtau by a central difference with step 1e-4 (error ~ 1e-8 |third derivative|),
# integrated over tau: the exponent of (17) agrees to 1e-7 absolute (relative error of the bound)
EXPONENT_ATOL = 1e-7
# Richardson-extrapolated central difference of gaussian_L in the horizon, step 0.02/rate:
# truncation (0.02)^4 ~ 2e-7, rounding 1e-12/0.02: 1e-5 relative on u leaves a wide margin
FD_RTOL = 1e-5
# ODE (rtol 1e-12) amplified by the extrapolation weights (sum |w| < 100): floor of the
# extrapolated-limit tolerance, relative
EXTRAP_FLOOR = 1e-9
# the limit tolerance is this many times the spread of two extrapolations (cubic through four
# h^2, quadratic through the last three): the spread over-estimates the cubic's error (next
# order in 1/h^2) on every case measured
EXTRAP_SAFETY = 4.0
H_SQ = (25.0, 50.0, 100.0, 200.0)


# ---- independent numerical routes ---------------------------------------------------------------
def _cstep(f, x):
    """Complex-step derivative (exact to rounding for functions analytic in x)."""
    return np.imag(f(x + 1e-20j)) / 1e-20


def _quad(f, a=-np.inf, b=np.inf):
    # epsrel 1e-12 is near float64's limit and quad may warn that it cannot certify it; the
    # comparisons against closed forms (at 1e-9) judge the accuracy, so the warning is silenced
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrationWarning)
        val, _ = quad(f, a, b, epsabs=0.0, epsrel=1e-12, limit=400)
    return val


def _U(x, v):
    """-log N(0, v) at x (the potential U of [OS] Sec. 3.3)."""
    return x * x / (2.0 * v) + 0.5 * np.log(2.0 * np.pi * v)


def _V(x, v, h):
    """V = (1 + h^-2) U - x^2/(2 h^2) ([OS] (11)), straight from the definition."""
    u = 1.0 / (h * h)
    return (1.0 + u) * _U(x, v) - u * x * x / 2.0


def _p(x, v):
    return np.exp(-_U(x, v))


def logZ_quad(v, h) -> float:
    """log int e^{-V} by quad."""
    return math.log(_quad(lambda x: math.exp(-_V(x, v, h))))


def _E(kind, v, c):
    """The pulse error E(x): c grad log p (= -c x / v, the score of N(0, v)) or the constant c."""
    if kind == "score":
        return lambda x: -c * x / v
    return lambda x: c + 0.0 * x


def C_h_quad(v_s, h, c, kind) -> float:
    """(1/2) int (div(p_s E))^2 / rho_s, rho_s = e^{-V}/Z: quad + complex step ([OS] (34))."""
    E = _E(kind, v_s, c)
    logZ = logZ_quad(v_s, h)

    def integrand(x):  # (div/p)^2 p^2/rho, the exponents combined (no overflow)
        r = _cstep(lambda y: _p(y, v_s) * E(y), x) / _p(x, v_s)
        return r * r * math.exp(-2.0 * _U(x, v_s) + _V(x, v_s, h) + logZ)

    # the integrand is ~ exp(-x^2/(2 v_s)) for large |x|: +-30 sd leaves e^-450 (and p stays
    # above the float64 underflow, e^-709)
    w = 30.0 * math.sqrt(v_s)
    return 0.5 * _quad(integrand, -w, w)


def exponent_quad(sigma0, T, s, h, reading="eq30") -> float:
    """int_s^T ((h^2 - C2) kappa - C1) dr by quad over tau = T - r of [OS] (16), (30) evaluated
    pointwise (m = M = 1/sigma_tau^2, X = Y = 0 by symmetry, d = 1), with d log Z_V/dt from a
    central difference (step 1e-4) of ``logZ_quad``."""
    H = h * h
    dt = 1e-4

    def integrand(tau):
        v = sigma_sq(sigma0, tau)
        m = 1.0 / v
        dlogZ = (logZ_quad(sigma_sq(sigma0, tau + dt), h)
                 - logZ_quad(sigma_sq(sigma0, tau - dt), h)) / (2 * dt)
        return ((H - bounds.C2(m, m, reading=reading)) * bounds.kappa(m, h)
                - bounds.C1(dlogZ, 1, m, m, 0.0, 0.0, reading=reading))

    val, _ = quad(integrand, 0.0, T - s, epsabs=1e-10, epsrel=1e-11, limit=200)
    return val


def pulse_log_L_quad(sigma0, T, s, h, c, kind) -> float:
    """log L for the pulse from first principles. The generative drift is linear,
    a0(t) = 1/2 - (1 + h^2)/(2 v0(t)), v0(t) = sigma_{T-t}^2. The pulse (1 + h^2)/2 eps E delta(t-s)
    kicks the state at s: kind "const" shifts the mean by eps (1 + h^2) c / 2, which then follows
    dmu/dt = a0 mu, and KL(N(0, s0^2) || N(mu, s0^2)) = mu^2/(2 s0^2); kind "score" adds
    -eps (1 + h^2) c to the variance (E = -c x / v0(s) times Var = v0(s)), which then follows
    du/dt = 2 a0 u, and KL = u^2/(4 s0^4) + O(eps^3). int a0 by quad (log space)."""
    k = 1.0 + h * h
    int_a0 = _quad(lambda t: 0.5 - k / (2.0 * sigma_sq(sigma0, T - t)), s, T)
    if kind == "const":
        log_mu = math.log(k * abs(c) / 2.0) + int_a0
        return 2.0 * log_mu - math.log(2.0 * sigma0 ** 2)
    log_u = math.log(k * abs(c)) + 2.0 * int_a0
    return 2.0 * log_u - math.log(4.0 * sigma0 ** 4)


def pulse_L_fd(sigma0, T, s, h) -> float:
    """L of the pulse E = grad log p_s (kind "score", c = 1) from the toolkit's sensitivity ODE:
    u_pulse = d/dT' u_window(T') at T' = T - s, u_window = -2 sigma0^2 sqrt(gaussian_L(sigma0,
    T', h, case 1)) (case 1 over horizon T' is the error window [s, T]); Richardson-extrapolated
    central difference with step 0.02 / max |d log G/dtau|."""
    tau_s = T - s
    k = 1.0 + h * h
    rate = max(abs(1.0 - k / sigma_sq(sigma0, t)) for t in (0.0, tau_s))
    step = min(0.02 / rate, tau_s / 4.0)

    def u_window(Tp):
        return -2.0 * sigma0 ** 2 * math.sqrt(odesde.gaussian_L(sigma0, Tp, h, 1))

    def D(dl):
        return (u_window(tau_s + dl) - u_window(tau_s - dl)) / (2.0 * dl)

    u = (4.0 * D(step / 2.0) - D(step)) / 3.0
    return u * u / (4.0 * sigma0 ** 4)


def measure_propE2(sigma0, tau, h, reading="eq30") -> dict:
    """[OS] Lemma E.5 (37) and Prop. E.2 at forward time tau for the 1D Gaussian, with the
    paper's constants (30) (``bounds.xi``, ``varsigma``, ``C1``, ``C2``) and the time derivative
    of rho taken independently: d/dt log rho_t(x) = -(d/dtau)(-V - log Z) by a central
    difference in tau (step 1e-5) of the definitions (Z by quad).

    Returns the worst ratios |d_t rho|/rho / (xi + varsigma |x|^2) over a grid of x (37), and
    |int phi^2 d_t rho| / (C1 int phi^2 rho + C2 int |phi'|^2 rho) over phi = 1, x, ..., x^4
    (Prop. E.2); each holds iff <= 1."""
    dt = 1e-5
    v, vp, vm = (sigma_sq(sigma0, tau + k * dt) for k in (0, 1, -1))
    lz, lzp, lzm = (logZ_quad(w, h) for w in (v, vp, vm))
    dlogZ = -(lzp - lzm) / (2 * dt)  # generative time runs against tau

    def dlogrho(x):  # d/dt log rho at x, generative time
        return ((_V(x, vp, h) + lzp) - (_V(x, vm, h) + lzm)) / (2 * dt)

    def rho(x):
        return math.exp(-_V(x, v, h) - lz)

    M = m = 1.0 / v
    xi_t = bounds.xi(dlogZ, 1, M, 0.0)
    vs = bounds.varsigma(M, reading=reading)
    xs = np.linspace(-10 * math.sqrt(v), 10 * math.sqrt(v), 401)
    e37 = float(np.max(np.abs(dlogrho(xs)) / (xi_t + vs * xs ** 2)))
    c1 = bounds.C1(dlogZ, 1, M, m, 0.0, 0.0, reading=reading)
    c2 = bounds.C2(M, m, reading=reading)
    w = 30.0 * math.sqrt(v)
    eE2 = 0.0
    for k in range(5):
        lhs = abs(_quad(lambda x: x ** (2 * k) * rho(x) * dlogrho(x), -w, w))
        rhs = c1 * _quad(lambda x: x ** (2 * k) * rho(x), -w, w) \
            + c2 * (k * k * _quad(lambda x: x ** (2 * k - 2) * rho(x), -w, w) if k else 0.0)
        eE2 = max(eE2, lhs / rhs)
    return {"lemmaE5_eq37": e37, "propE2": eE2}


def _rel_excess(a, b, rtol) -> float:
    a, b = float(a), float(b)
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.nan
    return abs(a - b) / (rtol * max(abs(b), 1e-300))


# ---- os.bound17 ---------------------------------------------------------------------------------
def measure_bound17(sigmas, taus, hs, kinds=("score", "const"),
                    e2_grid=((0.0, T_HORIZON), (0.5, 8.0))) -> dict:
    """Every constant of (17) in closed form (``bounds.gaussian_bound17``) against quadrature of
    its definition; Lemma E.5 (37) and Prop. E.2 on ``e2_grid`` = (forward times tau, h values);
    the exact pulse L (``bounds.gaussian_pulse_log_L``) against first principles and the
    toolkit's ODE; the ratio L / bound over the grid (h >= h_lb on every row)."""
    T = T_HORIZON
    ex = {k: [] for k in ("C_h_closed_vs_quad", "exponent_closed_vs_quad", "c_U_closed_vs_min",
                          "h0_half_property", "rho0_over_p0_closed_vs_grid",
                          "rho0_over_p0_over_4_eq29", "C1_vs_lemmaE3_limit",
                          "pulse_L_closed_vs_quad", "pulse_L_closed_vs_gaussian_L_fd",
                          "lemmaE5_eq37_ratio", "propE2_ratio", "L_over_bound17")}
    literal_E2 = []
    rows, literal_rows = [], []
    for s0 in sigmas:
        # c_U = min (U0 - x^2/2) (Assumption 3.1 (3)) by minimization
        res = minimize_scalar(lambda x: _U(x, s0 ** 2) - x * x / 2.0, bracket=(-1.0, 0.5, 1.0),
                              tol=1e-12)
        b0 = bounds.gaussian_bound17(s0, T, 0.0, 8.0)
        ex["c_U_closed_vs_min"].append(abs(b0.c_U - res.fun) / 1e-9)
        # h0(1/2): Z_{V_0}(h) >= 1/2 for every h >= h0 (quad on a grid), and < 1/2 just below
        h0 = b0.h0_half
        grid = np.geomspace(max(h0, 0.5), 200.0, 25)
        ok = all(logZ_quad(s0 ** 2, hh) >= -math.log(2.0) - 1e-12 for hh in grid)
        if h0 > 0:
            ok = ok and logZ_quad(s0 ** 2, h0 * (1 - 1e-6)) < -math.log(2.0)
        ex["h0_half_property"].append(0.0 if ok else math.inf)
        # Lemma E.3: C1 at h = 1e4 vs its h -> oo limit, at both ends of [0, T]
        for v in (s0 ** 2, sigma_sq(s0, T)):
            m = 1.0 / v
            dl = (logZ_quad(v, 1e4) - logZ_quad(v * (1 + 1e-4), 1e4)) / (v * 1e-4)  # ~ 1e-8
            lim = bounds.C1_limit_lemmaE3(1, m, m, 0.0)
            ex["C1_vs_lemmaE3_limit"].append(abs(bounds.C1(dl, 1, m, m, 0.0, 0.0) - lim)
                                             / (1e-6 * lim))
        # Lemma E.5 (37) and Prop. E.2 (any h >= 1/2) at both ends of [0, T] and in between
        for tau in e2_grid[0]:
            for h in e2_grid[1]:
                r = measure_propE2(s0, tau, h)
                ex["lemmaE5_eq37_ratio"].append(r["lemmaE5_eq37"] / (1 + BOUND_REL))
                ex["propE2_ratio"].append(r["propE2"] / (1 + BOUND_REL))
                rl = measure_propE2(s0, tau, h, reading="literal")
                literal_E2.append((rl["lemmaE5_eq37"], rl["propE2"]))
        for tau_s in taus:
            s = T - tau_s
            v_s = sigma_sq(s0, tau_s)
            h_lb = bounds.gaussian_bound17(s0, T, s, 8.0).h_lb
            for h in sorted({h_lb, *[x for x in hs if x >= h_lb]}):
                b = bounds.gaussian_bound17(s0, T, s, h)
                # rho_0/p_0 on a grid (its sup is at x = 0 for sigma0 <= 1)
                lz0 = logZ_quad(s0 ** 2, h)
                xs = np.linspace(-6 * s0, 6 * s0, 1201)
                grid_sup = float(np.max(np.exp(-_V(xs, s0 ** 2, h) - lz0 + _U(xs, s0 ** 2))))
                ex["rho0_over_p0_closed_vs_grid"].append(_rel_excess(b.rho_over_p_sup, grid_sup,
                                                                     QUAD_RTOL))
                ex["rho0_over_p0_over_4_eq29"].append(grid_sup / 4.0)
                e_q = exponent_quad(s0, T, s, h)
                ex["exponent_closed_vs_quad"].append(
                    abs(b.exponent - e_q) / (EXPONENT_ATOL + QUAD_RTOL * abs(e_q))
                    if math.isfinite(b.exponent) else math.nan)
                for kind in kinds:
                    bk = bounds.gaussian_bound17(s0, T, s, h, kind=kind)
                    ex["C_h_closed_vs_quad"].append(_rel_excess(bk.C_h, C_h_quad(v_s, h, 1.0, kind),
                                                                QUAD_RTOL))
                    logL = bounds.gaussian_pulse_log_L(s0, T, s, h, kind=kind)
                    logL_q = pulse_log_L_quad(s0, T, s, h, 1.0, kind)
                    # log-space: |log L - log L_q| <= 1e-9 (1 + |log L|) is a relative error of L
                    ex["pulse_L_closed_vs_quad"].append(
                        abs(logL - logL_q) / (QUAD_RTOL * (1 + abs(logL_q)))
                        if math.isfinite(logL) else math.nan)
                    fd = None
                    if kind == "score" and logL > math.log(1e-8):
                        fd = pulse_L_fd(s0, T, s, h)
                        ex["pulse_L_closed_vs_gaussian_L_fd"].append(
                            _rel_excess(math.sqrt(math.exp(logL)), math.sqrt(fd), FD_RTOL)
                            if fd >= 0 else math.nan)
                    log_ratio = logL - bk.log_bound
                    ratio = math.exp(log_ratio) if math.isfinite(log_ratio) else math.nan
                    ex["L_over_bound17"].append(ratio / (1.0 + BOUND_REL))
                    rows.append({"sigma0": s0, "s": s, "tau_s": tau_s, "h": h, "kind": kind,
                                 "h_lb": b.h_lb, "log_L": logL, "log_bound17": bk.log_bound,
                                 "log10_L_over_bound": log_ratio / math.log(10.0),
                                 "C_h": bk.C_h, "exponent": b.exponent,
                                 "rho0_over_p0_sup": b.rho_over_p_sup,
                                 "L_fd": fd if fd is not None else "not run: L < 1e-8 or kind const"})
            # the printed (literal) reading of the constants, at its own h_lb: reported only
            bl = bounds.gaussian_bound17(s0, T, s, 8.0, reading="literal")
            for h in (bl.h_lb, 2 * bl.h_lb):
                for kind in kinds:
                    bk = bounds.gaussian_bound17(s0, T, s, h, kind=kind, reading="literal")
                    logL = bounds.gaussian_pulse_log_L(s0, T, s, h, kind=kind)
                    literal_rows.append({"sigma0": s0, "tau_s": tau_s, "h": h, "kind": kind,
                                         "h_lb_literal": bl.h_lb,
                                         "log10_L_over_bound": (logL - bk.log_bound) / math.log(10)})
    ex["pulse_L_closed_vs_gaussian_L_fd"] = ex["pulse_L_closed_vs_gaussian_L_fd"] or [math.nan]
    return {"rows": rows, "literal_rows": literal_rows,
            "literal_E5_E2_worst": [max(a for a, _ in literal_E2), max(b for _, b in literal_E2)],
            "excess": {k: np.array(v, dtype=np.float64) for k, v in ex.items()}}


@claim("os.bound17", title="the bound (17) on L(h) for a pulse error, with its explicit constants "
                           "(eqs 29, 30, 34; Lemmas E.1, E.3), holds",
       source="[OS] Prop. 3.4, eq. (17), App. E.1-E.2 (eqs 29, 30, 34; Lemmas E.1, E.3)")
def check_bound17(ctx: Context) -> Record:
    """1D Gaussian p0 = N(0, sigma0^2), sigma0 < 1 (Assumption 3.3), pulse errors E delta(t - s)
    with E = grad log p_s (second Hermite mode) and E = 1 (first mode, where Poincare is sharp):
    every constant of (17) in closed form against quadrature of its definition; the bound against
    the exact L(h) on a grid of h >= h_lb, s and sigma0; the worst ratio L / bound (holds iff <= 1)."""
    sigmas = (0.3, 0.6, 0.9) if ctx.quick else (0.2, 0.3, 0.5, 0.6, 0.8, 0.9, 0.95)
    taus = (0.05, 0.5, 2.0) if ctx.quick else (0.01, 0.05, 0.2, 0.5, 1.0, 2.0)
    hs = (8.0, 16.0) if ctx.quick else (8.0, 12.0, 16.0, 24.0, 32.0)
    e2 = ((0.0, T_HORIZON), (0.5, 8.0)) if ctx.quick else ((0.0, 0.5, 1.0, 2.0), (0.5, 2.0, 8.0, 32.0))
    m = measure_bound17(sigmas, taus, hs, e2_grid=e2)
    ex = m["excess"]
    lr = np.array([r["log10_L_over_bound"] for r in m["rows"]])
    worst = m["rows"][int(np.nanargmax(lr))] if np.all(np.isfinite(lr)) else None
    lit = np.array([r["log10_L_over_bound"] for r in m["literal_rows"]])
    return ctx.verdict(
        within(ex),
        compared=[("bounds.gaussian_bound17 constants (closed form)",
                   "quad of the definitions: Z_V, C_h (34), exponent of (17) from (16), (30)"),
                  ("bounds.gaussian_pulse_log_L (closed form of (13))",
                   "first principles: quad of the drift coefficient; Richardson FD of odesde.gaussian_L"),
                  ("exact L(h) of the pulse", "bound (17), h >= h_lb")],
        claimed={"bound17": "L(h) <= C_h (1+h^2)^2 exp(-int_s^T (h^2 - C2) kappa - C1) for h >= h_lb",
                 "eq37_propE2": "|d_t rho|/rho <= xi + varsigma |x - X|^2; |int phi^2 d_t rho| <= "
                                "C1 int phi^2 rho + C2 int |grad phi|^2 rho (h >= 1/2)",
                 "eq29": "rho_0/p_0 <= 4 for h >= max{h0(1/2), sqrt(-c_U/ln 2)}",
                 "lemmaE3": "C1 tends to 5d(1+M)/2 + 5|X|^2/2 + (50 + 75M^2) d M/m^2"},
        measured={"worst_log10_L_over_bound17": float(np.max(lr)) if lr.size else math.nan,
                  "worst_at": ({k: worst[k] for k in ("sigma0", "tau_s", "h", "kind")}
                               if worst else "not run: non-finite ratio"),
                  "best_log10_L_over_bound17": float(np.min(lr)) if lr.size else math.nan,
                  "literal_reading_worst_log10_L_over_bound": float(np.max(lit)),
                  "literal_reading_worst_eq37_propE2_ratios": m["literal_E5_E2_worst"],
                  "h_lb_range": [float(min(r["h_lb"] for r in m["rows"])),
                                 float(max(r["h_lb"] for r in m["rows"]))],
                  "rho0_over_p0_max": float(max(r["rho0_over_p0_sup"] for r in m["rows"]))},
        tolerance={"quad_rtol": QUAD_RTOL, "exponent_atol": EXPONENT_ATOL, "fd_rtol": FD_RTOL,
                   "bound": f"L <= bound (1 + {BOUND_REL:g})",
                   "why": "quad epsrel 1e-12 (margin 1000); d log Z/dtau by a central difference "
                          "(step 1e-4); Richardson FD of gaussian_L (truncation ~2e-7)"},
        inputs={"T": T_HORIZON, "sigma0": list(sigmas), "tau_s = T - s": list(taus),
                "h": ["h_lb", *hs], "kinds": ["score: E = grad log p_s", "const: E = 1"],
                "eq37_propE2_grid": {"tau": list(e2[0]), "h": list(e2[1])},
                "reading": "eq30 (the literal printed reading is reported, not judged)"},
        rows=m["rows"],
        notes="The bound holds on every row, by tens to thousands of decades: C2 >= 30 and C1 >= "
              "~130 enter exp(+int C2 kappa + C1), and for E = grad log p the exact decay rate is "
              "2 h^2 kappa (second Hermite mode), twice the Poincare rate h^2 kappa of (17). "
              "Typos met: Lemma E.1 writes c_V for c_U; Lemma E.5 / proof of Prop. E.2 / Lemma E.3 "
              "print M^{-2}, m^{-2} where (30) and the derivation (Lemma E.4) give M^2, m^2. The "
              "literal reading (varsigma = 5(1/2 + 3/(4M^2)), C2 = 8 varsigma m^2) makes Lemma "
              "E.5's pointwise bound (37) false for this Gaussian (first of literal_reading_worst_"
              "eq37_propE2_ratios > 1; Prop. E.2's integrated form still holds on the test "
              "functions 1, x, .., x^4) while the (30) reading satisfies both (ratios "
              "lemmaE5_eq37_ratio, propE2_ratio <= 1): the printed M^{-2} is a typo. (17) itself "
              "still holds under the literal reading at its own h_lb (~8-50), because the bound is "
              "so loose (literal_reading_worst_log10_L_over_bound). The pulse L is "
              "checked against gaussian_L only where L > 1e-8 (gaussian_L's atol 1e-14 on u).")


# ---- shared: large-h limits ---------------------------------------------------------------------
def extrapolate_limit(Ls, h_sq=H_SQ) -> tuple[float, float]:
    """(limit, error estimate) of L(h) as h -> oo from values at ``h_sq``: a cubic in 1/h^2
    through all four points and a quadratic through the last three; the estimate is their spread
    (plus the ODE floor)."""
    x = 1.0 / np.asarray(h_sq, dtype=np.float64)
    Ls = np.asarray(Ls, dtype=np.float64)
    if not np.all(np.isfinite(Ls)):
        return math.nan, math.nan
    p4 = np.polyfit(x, Ls, len(x) - 1)[-1]
    p3 = np.polyfit(x[1:], Ls[1:], len(x) - 2)[-1]
    return float(p4), float(abs(p4 - p3))


def _limit_excess(measured, reference, err_est) -> float:
    if not (math.isfinite(measured) and math.isfinite(reference) and math.isfinite(err_est)):
        return math.nan
    return abs(measured - reference) / (EXTRAP_SAFETY * err_est + EXTRAP_FLOOR * abs(reference))


def _c_T(case):
    return {1: 1.0, 2: -1.0, 3: 0.5}[case]  # c(T) of [OS] (44): (1 + sin 2 pi)/2 = 1/2


def large_h_L_1d(sigma0, case, h_sq=H_SQ):
    return [odesde.gaussian_L(sigma0, T_HORIZON, math.sqrt(H), case) for H in h_sq]


def large_h_L_nd(Sigma0, case, h_sq=H_SQ):
    return [gaussian_nd.gaussian_L_nd(Sigma0, T_HORIZON, math.sqrt(H), case) for H in h_sq]


def fisher_quad_1d(sigma0, c_T, kind="score") -> float:
    """int (div(p0 E_T))^2 / p0 with E_T = c_T grad log p0 (or the constant c_T), by quad +
    complex step."""
    v = sigma0 ** 2
    E = _E(kind, v, c_T)
    w = 30.0 * sigma0  # the integrand is ~ exp(-x^2/(2 v)): e^-450 beyond

    def integrand(x):
        r = _cstep(lambda y: _p(y, v) * E(y), x) / _p(x, v)
        return r * r * _p(x, v)

    return _quad(integrand, -w, w)


def mean_shift_L_1d(sigma0, T, h, case) -> float:
    """Exact L for the constant-in-x error E_t(x) = c(t) (first Hermite mode), p0 = N(0, sigma0^2):
    the drift of (7) is linear, so the error only moves the mean of Y~, by eps m(t) with
    dm/dt = a0(t) m + (1 + h^2) c(t)/2, m(0) = 0, a0 = 1/2 - (1 + h^2)/(2 sigma_{T-t}^2), and
    KL(N(0, s0^2) || N(eps m(T), s0^2)) = eps^2 m(T)^2/(2 s0^2) (exact in eps). DOP853 at rtol
    1e-12, restarted at the jumps of c. (``gaussian_L`` covers only E = c(t) grad log p.)"""
    from ...theory._cases import case_function

    cfun, breaks = case_function(case, T)
    k = 1.0 + h * h

    def rhs(t, y):
        return [(0.5 - k / (2.0 * sigma_sq(sigma0, T - t))) * y[0] + 0.5 * k * cfun(t)]

    knots = [0.0, *sorted(b for b in breaks if 0.0 < b < T), T]
    y = [0.0]
    for t0, t1 in zip(knots[:-1], knots[1:]):
        y = solve_ivp(rhs, (t0, t1), y, method="DOP853", rtol=1e-12, atol=1e-14).y[:, -1]
    return float(y[0]) ** 2 / (2.0 * sigma0 ** 2)


# ---- os.prop36 ----------------------------------------------------------------------------------
def measure_prop36(sigmas, cases, nd_cov, h_sq=H_SQ) -> dict:
    """Limits of L(h) (extrapolated gaussian_L) against the bound (18) (closed form and
    quadrature); the d-dim isotropic Gaussian limit against (18) = d (App. F.2); the rate."""
    ex = {"limit_over_bound18": [], "bound18_closed_vs_quad": [], "convergence_monotone": [],
          "nd_limit_over_bound18": [], "nd_bound18_vs_d": [], "appF2_sympy": []}
    rows, orders = [], []
    for s0 in sigmas:
        for case in cases:
            Ls = large_h_L_1d(s0, case, h_sq)
            lim, err = extrapolate_limit(Ls, h_sq)
            cT = _c_T(case)
            b18 = bounds.bound18(1.0 / s0 ** 2, bounds.gaussian_fisher_nd([[s0 ** 2]], cT))
            b18_q = bounds.bound18(1.0 / s0 ** 2, fisher_quad_1d(s0, cT))
            ex["bound18_closed_vs_quad"].append(_rel_excess(b18, b18_q, QUAD_RTOL))
            ex["limit_over_bound18"].append((lim + EXTRAP_SAFETY * err) / (b18 * (1 + BOUND_REL))
                                            if math.isfinite(lim) else math.nan)
            gaps = np.abs(np.asarray(Ls) - lim)
            mono = bool(np.all(np.diff(gaps) < 0)) and math.isfinite(lim)
            ex["convergence_monotone"].append(0.0 if mono else math.inf)
            order = (float(-np.polyfit(np.log(h_sq), np.log(gaps), 1)[0])
                     if mono and np.all(gaps > 0) else math.nan)
            orders.append(order)
            rows.append({"sigma0": s0, "case": case, "h_sq": list(h_sq), "L": [float(x) for x in Ls],
                         "limit_extrapolated": lim, "extrapolation_error_estimate": err,
                         "bound18": b18, "bound18_quad": b18_q, "limit_over_bound18": lim / b18,
                         "gap_order_in_h_sq": order})
    for d, s2 in nd_cov:
        Sigma0 = s2 * np.eye(d)
        Ls = large_h_L_nd(Sigma0, 1, h_sq)
        lim, err = extrapolate_limit(Ls, h_sq)
        b18 = bounds.gaussian_bound18_nd(Sigma0, 1.0)
        ex["nd_limit_over_bound18"].append((lim + EXTRAP_SAFETY * err) / (b18 * (1 + BOUND_REL))
                                           if math.isfinite(lim) else math.nan)
        ex["nd_bound18_vs_d"].append(abs(b18 - d) / (1e-12 * d))
        rows.append({"d": d, "Sigma0": f"{s2} I_{d}", "case": 1, "h_sq": list(h_sq),
                     "L": [float(x) for x in Ls], "limit_extrapolated": lim,
                     "extrapolation_error_estimate": err, "bound18": b18,
                     "limit_over_bound18": lim / b18})
    diff, per_d, ok = bounds.appF2_identity()
    ex["appF2_sympy"].append(0.0 if ok else math.inf)
    return {"rows": rows, "orders": orders, "sympy": {"general_d_minus_d": str(diff),
                                                      **{k: str(v) for k, v in per_d.items()}},
            # a category with nothing measured (no d-dim covariances asked for) is left out
            "excess": {k: np.array(v, dtype=np.float64) for k, v in ex.items() if v}}


@claim("os.prop36", title="L(h) tends to a limit as h grows; bound (18); the d-dim Gaussian gives "
                          "bound d (App. F.2)",
       source="[OS] Prop. 3.6, eq. (18), App. F.2, Fig. 2c")
def check_prop36(ctx: Context) -> Record:
    """The large-h limit of the exact L(h) (``gaussian_L`` at h^2 = 25 .. 200, extrapolated in
    1/h^2) for cases 1-3 of (44), against the bound (18) computed in closed form and by
    quadrature; d-dimensional isotropic Gaussians (``gaussian_L_nd``) against (18) = d; the App.
    F.2 identity by sympy (general d, and d = 1..4 from (41))."""
    sigmas = (0.8,) if ctx.quick else (0.3, 0.5, 0.6, 0.8, 0.9)
    cases = (1, 3) if ctx.quick else (1, 2, 3)
    nd_cov = ((2, 0.25),) if ctx.quick else ((2, 0.25), (3, 0.36))
    m = measure_prop36(sigmas, cases, nd_cov)
    orders = np.array(m["orders"], dtype=np.float64)
    return ctx.verdict(
        within(m["excess"]),
        compared=[("lim L(h): gaussian_L at h^2 = 25..200, cubic extrapolation in 1/h^2",
                   "bound (18): bounds.bound18 (closed form) and quad of int (div(p0 E_T))^2/p0"),
                  ("lim L(h) in d dims: gaussian_L_nd, Sigma0 = s^2 I_d", "(18) = d (App. F.2)"),
                  ("App. F.2 identity (sympy, general d via chi^2_d)", "(41) from U0 for d = 1..4")],
        claimed={"prop36": "L(h) converges to a limit T as h -> oo, 'exponentially fast'",
                 "eq18": "T <= (1/(2 m0^2)) int (div(p0 E_T))^2/p0",
                 "appF2": "for p0 = N(mu, sigma0^2 I_d), E_T = grad log p0, the bound is d"},
        measured={"limits": {f"{r['sigma0']}/case{r['case']}" if "sigma0" in r else f"d={r['d']}":
                             r["limit_extrapolated"] for r in m["rows"]},
                  "limit_over_bound18_max": float(max(r["limit_over_bound18"] for r in m["rows"])),
                  "gap_order_in_h_sq_range": [float(np.nanmin(orders)), float(np.nanmax(orders))]
                  if np.any(np.isfinite(orders)) else "not run: no monotone convergence",
                  "sympy": m["sympy"]},
        tolerance={"extrapolation": f"{EXTRAP_SAFETY:g} x spread of two extrapolations + "
                                    f"{EXTRAP_FLOOR:g} relative (ODE rtol 1e-12 x weights)",
                   "quad_rtol": QUAD_RTOL, "bound": f"limit + tol <= bound (1 + {BOUND_REL:g})"},
        inputs={"T": T_HORIZON, "sigma0": list(sigmas), "cases": list(cases), "h_sq": list(H_SQ),
                "nd": [f"{s2} I_{d}" for d, s2 in nd_cov]},
        rows=m["rows"],
        notes="The limit exists and is c(T)^2/4 per dimension (cases 1, 2: 1/4; case 3: 1/16), "
              "1/4 of the bound (18) = c(T)^2 d for isotropic Gaussians; App. F.2's identity holds "
              "symbolically. The approach to the limit is algebraic, not exponential: L(h) - lim "
              "~ 1/h^2 (gap_order_in_h_sq ~ 1; for cases 1, 2 exactly L = (1 + 1/h^2)^2/4 up to "
              "r^{h^2}), from the factor ((1 + h^2)/h^2)^2 in T_1; the exponentially small part is "
              "only T_2. Prop. 3.6's sandwich involves C ~ exp(int C2 m + C1) (astronomically "
              "large) and is not evaluated.")


# ---- os.appF1 -----------------------------------------------------------------------------------
def hermite_projection_quad(sigma0, c_T, kmax=6, kind="score"):
    """(alpha_k, lambda_k), k = 1..kmax, numerically: alpha_k = int div(p0 E_T) phi_k / p0 with
    phi_k = p0 He_k(x/sigma0)/sqrt(k!) (quad, div by complex step), lambda_k as the Rayleigh
    quotient int |d/dx (phi_k/p0)|^2 p0 / int phi_k^2/p0 of -K^oo ([OS] Lemma D.1).
    E_T = c_T grad log p0 (``kind="score"``) or the constant c_T (``kind="const"``)."""
    v = sigma0 ** 2
    E = _E(kind, v, c_T)
    alphas, lams = [], []
    for k in range(1, kmax + 1):
        nk = math.sqrt(math.factorial(k))

        def g(x, k=k, nk=nk):  # phi_k / p0
            return eval_hermitenorm(k, x / sigma0) / nk

        alphas.append(_quad(lambda x: _cstep(lambda y: _p(y, v) * E(y), x) * g(x)))
        num = _quad(lambda x: (g(x + 1e-6) - g(x - 1e-6)) ** 2 / 4e-12 * _p(x, v))
        den = _quad(lambda x: g(x) ** 2 * _p(x, v))
        lams.append(num / den)
    return np.array(alphas), np.array(lams)


# central difference (step 1e-6) in the Rayleigh quotient: relative error ~1e-8 (rounding
# 1e-16/1e-6 and truncation 1e-12 k^2/sigma0^2)
RAYLEIGH_RTOL = 1e-6


def measure_appF1(sigmas, cases, nd_covs, h_sq=H_SQ, const_cases=()) -> dict:
    """App. F.1 for 1D Gaussians: the closed-form Hermite data against projection / Rayleigh
    quotients; its limit 1/2 sum (alpha/lambda)^2 against the extrapolated large-h L, for
    E = c(t) grad log p (``cases``, ``gaussian_L``) and E = c(t) (``const_cases``,
    :func:`mean_shift_L_1d`); the d-dim Sigma0 of ``nd_covs`` (``gaussian_L_nd``); the limit
    against (18)."""
    ex = {"alpha_closed_vs_projection": [], "lambda_closed_vs_rayleigh": [],
          "spectral_vs_large_h_L": [], "bound18_closed_vs_quad": [],
          "nd_spectral_vs_large_h_L": [], "limit_over_bound18": []}
    rows = []
    runs = [(s0, case, "score") for s0 in sigmas for case in cases] \
        + [(s0, case, "const") for s0 in sigmas for case in const_cases]
    for s0, case, kind in runs:
        cT = _c_T(case)
        # E_T = c_T grad log p0 = -(c_T/s0) He_1(x/s0), or the constant c_T = c_T He_0
        e = [0.0, -cT / s0, 0, 0, 0, 0] if kind == "score" else [cT, 0, 0, 0, 0, 0]
        k, a_cf, l_cf = bounds.hermite_spectrum_gaussian(s0, e)
        a_q, l_q = hermite_projection_quad(s0, cT, kmax=len(k), kind=kind)
        scale = float(np.max(np.abs(a_cf)))
        ex["alpha_closed_vs_projection"].append(np.abs(a_cf - a_q) / (QUAD_RTOL * scale))
        ex["lambda_closed_vs_rayleigh"].append(np.abs(l_cf - l_q) / (RAYLEIGH_RTOL * l_cf))
        spec = bounds.spectral_limit(a_cf, l_cf)
        if kind == "score":
            Ls = large_h_L_1d(s0, case, h_sq)
            # (18) with Parseval int Gamma^2/p0 = sum alpha_k^2 would reuse alpha; use the
            # d-dim closed form (2 c^2/s0^4) instead
            b18 = bounds.bound18(1.0 / s0 ** 2, bounds.gaussian_fisher_nd([[s0 ** 2]], cT))
        else:
            Ls = [mean_shift_L_1d(s0, T_HORIZON, math.sqrt(H), case) for H in h_sq]
            b18 = bounds.bound18(1.0 / s0 ** 2, float(np.sum(a_cf ** 2)))  # Parseval
        b18_q = bounds.bound18(1.0 / s0 ** 2, fisher_quad_1d(s0, cT, kind))
        ex["bound18_closed_vs_quad"].append(_rel_excess(b18, b18_q, QUAD_RTOL))
        lim, err = extrapolate_limit(Ls, h_sq)
        ex["spectral_vs_large_h_L"].append(_limit_excess(lim, spec, err))
        ex["limit_over_bound18"].append(spec / (b18 * (1 + BOUND_REL)))
        rows.append({"sigma0": s0, "case": case, "error": kind, "c_T": cT, "spectral_limit": spec,
                     "spectral_limit_quad_coeffs": bounds.spectral_limit(a_q, l_q),
                     "large_h_limit": lim, "extrapolation_error_estimate": err,
                     "L_at_h_sq_200": float(Ls[-1]), "bound18": b18,
                     "limit_over_bound18": spec / b18})
    for cov, case in nd_covs:
        Sigma0 = np.asarray(cov, dtype=np.float64)
        spec = bounds.gaussian_spectral_limit_nd(Sigma0, _c_T(case))
        Ls = large_h_L_nd(Sigma0, case, h_sq)
        lim, err = extrapolate_limit(Ls, h_sq)
        ex["nd_spectral_vs_large_h_L"].append(_limit_excess(lim, spec, err))
        b18 = bounds.gaussian_bound18_nd(Sigma0, _c_T(case))
        ex["limit_over_bound18"].append(spec / (b18 * (1 + BOUND_REL)))
        rows.append({"Sigma0": Sigma0.tolist(), "case": case, "spectral_limit": spec,
                     "large_h_limit": lim, "extrapolation_error_estimate": err, "bound18": b18,
                     "limit_over_bound18": spec / b18})
    # a category with nothing measured (no d-dim covariances asked for) is left out
    return {"rows": rows, "excess": {k: np.concatenate([np.ravel(np.asarray(x, dtype=np.float64))
                                                        for x in v])
                                     for k, v in ex.items() if v}}


APPF1_ND = (([[0.3, 0.1], [0.1, 0.6]], 3),)


@claim("os.appF1", title="lim_{h->oo} L(h) = 1/2 sum_k (alpha_k/lambda_k)^2 in the spectral "
                         "(Hermite) basis; bound (18) vs that limit",
       source="[OS] App. F.1 (limit of T_1), Lemma D.2, eq. (18)")
def check_appF1(ctx: Context) -> Record:
    """Gaussian p0: the Hermite spectrum of -K^oo in closed form (``hermite_spectrum_gaussian``,
    checked against projection by quad and Rayleigh quotients), its limit 1/2 sum (alpha/lambda)^2
    against the extrapolated large-h ``gaussian_L`` (E = c(t) grad log p, cases 1, 2, 3), the
    mean-shift ODE (E = c(t), the first Hermite mode) and ``gaussian_L_nd`` (a full 2x2 Sigma0);
    the limit against the bound (18)."""
    sigmas = (0.6,) if ctx.quick else (0.3, 0.5, 0.6, 0.8, 0.9, 1.5)
    nd = APPF1_ND if ctx.quick else APPF1_ND + (([[0.36, 0, 0], [0, 0.5, 0.1], [0, 0.1, 0.8]], 1),)
    const_cases = (1, 3) if ctx.quick else (1, 2, 3)
    m = measure_appF1(sigmas, (1, 2, 3), nd, const_cases=const_cases)
    const_ratio = [r["limit_over_bound18"] for r in m["rows"] if r.get("error") == "const"]
    return ctx.verdict(
        within(m["excess"]),
        compared=[("bounds.hermite_spectrum_gaussian (closed form)",
                   "projection by quad; Rayleigh quotients of -K^oo"),
                  ("bounds.spectral_limit / gaussian_spectral_limit_nd",
                   "gaussian_L / gaussian_L_nd at h^2 = 25..200, cubic extrapolation in 1/h^2"),
                  ("bounds.spectral_limit, E = c(t) (first Hermite mode)",
                   "mean-shift ODE (mean_shift_L_1d) at h^2 = 25..200, extrapolated"),
                  ("the limit", "bound (18): closed form and quad")],
        claimed={"appF1": "lim_{h->oo} L(h) = 1/2 sum_k (alpha_k/lambda_k)^2, (lambda_k, phi_k) "
                          "eigenpairs of -K^oo, div(p0 E_T) = sum alpha_k phi_k",
                 "eq18": "the limit is <= (18) (lambda_k >= m0)"},
        measured={"limits": {str(r.get("sigma0", "nd")) + f"/case{r['case']}/"
                             + r.get("error", "score"): [r["spectral_limit"], r["large_h_limit"]]
                             for r in m["rows"]},
                  "limit_over_bound18_max": float(max(r["limit_over_bound18"] for r in m["rows"])),
                  "const_error_limit_over_bound18": [float(min(const_ratio)),
                                                     float(max(const_ratio))]},
        tolerance={"extrapolation": f"{EXTRAP_SAFETY:g} x spread of two extrapolations + "
                                    f"{EXTRAP_FLOOR:g} relative",
                   "alpha_rtol": QUAD_RTOL, "lambda_rtol": RAYLEIGH_RTOL,
                   "bound": f"limit <= bound (1 + {BOUND_REL:g})"},
        inputs={"T": T_HORIZON, "sigma0": list(sigmas), "cases": [1, 2, 3],
                "const_error_cases": list(const_cases), "h_sq": list(H_SQ),
                "nd": [{"Sigma0": c, "case": k} for c, k in nd]},
        rows=m["rows"],
        notes="For E_T = c(T) grad log p0 only the mode He_2 of each eigen-axis is excited "
              "(alpha = c sqrt 2 / s, lambda = 2/s), so the limit is d c(T)^2/4 whatever Sigma0: "
              "1/4 (cases 1, 2), 1/16 (case 3, c(T) = 1/2) in 1D. The limit is 1/4 of the bound "
              "(18) for isotropic Gaussians (lambda_2 = 2 m0, twice the gap the bound uses) and "
              "less for anisotropic ones. A constant error E = c(t) excites He_1 only (lambda_1 = "
              "m0): the limit c(T)^2 sigma0^2/2 equals (18), so (18) is attained "
              "(const_error_limit_over_bound18 = 1). sigma0 = 1.5 (full mode) lies outside "
              "Assumption 3.3 (m0 < 1); the limit formula holds there too.")
