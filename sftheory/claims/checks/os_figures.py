"""``os.fig2`` / ``os.fig6`` / ``os.fig7``: the 1D Gaussian curves of the ODE-vs-SDE paper
([OS] Sec. 3.4-3.6 Fig. 2, App. G.2 Fig. 6, G.3 Fig. 7), regenerated from the exact theory.

Setting (App. G): p0 = N(0, sigma0^2), f = -x/2, g = 1, T = 2, constant h, error
E_t = c(t) grad log p_{T-t} with c from (44) (generative time t); Fig. 6 plots
log10 KL(p0 || q~_T) at eps = 0.02, Fig. 7 log10 L(h), both against h^2, for several sigma0;
Fig. 2 shows (a) L(h) for the error 1{t <= 0.95 T} (case 4), (b) for the window
1{t >= 0.995 T} (Sec. 3.5), (c) L(h) for large h (case 1).

Routes: ``odesde.gaussian_kl`` / ``gaussian_L`` (ODEs of the variance and its eps-derivative)
against the variation-of-constants formula of App. G.1 evaluated here by nested ``quad``:

    Var(Y~_T) = G(0) v0(0) + h^2 int_0^T G(s) ds,
    log G(s) = int_s^T [1 - (1 + h^2)(1 + eps c(u)) / v0(u)] du,   v0(u) = sigma_{T-u}^2,

with int du / v0 in closed form (log(e^tau sigma_tau^2)) and int c / v0 by quad. The paper
prints no numbers for these figures, so the verdicts judge what the text says of them
(App. G.2: case 4 decays, case 5 grows with h, cases 1-3 are suppressed by h for small sigma0;
Fig. 2's three panels) and the agreement of the two routes; the curves go to the report.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.integrate import quad

from ...theory import _cases, odesde
from ..record import Context, Record
from ..registry import claim
from ..verdicts import within
from .os_gaussian import L_window_quad, sigma_sq

T = 2.0
EPS = 0.02
SIGMAS = (0.2, 0.4, 0.6, 0.8)
QUICK_SIGMAS = (0.2, 0.8)
# gaussian_kl (DOP853 rtol 1e-12) vs nested quad (epsrel 1e-11): both ~1e-10 relative on the
# variance deviation; KL is quadratic in it, so 1e-7 relative leaves a wide margin and is 1e4
# below a 0.1 % error
KL_RTOL = 1e-7
L_RTOL = 1e-7


def _int_inv_v0(sigma0, s, T_=T):
    """int_s^T du / sigma_{T-u}^2 = log(e^tau sigma_tau^2 / sigma0^2), tau = T - s."""
    tau = T_ - s
    return tau + math.log(sigma_sq(sigma0, tau)) - math.log(sigma0 * sigma0)


def kl_quad(sigma0, h, eps, case, T_=T):
    """KL(p0 || q~_T) by the variation-of-constants formula of App. G.1 and nested quad."""
    c, breaks = _cases.case_function(case, T_)
    pts = [b for b in breaks if 0 < b < T_]
    k = 1.0 + h * h

    def int_c_inv_v0(s):
        if case in (1, 2):
            return c(0.0) * _int_inv_v0(sigma0, s, T_)
        inner = [b for b in pts if b > s]
        val, _ = quad(lambda u: c(u) / sigma_sq(sigma0, T_ - u), s, T_, points=inner or None,
                      epsabs=0.0, epsrel=1e-11, limit=200)
        return val

    def log_g(s):
        return (T_ - s) - k * (_int_inv_v0(sigma0, s, T_) + eps * int_c_inv_v0(s))

    var = math.exp(log_g(0.0)) * sigma_sq(sigma0, T_)
    if h > 0:
        val, _ = quad(lambda s: math.exp(log_g(s)), 0.0, T_, points=pts or None, epsabs=0.0,
                      epsrel=1e-11, limit=200)
        var += h * h * val
    s2 = sigma0 * sigma0
    return 0.5 * math.log(var / s2) + s2 / (2.0 * var) - 0.5


def curves(h2_grid, quantity, sigmas=SIGMAS):
    """{(sigma0, case): array over h^2} of gaussian_kl at EPS (quantity 'kl') or gaussian_L."""
    out = {}
    for s in sigmas:
        for case in (1, 2, 3, 4, 5):
            if quantity == "kl":
                out[(s, case)] = np.array([odesde.gaussian_kl(s, T, math.sqrt(v), EPS, case)
                                           for v in h2_grid])
            else:
                out[(s, case)] = np.array([odesde.gaussian_L(s, T, math.sqrt(v), case)
                                           for v in h2_grid])
    return out


def route_agreement(quantity, cases=(1, 2, 3, 4, 5), hs=(0.0, 1.0, 4.47),
                    sigmas=(0.2, 0.8)) -> tuple[np.ndarray, list]:
    """Relative difference / tolerance of the toolkit's value against the independent route."""
    ex, rows = [], []
    for s in sigmas:
        for case in cases:
            for h in hs:
                if quantity == "kl":
                    a = odesde.gaussian_kl(s, T, h, EPS, case)
                    b = kl_quad(s, h, EPS, case)
                    tol = KL_RTOL
                else:
                    a = odesde.gaussian_L(s, T, h, case)
                    c, _ = _cases.case_function(case, T)
                    b = L_window_quad(s, h, 0.0, T, lambda tau: c(T - tau))
                    tol = L_RTOL
                rel = abs(a - b) / abs(b) if (math.isfinite(a) and b != 0) else math.nan
                # compared on the square-root scale, which is linear in the variance deviation
                # (sqrt L = |u| / (2 sigma0^2), sqrt KL ~ |delta| / (2 sigma0^2)), with an
                # absolute floor of 1e-12 on u or delta: the ODE's atol (1e-14) x 100, and the
                # rounding of O(1) variances in quad's route. Below it (L ~ 1e-23 for case 4 at
                # h = 4.47) neither route resolves the value.
                floor = 1e-12 / (2 * s * s)
                ex.append(abs(math.sqrt(a) - math.sqrt(b)) / (tol * math.sqrt(b) + floor)
                          if (math.isfinite(a) and a >= 0) else math.nan)
                rows.append({"sigma0": s, "case": case, "h": h, quantity: a, "quad": b,
                             "rel_diff": rel})
    return np.array(ex), rows


