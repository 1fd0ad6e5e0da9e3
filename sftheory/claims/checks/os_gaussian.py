"""``os.*``: the 1D Gaussian experiments of the ODE-vs-SDE paper ([OS] App. G, Props 3.4, 3.5;
Sec. 4 Table 1), measured with the exact theory of :mod:`sftheory.theory.odesde`.

Setting: p0 = N(0, sigma0^2), f = -x/2, g = 1, constant generative diffusion h, score error
E_t = c(t) grad log p_{T-t} with c from [OS] eq. (44). Every check compares the toolkit's
``gaussian_L`` (sensitivity ODE) with an independent route written out here: the
variation-of-constants formula of App. G.1 for the sensitivity,

    u(T) = -(1 + h^2) int_0^T c(t) G(t, T) dt,
    log G(t, T) = tau + (1 + h^2) (log sigma0^2 - tau - log sigma_tau^2),   tau = T - t,

integrated with ``scipy.integrate.quad`` (L = u(T)^2 / (4 sigma0^4)), and for constant c the
closed form L = ((1 + h^2)/h^2)^2 (1 - r^{h^2})^2 / 4 (c = +-1), r = sigma0^2/(e^T sigma_T^2).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.integrate import quad

from ...theory import bounds, odesde
from ..record import Context, Record
from ..registry import claim
from ..verdicts import Verdict, not_checkable, reproduced, within

# ODE route (DOP853, rtol 1e-12) vs quad (epsrel 1e-12): both far below this relative tolerance
EXACT_RTOL = 1e-8


# ---- independent routes -------------------------------------------------------------------------
def sigma_sq(sigma0: float, tau: float) -> float:
    """sigma_tau^2 = 1 + (sigma0^2 - 1) e^{-tau} ([OS] (42))."""
    return 1.0 + (sigma0 * sigma0 - 1.0) * math.exp(-tau)


def log_G(sigma0: float, h: float, tau: float) -> float:
    """log of the propagator exp(int_t^T 2 a_0) of the sensitivity ODE from generative time
    t = T - tau to T, using int_0^tau dtau'/sigma_tau'^2 = log(e^tau sigma_tau^2 / sigma0^2)."""
    k = 1.0 + h * h
    return tau + k * (math.log(sigma0 * sigma0) - tau - math.log(sigma_sq(sigma0, tau)))


def L_window_quad(sigma0: float, h: float, tau_lo: float, tau_hi: float, weight=None) -> float:
    """L for c(t) = weight(tau) on tau = T - t in [tau_lo, tau_hi] (1 by default), by quad of
    the variation-of-constants formula; independent of the ODE integration of ``gaussian_L``."""
    k = 1.0 + h * h
    w = weight or (lambda tau: 1.0)
    val, _ = quad(lambda tau: w(tau) * math.exp(log_G(sigma0, h, tau)), tau_lo, tau_hi,
                  epsabs=0.0, epsrel=1e-12, limit=400)
    u = -k * val
    return u * u / (4.0 * sigma0 ** 4)


def L_const_closed_form(sigma0: float, T: float, h: float) -> float:
    """Closed form of L for c = +-1 (cases 1 and 2), h > 0."""
    H = h * h
    r = sigma0 * sigma0 / (math.exp(T) * sigma_sq(sigma0, T))
    return ((1.0 + H) / H) ** 2 * (1.0 - r ** H) ** 2 / 4.0


def _L_excess(La, Lb, sigma0, rtol=EXACT_RTOL, u_atol=1e-12) -> float:
    """Excess of L against a reference on |u(T)| = 2 sigma0^2 sqrt(L): tolerance rtol |u| plus
    an absolute 1e-12 (100 x the ODE's atol 1e-14 on u, the floor below which ``gaussian_L``
    cannot resolve a tiny L); NaN if La is not finite."""
    La, Lb = float(La), float(Lb)
    if not (math.isfinite(La) and La >= 0):
        return math.nan
    ua, ub = 2 * sigma0 ** 2 * math.sqrt(La), 2 * sigma0 ** 2 * math.sqrt(Lb)
    return abs(ua - ub) / (rtol * ub + u_atol)


def _rel_excess(a, b, rtol=EXACT_RTOL) -> float:
    """|a - b| / (rtol |b|); NaN if a is not finite."""
    a, b = float(a), float(b)
    if not math.isfinite(a):
        return math.nan
    return abs(a - b) / (rtol * abs(b))


# ---- os.table3 ----------------------------------------------------------------------------------
# [OS] App. G, Table 3 ("Approximated value of L(h) when h^2 ~ 20"), copied from the paper text:
# sigma0: (case 1, case 2, case 3). T = 2, eps-regression as described in App. G.3.
TABLE3_PAPER = {
    0.2: (0.2567, 0.3032, 0.0658),
    0.4: (0.2569, 0.3028, 0.0636),
    0.6: (0.2570, 0.3018, 0.0597),
    0.8: (0.2569, 0.3023, 0.0544),
    1.5: (0.2570, 0.3017, 0.0321),
    2.0: (0.2564, 0.3022, 0.0198),
    3.0: (0.2566, 0.3020, 0.0121),
}
TABLE3_T = 2.0
TABLE3_H = 4.47  # h^2 = 19.98 ~ 20
# half a unit in the paper's last printed digit
TABLE3_ATOL = 5e-5


def regression_L(sigma0, T, h, case, eps):
    """Two regressions of KL(p0 || q~_T) (``gaussian_kl``) over ``eps``: (paper-like least
    squares KL ~ L eps^2 through the origin, the fit KL/eps^2 ~ L + b eps that removes the
    O(eps^3) term)."""
    eps = np.asarray(eps, dtype=np.float64)
    kl = np.array([odesde.gaussian_kl(sigma0, T, h, float(e), case) for e in eps])
    through_origin = float(kl @ eps ** 2 / (eps ** 4).sum())
    A = np.vstack([np.ones_like(eps), eps]).T
    with_cubic = float(np.linalg.lstsq(A, kl / eps ** 2, rcond=None)[0][0])
    return through_origin, with_cubic


def measure_table3(eps) -> dict:
    """Rows {sigma0, case, paper, exact_L, closed_form / quad, regression, regression_cubic}
    and the excess of exact_L over its independent reference (closed form for cases 1/2,
    quad for case 3) and of the cubic-corrected regression over exact_L."""
    rows, excess = [], {"exact_L_vs_independent": [], "regression_cubic_vs_exact_L": []}
    for s, paper in TABLE3_PAPER.items():
        for case, p in zip((1, 2, 3), paper):
            L = odesde.gaussian_L(s, TABLE3_T, TABLE3_H, case)
            if case in (1, 2):
                ref = L_const_closed_form(s, TABLE3_T, TABLE3_H)
            else:
                ref = L_window_quad(s, TABLE3_H, 0.0, TABLE3_T,
                                    lambda tau: 0.5 * (1 + math.sin(2 * math.pi * (TABLE3_T - tau)
                                                                   / TABLE3_T)))
            reg0, reg3 = regression_L(s, TABLE3_T, TABLE3_H, case, eps)
            excess["exact_L_vs_independent"].append(_rel_excess(L, ref))
            # the cubic-corrected fit keeps an O(eps_max^2) bias: allow 2 % of L
            excess["regression_cubic_vs_exact_L"].append(
                abs(reg3 - L) / (0.02 * abs(L)) if math.isfinite(L) else math.nan)
            rows.append({"sigma0": s, "case": case, "paper": p, "exact_L": L,
                         "independent_ref": ref, "regression": reg0, "regression_cubic": reg3,
                         "paper_minus_exact": p - L, "regression_minus_exact": reg0 - L})
    return {"rows": rows, "excess": {k: np.array(v) for k, v in excess.items()}}


@claim("os.table3", title="App. G Table 3: L(h) at h^2 ~ 20, T = 2, cases 1-3, seven sigma0",
       source="[OS] App. G.2-G.3, Table 3")
def check_table3(ctx: Context) -> Record:
    """Table 3 regenerated cell by cell: the exact L(h = 4.47) from ``gaussian_L`` (checked
    against the closed form for cases 1/2 and quad of the App. G.1 formula for case 3) beside
    the paper's value, plus the paper's own route: a regression of ``gaussian_kl`` over eps."""
    eps = np.linspace(0.01, 0.1, ctx.size(3, 10))
    m = measure_table3(eps)
    consistency = within({k: v for k, v in m["excess"].items()})
    rep = reproduced(m["rows"], paper="paper", measured="exact_L", atol=TABLE3_ATOL)
    rows = rep.rows
    by = {(r["sigma0"], r["case"]): r for r in rows}
    c12 = [by[(s, 1)]["exact_L"] for s in TABLE3_PAPER]
    bracket = all(by[(s, 1)]["paper"] < by[(s, 1)]["exact_L"] < by[(s, 2)]["paper"]
                  for s in TABLE3_PAPER)
    case3_below = all(by[(s, 3)]["paper"] < by[(s, 3)]["exact_L"] for s in TABLE3_PAPER)
    numbers = {
        "exact_L_case1_equals_case2_max_absdiff":
            float(max(abs(by[(s, 1)]["exact_L"] - by[(s, 2)]["exact_L"]) for s in TABLE3_PAPER)),
        "exact_L_case1_range": [float(min(c12)), float(max(c12))],
        "paper_case1_below_exact_below_paper_case2_all_sigma0": bracket,
        "paper_case3_below_exact_all_sigma0": case3_below,
        "worst_paper_vs_exact_rel": float(max(abs(r["paper_minus_exact"]) / abs(r["exact_L"])
                                              for r in rows)),
        "case3_over_case1_exact_at_sigma0_0.2": float(by[(0.2, 3)]["exact_L"] / by[(0.2, 1)]["exact_L"]),
    }
    if consistency.verdict != "confirmed":
        v = Verdict("refuted", "the toolkit's L does not match its independent reference: "
                    + consistency.reason, consistency.measured)
        v_rows = rows
    else:
        v = Verdict(rep.verdict, rep.reason, {**rep.measured, **consistency.measured}, rows)
        v_rows = None
    return ctx.verdict(
        v,
        compared=[("gaussian_L(sigma0, T=2, h=4.47, case) (sensitivity ODE, exact L)",
                   "[OS] Table 3 as printed"),
                  ("gaussian_L, cases 1/2", "closed form ((1+h^2)/h^2)^2 (1 - r^{h^2})^2 / 4"),
                  ("gaussian_L, case 3", "quad of App. G.1's variation-of-constants formula"),
                  (f"regression of gaussian_kl over eps in [{eps[0]:g}, {eps[-1]:g}] "
                   f"({len(eps)} values): KL/eps^2 ~ L + b eps", "gaussian_L")],
        claimed={"table3": "L(h) at h^2 ~ 20 per sigma0 and case, as printed (4 decimals)",
                 "caption": "each column almost independent of sigma0, in particular sigma0 < 1",
                 "G.3": "case 3 ~ 1/4 of cases 1 and 2 (Prop. 3.6)"},
        measured=numbers,
        tolerance={"paper_vs_exact_atol": TABLE3_ATOL,
                   "why": "half a unit in the paper's last printed digit",
                   "exact_vs_independent_rtol": EXACT_RTOL,
                   "regression_cubic_vs_exact_rtol": 0.02},
        inputs={"T": TABLE3_T, "h": TABLE3_H, "h_sq": TABLE3_H ** 2,
                "sigma0": list(TABLE3_PAPER), "cases": [1, 2, 3],
                "eps": [float(e) for e in eps]},
        rows=v_rows,
        notes="'regression' is the paper-like least-squares fit KL ~ L eps^2 through the origin "
              f"over eps in [{eps[0]:g}, {eps[-1]:g}]; 'regression_cubic' fits KL/eps^2 ~ L + b eps. "
              "The exact L is even in c, so cases 1 and 2 share one L (0.27565 for every sigma0 "
              "<= 2; r^{h^2} is negligible); the paper prints 0.256-0.257 for case 1 and "
              "0.302-0.303 for case 2, which bracket it, and its case 3 values lie 2-6 % below "
              "the exact L. A fit that ignores the O(eps^3) term is biased by -+ b eps with b "
              "odd in c (down for c > 0, up for c = -1): the through-origin regression shows the "
              "same pattern. So the differences are the paper's finite-eps fit bias, not a "
              "different L; the table as printed does not give L to its 4 digits.")


# ---- os.prop34 ----------------------------------------------------------------------------------
PROP34_T = 2.0
PROP34_GAP = 0.05 * PROP34_T  # case 4: no error for t in [0.95 T, T], i.e. tau in [0, 0.1]


def prop34_slope(sigma0: float, T: float = PROP34_T) -> float:
    """The decay rate the window implies: d log L / d h^2 -> -2 int_{0.95T}^T dt / sigma_{T-t}^2
    = 2 log(sigma0^2 / (e^gap sigma_gap^2)) as h -> oo (the propagator from the window's end)."""
    gap = 0.05 * T
    return 2.0 * math.log(sigma0 * sigma0 / (math.exp(gap) * sigma_sq(sigma0, gap)))


def prop34_grid(sigma0: float, n: int) -> np.ndarray:
    """h^2 from 8 over the range where L falls by ~e^20 at the predicted rate (beyond it L
    nears the ODE's absolute floor)."""
    return np.linspace(8.0, 8.0 + 20.0 / abs(prop34_slope(sigma0)), n)


def measure_prop34(sigmas, n_h) -> dict:
    """L(h) of case 4 on the h^2 grid of :func:`prop34_grid` from ``gaussian_L`` and from quad;
    fitted slope of log L vs h^2 against :func:`prop34_slope`."""
    rows, ex_quad, ex_slope, monotone = [], [], [], []
    for s in sigmas:
        h_sq = prop34_grid(s, n_h)
        Ls = np.array([odesde.gaussian_L(s, PROP34_T, math.sqrt(H), 4) for H in h_sq])
        Lq = np.array([L_window_quad(s, math.sqrt(H), PROP34_GAP, PROP34_T) for H in h_sq])
        ex_quad.append(max(_L_excess(a, b, s) for a, b in zip(Ls, Lq)))
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = float(np.polyfit(h_sq, np.log(Ls), 1)[0]) if np.all(Ls > 0) else math.nan
        pred = prop34_slope(s)
        # band: 5 % of the predicted slope (the prefactor (1+h^2)^2 / k(h)^2 adds O(1/h^4))
        ex_slope.append(abs(slope - pred) / (0.05 * abs(pred)) if math.isfinite(slope) else math.nan)
        dec = bool(np.all(np.diff(Ls) < 0)) and bool(np.all(np.isfinite(Ls)))
        monotone.append(0.0 if dec else math.inf)
        rows.append({"sigma0": s, "h_sq_range": [float(h_sq[0]), float(h_sq[-1])],
                     "L_first": float(Ls[0]), "L_last": float(Ls[-1]),
                     "fitted_slope": slope, "predicted_slope": pred,
                     "slope_rel_err": abs(slope / pred - 1) if math.isfinite(slope) else math.nan,
                     "strictly_decreasing": dec, "worst_vs_quad_over_tol": ex_quad[-1]})
    return {"rows": rows, "excess": {"gaussian_L_vs_quad": np.array(ex_quad),
                                     "slope_vs_window_prediction": np.array(ex_slope),
                                     "strict_decrease_on_grid": np.array(monotone)}}


@claim("os.prop34", title="error only early (case 4, 1{t < 0.95T}): L(h) decays exponentially "
                          "in h^2",
       source="[OS] Prop. 3.4, Fig. 2a, App. G case 4")
def check_prop34(ctx: Context) -> Record:
    """Case 4 of (44): L on an h^2 grid, ``gaussian_L`` against quad of the App. G.1 formula;
    the slope of log L vs h^2 (least squares) against the rate the window implies,
    2 log(sigma0^2/(e^{0.1} sigma_{0.1}^2)) = -2 int over the error-free end of 1/sigma^2."""
    sigmas = (0.2, 0.5, 0.8) if ctx.quick else (0.2, 0.4, 0.5, 0.6, 0.8)
    n_h = ctx.size(4, 7)
    m = measure_prop34(sigmas, n_h)
    return ctx.verdict(
        within(m["excess"]),
        compared=[("gaussian_L(sigma0, T=2, h, case=4)", "quad of App. G.1's formula over the window"),
                  ("least-squares slope of log L vs h^2", "2 log(sigma0^2/(e^{0.05T} sigma_{0.05T}^2))")],
        claimed={"prop34": "L(h) decays exponentially in h^2 when the error is away from t = T",
                 "rate": "-int (h^2 - C) kappa over [s, T]: for the window, the gap [0.95T, T]"},
        measured={"slopes": {str(r["sigma0"]): r["fitted_slope"] for r in m["rows"]},
                  "predicted": {str(r["sigma0"]): r["predicted_slope"] for r in m["rows"]}},
        tolerance={"quad": "on u = 2 sigma0^2 sqrt(L): 1e-8 |u| + 1e-12", "slope_rel_band": 0.05,
                   "why": "log L = const + 2 (1 + h^2) log r_gap + O(1/h^2) for h^2 >= 8; "
                          "the O(1/h^2) prefactor moves the fitted slope by a few per cent at most"},
        inputs={"T": PROP34_T, "sigma0": list(sigmas), "n_h_sq": n_h,
                "h_sq": "8 to 8 + 20/|predicted slope| per sigma0 (L falls by ~e^20)"},
        rows=m["rows"],
        notes="Prop. 3.4 is stated for a pulse; the catalogue measures case 4 (a window), whose "
              "late-edge pulse dominates: L ~ const * r_gap^{2(1+h^2)} with "
              "r_gap = sigma0^2/(e^{0.1} sigma_{0.1}^2) < 1.")


# ---- os.prop35 ----------------------------------------------------------------------------------
PROP35_T = 2.0


def prop35_asymptotes(sigma0: float, a: float, h: float) -> dict:
    """[OS] Prop. 3.5 for E = grad log p (Gaussian), from :mod:`sftheory.theory.bounds`:
    int (div(p0 E))^2/p0 = 2/sigma0^4, m0 = 1/sigma0^2, kappa0 = (1 + 1/h^2) m0 - 1/h^2; the
    paper's L(0) ~ a^2/8 * I, its bound on L(h), and the exact Gaussian asymptote."""
    fisher = 2.0 / sigma0 ** 4
    out = {"L0_paper": bounds.prop35_L0_asymptote(a, fisher)}
    if h > 0:
        k0 = bounds.kappa(1.0 / sigma0 ** 2, h)
        out["Lh_paper_bound"] = bounds.prop35_Lh_bound(a, h, k0, fisher)
        out["Lh_gauss_asymptote"] = bounds.gaussian_prop35_Lh_asymptote(sigma0, a, h)
    return out


def measure_prop35(sigmas, hs, windows) -> dict:
    """For each window (name, a, case) and sigma0: L(0) and L(h) from ``gaussian_L`` and from
    quad; L(0)/L(h) (must be < 1); L(0) against a^2 I/8; L(h) against the paper's bound."""
    rows = []
    ex = {"gaussian_L_vs_quad": [], "ode_beats_sde_L0_over_Lh": [], "L0_vs_paper_asymptote": [],
          "Lh_over_paper_bound": []}
    ratio_to_bound = []
    for name, a, case in windows:
        for s in sigmas:
            L0 = odesde.gaussian_L(s, PROP35_T, 0.0, case)
            L0q = L_window_quad(s, 0.0, 0.0, a)
            ex["gaussian_L_vs_quad"].append(_L_excess(L0, L0q, s))
            asym = prop35_asymptotes(s, a, 0.0)
            # first correction of L(0): relative |1/sigma0^2 - 1| a (sigma_tau^2 varies in the
            # window); allow twice it plus a^2
            tol0 = 2 * a * abs(1 / s ** 2 - 1) + a * a
            ex["L0_vs_paper_asymptote"].append(abs(L0 / asym["L0_paper"] - 1) / tol0
                                               if math.isfinite(L0) else math.nan)
            for h in hs:
                Lh = odesde.gaussian_L(s, PROP35_T, h, case)
                Lhq = L_window_quad(s, h, 0.0, a)
                ex["gaussian_L_vs_quad"].append(_L_excess(Lh, Lhq, s))
                r = L0 / Lh if math.isfinite(L0) and math.isfinite(Lh) else math.nan
                ex["ode_beats_sde_L0_over_Lh"].append(r)
                A = prop35_asymptotes(s, a, h)
                # the bound is asymptotic (a << 1, h >> 1): it drops the prefactor
                # ((1+h^2)/h^2)^2 of (13) and the O(a |1/sigma0^2 - 1|) variation of p_t in the
                # window; allow them on top
                slack = (1 + 1 / h ** 2) ** 2 * (1 + 2 * a * abs(1 / s ** 2 - 1))
                rb = Lh / A["Lh_paper_bound"]
                ex["Lh_over_paper_bound"].append(rb / slack if math.isfinite(rb) else math.nan)
                ratio_to_bound.append(rb)
                rows.append({"window": name, "sigma0": s, "h": h, "L0": L0, "Lh": Lh,
                             "L0_over_Lh": r, "L0_paper_asymptote": asym["L0_paper"],
                             "Lh_paper_bound": A["Lh_paper_bound"],
                             "Lh_gauss_asymptote": A["Lh_gauss_asymptote"],
                             "Lh_over_bound": rb})
    return {"rows": rows, "excess": {k: np.array(v) for k, v in ex.items()},
            "ratio_to_bound": np.array(ratio_to_bound)}


def _end_window(frac):
    return lambda t: 1.0 if t >= (1 - frac) * PROP35_T else 0.0


@claim("os.prop35", title="error only at the end (case 5): the ODE (h = 0) beats large h; "
                          "asymptotic forms of L(0), L(h)",
       source="[OS] Prop. 3.5, Fig. 2b, App. G case 5")
def check_prop35(ctx: Context) -> Record:
    """Case 5 of (44) (1{t > 0.99T}, a = 0.02) and Fig. 2b's window 1{t >= 0.995T} (a = 0.01):
    L(0) < L(h) on an h grid; ``gaussian_L`` against quad of App. G.1's formula; L(0) against
    the paper's a^2/8 int (div(p0 E))^2/p0 and L(h) against its bound."""
    sigmas = (0.3, 0.6, 0.9) if ctx.quick else (0.2, 0.3, 0.5, 0.6, 0.8, 0.9)
    # h <= 16: at h = 24, sigma0 <= 0.3 gaussian_L's explicit DOP853 stops on [0.99T, T]
    # (stiffness (1 + h^2)/sigma0^2 ~ 6e3-1.4e4, beyond the module's stated range h^2 <~ 100)
    hs = (2.0, 4.0, 8.0, 16.0) if ctx.quick else (2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)
    windows = [("case 5: 1{t > 0.99T}", 0.01 * PROP35_T, 5)]
    if not ctx.quick:
        windows.append(("Fig 2b: 1{t >= 0.995T}", 0.005 * PROP35_T, _end_window(0.005)))
    m = measure_prop35(sigmas, hs, windows)
    rb = m["ratio_to_bound"]
    return ctx.verdict(
        within(m["excess"]),
        compared=[("gaussian_L(sigma0, T=2, h, case 5)", "quad of App. G.1's formula over [T-a, T]"),
                  ("gaussian_L at h = 0", "gaussian_L at h > 0 (ODE beats SDE: ratio < 1)"),
                  ("gaussian_L at h = 0", "[OS] Prop. 3.5: a^2/8 int (div(p0 E))^2/p0 = a^2/(4 sigma0^4)"),
                  ("gaussian_L at h > 0", "[OS] Prop. 3.5 bound (1 - e^{-a h^2 k0/2})^2/(2 k0^2) int ...")],
        claimed={"prop35": "L(0) < L(h) for large h when the error sits at the end",
                 "L0": "L(0) ~ a^2/8 int (div(p0 E))^2/p0",
                 "Lh": "L(h) <~ (1 - e^{-a h^2 kappa0/2})^2/(2 kappa0^2) int ...; tight asymptotically"},
        measured={"max_L0_over_Lh": float(np.max(m["excess"]["ode_beats_sde_L0_over_Lh"])),
                  "Lh_over_bound_range": [float(np.min(rb)), float(np.max(rb))]},
        tolerance={"quad_rtol": EXACT_RTOL, "ode_beats_sde": "L(0)/L(h) <= 1",
                   "L0_asymptote_rel": "2 a |1/sigma0^2 - 1| + a^2 (twice the first correction)",
                   "Lh_bound_slack": "(1 + 1/h^2)^2 (1 + 2 a |1/sigma0^2 - 1|) (asymptotic corrections)",
                   "quad": "on u = 2 sigma0^2 sqrt(L): 1e-8 |u| + 1e-12"},
        inputs={"T": PROP35_T, "sigma0": list(sigmas), "h": list(hs),
                "windows": [w[0] for w in windows]},
        rows=m["rows"],
        notes="h <= 16 only: gaussian_L (explicit DOP853) fails at h = 24 for sigma0 <= 0.3. "
              "For E = grad log p only the second Hermite mode is excited, which decays at rate "
              "h^2 kappa0, twice the Poincare rate the bound uses: the exact Gaussian asymptote "
              "is ((1+h^2)/h^2)^2 (1 - e^{-a h^2 kappa0})^2/(4 kappa0^2 sigma0^4), equal to the "
              "bound for a h^2 << 1 and 1/4 of it for a h^2 >> 1 (Lh_over_bound_range). The bound "
              "holds; its tightness is for errors exciting the first mode, not this E.")


# ---- os.table1 ----------------------------------------------------------------------------------
@claim("os.table1", title="CIFAR-10 FID over step counts and h^2/g^2 (Sec. 4, Table 1)",
       source="[OS] Sec. 4, Table 1")
def check_table1(ctx: Context) -> Record:
    """Not checkable here."""
    return ctx.verdict(
        not_checkable("needs a pretrained CIFAR-10 checkpoint and an Inception network, neither "
                      "of which can be had here"),
        compared=[], claimed={"table1": "FID on CIFAR-10 improves as h^2/g^2 grows at fixed steps"})
