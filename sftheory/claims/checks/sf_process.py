"""``sf.lemma6`` and ``sf.thm2``: the process-level barycenter of the ScoreFusion paper ([SF]
Theorem 2, eq. (16), Lemma 6), measured on Gaussian references and linear SDEs.

Independent routes written out here: the moment ODEs of the backward SDE re-derived in forward
time with the textbook coefficients (``sftheory.testing.textbook``) and integrated by scipy
together with the forward (m, v); Monte Carlo with ``sftheory.samplers.sample_euler_maruyama``
on ``sftheory.fields.weighted`` paths, compared with the exact law of the Euler scheme (a linear
recursion); for Theorem 2 the path-space KL of linear SDEs by Girsanov from the Gaussian moments
along the path, with the data-processing inequality against Gaussian marginal KLs.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.integrate import solve_ivp
from scipy.optimize import minimize

from ... import fusion
from ...fields import as_field, weighted
from ...fusion import _process
from ...models import Gaussian
from ...processes import OU, VP
from ...samplers import sample_euler_maruyama
from ...testing import textbook
from ..record import Context, Record
from ..registry import claim
from ..verdicts import corrected
from ._common import Measured

# two scipy DOP853 routes at rtol 1e-11/1e-12: agreement to 1e-8 (relative to the scale) leaves
# a 1000x margin over their accumulated error, and a 0.1 % planted error is 1e5 x the tolerance
ODE_RTOL = 1e-8
# the lemma "holds" when the terminal law equals mu_lambda to the ODE accuracy above
GAP_TOL = 1e-8
GRAD_STEP, GRAD_TOL = 1e-4, 1e-6  # sf.thm2 first-order optimality (see measure_thm2)
# Monte Carlo: 5 standard errors (false alarm < 1e-6 per statistic)
MC_SIGMAS = 5.0


def _refs(equal: bool):
    """Two 2-D Gaussian references; equal covariances or not."""
    c1 = np.array([[1.0, 0.3], [0.3, 0.5]])
    c2 = c1 if equal else np.array([[0.4, -0.1], [-0.1, 2.0]])
    return [Gaussian([1.0, -0.5], c1), Gaussian([-1.0, 2.0], c2)]


# ---- independent route: the backward moment ODEs in forward time, textbook coefficients ---------
def _ode_terminal(gaussians, lam, process, T, start):
    """Mean and covariance at t = 0 of dY = [a Y + g^2 sum_i lam_i grad log p^i_t(Y)] ds + g dB
    (s = T - t), integrated in forward time t from T down to 0 with (m, v) of the forward process
    carried along (m' = -a m, v' = -2 a v + g^2, from the mpmath closed form at T)."""
    d = gaussians[0].dim
    mus = np.stack([np.asarray(g.mean) for g in gaussians])
    sig = np.stack([np.asarray(g.cov) for g in gaussians])
    eye = np.eye(d)
    mT, vT = textbook.exact_mv(process, T)
    if start == "stationary":
        M0, V0 = np.zeros(d), textbook.stationary_variance(process) * eye
    else:  # the barycenter of p_T^i written out: precision-weighted
        precs = [np.linalg.inv(mT**2 * s + vT * eye) for s in sig]
        Pm = sum(l * p for l, p in zip(lam, precs))
        V0 = np.linalg.inv(Pm)
        M0 = V0 @ sum(l * p @ (mT * mu) for l, p, mu in zip(lam, precs, mus))

    def rhs(t, y):
        m, v = y[0], y[1]
        a = float(textbook.drift_coef(process, t))
        g2 = float(textbook.diffusion_sq(process, t))
        M, V = y[2:2 + d], y[2 + d:].reshape(d, d)
        drift_M, jac = a * M, a * eye
        for l, mu, s in zip(lam, mus, sig):
            prec = np.linalg.inv(m * m * s + v * eye)
            drift_M = drift_M - g2 * l * prec @ (M - m * mu)
            jac = jac - g2 * l * prec
        dV = jac @ V + V @ jac.T + g2 * eye
        # d/dt = -d/ds for the backward pieces
        return np.concatenate([[-a * m, -2 * a * v + g2], -drift_M, -dV.ravel()])

    y0 = np.concatenate([[mT, vT], M0, V0.ravel()])
    sol = solve_ivp(rhs, (T, 0.0), y0, method="DOP853", rtol=1e-12, atol=1e-14)
    return sol.y[2:2 + d, -1], sol.y[2 + d:, -1].reshape(d, d)


def _euler_exact(gaussians, lam, process, ts, M, V):
    """Exact mean/covariance of the Euler-Maruyama recursion x' = (1 + dt a) x + dt g^2 S(x) +
    g sqrt(dt) xi with the affine S = sum_i lam_i grad log p^i_t (textbook (m, v))."""
    d = gaussians[0].dim
    eye = np.eye(d)
    for t0, t1 in zip(ts[:-1], ts[1:]):
        dt = t0 - t1
        m, v = textbook.exact_mv(process, t0)
        a = float(textbook.drift_coef(process, t0))
        g2 = float(textbook.diffusion_sq(process, t0))
        P = sum(l * np.linalg.inv(m * m * np.asarray(g.cov) + v * eye)
                for l, g in zip(lam, gaussians))
        q = sum(l * np.linalg.solve(m * m * np.asarray(g.cov) + v * eye, m * np.asarray(g.mean))
                for l, g in zip(lam, gaussians))
        A = (1 + dt * a) * eye - dt * g2 * P
        M = A @ M + dt * g2 * q
        V = A @ V @ A.T + dt * g2 * eye
    return M, V


def _scaled(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    if not np.all(np.isfinite(a)):
        return math.nan
    return float(np.max(np.abs(a - b)) / (1.0 + np.max(np.abs(b))))


def measure_lemma6(rng, n_mc: int, n_steps: int) -> Measured:
    out = Measured()
    lam = np.array([0.3, 0.7])
    cases = [(OU(), 1.0), (OU(), 5.0), (OU(a=2.0, sigma=0.5), 3.0), (VP(), 1.0),
             (VP(beta_min=1.0, beta_max=5.0), 2.0)]
    gap_uneq = {}
    for equal in (True, False):
        refs = _refs(equal)
        bary = fusion.barycenter(refs, lam)
        for proc, T in cases:
            for start in ("stationary", "barycenter"):
                law = _process.barycenter_sampler_terminal_law(refs, lam, proc, T, start=start)
                where = (f"{'equal' if equal else 'unequal'} covs", repr(proc), T, start)
                M_ind, V_ind = _ode_terminal(refs, lam, proc, T, start)
                ode_err = max(_scaled(law.mean, M_ind), _scaled(law.cov, V_ind))
                out.add("terminal_law_vs_independent_ode", ode_err / ODE_RTOL, where)
                gap_m = _scaled(law.mean, bary.mean)
                gap_c = _scaled(law.cov, bary.cov)
                gap = max(gap_m, gap_c) if math.isfinite(gap_m + gap_c) else math.nan
                row = {"covariances": where[0], "process": where[1], "T": T, "start": start,
                       "gap_mean": gap_m, "gap_cov": gap_c, "ode_agreement": ode_err}
                out.rows.append(row)
                if start == "barycenter":  # the lemma's setting: (16) starts at gamma_T^d
                    out.add("gap_all_covariances", gap / GAP_TOL, where)
                    if equal:
                        out.add("gap_equal_covariances", gap / GAP_TOL, where)
                    else:
                        gap_uneq[(where[1], T)] = gap
                elif equal:  # stationary start: only the start error e^{-kappa theta(T)} is left
                    mT, _ = textbook.exact_mv(proc, T)
                    out.numbers.setdefault("equal_cov_stationary_gap_over_mT", []).append(
                        gap / mT)
    out.numbers["unequal_cov_gap"] = {f"{k[0]} T={k[1]}": v for k, v in gap_uneq.items()}
    # T-independence of the unequal-covariance gap (OU T = 1 vs T = 5 with the same process)
    out.numbers["unequal_gap_T1_T5"] = [gap_uneq[(repr(OU()), 1.0)], gap_uneq[(repr(OU()), 5.0)]]

    # Monte Carlo through the package's weighted field and Euler-Maruyama (1-D: fast)
    refs1 = [Gaussian([1.5], 0.5), Gaussian([-1.0], 2.0)]
    proc, T = OU(), 4.0
    ts = np.linspace(T, 0.0, n_steps + 1)
    x0 = rng.standard_normal((n_mc, 1)) * math.sqrt(proc.stationary_variance())
    field = weighted([g.path(proc) for g in refs1], lam)
    xs = np.asarray(sample_euler_maruyama(field, x0, ts, proc, seed=rng, disable=True).x)
    mc_m, mc_v = float(xs.mean()), float(xs.var(ddof=1))
    law = _process.barycenter_sampler_terminal_law(refs1, lam, proc, T, start="stationary")
    eu_m, eu_v = _euler_exact(refs1, lam, proc, ts, np.zeros(1),
                              proc.stationary_variance() * np.eye(1))
    disc_m = abs(float(eu_m[0]) - float(law.mean[0]))
    disc_v = abs(float(eu_v[0, 0]) - float(law.cov[0, 0]))
    se_m, se_v = math.sqrt(mc_v / n_mc), mc_v * math.sqrt(2.0 / (n_mc - 1))
    out.add("monte_carlo_mean", abs(mc_m - float(law.mean[0])) / (MC_SIGMAS * se_m + disc_m))
    out.add("monte_carlo_var", abs(mc_v - float(law.cov[0, 0])) / (MC_SIGMAS * se_v + disc_v))
    b1 = fusion.barycenter(refs1, lam)
    out.numbers["monte_carlo_1d"] = {
        "mc_mean": mc_m, "mc_var": mc_v, "exact_mean": float(law.mean[0]),
        "exact_var": float(law.cov[0, 0]), "euler_discretization_mean": disc_m,
        "euler_discretization_var": disc_v, "barycenter_mean": float(b1.mean[0]),
        "barycenter_var": float(b1.cov[0, 0]),
        "mc_gap_to_barycenter_over_se": max(abs(mc_m - float(b1.mean[0])) / se_m,
                                            abs(mc_v - float(b1.cov[0, 0])) / se_v)}
    return out


@claim("sf.lemma6", title="Lemma 6: the backward SDE (16) with lambda-weighted scores ends at "
       "the barycenter mu_lambda", source="[SF] App. C.1.3, Lemma 6, eq. (16)")
def check_lemma6(ctx: Context) -> Record:
    """Gaussian references (2-D, equal and unequal covariances) under OU and VP: the exact
    terminal law of (16) (``fusion._process.barycenter_sampler_terminal_law``, checked against an
    independent forward-time ODE and Monte Carlo) against Theorem 1's barycenter."""
    m = measure_lemma6(ctx.rng(0), ctx.size(40_000, 400_000), ctx.size(200, 800))
    agree = {k: v for k, v in m.worst().items() if not k.startswith("gap_")}
    paper = dict(agree, gap=m.worst()["gap_all_covariances"])
    fixed = dict(agree, gap=m.worst()["gap_equal_covariances"])
    return ctx.verdict(
        corrected(paper=paper, fixed=fixed,
                  fix="only when the references share one covariance (then the weighted score is "
                      "the score of the barycenter's own diffusion path); with unequal "
                      "covariances the terminal law differs from mu_lambda by a T-independent gap"),
        compared=[("terminal law of (16), fusion barycenter_sampler_terminal_law",
                   "fusion.barycenter (Theorem 1)"),
                  ("barycenter_sampler_terminal_law", "forward-time moment ODE with textbook "
                   "coefficients (scipy DOP853)"),
                  ("barycenter_sampler_terminal_law", "Monte Carlo: sample_euler_maruyama on "
                   "fields.weighted paths (+ exact Euler-scheme discretization bias)")],
        claimed={"lemma6": "Y~(T) ~ mu_lambda = prod mu_i^lambda_i / Z for any lambda"},
        measured={"unequal_cov_gap": m.numbers["unequal_cov_gap"],
                  "unequal_gap_T1_T5": m.numbers["unequal_gap_T1_T5"],
                  "equal_cov_stationary_gap_over_mT":
                      m.numbers["equal_cov_stationary_gap_over_mT"],
                  "monte_carlo_1d": m.numbers["monte_carlo_1d"]},
        tolerance={"ode_rtol": ODE_RTOL, "gap_tol": GAP_TOL, "monte_carlo": "5 standard errors "
                   "+ the exact Euler-scheme bias"},
        rows=m.rows,
        notes="The proof sets grad log p_{lambda,t} = sum_i lambda_i grad log p^i_t at every t, "
              "but the diffusion of mu_lambda is not the geometric mixture of the diffused p^i_t "
              "unless the covariances agree (Gaussian: (m^2 Sigma_i + v I)^-1 averaged is not "
              "(m^2 Sigma_lambda + v I)^-1). Gaps are max |difference| / (1 + max |reference|) "
              "of the mean and covariance; the stationary start adds an error ~ m(T).")