def text_statements(kl, L, h2_grid, sigmas=SIGMAS) -> dict:
    """App. G.2's statements about Fig. 6 / 7 as ratios that must be <= 1:
    case 4: L(h^2_max) / L(0) (exponential decay); case 5: max over h > 0 of KL(0) / KL(h)
    (a larger h increases the error); cases 1-3: KL(h^2_max) / KL(0) (suppressed)."""
    out = {}
    for s in sigmas:
        out[f"case4_decay_sigma{s}"] = L[(s, 4)][-1] / L[(s, 4)][0]
        out[f"case5_grows_sigma{s}"] = float(np.max(kl[(s, 5)][0] / kl[(s, 5)][1:]))
        for case in (1, 2, 3):
            out[f"case{case}_suppressed_sigma{s}"] = kl[(s, case)][-1] / kl[(s, case)][0]
    return out


def _draw_curves(path, h2_grid, data, ylabel, title, sigmas=SIGMAS):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 5, figsize=(17, 3.4), sharex=True)
    for case in (1, 2, 3, 4, 5):
        ax = axes[case - 1]
        for s in sigmas:
            ax.plot(h2_grid, np.log10(np.maximum(data[(s, case)], 1e-300)), label=f"sigma0 = {s}")
        ax.set_title(f"case {case}: {_cases.CASES[case]}", fontsize=8)
        ax.set_xlabel("h^2")
    axes[0].set_ylabel(ylabel)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fig_record(ctx: Context, quantity: str) -> Record:
    h2 = np.linspace(0.0, 20.0, ctx.size(6, 41))
    sig = QUICK_SIGMAS if ctx.quick else SIGMAS
    kl, L = curves(h2, "kl", sig), curves(h2, "L", sig)
    data = kl if quantity == "kl" else L
    ylabel = "log10 KL(p0 || q~_T)" if quantity == "kl" else "log10 L(h)"
    ctx.figure("curves", _draw_curves, h2, data, ylabel,
               f"1D Gaussian, T = {T}" + (f", eps = {EPS}" if quantity == "kl" else ""), sig)
    ex, rows = route_agreement(quantity)
    stmts = text_statements(kl, L, h2, sig)
    v = within({"routes_agree": ex, "text_statements": np.array(list(stmts.values()))})
    ratio = {k: float(np.max(np.abs(kl[k] / (L[k] * EPS ** 2) - 1))) for k in kl}
    worst_ratio = max(ratio.values())
    bumps = {s: float(h2[int(np.argmin(kl[(s, 3)]))]) for s in sig
             if 0 < int(np.argmin(kl[(s, 3)])) < len(h2) - 1}
    return ctx.verdict(
        v, compared=[(f"odesde.gaussian_{'kl' if quantity == 'kl' else 'L'} (ODE)",
                      "App. G.1's variation-of-constants formula by nested quad"),
                     ("the curves' shape (ratios over h^2)", "App. G.2's description of them")],
        claimed={"statement": "case 4 decays exponentially in h^2; case 5 grows with h; cases "
                              "1-3 are suppressed by a larger h when sigma0 is small (App. G.2)"},
        measured={"statement_ratios": stmts, "max_rel_KL_vs_L_eps2": worst_ratio,
                  "case3_interior_minimum_h2": {str(k): v for k, v in bumps.items()}},
        tolerance={"kl_rtol": KL_RTOL, "L_rtol": L_RTOL, "statements": "ratio <= 1"},
        rows=rows,
        notes=f"h^2 on {len(h2)} points of [0, 20], sigma0 in {sig}, T = {T}, eps = {EPS}. "
              f"KL / (L eps^2) - 1 stays within {worst_ratio:.3f} over every curve (the O(eps) "
              f"remainder of Prop. 3.2 at eps = {EPS}), so Fig. 6 is Fig. 7 shifted by "
              f"2 log10(eps) up to that. Case 3's KL has an interior minimum (then rises "
              f"towards its limit) for sigma0 in {sorted(bumps)} at h^2 = "
              f"{[bumps[k] for k in sorted(bumps)]}: where so, 'overall suppressed' holds "
              f"only as KL(h^2 = 20) < KL(0).")


