"""``core.processes.*``: the forward processes against the SDEs as the textbooks write them.

Every reference comes from :mod:`sftheory.testing.textbook`, which reads only the processes'
parameters (beta_min, a, sigma, ...) and never the library's kappa, drift_coef, diffusion or
clock: the moment ODEs integrated by scipy from the textbook coefficients, the textbook closed
forms in mpmath, and the textbook drift and diffusion themselves.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import integrate, stats

from ... import testing as sft
from ...testing import textbook as tb
from ...testing import tolerances as tol
from .. import _plot
from ..record import Context, Record
from ..registry import claim
from ..verdicts import within, worst_of
from ._common import Measured, processes


def _rel(a, b) -> np.ndarray:
    """|a - b| / |b| elementwise (NaN stays NaN)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.abs(a - b) / np.abs(b)


def measure_moments(procs, ts, stu=(0.13, 0.41, 0.87), *, rng=None) -> Measured:
    """Each process's conditional law, transitions, drift and diffusion vs the textbook SDE.

    Excess (error / tolerance) aggregates:
    ``conditional_vs_ode`` m(t), v(t) vs the moment ODEs of the textbook SDE (FLOW_ODE);
    ``conditional_vs_closed_form`` the same vs the textbook closed forms in mpmath (EXACT_FLOAT64);
    ``transition_vs_textbook`` transition(s, t) vs the ODE from s and the closed form;
    ``chapman_kolmogorov`` transition(s, u) = transition(t, u) o transition(s, t);
    ``drift`` drift(x, t) (scalar t and one t per point) vs -a(t) x; ``diffusion`` g(t)^2 and
    ``drift_coef`` a(t) vs the textbook; ``stationary_variance`` vs its limit.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    ts = np.asarray(ts, dtype=np.float64)
    ex = tol.EXACT_FLOAT64.rtol
    out = Measured()
    for proc in procs:
        name = repr(proc)
        sol = tb.moment_ode(proc, 0.0, float(ts[-1]), ts)
        mv = np.array([proc.conditional(float(t)) for t in ts])
        closed = np.array([tb.exact_mv(proc, float(t)) for t in ts])
        e_ode = worst_of([_rel(mv[:, 0], sol.y[0]), _rel(mv[:, 1], sol.y[1])])
        e_cf = worst_of([_rel(mv[:, 0], closed[:, 0]), _rel(mv[:, 1], closed[:, 1])])
        s, t, u = stu
        sol_st = tb.moment_ode(proc, s, t)
        m1, v1 = proc.transition(s, t)
        ref_st = tb.exact_mv(proc, t, s)
        e_tr = worst_of([_rel([m1, v1], sol_st.y[:, -1]) / tol.FLOW_ODE.rtol,
                         _rel([m1, v1], ref_st) / ex])
        m2, v2 = proc.transition(t, u)
        m3, v3 = proc.transition(s, u)
        ck = worst_of([_rel([m2 * m1, m2 * m2 * v1 + v2], [m3, v3])])
        x = rng.normal(size=(16, 3)) * 2.0
        t_pts = rng.uniform(0.0, float(ts[-1]), size=16)
        e_drift = worst_of(sft.asserts.compare(proc.drift(x, tp), tb.drift(proc, x, tp))
                           .excess(tol.EXACT_FLOAT64) for tp in (float(t), t_pts))
        g2 = np.array([float(proc.diffusion(float(tt))) ** 2 for tt in ts])
        e_g = sft.asserts.compare(g2, tb.diffusion_sq(proc, ts)).excess(tol.EXACT_FLOAT64)
        a = np.array([float(proc.drift_coef(float(tt))) for tt in ts])
        e_a = sft.asserts.compare(a, tb.drift_coef(proc, ts)).excess(tol.EXACT_FLOAT64)
        sv, sv_ref = proc.stationary_variance(), tb.stationary_variance(proc)
        e_sv = 0.0 if sv is None and sv_ref is None else (
            math.inf if (sv is None) != (sv_ref is None) else abs(sv - sv_ref) / sv_ref / ex)
        out.add("conditional_vs_ode", e_ode / tol.FLOW_ODE.rtol, name)
        out.add("conditional_vs_closed_form", e_cf / ex, name)
        out.add("transition_vs_textbook", e_tr, name)
        out.add("chapman_kolmogorov", ck / ex, name)
        out.add("drift", e_drift, name)
        out.add("diffusion", e_g, name)
        out.add("drift_coef", e_a, name)
        out.add("stationary_variance", e_sv, name)
        out.rows.append({"process": name, "m_v_rel_err_vs_ode": e_ode, "m_v_rel_err_vs_mpmath": e_cf,
                         "transition_err_over_tol": e_tr, "chapman_kolmogorov_rel_err": ck,
                         "drift_err_over_tol": e_drift, "g2_err_over_tol": e_g,
                         "drift_coef_err_over_tol": e_a})
        out.numbers.setdefault("curves", []).append((name, ts, mv, sol.y))
    return out


def _draw_moments(path, curves):
    plt = _plot.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, ts, mv, ode in curves:
        axes[0].plot(ts, mv[:, 0], label=name)
        axes[0].plot(ts[::5], ode[0][::5], "k.", ms=3)
        axes[1].semilogy(ts, mv[:, 1], label=name)
        axes[1].semilogy(ts[::5], ode[1][::5], "k.", ms=3)
    axes[0].set(title="m(t): library (lines), textbook ODE (dots)", xlabel="t")
    axes[1].set(title="v(t): library (lines), textbook ODE (dots)", xlabel="t")
    axes[1].legend(fontsize=7)
    _plot.save(fig, path)


@claim("core.processes.moments",
       title="m(t), v(t), transitions, drift and diffusion of every process match the textbook SDE",
       source="[SF] eq. (2); [OS] Sec. 2, App. B.2; [SM] Sec. 2")
def check_moments(ctx: Context) -> Record:
    r"""The library's conditional law, transitions, drift f(x, t) and diffusion g(t) against the
    SDE written from its definition (VP: beta(t) = beta_min + t (beta_max - beta_min),
    f = -beta x / 2, g = sqrt(beta); OU: f = -a x, g = sigma; VE: g = 1 or sigma^t), reading only
    the processes' parameters: m' = -a m, v' = -2 a v + g^2 integrated by DOP853 from t = 0 and
    from s > 0, the closed forms in 40-digit mpmath, and Chapman-Kolmogorov for the transitions."""
    ts = np.linspace(0.0, 1.0, 41)[1:]
    m = measure_moments(processes(), ts, rng=ctx.rng())
    ctx.figure("moments", _draw_moments, m.numbers.pop("curves"))
    return ctx.verdict(
        within(m.excess),
        compared=[("proc.conditional(t) = (m, v)", "solve_ivp of m' = -a m, v' = -2a v + g^2 with "
                                                   "the textbook a(t), g(t)"),
                  ("proc.conditional(t), proc.transition(s, t)", "textbook closed forms (mpmath)"),
                  ("proc.transition(s, u)", "proc.transition(t, u) o proc.transition(s, t)"),
                  ("proc.drift(x, t), proc.drift_coef(t), proc.diffusion(t)",
                   "textbook -a(t) x, a(t), g(t)")],
        claimed={"m, v, transitions, f, g": "those of the textbook SDE"},
        tolerance={"ode": tol.FLOW_ODE.as_dict(), "closed forms": tol.EXACT_FLOAT64.as_dict()},
        inputs={"t_grid": [float(ts[0]), float(ts[-1]), len(ts)], "solver": "DOP853 rtol=1e-12",
                "s_t_u": [0.13, 0.41, 0.87], "seed": ctx.seed},
        rows=m.rows)


def measure_time_change(procs, ts) -> Measured:
    """[OS] App. B.2 on each process: ``clock(t)`` vs quadrature of the textbook g^2 and vs its
    mpmath closed form; ``clock_inverse`` round trip; the textbook law of X_t vs the textbook law
    of ``canonical()`` at theta(t)."""
    out = Measured()
    for proc in procs:
        name = repr(proc)
        quad = np.array([integrate.quad(lambda s: float(tb.diffusion_sq(proc, s)), 0, t,
                                        epsabs=0, epsrel=1e-13)[0] for t in ts])
        clock = np.array([float(proc.clock(t)) for t in ts])
        closed = np.array([tb.clock(proc, t) for t in ts])
        e_quad = float(np.max(_rel(clock, quad)))
        e_closed = float(np.max(_rel(clock, closed)))
        e_inv = float(np.max(_rel(proc.clock_inverse(clock), ts)))
        can = proc.canonical()
        law_t = np.array([tb.exact_mv(proc, t) for t in ts])
        law_theta = np.array([tb.exact_mv(can, th) for th in clock])
        e_law = float(np.max(_rel(law_theta, law_t)))
        out.add("clock_vs_quadrature", e_quad / tol.QUADRATURE.rtol, name)
        out.add("clock_vs_closed_form", e_closed / tol.EXACT_FLOAT64.rtol, name)
        out.add("inverse_roundtrip", e_inv / tol.EXACT_FLOAT64.rtol, name)
        out.add("law_t_vs_canonical_at_theta", e_law / tol.EXACT_FLOAT64.rtol, name)
        out.rows.append({"process": name, "canonical": repr(can), "clock_vs_quad": e_quad,
                         "clock_vs_closed_form": e_closed, "inverse_roundtrip": e_inv,
                         "law_t_vs_canonical_law_theta": e_law})
    return out


@claim("core.processes.time_change",
       title="Every process is the canonical OU/BM on the clock theta(t) = int g^2 ([OS] App. B.2)",
       source="[OS] App. B.2")
def check_time_change(ctx: Context) -> Record:
    """[OS] App. B.2: X_t has the law of the canonical process dX = -kappa X dtheta + dW at
    theta(t) = int_0^t g^2. The library's clock is compared with quadrature of the textbook g^2
    and with the closed form; the textbook law of X_t (from the SDE's parameters) with the textbook
    law of the library's ``canonical()`` process at the library's theta(t); the inverse clock by a
    round trip."""
    ts = np.array([1e-3, 0.1, 0.5, 1.0])
    m = measure_time_change(processes(), ts)
    return ctx.verdict(
        within(m.excess),
        compared=[("proc.clock(t)", "scipy quad of the textbook g(t)^2; its closed form (mpmath)"),
                  ("proc.clock_inverse(proc.clock(t))", "t"),
                  ("textbook law of proc.canonical() at proc.clock(t)", "textbook law of X_t")],
        claimed={"statement": "law of X_t equals law of the canonical process at theta(t)"},
        tolerance={"clock": tol.QUADRATURE.as_dict(), "closed forms": tol.EXACT_FLOAT64.as_dict()},
        inputs={"t": ts}, rows=m.rows)


def measure_transition_sampling(procs, n: int, rng, pairs=((0.0, 0.3), (0.2, 0.9))) -> Measured:
    """``sample_transition`` from x0 = (1.5, -0.5): sample mean and covariance z-scores and a KS
    p-value against N(m x0, v I) with (m, v) the textbook transition from s to t."""
    out = Measured()
    x0 = np.array([[1.5, -0.5]])
    for proc in procs:
        for s, t in pairs:
            m, v = tb.exact_mv(proc, t, s)
            xs = proc.sample_transition(np.repeat(x0, n, axis=0), t, s=s, seed=rng)
            mean, cov = m * x0[0], v * np.eye(2)
            z = float(np.max(np.abs(np.concatenate([sft.asserts.mean_zscores(xs, mean, cov),
                                                    sft.asserts.cov_zscores(xs, cov).ravel()]))))
            ks = float(stats.kstest((xs[:, 0] - mean[0]) / math.sqrt(v), "norm").pvalue)
            where = f"{proc!r}, s={s}, t={t}"
            out.add("mc_z_over_MC_SIGMAS", z / tol.MC_SIGMAS, where)
            out.add("KS_ALPHA_over_ks_p", tol.KS_ALPHA / ks if ks > 0 else math.inf, where)
            out.rows.append({"process": repr(proc), "s": s, "t": t, "max_abs_z": z, "ks_p": ks})
    return out


@claim("core.processes.transition_sampling",
       title="Exact transition sampling has the textbook conditional law",
       source="[SF] eq. (2); [OS] Sec. 2")
def check_transition_sampling(ctx: Context) -> Record:
    """``sample_transition(x, t, s=s)`` draws vs N(m x, v I) with (m, v) from the textbook closed
    forms: mean and covariance within 5 standard errors, KS p >= 1e-5."""
    n = ctx.size(200_000, 2_000_000)
    m = measure_transition_sampling(processes(), n, ctx.rng())
    return ctx.verdict(
        within(m.excess),
        compared=[("proc.sample_transition(x0, t, s=s): sample moments and law",
                   "N(m x0, v I), (m, v) of the textbook SDE (mpmath)")],
        claimed={"X_t | X_s = x": "N(m x, v I)"},
        measured={"max_abs_z": worst_of(r["max_abs_z"] for r in m.rows),
                  "min_ks_p": float(np.min([r["ks_p"] for r in m.rows]))},
        tolerance={"MC_SIGMAS": tol.MC_SIGMAS, "KS_ALPHA": tol.KS_ALPHA,
                   "why": "5 standard errors and KS p >= 1e-5: false alarm rates < 1e-5 per test"},
        inputs={"n": n, "seed": ctx.seed}, rows=m.rows)