# ---- sf.thm2: path-space KL of 1-D linear SDEs --------------------------------------------------
# Reference SDEs dX = [c X + s(t)^2 a_i(t, X)] dt + s(t) dW, a_i = A_i x + b_i0 + b_i1 t,
# X(0) ~ N(m_i, v_i); candidate: the same with drift a = A(t) x + b(t), X(0) ~ N(m, v).
C_DRIFT = -0.5


def _sig2(t):
    return 0.5 + 0.5 * t  # a time-dependent diffusion s(t)^2


def _kl_gauss(m, v, mi, vi):
    return 0.5 * (v / vi + (m - mi) ** 2 / vi - 1.0 + math.log(vi / v))


def path_objective(lam, refs, init, A, b, T, t_eval=None):
    """sum_i lam_i KL(P || P_i) by Girsanov: sum_i lam_i [KL(mu || mu_i) + 1/2 int s^2
    E_P (a - a_i)^2 dt], E_P (alpha X + beta)^2 = alpha^2 S + (alpha M + beta)^2 with the
    candidate's moments M' = (c + s^2 A) M + s^2 b, S' = 2 (c + s^2 A) S + s^2.
    ``refs`` rows (A_i, b_i0, b_i1, m_i, v_i); ``A(t)``, ``b(t)`` callables; ``init`` (m, v).
    Returns (objective, per-reference KL at T, sol) with KL(P || P_i) on [0, t] in sol."""
    k = len(refs)

    def rhs(t, y):
        M, S = y[0], y[1]
        s2 = _sig2(t)
        At, bt = A(t), b(t)
        dM = (C_DRIFT + s2 * At) * M + s2 * bt
        dS = 2 * (C_DRIFT + s2 * At) * S + s2
        cost = [0.5 * s2 * ((At - Ai) ** 2 * S + ((At - Ai) * M + bt - bi0 - bi1 * t) ** 2)
                for Ai, bi0, bi1, _, _ in refs]
        return [dM, dS, *cost]

    kl0 = [_kl_gauss(init[0], init[1], r[3], r[4]) for r in refs]
    sol = solve_ivp(rhs, (0.0, T), [init[0], init[1], *kl0], method="DOP853", rtol=1e-11,
                    atol=1e-13, t_eval=t_eval, dense_output=t_eval is None)
    kls = sol.y[2:, -1]
    return float(np.dot(lam, kls)), kls, sol