@claim("os.fig6", title="Fig. 6: log KL(p0 || q~_T) against h^2, 1D Gaussian, cases 1-5",
       source="[OS] App. G.2, Fig. 6, eq. (44)")
def check_fig6(ctx: Context) -> Record:
    """Fig. 6 regenerated from the exact KL; the two routes agree; App. G.2's reading holds."""
    return _fig_record(ctx, "kl")


@claim("os.fig7", title="Fig. 7: log L(h) against h^2, 1D Gaussian, cases 1-5",
       source="[OS] App. G.3, Fig. 7, eq. (44)")
def check_fig7(ctx: Context) -> Record:
    """Fig. 7 regenerated from the exact L; the two routes agree; App. G.2's reading holds."""
    return _fig_record(ctx, "L")


# ---- Fig. 2 -------------------------------------------------------------------------------------
def fig2_panels(h2_grid, sigmas=SIGMAS) -> dict:
    """(a) L(h) for c = 1{t <= 0.95 T}; (b) for c = 1{t >= 0.995 T}; (c) L(h) of case 1 up to
    h^2 = 400; each by gaussian_L and by quad (L_window_quad)."""
    a_win = lambda t: 1.0 if t <= 0.95 * T else 0.0  # noqa: E731
    b_win = lambda t: 1.0 if t >= 0.995 * T else 0.0  # noqa: E731
    big = np.array([20.0, 100.0, 200.0, 400.0])
    out = {"a": {}, "b": {}, "c": {}, "quad_excess": []}
    for s in sigmas:
        out["a"][s] = np.array([odesde.gaussian_L(s, T, math.sqrt(v), a_win) for v in h2_grid])
        out["b"][s] = np.array([odesde.gaussian_L(s, T, math.sqrt(v), b_win) for v in h2_grid])
        out["c"][s] = np.array([odesde.gaussian_L(s, T, math.sqrt(v), 1) for v in big])
        for v in (h2_grid[0], h2_grid[-1]):
            h = math.sqrt(v)
            qa = L_window_quad(s, h, 0.05 * T, T)        # tau = T - t >= 0.05 T
            qb = L_window_quad(s, h, 0.0, 0.005 * T)      # tau <= 0.005 T
            la = odesde.gaussian_L(s, T, h, a_win)
            lb = odesde.gaussian_L(s, T, h, b_win)
            for x, y in ((la, qa), (lb, qb)):
                out["quad_excess"].append(abs(x - y) / (L_RTOL * abs(y) + 1e-15)
                                          if math.isfinite(x) else math.nan)
    out["big_h2"] = big
    return out


def _draw_fig2(path, h2, P):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for s in P["a"]:
        axes[0].plot(h2, np.log10(P["a"][s]), label=f"sigma0 = {s}")
        axes[1].plot(h2, P["b"][s], label=f"sigma0 = {s}")
        axes[2].plot(P["big_h2"], P["c"][s], "o-", label=f"sigma0 = {s}")
    axes[0].set_title("(a) log10 L(h), E = 1{t <= 0.95T} grad log p", fontsize=8)
    axes[1].set_title("(b) L(h), E = 1{t >= 0.995T} grad log p", fontsize=8)
    axes[2].set_title("(c) L(h), case 1, large h (bound d = 1)", fontsize=8)
    axes[2].axhline(1.0, color="gray", lw=0.8, ls=":")
    for ax in axes:
        ax.set_xlabel("h^2")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@claim("os.fig2", title="Fig. 2: L(h) for an early error (decays), a late error (ODE wins), "
                        "and its large-h limit (<= d)", source="[OS] Sec. 3.4-3.6, Fig. 2")
def check_fig2(ctx: Context) -> Record:
    """Fig. 2 regenerated: (a) L(h^2 = 20) / L(0) < 1 with log L falling along h^2; (b) L(0) <
    L(h) for every h > 0 on the grid; (c) L(h) settles (relative change from h^2 = 200 to 400
    below 1 %) below d = 1. Both routes (ODE, quad) agree at the grid's ends."""
    h2 = np.linspace(0.0, 20.0, ctx.size(11, 41))
    P = fig2_panels(h2)
    ctx.figure("fig2", _draw_fig2, h2, P)
    ex = {"routes_agree": np.array(P["quad_excess"])}
    ex["a_decay_L20_over_L0"] = np.array([P["a"][s][-1] / P["a"][s][0] for s in SIGMAS])
    ex["a_log_L_decreasing"] = np.array([float(np.max(np.diff(np.log(P["a"][s])))) + 1.0
                                         for s in SIGMAS])  # max step of log L, +1: <= 1 iff <= 0
    ex["b_L0_over_Lh"] = np.array([float(np.max(P["b"][s][0] / P["b"][s][1:])) for s in SIGMAS])
    ex["c_settles"] = np.array([abs(P["c"][s][-1] / P["c"][s][-2] - 1) / 0.01 for s in SIGMAS])
    ex["c_below_d"] = np.array([P["c"][s][-1] / 1.0 for s in SIGMAS])
    v = within(ex)
    return ctx.verdict(
        v, compared=[("odesde.gaussian_L with the windows of Fig. 2", "quad of App. G.1"),
                     ("the three panels' shapes", "Props 3.4, 3.5, 3.6 as Fig. 2 illustrates them")],
        claimed={"a": "L decays exponentially in h^2 for an error away from t = T",
                 "b": "the ODE (h = 0) beats the SDE for an error at the end",
                 "c": "lim L(h) exists and is <= d = 1"},
        measured={"L_limit_case1": {str(s): float(P["c"][s][-1]) for s in SIGMAS}},
        tolerance={"routes": L_RTOL, "c_settles": "1 % relative change h^2 200 -> 400"},
        notes=f"h^2 on {len(h2)} points of [0, 20], sigma0 in {SIGMAS}, T = {T}; the large-h "
              f"limit of case 1 is 1/4 for every sigma0 (c(T)^2/4, see os.prop36), so panel (c)'s "
              f"bound d = 1 holds with a factor 4 to spare.")