def _ref_moments(r, T, ts):
    """Moments of reference P_i at times ts (its own drift)."""
    Ai, bi0, bi1, mi, vi = r

    def rhs(t, y):
        s2 = _sig2(t)
        return [(C_DRIFT + s2 * Ai) * y[0] + s2 * (bi0 + bi1 * t),
                2 * (C_DRIFT + s2 * Ai) * y[1] + s2]

    return solve_ivp(rhs, (0.0, T), [mi, vi], method="DOP853", rtol=1e-11, atol=1e-13,
                     t_eval=ts).y


def measure_thm2(lam, slopes, T=1.0, n_opt: int = 40) -> Measured:
    """One family of references: ``slopes`` the A_i (equal -> x-independent drift differences)."""
    out = Measured()
    refs = [(slopes[0], 0.8, -0.5, 1.0, 0.5), (slopes[1], -0.6, 0.9, -0.5, 1.5),
            (slopes[2], 0.2, 0.3, 0.3, 0.8)]
    lam = np.asarray(lam, float)
    # Theorem 2's candidate, built by the package: a* = fields.weighted(a_i fields, lam) (read off
    # as A*(t) = a*(1, t) - a*(0, t), b*(t) = a*(0, t)) and mu* = fusion.barycenter (Theorem 1)
    fields_ = [as_field(lambda x, t, r=r: r[0] * x + r[1] + r[2] * t, dim=1) for r in refs]
    w_field = weighted(fields_, lam)
    one, zero = np.ones((1, 1)), np.zeros((1, 1))

    def A_star_f(t):
        return float(w_field(one, t)[0, 0] - w_field(zero, t)[0, 0])

    def b_star_f(t):
        return float(w_field(zero, t)[0, 0])

    A_star = A_star_f(0.0)
    b0 = b_star_f(0.0)
    b1 = b_star_f(1.0) - b0
    mu_star = fusion.barycenter([Gaussian([r[3]], r[4]) for r in refs], lam)
    m_star, v_star = float(mu_star.mean[0]), float(mu_star.cov[0, 0])
    init = (m_star, v_star)
    if not all(math.isfinite(u) for u in (A_star, b0, b1, m_star, v_star)):
        out.add("perturbation_does_better", math.nan, "candidate not finite")
        out.add("stationarity", math.nan, "candidate not finite")
        return out
    # the candidate must be affine with a constant slope (every a_i is): read off at t = 0.5
    # (rounding of a few float64 operations on O(1) numbers: 1e-12 is a 1e4 x margin)
    out.add("candidate_affine", (abs(A_star_f(0.5) - A_star)
                                 + abs(b_star_f(0.5) - b0 - 0.5 * b1)) / 1e-12, "a*(x, 0.5)")
    J_star, _, _ = path_objective(lam, refs, init, lambda t: A_star, lambda t: b0 + b1 * t, T)
    out.numbers["J_star"] = J_star
    # closed form when the slopes agree: sum lam KL(mu*||mu_i) + 1/2 int s^2 sum lam (b*-b_i)^2
    if len(set(slopes)) == 1:
        # int_0^T s^2 (c0 + c1 t)^2 dt with s^2 = 1/2 + t/2, by polynomial antiderivative
        def pint(c0, c1):
            p = np.polynomial.Polynomial([0.5, 0.5]) * np.polynomial.Polynomial([c0, c1]) ** 2
            return float(p.integ()(T))
        # written independently of the package: Theorem 1 for 1-D Gaussians, b = sum lam_i b_i
        v_c = 1.0 / sum(l / r[4] for l, r in zip(lam, refs))
        m_c = v_c * sum(l * r[3] / r[4] for l, r in zip(lam, refs))
        c0 = sum(l * r[1] for l, r in zip(lam, refs))
        c1 = sum(l * r[2] for l, r in zip(lam, refs))
        closed = sum(l * (_kl_gauss(m_c, v_c, r[3], r[4]) + 0.5 * pint(c0 - r[1], c1 - r[2]))
                     for l, r in zip(lam, refs))
        out.add("J_star_vs_closed_form", abs(J_star - closed) / (ODE_RTOL * (1 + abs(closed))))
        out.numbers["J_star_closed_form"] = closed
    # data processing: KL of the time-t marginals <= path KL on [0, t] (independent Gaussian KL)
    ts = np.linspace(0.0, T, 5)
    _, _, sol_e = path_objective(lam, refs, init, lambda t: A_star, lambda t: b0 + b1 * t, T,
                                 t_eval=ts)
    for i, r in enumerate(refs):
        mom = _ref_moments(r, T, ts)
        for j in range(len(ts)):
            marg = _kl_gauss(sol_e.y[0, j], sol_e.y[1, j], mom[0, j], mom[1, j])
            path = sol_e.y[2 + i, j]
            viol = (marg - path) / (ODE_RTOL * (1 + abs(path)))
            out.add("marginal_kl_exceeds_path_kl", max(viol, 0.0) if math.isfinite(viol) else viol,
                    (i, float(ts[j])))
    # perturbations of every kind: constant, linear in x, time-dependent, and of the start law
    kinds = {"const": (0.0, 1.0, 0.0), "linear": (1.0, 0.0, 0.0), "time": (0.0, 0.0, 1.0),
             "linear_time": ("t", 0.0, 0.0)}
    best_drop = 0.0
    for name, (dA, db, dbt) in kinds.items():
        for eps in (-0.1, -0.01, 0.01, 0.1):
            if dA == "t":
                Af = (lambda t, e=eps: A_star + e * t)
            else:
                Af = (lambda t, e=eps, dA=dA: A_star + e * dA)
            bf = (lambda t, e=eps, db=db, dbt=dbt: b0 + b1 * t + e * (db + dbt * t))
            J, _, _ = path_objective(lam, refs, init, Af, bf, T)
            drop = (J_star - J) / (ODE_RTOL * (1 + abs(J_star)))
            out.add("perturbation_does_better", drop if math.isfinite(drop) else drop,
                    (name, eps))
            best_drop = max(best_drop, J_star - J) if math.isfinite(J) else best_drop
    # first-order optimality: central differences of J along each direction at step 1e-4
    # (DOP853 at rtol 1e-11 on J ~ 0.3: noise ~ 3e-12 / 1e-4 = 3e-8; truncation ~ 1e-8 times the
    # third derivative; tolerance 1e-6 on the directional derivative, whose size at a 0.1 %
    # wrong weight is ~1e-4)
    for name, (dA, db, dbt) in kinds.items():
        Js = []
        for eps in (-GRAD_STEP, GRAD_STEP):
            if dA == "t":
                Af = (lambda t, e=eps: A_star + e * t)
            else:
                Af = (lambda t, e=eps, dA=dA: A_star + e * dA)
            Js.append(path_objective(lam, refs, init, Af, lambda t, e=eps, db=db, dbt=dbt:
                                     b0 + b1 * t + e * (db + dbt * t), T)[0])
        out.add("stationarity", abs(Js[1] - Js[0]) / (2 * GRAD_STEP) / GRAD_TOL, name)
    for name, (dm, dv) in {"start_mean": (1.0, 0.0), "start_var": (0.0, 1.0)}.items():
        Js = [path_objective(lam, refs, (m_star + e * dm, v_star + e * dv), lambda t: A_star,
                             lambda t: b0 + b1 * t, T)[0] for e in (-GRAD_STEP, GRAD_STEP)]
        out.add("stationarity", abs(Js[1] - Js[0]) / (2 * GRAD_STEP) / GRAD_TOL, name)
    for dm, dv in ((0.05, 0.0), (0.0, 0.05), (-0.05, -0.05)):
        J, _, _ = path_objective(lam, refs, (m_star + dm, v_star + dv), lambda t: A_star,
                                 lambda t: b0 + b1 * t, T)
        out.add("perturbation_does_better", (J_star - J) / (ODE_RTOL * (1 + abs(J_star))),
                ("start", dm, dv))
    # how much better a linear drift A(t) = A0 + A1 t, b(t) = b0 + b1 t can do (Nelder-Mead)
    def obj(p):
        return path_objective(lam, refs, (p[4], math.exp(p[5])), lambda t: p[0] + p[1] * t,
                              lambda t: p[2] + p[3] * t, T)[0]
    p0 = np.array([A_star, 0.0, b0, b1, m_star, math.log(v_star)])
    res = minimize(obj, p0, method="Nelder-Mead",
                   options={"maxfev": n_opt, "xatol": 1e-8, "fatol": 1e-12})
    out.numbers["best_linear_drift_improvement"] = float(J_star - min(res.fun, J_star))
    out.numbers["largest_drop_from_perturbations"] = float(best_drop)
    return out


def measure_bounded_drifts(rng, n: int, steps: int, eps: float = 0.1, T: float = 2.0) -> dict:
    """Theorem 2's hypotheses hold (uniformly bounded a_i): dX = a_i(X) dt + dW, a_1 = tanh,
    a_2 = -tanh, X(0) ~ N(0, 1) for both, lambda = (1/2, 1/2), so a* = 0 and
    sum_i lambda_i |a - a_i|^2 = |a|^2 + tanh^2 for any a. With a = -eps tanh (Girsanov):
    J(eps) - J(0) = 1/2 E int (1 + eps^2) tanh^2(X^eps) - tanh^2(X^0) dt, by Euler-Maruyama
    with common Brownian increments; the discretization allowance is the change between
    ``steps`` and ``steps // 2`` steps on the same paths."""
    x0 = rng.standard_normal(n)
    dW = rng.standard_normal((steps, n)) * math.sqrt(T / steps)

    def cost(e, k):
        dt, inc = T / k, dW.reshape(k, steps // k, n).sum(axis=1)
        x, acc = x0.copy(), np.zeros(n)
        for j in range(k):
            th = np.tanh(x)
            acc += 0.5 * dt * (1.0 + e * e) * th * th
            x = x - e * th * dt + inc[j]
        return acc

    diff = cost(eps, steps) - cost(0.0, steps)
    coarse = float((cost(eps, steps // 2) - cost(0.0, steps // 2)).mean())
    d, se = float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(n))
    allowance = MC_SIGMAS * se + abs(d - coarse)
    return {"eps": eps, "J_eps_minus_J_star": d, "standard_error": se,
            "coarse_grid_value": coarse, "drop_over_allowance": -d / allowance}


@claim("sf.thm2", title="Theorem 2: the process-level KL barycenter has drift sum_i lambda_i a_i",
       source="[SF] Theorem 2, App. B.2")
def check_thm2(ctx: Context) -> Record:
    """1-D linear SDEs with a time-dependent diffusion: sum_i lambda_i KL(P || P_i) by Girsanov
    from the Gaussian moments; perturbed drifts and start laws against Theorem 2's candidate,
    for references whose drift parts share the slope in x (x-independent differences) and for
    references with different slopes."""
    lam = np.array([0.2, 0.5, 0.3])
    n_opt = ctx.size(60, 400)
    same = measure_thm2(lam, (0.3, 0.3, 0.3), n_opt=n_opt)
    diff = measure_thm2(lam, (0.3, -0.4, 1.0), n_opt=n_opt)
    opt = ("perturbation_does_better", "stationarity")
    agree = {f"same_slope_{k}": v for k, v in same.worst().items() if k not in opt}
    agree.update({f"different_slopes_{k}": v for k, v in diff.worst().items() if k not in opt})
    fixed = dict(agree, **{f"same_slope_{k}": same.worst()[k] for k in opt})
    paper = dict(fixed, **{f"different_slopes_{k}": diff.worst()[k] for k in opt})
    bounded = measure_bounded_drifts(ctx.rng(1), ctx.size(40_000, 400_000), ctx.size(64, 256))
    paper["bounded_drifts_perturbation_does_better"] = bounded["drop_over_allowance"]
    return ctx.verdict(
        corrected(paper=paper, fixed=fixed,
                  fix="only when the drift differences a_i - a_j do not depend on x (then "
                      "sum_i lambda_i |a - a_i|^2 - |a - a*|^2 is x-independent); otherwise the "
                      "minimizer is the Feynman-Kac tilt of P* by exp(-1/2 int s^2 sum_i lambda_i "
                      "|a_i - a*|^2 dt), not a drift sum_i lambda_i a_i"),
        compared=[("sum_i lambda_i KL(P* || P_i), P* = Theorem 2's candidate",
                   "the same at perturbed drifts and start laws"),
                  ("path KL by Girsanov (same slopes)", "closed form sum lambda_i KL(mu*||mu_i) "
                   "+ 1/2 int s^2 sum lambda_i (b* - b_i)^2"),
                  ("path KL on [0, t]", "Gaussian KL of the time-t marginals (data processing)"),
                  ("bounded drifts a_i = +-tanh: J at a* = 0", "J at a = -0.1 tanh (Monte Carlo "
                   "Girsanov cost, common random numbers)")],
        claimed={"thm2": "argmin_P sum_i lambda_i KL(P || P_i) has drift c + s^2 sum lambda_i a_i "
                         "and start the barycenter of the mu_i"},
        measured={"same_slope": same.numbers, "different_slopes": diff.numbers,
                  "bounded_drifts_tanh": bounded},
        tolerance={"ode_rtol": ODE_RTOL, "directional_derivative": GRAD_TOL,
                   "finite_difference_step": GRAD_STEP},
        notes="Girsanov: KL(P || P_i) = KL(mu || mu_i) + 1/2 E_P int s^2 |a - a_i|^2 dt. The "
              "paper's proof minimizes the integrand pointwise while holding E_P fixed, but E_P "
              "depends on the drift; a* is the minimizer only when the weighted cost is "
              "x-independent. Affine a_i are outside the theorem's 'uniformly bounded' hypothesis, "
              "so the bounded pair a_i = +-tanh (inside it) is measured too: a = -0.1 tanh beats "
              "a* = 0 by many standard errors.")
