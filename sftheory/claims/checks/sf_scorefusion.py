"""``sf.alg1``, ``sf.thm4.ttilde``, ``sf.thm4``, ``sf.dimfree``: ScoreFusion ([SF] Algorithm 1,
Theorem 4, App. C.3) measured on :func:`sftheory.fusion.score_fusion`.

Independent routes written out here (never the package's code):

* the DSM quadratic (G, b, c) of Gaussian auxiliaries in closed form: with p^i_t = N(a_i, C_i),
  a_i = m mu_i, C_i = m^2 Sigma_i + v I, P_i = C_i^{-1}, s_i = -P_i (x - a_i), and X_0 with mean
  mu and covariance S (a Gaussian target, or the empirical law of the samples),
  G_ij(t) = tr(P_i P_j C) + (a - a_i)^T P_i P_j (a - a_j) (a = m mu, C = m^2 S + v I),
  b_i(t) = -E[s_i . Z] / sqrt(v) = E[(m X_0 - a_i + sqrt(v) Z)^T P_i Z] / sqrt(v) = tr(P_i),
  c(t) = d / v, averaged with gamma(t) over U[0, T~] by ``scipy.integrate.quad_vec``; the OU
  process dX = -X/2 dt + dW is written out, m = e^{-t/2}, v = 1 - e^{-t};
* the simplex QP by the KKT linear system (interior minimizers) or scipy SLSQP;
* the law the sampler of phase II ends at, for 1-D Gaussian auxiliaries: the mean/variance ODEs
  of the reverse SDE dY = [Y/2 + sum_i lambda_i s_i(Y, T - s)] ds + dB from N(0, 1), by
  ``solve_ivp``; TV by ``scipy.integrate.quad``;
* KL(p^nu_t || p^nu_0): Gaussian closed form, ``quad`` for mixtures, normal-CDF closed form and
  Monte Carlo for the mass a compactly supported nu's p_t puts outside the support.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import integrate, stats
from scipy.optimize import minimize
from scipy.special import logsumexp, ndtr

from ... import fusion
from ...models import Gaussian
from ...processes import OU
from .. import _plot
from ..record import Context, Record
from ..registry import claim
from ..verdicts import corrected, within
from ._common import Measured

N_SE = 5.0          # Monte Carlo vs exact: 5 standard errors (false alarm ~6e-7 per number)
QUAD_RTOL = 1e-8    # quad_vec at epsrel 1e-11: agreement to 1e-8 relative leaves 1000x margin
POP_TOL = 1e-7      # population lambda = lambda* via the KKT solve of quad_vec G, b (~1e-10)


# ---- independent helpers ------------------------------------------------------------------------
def _ou_mv(t: float):
    """m(t), v(t) of dX = -X/2 dt + dW (OU with a = 1/2, sigma = 1), written out."""
    return math.exp(-0.5 * t), -math.expm1(-t)


def closed_form_quadratic(mus, covs, mean, cov, T_tilde, gamma="variance"):
    """(G (k, k), b (k,), c) of the DSM loss for Gaussian auxiliaries N(mus[i], covs[i]) and X_0
    of mean ``mean`` and covariance ``cov``, under OU(1/2, 1), averaged over U[0, T~] (module
    docstring). ``gamma``: "variance" (v(t)) or "uniform" (1; c is then infinite)."""
    mus, covs = np.asarray(mus, float), np.asarray(covs, float)
    mean, cov = np.asarray(mean, float), np.atleast_2d(np.asarray(cov, float))
    k, d = mus.shape
    eye = np.eye(d)

    def integrand(t):
        m, v = _ou_mv(t)
        g = v if gamma == "variance" else 1.0
        P = np.linalg.inv(m * m * covs + v * eye)
        C = m * m * cov + v * eye
        Pr = np.einsum("kab,kb->ka", P, m * (mean[None] - mus))
        G = np.einsum("iab,jbc,ca->ij", P, P, C) + Pr @ Pr.T
        return g * np.concatenate([G.ravel(), np.trace(P, axis1=1, axis2=2)])

    val = integrate.quad_vec(integrand, 0.0, T_tilde, epsrel=1e-11, epsabs=0.0, limit=500)[0]
    val /= T_tilde
    G = val[:k * k].reshape(k, k)
    return 0.5 * (G + G.T), val[k * k:], (float(d) if gamma == "variance" else math.inf)


def qp_reference(G, b):
    """argmin lam^T G lam - 2 b^T lam on the simplex: the equality-constrained KKT solve when its
    solution is >= 0 (then it is the minimizer), else the best of scipy SLSQP from each vertex
    and the centre."""
    k = b.shape[0]
    A = np.block([[G, np.ones((k, 1))], [np.ones((1, k)), np.zeros((1, 1))]])
    try:
        lam = np.linalg.solve(A, np.concatenate([b, [1.0]]))[:k]
        if np.all(lam >= 0):
            return lam
    except np.linalg.LinAlgError:
        pass
    best = None
    for x0 in list(np.eye(k)) + [np.full(k, 1.0 / k)]:
        r = minimize(lambda x: x @ G @ x - 2 * b @ x, x0, jac=lambda x: 2 * (G @ x - b),
                     method="SLSQP", bounds=[(0, 1)] * k,
                     constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1}],
                     options={"ftol": 1e-15, "maxiter": 1000})
        if best is None or r.fun < best.fun:
            best = r
    return np.clip(best.x, 0, None) / np.clip(best.x, 0, None).sum()


def _slope(ns, values, rng, n_boot: int = 1000) -> dict:
    """OLS slope and intercept of log(mean over replicates) vs log n, and a 95 % bootstrap
    interval of the slope (replicates resampled at each n). NaN for non-positive/non-finite."""
    x = np.log(np.asarray(ns, float))
    v = np.asarray(values, float)
    if v.ndim == 1:
        v = v[:, None]

    def fit(means):
        if not np.all(np.isfinite(means)) or np.any(means <= 0):
            return math.nan, math.nan
        c = np.polyfit(x, np.log(means), 1)
        return float(c[0]), float(c[1])

    slope, icpt = fit(v.mean(axis=1))
    if not math.isfinite(slope):
        return {"slope": math.nan, "intercept": math.nan, "ci95": [math.nan, math.nan]}
    R = v.shape[1]
    if R < 2:
        return {"slope": slope, "intercept": icpt, "ci95": [slope, slope]}
    boots = [fit(np.take_along_axis(v, rng.integers(0, R, size=v.shape), axis=1).mean(1))[0]
             for _ in range(n_boot)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"slope": slope, "intercept": icpt, "ci95": [float(lo), float(hi)]}


def rate_at_least(slope, rate) -> float:
    """<= 1 iff ``slope`` >= ``rate`` (a decay at least as fast as T~^rate); NaN stays NaN."""
    return math.nan if not math.isfinite(slope) else 1.0 + (rate - slope)


def rate_at_most(slope_upper, rate) -> float:
    """<= 1 iff ``slope_upper`` <= ``rate`` (a decay at least as fast as n^rate); NaN stays NaN."""
    return math.nan if not math.isfinite(slope_upper) else 1.0 + (slope_upper - rate)


def _bary_1d(mus, vars_, lam):
    """Distribution-level barycenter of 1-D Gaussians: precision-weighted (Theorem 1)."""
    prec = float(np.sum(lam / vars_))
    return float(np.sum(lam * mus / vars_) / prec), 1.0 / prec


def sampler_output_1d(mus, vars_, lam, T: float):
    """(mean, var) at forward time 0 of dY = [Y/2 + sum_i lam_i s_i(Y, T - s)] ds + dB from
    Y_0 ~ N(0, 1) (the stationary law of OU(1/2, 1)), s_i(y, t) = -(y - m mu_i)/(m^2 v_i + v):
    dM/ds = (1/2 - P) M + q, dV/ds = 2 (1/2 - P) V + 1 (P = sum lam_i/C_i, q = sum lam_i m mu_i/C_i)
    by solve_ivp (DOP853, rtol 1e-11)."""
    mus, vars_, lam = map(lambda a: np.asarray(a, float), (mus, vars_, lam))
    if not np.all(np.isfinite(lam)):
        return math.nan, math.nan

    def rhs(s, y):
        m, v = _ou_mv(max(T - s, 0.0))
        C = m * m * vars_ + v
        P = float(np.sum(lam / C))
        q = float(np.sum(lam * m * mus / C))
        return [(0.5 - P) * y[0] + q, 2 * (0.5 - P) * y[1] + 1.0]

    sol = integrate.solve_ivp(rhs, (0.0, T), [0.0, 1.0], method="DOP853", rtol=1e-11,
                              atol=1e-13)
    if not sol.success:
        return math.nan, math.nan
    return float(sol.y[0, -1]), float(sol.y[1, -1])


def tv_gauss_1d(m1, v1, m2, v2) -> float:
    """TV(N(m1, v1), N(m2, v2)) = 1/2 int |phi_1 - phi_2| by scipy quad (NaN for NaN input)."""
    if not all(math.isfinite(a) for a in (m1, v1, m2, v2)) or v1 <= 0 or v2 <= 0:
        return math.nan
    s1, s2 = math.sqrt(v1), math.sqrt(v2)
    lo = min(m1 - 12 * s1, m2 - 12 * s2)
    hi = max(m1 + 12 * s1, m2 + 12 * s2)
    f = lambda x: abs(stats.norm.pdf(x, m1, s1) - stats.norm.pdf(x, m2, s2))  # noqa: E731
    return 0.5 * integrate.quad(f, lo, hi, points=[m1, m2], limit=500, epsabs=1e-13)[0]


# ---- sf.alg1 ------------------------------------------------------------------------------------
def _alg1_cases(full: bool):
    cov = np.array([[1.0, 0.3], [0.3, 0.8]])
    mus2 = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    lam2 = np.array([0.2, 0.5, 0.3])
    cases = [("equal_cov_2d_barycenter", mus2, np.stack([cov] * 3), lam2 @ mus2, cov, lam2, 0.5)]
    mus1, vars1, lam1 = np.array([[-2.0], [3.0]]), np.array([0.5, 2.0]), np.array([0.4, 0.6])
    bm, bv = _bary_1d(mus1[:, 0], vars1, lam1)
    cases.append(("unequal_var_1d_barycenter", mus1, vars1[:, None, None], np.array([bm]),
                  np.array([[bv]]), lam1, 0.5))
    if full:
        mus3 = np.array([[-1.0, 0.0, 0.5], [1.5, -1.0, 0.0], [0.0, 1.0, -1.0], [0.5, 0.5, 2.0]])
        lam3 = np.array([0.1, 0.3, 0.35, 0.25])
        cases.append(("equal_cov_3d_k4_barycenter", mus3, np.stack([np.eye(3)] * 4), lam3 @ mus3,
                      np.eye(3), lam3, 1.0))
    return cases


def measure_alg1(rng, *, n_target: int, n_mc: int, steps: int, full: bool) -> Measured:
    out = Measured()
    batch = 256
    # the per-draw DSM terms: lam^T G_j lam - 2 b_j^T lam + c_j = gamma |sum lam_i S_i + z/sqrt v|^2
    # on random inputs (an exact identity: rounding ~1e-15 relative, tolerance 1e-12)
    S, z = rng.normal(size=(50, 3, 4)), rng.normal(size=(50, 4))
    v, gam = rng.uniform(1e-4, 2, 50), rng.uniform(0.1, 3, 50)
    Gj, bj, cj = fusion.dsm_contributions(S, z, v, gam)
    for lam in rng.dirichlet(np.ones(3), size=5):
        direct = gam * np.sum((np.einsum("i,nid->nd", lam, S) + z / np.sqrt(v)[:, None]) ** 2, 1)
        quad = np.einsum("i,nij,j->n", lam, Gj, lam) - 2 * bj @ lam + cj
        out.add("dsm_terms_vs_direct_loss", np.abs(quad - direct) / (1e-12 * direct), "random")
    for name, mus, covs, tmean, tcov, lam_star, T_tilde in _alg1_cases(full):
        aux = [Gaussian(m, c) for m, c in zip(mus, covs)]
        X = rng.multivariate_normal(tmean, tcov, size=n_target)
        ex = fusion.score_fusion(aux, X, OU(), T_tilde, n_mc=n_mc, seed=rng, n_boot=32)
        sg = fusion.score_fusion(aux, X, OU(), T_tilde, n_mc=1024, seed=rng, n_boot=0,
                                 method="softmax-sgd", steps=steps, batch_size=batch)
        se = np.asarray(ex.diagnostics["weights_se"], float)
        # the exact route solves its own quadratic: the package's weights vs the KKT / SLSQP
        # reference on the package's G and b (tolerance 1e-8: SLSQP ftol 1e-15 on the objective)
        out.add("exact_weights_vs_reference_qp",
                np.abs(ex.weights - qp_reference(ex.gram, ex.linear)) / 1e-8, name)
        # the reported loss is the quadratic at the weights (rounding only)
        out.add("loss_vs_quadratic", abs(ex.loss - (ex.weights @ ex.gram @ ex.weights - 2 *
                                                     ex.linear @ ex.weights + ex.const)) /
                (1e-10 * abs(ex.loss)), name)
        if "sgd_trace" not in out.numbers:
            tr = sg.diagnostics["sgd_weights"]
            out.numbers["sgd_trace"] = {"case": name, "exact": ex.weights.tolist(),
                                        "steps": list(range(0, len(tr), 10)),
                                        "weights": tr[::10].tolist()}
        # Polyak-Ruppert: the average of the last steps/2 iterates has the error of an exact solve
        # on those steps/2 x batch draws
        se_sgd = se * math.sqrt(n_mc / (steps // 2 * batch))
        tol = N_SE * np.sqrt(se ** 2 + se_sgd ** 2)
        out.add("sgd_vs_exact_over_5se", np.abs(sg.weights - ex.weights) / tol, name)
        # the Monte Carlo quadratic vs the closed form for the empirical target (sample mean and
        # 1/n covariance of X), entry by entry in standard errors
        emp_cov = np.atleast_2d(np.cov(X.T, bias=True))
        G, b, c = closed_form_quadratic(mus, covs, X.mean(0), emp_cov, T_tilde)
        out.add("gram_vs_closed_form_over_5se", np.abs(ex.gram - G) / (N_SE * ex.gram_se), name)
        out.add("linear_vs_closed_form_over_5se",
                np.abs(ex.linear - b) / (N_SE * ex.linear_se), name)
        out.add("const_vs_closed_form_over_5se", abs(ex.const - c) / (N_SE * ex.const_se), name)
        lam_emp = qp_reference(G, b)
        out.add("exact_vs_closed_form_qp_over_5se", np.abs(ex.weights - lam_emp) / (N_SE * se),
                name)
        # population (target law, not samples): lambda(T~) of the closed-form quadratic
        Gp, bp, _ = closed_form_quadratic(mus, covs, tmean, tcov, T_tilde)
        lam_pop = qp_reference(Gp, bp)
        row = {"case": name, "T_tilde": T_tilde, "lambda_star": lam_star.tolist(),
               "exact": ex.weights.tolist(), "exact_se": se.tolist(),
               "sgd": sg.weights.tolist(), "sgd_vs_exact_max": float(np.max(np.abs(
                   sg.weights - ex.weights))), "closed_form_empirical": lam_emp.tolist(),
               "population_lambda_T_tilde": lam_pop.tolist(),
               "loss": ex.loss, "loss_se": ex.loss_se, "identifiable": ex.diagnostics[
                   "identifiable"]}
        if name.startswith("equal_cov"):
            # recovery: equal covariances, affinely independent means, target = barycenter:
            # sum lam*_i s_i is the target's score at every t, so the population lambda is lam*
            out.add("population_recovers_lambda_star", np.max(np.abs(lam_pop - lam_star)) / POP_TOL,
                    name)
            out.add("identifiable_flag", 0.0 if ex.diagnostics["identifiable"] else math.inf,
                    name)
        out.rows.append(row)
    # not identifiable: k = 3 > d + 1 = 2 equal-variance Gaussians in 1-D: the Gram matrix is
    # singular on the simplex (s_2 is the average of s_1 and s_3 at every (x, t))
    aux = [Gaussian([m], 1.0) for m in (-2.0, 0.0, 2.0)]
    X = rng.normal(0.4, 1.0, size=(n_target, 1))
    nid = fusion.score_fusion(aux, X, OU(), 0.5, n_mc=4096, seed=rng, n_boot=0)
    G, _, _ = closed_form_quadratic([[-2.0], [0.0], [2.0]], np.ones((3, 1, 1)), [0.4], [[1.0]],
                                    0.5)
    u = np.array([1.0, -2.0, 1.0]) / math.sqrt(6)  # s_1 - 2 s_2 + s_3 = 0
    out.add("non_identifiable_flag", 0.0 if not nid.diagnostics["identifiable"] else math.inf,
            "k3_d1")
    out.numbers["non_identifiable"] = {"package_tangent_min_eig": nid.diagnostics[
        "tangent_min_eig"], "closed_form_u^T G u": float(u @ G @ u),
        "closed_form_trace_G": float(np.trace(G))}
    # bias of the population lambda(T~) against T~ where lambda* is not identifiable by scores:
    # unequal variances, target = the distribution-level barycenter
    mus1, vars1, lam1 = np.array([[-2.0], [3.0]]), np.array([0.5, 2.0]), np.array([0.4, 0.6])
    bm, bv = _bary_1d(mus1[:, 0], vars1, lam1)
    tts = np.logspace(-3, 0.5, 8)
    bias = []
    for tt in tts:
        Gp, bp, _ = closed_form_quadratic(mus1, vars1[:, None, None], [bm], [[bv]], tt)
        bias.append(float(abs(qp_reference(Gp, bp)[0] - lam1[0])))
    out.numbers["bias_vs_T_tilde"] = {"T_tilde": tts.tolist(), "abs_bias_lambda1": bias,
                                      "slope_small_T_tilde": float(np.polyfit(
                                          np.log(tts[:4]), np.log(bias[:4]), 1)[0])}
    return out


def _draw_alg1(path, m: Measured):
    plt = _plot.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    tr = m.numbers["sgd_trace"]
    w = np.array(tr["weights"])
    for i in range(w.shape[1]):
        line, = axes[0].plot(tr["steps"], w[:, i], label=f"SGD lambda_{i + 1}")
        axes[0].axhline(tr["exact"][i], color=line.get_color(), ls=":")
    axes[0].set_title(f"{tr['case']}: softmax SGD (dotted: exact QP)")
    axes[0].set_xlabel("step")
    axes[0].legend(fontsize=7)
    b = m.numbers["bias_vs_T_tilde"]
    axes[1].loglog(b["T_tilde"], b["abs_bias_lambda1"], "o-",
                   label=f"|lambda(T~) - lambda*| (slope {b['slope_small_T_tilde']:.2f})")
    axes[1].set_title("unequal variances: population bias vs T~")
    axes[1].set_xlabel("T~")
    axes[1].legend(fontsize=7)
    return _plot.save(fig, path)


@claim("sf.alg1", title="Algorithm 1: the exact simplex solve and the paper's softmax SGD agree",
       source="[SF] Sec. 3.2, Algorithm 1, eq. (10)")
def check_alg1(ctx: Context) -> Record:
    """score_fusion's exact QP solve vs its softmax-SGD on the same auxiliaries and target
    samples (within 5 combined standard errors); the Monte Carlo quadratic vs its closed form;
    lambda* recovered by the population regression where it is identifiable; the
    non-identifiable case flagged; the bias of lambda(T~) vs T~ where scores cannot represent
    the target's diffused score (unequal variances)."""
    m = measure_alg1(ctx.rng(0), n_target=ctx.size(1000, 8000), n_mc=ctx.size(2 ** 14, 2 ** 17),
                     steps=ctx.size(500, 4000), full=not ctx.quick)
    ctx.figure("sgd_vs_exact", _draw_alg1, m)
    b = m.numbers["bias_vs_T_tilde"]
    return ctx.verdict(
        within(m.worst()),
        compared=[("score_fusion(method='softmax-sgd') weights", "score_fusion exact weights "
                   "(5 combined bootstrap / Polyak-Ruppert standard errors)"),
                  ("fusion.dsm_contributions quadratic", "the DSM loss written directly"),
                  ("score_fusion exact weights on its own G, b", "KKT solve / scipy SLSQP"),
                  ("Monte Carlo G, b, c", "closed form (quad_vec) for the empirical target"),
                  ("exact weights", "KKT / SLSQP solve of the closed-form quadratic"),
                  ("population lambda(T~) (equal covariances)", "lambda* of the barycenter")],
        claimed={"alg1": "lambda from the regression (10) by softmax-parametrized SGD"},
        measured={"rows": m.rows, "non_identifiable": m.numbers["non_identifiable"],
                  "bias_vs_T_tilde": b},
        tolerance={"mc": "5 standard errors", "population_recovery": POP_TOL},
        rows=m.rows,
        notes="Recovery holds exactly (population lambda = lambda* for every T~) when the "
              "auxiliaries are Gaussians of one covariance with affinely independent means and "
              "the target is their barycenter: then sum_i lambda*_i grad log p^i_t is the "
              "target's score at every t. With k > d + 1 such auxiliaries the scores are "
              "affinely dependent and lambda is not identifiable (G singular on the simplex). "
              "With unequal variances the diffused barycenter's score is not a lambda-combination "
              "of the diffused scores at t > 0 ((m^2 s_lam^2 + v)^-1 != sum lam_i (m^2 s_i^2 + "
              f"v)^-1), so lambda(T~) is biased; the bias grows like T~^"
              f"{b['slope_small_T_tilde']:.2f} at small T~ and vanishes as T~ -> 0.")


# ---- sf.thm4.ttilde -----------------------------------------------------------------------------
def _kl_gauss_1d(m1, v1, m0, v0):
    return 0.5 * (math.log(v0 / v1) + (v1 + (m1 - m0) ** 2) / v0 - 1.0)


def _mix_logpdf(x, w, mu, var):
    x = np.asarray(x, float)[..., None]
    return logsumexp(np.log(w) - 0.5 * np.log(2 * np.pi * var) - 0.5 * (x - mu) ** 2 / var,
                     axis=-1)


def _mix_logpdf_scalar(x: float, comps) -> float:
    terms = [lw - 0.5 * (x - m) ** 2 / v for lw, m, v in comps]
    top = max(terms)
    return top + math.log(sum(math.exp(a - top) for a in terms))


def kl_mixture_t_vs_0(w, mu, var, t):
    """KL(p_t || p_0) of a 1-D Gaussian mixture under OU(1/2, 1) by scipy quad."""
    m, v = _ou_mv(t)
    mt, vt = m * mu, m * m * var + v
    ct = [(math.log(a) - 0.5 * math.log(2 * math.pi * b), c, b) for a, c, b in zip(w, mt, vt)]
    c0 = [(math.log(a) - 0.5 * math.log(2 * math.pi * b), c, b) for a, c, b in zip(w, mu, var)]

    def f(x):
        lp = _mix_logpdf_scalar(x, ct)
        return math.exp(lp) * (lp - _mix_logpdf_scalar(x, c0))

    pts = sorted(set(np.concatenate([mu, mt]).tolist()))
    return integrate.quad(f, min(pts) - 15, max(pts) + 15, points=pts, limit=1000,
                          epsabs=0.0, epsrel=1e-10)[0]


def uniform_mass_outside(t, half=1.0):
    """P(|X_t| > half) for X_0 ~ U[-half, half] under OU(1/2, 1): 1 - int_{-h}^{h} p_t, with
    p_t(x) = [Phi((x + m h)/sqrt v) - Phi((x - m h)/sqrt v)] / (2 m h), by quad."""
    m, v = _ou_mv(t)
    s = math.sqrt(v)

    def p(x):
        return (ndtr((x + m * half) / s) - ndtr((x - m * half) / s)) / (2 * m * half)
    inside = integrate.quad(p, -half, half, points=[-m * half, m * half], epsabs=1e-14,
                            epsrel=1e-12, limit=200)[0]
    return 1.0 - inside, p


def kl_uniform_0_vs_t(t, half=1.0):
    """The reverse direction KL(p_0 || p_t) for nu = U[-h, h] (finite), by quad."""
    _, p = uniform_mass_outside(t, half)
    f = lambda x: (1 / (2 * half)) * (math.log(1 / (2 * half)) - math.log(p(x)))  # noqa: E731
    m, _ = _ou_mv(t)
    return integrate.quad(f, -half, half, points=[-m * half, m * half], epsabs=1e-15,
                          epsrel=1e-11, limit=500)[0]


def measure_ttilde(rng, tts, n_mc: int) -> Measured:
    out = Measured()
    # Gaussian nu = N(1, 0.25): closed form vs the package's marginal + quad
    g_mu, g_var = 1.0, 0.25
    w_mix, mu_mix, var_mix = np.array([0.6, 0.4]), np.array([-2.0, 1.5]), np.array([0.3, 0.6])
    law_g = Gaussian([g_mu], g_var)
    kl_g, kl_m, kl_u_rev, mass = [], [], [], []
    for t in tts:
        m, v = _ou_mv(t)
        kg = _kl_gauss_1d(m * g_mu, m * m * g_var + v, g_mu, g_var)
        pt = law_g.marginal(OU(), t)  # the package's diffused law (checked against closed form)
        kq = kl_mixture_t_vs_0(np.ones(1), np.array([g_mu]), np.array([g_var]), t)
        out.add("gaussian_kl_quad_vs_closed_form", abs(kq - kg) / (QUAD_RTOL * kg + 1e-300), t)
        out.add("package_marginal_vs_closed_form",
                abs(float(pt.mean[0]) - m * g_mu) / 1e-12 + abs(float(pt.cov[0, 0]) - (
                    m * m * g_var + v)) / 1e-12, t)
        kl_g.append(kg)
        kl_m.append(kl_mixture_t_vs_0(w_mix, mu_mix, var_mix, t))
        ms, _ = uniform_mass_outside(t)
        mass.append(ms)
        kl_u_rev.append(kl_uniform_0_vs_t(t))
    # Monte Carlo route for the mass outside the support (at the largest T~)
    t = float(tts[-1])
    m, v = _ou_mv(t)
    x = m * rng.uniform(-1, 1, n_mc) + math.sqrt(v) * rng.standard_normal(n_mc)
    frac = float(np.mean(np.abs(x) > 1))
    se = math.sqrt(frac * (1 - frac) / n_mc)
    out.add("uniform_mass_outside_mc_vs_quad", abs(frac - mass[-1]) / (N_SE * se), t)
    # Monte Carlo route for the mixture KL at the largest T~: E_{p_t}[log p_t - log p_0]
    comp = rng.choice(2, size=n_mc, p=w_mix)
    y = m * rng.normal(mu_mix[comp], np.sqrt(var_mix[comp])) + math.sqrt(v) * rng.standard_normal(
        n_mc)
    lr = _mix_logpdf(y, w_mix, m * mu_mix, m * m * var_mix + v) - _mix_logpdf(y, w_mix, mu_mix,
                                                                              var_mix)
    out.add("mixture_kl_mc_vs_quad", abs(lr.mean() - kl_m[-1]) / (N_SE * lr.std() / math.sqrt(
        n_mc)), t)
    small = slice(0, len(tts) // 2)
    slopes = {name: float(np.polyfit(np.log(tts[small]), np.log(np.asarray(vals)[small]), 1)[0])
              for name, vals in (("gaussian", kl_g), ("mixture", kl_m),
                                 ("uniform_reverse_kl_p0_pt", kl_u_rev),
                                 ("uniform_mass_outside", mass))}
    out.numbers.update({"T_tilde": list(map(float, tts)), "kl_gaussian": kl_g,
                        "kl_mixture": kl_m, "uniform_mass_outside_support": mass,
                        "uniform_kl_p0_pt": kl_u_rev, "slopes_small_T_tilde": slopes})
    return out


def _draw_ttilde(path, m: Measured):
    plt = _plot.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    n = m.numbers
    t = np.array(n["T_tilde"])
    s = n["slopes_small_T_tilde"]
    ax.loglog(t, n["kl_gaussian"], "o-",
              label=f"KL(p_t||p_0) Gaussian nu (slope {s['gaussian']:.2f})")
    ax.loglog(t, n["kl_mixture"], "s-",
              label=f"KL(p_t||p_0) mixture nu (slope {s['mixture']:.2f})")
    ax.loglog(t, n["uniform_kl_p0_pt"], "^-",
              label=f"KL(p_0||p_t) uniform nu (slope {s['uniform_reverse_kl_p0_pt']:.2f})")
    ax.loglog(t, n["uniform_mass_outside_support"], "v:",
              label="uniform nu: p_t mass outside supp (KL(p_t||p_0) = inf)")
    ax.loglog(t, np.sqrt(t) * n["kl_mixture"][-1] / math.sqrt(t[-1]), "k--", label="T~^(1/2)")
    ax.set_xlabel("T~")
    ax.legend(fontsize=7)
    return _plot.save(fig, path)


@claim("sf.thm4.ttilde", title="App. C.3: KL(p^nu_T~ || p^nu_0) = O(T~^(1/2)) behind the T~^(1/4) "
       "term", source="[SF] Theorem 4, App. C.3 (bound on I_1)")
def check_ttilde(ctx: Context) -> Record:
    """KL(p^nu_T~ || p^nu_0) under OU(1/2, 1) for a Gaussian nu (closed form, quad) and a
    two-component mixture (quad, Monte Carlo), with the log-log slope at small T~; for a
    compactly supported nu (uniform, as Assumption 1 requires) the mass p_T~ puts outside the
    support (closed form + quad, Monte Carlo): positive, so the KL is infinite. The reverse
    KL(p_0 || p_T~) of the uniform nu is measured too."""
    tts = np.logspace(-4, -0.5, ctx.size(8, 16))
    m = measure_ttilde(ctx.rng(0), tts, ctx.size(200_000, 2_000_000))
    ctx.figure("kl_vs_ttilde", _draw_ttilde, m)
    s = m.numbers["slopes_small_T_tilde"]
    checks = m.worst()
    # paper: under Assumption 1 (compact support) KL(p_T~ || p_0) <= C T~^(1/2): it is infinite
    # whenever p_T~ puts mass outside the support
    mass = np.asarray(m.numbers["uniform_mass_outside_support"])
    paper = dict(checks)
    paper["compact_nu_kl_finite"] = math.inf if np.any(mass > 0) else 0.0
    fixed = dict(checks)
    # full-support nu: the KL decays at least like T~^(1/2) (slope >= 1/2 at small T~)
    fixed["gaussian_slope_at_least_1/2"] = rate_at_least(s["gaussian"], 0.5)
    fixed["mixture_slope_at_least_1/2"] = rate_at_least(s["mixture"], 0.5)
    return ctx.verdict(
        corrected(paper=paper, fixed=fixed,
                  fix="the step needs nu with full support (Assumption 1's compact support makes "
                      "KL(p_T~ || p_0) infinite); for Gaussian and Gaussian-mixture nu the KL is "
                      f"O(T~^2) (slopes {s['gaussian']:.2f}, {s['mixture']:.2f}), so O(T~^(1/2)) "
                      "holds with room"),
        compared=[("KL(p_t || p_0), Gaussian nu: closed form", "scipy quad"),
                  ("KL(p_t || p_0), mixture nu: scipy quad", "Monte Carlo (5 SE)"),
                  ("mass of p_t outside supp(nu), uniform nu: normal-CDF density + quad",
                   "Monte Carlo (5 SE)"),
                  ("log-log slope of KL vs T~ at small T~", "the paper's exponent 1/2")],
        claimed={"C.3": "D_KL(p^nu_T~ || p^nu_0) = O(T~^(1/2)) under Assumption 1"},
        measured={"slopes_small_T_tilde": s, "T_tilde": m.numbers["T_tilde"],
                  "kl_gaussian": m.numbers["kl_gaussian"], "kl_mixture": m.numbers["kl_mixture"],
                  "uniform_mass_outside_support": m.numbers["uniform_mass_outside_support"],
                  "uniform_kl_p0_pt": m.numbers["uniform_kl_p0_pt"]},
        tolerance={"quad_rtol": QUAD_RTOL, "mc": "5 standard errors",
                   "slope": ">= 1/2 (the paper's exponent, an upper bound on the decay)"},
        notes="For smooth full-support nu, KL(p_t || p_0) ~ (t^2 / 2) int (d_t p)^2 / p_0: "
              "exponent 2, not 1/2. For a compactly supported nu (Assumption 1) p_t > 0 outside "
              "the support where p_0 = 0, so the direction used in App. C.3 is infinite for "
              "every T~ > 0. The reverse KL(p_0 || p_T~) of a uniform nu is finite and decays "
              f"like T~^{s['uniform_reverse_kl_p0_pt']:.2f} (a boundary layer of width sqrt(T~)): "
              "the paper's exponent 1/2 matches that direction, not the one the proof uses.")


# ---- sf.thm4 ------------------------------------------------------------------------------------
THM4_MUS = np.array([-2.0, 3.0])
THM4_T = 12.0  # e^{-T} ~ 6e-6: the initialization term of SE is below every measured TV


def measure_thm4(rng, ns, reps: int, tts, n_var: int, var_reps: int) -> Measured:
    out = Measured()
    # (A) identifiable: equal variances, target = barycenter; weight error and output TV vs n
    lam_star = np.array([0.35, 0.65])
    vars_eq = np.ones(2)
    tm = float(lam_star @ THM4_MUS)
    aux = [Gaussian([m], 1.0) for m in THM4_MUS]
    werr, tv = np.empty((len(ns), reps)), np.empty((len(ns), reps))
    for a, n in enumerate(ns):
        for r in range(reps):
            X = rng.normal(tm, 1.0, size=(int(n), 1))
            res = fusion.score_fusion(aux, X, OU(), 0.5, n_mc=max(2 ** 14, 16 * int(n)),
                                      seed=rng, n_boot=0)
            lam = np.asarray(res.weights, float)
            werr[a, r] = float(np.max(np.abs(lam - lam_star)))
            om, ov = sampler_output_1d(THM4_MUS, vars_eq, lam, THM4_T)
            tv[a, r] = tv_gauss_1d(tm, 1.0, om, ov)
        out.rows.append({"part": "A_vs_n", "n": int(n), "mean_weight_error": float(werr[a].mean()),
                         "mean_tv_output": float(tv[a].mean())})
    s_w, s_tv = _slope(ns, werr, rng), _slope(ns, tv, rng)
    out.numbers["A"] = {"ns": [int(n) for n in ns], "weight_error_slope": s_w,
                        "tv_slope": s_tv, "mean_weight_error": werr.mean(1).tolist(),
                        "mean_tv": tv.mean(1).tolist()}
    # the n-rate of Theorem 4 is an upper bound: the fitted slope must be <= -1/4 (its bootstrap
    # interval is recorded; the measured -1/2 sits ~2.5 interval half-widths below -1/4)
    out.add("A_tv_slope_vs_-1/4", rate_at_most(s_tv["slope"], -0.25), "A")
    out.add("A_weight_error_slope_vs_-1/4", rate_at_most(s_w["slope"], -0.25), "A")
    # ODE output vs the package's barycenter_sampler_terminal_law (two routes for the law)
    lam = np.array([0.3, 0.7])
    om, ov = sampler_output_1d(THM4_MUS, vars_eq, lam, THM4_T)
    pk = fusion.barycenter_sampler_terminal_law(aux, lam, OU(), THM4_T)
    out.add("sampler_law_ode_vs_package", (abs(om - float(pk.mean[0])) + abs(
        ov - float(pk.cov[0, 0]))) / 1e-8, "A")
    # (B) unequal variances, target = the distribution-level barycenter (eps0 = 0)
    vars_ne = np.array([0.5, 2.0])
    lam1 = np.array([0.4, 0.6])
    bm, bv = _bary_1d(THM4_MUS, vars_ne, lam1)
    om_star, ov_star = sampler_output_1d(THM4_MUS, vars_ne, lam1, THM4_T)
    floor = tv_gauss_1d(bm, bv, om_star, ov_star)
    om20, ov20 = sampler_output_1d(THM4_MUS, vars_ne, lam1, 20.0)
    pk = fusion.barycenter_sampler_terminal_law(
        [Gaussian([m], v) for m, v in zip(THM4_MUS, vars_ne)], lam1, OU(), THM4_T)
    out.add("sampler_law_ode_vs_package_B", (abs(om_star - float(pk.mean[0])) + abs(
        ov_star - float(pk.cov[0, 0]))) / 1e-8, "B")
    tv_dist, tv_out, bias = [], [], []
    for tt in tts:
        G, b, _ = closed_form_quadratic(THM4_MUS[:, None], vars_ne[:, None, None], [bm], [[bv]],
                                        float(tt))
        lam = qp_reference(G, b)
        bias.append(float(abs(lam[0] - lam1[0])))
        dm, dv = _bary_1d(THM4_MUS, vars_ne, lam)
        tv_dist.append(tv_gauss_1d(bm, bv, dm, dv))
        o_m, o_v = sampler_output_1d(THM4_MUS, vars_ne, lam, THM4_T)
        tv_out.append(tv_gauss_1d(bm, bv, o_m, o_v))
        out.rows.append({"part": "B_vs_T_tilde", "T_tilde": float(tt), "lambda1": float(lam[0]),
                         "abs_bias": bias[-1], "tv_nu_mu_lambda": tv_dist[-1],
                         "tv_nu_sampler_output": tv_out[-1]})
    small = slice(0, max(3, len(tts) // 2))
    slope_dist = float(np.polyfit(np.log(tts[small]), np.log(np.asarray(tv_dist)[small]), 1)[0])
    slope_bias = float(np.polyfit(np.log(tts[small]), np.log(np.asarray(bias)[small]), 1)[0])
    out.numbers["B"] = {"T_tilde": list(map(float, tts)), "abs_bias": bias,
                        "tv_nu_mu_lambda": tv_dist, "tv_nu_sampler_output": tv_out,
                        "tv_slope_small_T_tilde": slope_dist, "bias_slope": slope_bias,
                        "floor_tv_nu_output_at_lambda_star_T12": floor,
                        "floor_at_T20": tv_gauss_1d(bm, bv, om20, ov20)}
    # the T~ term: TV(nu, mu_lambda(T~)) decays at least like T~^(1/4)
    out.add("B_tv_dist_slope_vs_1/4", rate_at_least(slope_dist, 0.25), "B")
    # (C) small T~ with a finite sample: spread of lambda_hat over replicates, two weightings,
    # and at the smallest T~ a 4x larger n_mc (a Monte Carlo origin shrinks the spread by ~2)
    aux_ne = [Gaussian([m], v) for m, v in zip(THM4_MUS, vars_ne)]
    spread = {}
    grid = [(1e-3, 2 ** 13), (1e-3, 2 ** 15), (1e-2, 2 ** 13), (1e-1, 2 ** 13), (1.0, 2 ** 13)]
    for wname in ("variance", "uniform"):
        sd = []
        for tt, n_mc in grid:
            lams = []
            for r in range(var_reps):
                X = rng.normal(bm, math.sqrt(bv), size=(n_var, 1))
                res = fusion.score_fusion(aux_ne, X, OU(), tt, n_mc=n_mc, seed=rng, n_boot=0,
                                          weighting=None if wname == "variance" else "uniform")
                lams.append(res.weights[0])
            sd.append(float(np.std(lams, ddof=1)))
        spread[wname] = sd
    out.numbers["C_lambda_sd_over_replicates"] = {"T_tilde": [g[0] for g in grid],
                                                  "n_mc": [g[1] for g in grid], "n": n_var,
                                                  **spread}
    return out, tv_gauss_1d(bm, bv, om20, ov20)


def _draw_thm4(path, m: Measured):
    plt = _plot.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    A, B = m.numbers["A"], m.numbers["B"]
    ns = np.array(A["ns"], float)
    axes[0].loglog(ns, A["mean_weight_error"], "o-",
                   label=f"|lambda_hat - lambda*| (slope {A['weight_error_slope']['slope']:.2f})")
    axes[0].loglog(ns, A["mean_tv"], "s-",
                   label=f"TV(nu, output) (slope {A['tv_slope']['slope']:.2f})")
    axes[0].loglog(ns, A["mean_tv"][0] * (ns / ns[0]) ** -0.25, "k:", label="n^(-1/4)")
    axes[0].set_xlabel("n")
    axes[0].legend(fontsize=7)
    t = np.array(B["T_tilde"])
    axes[1].loglog(t, B["abs_bias"], "o-", label="|lambda(T~) - lambda*|")
    axes[1].loglog(t, B["tv_nu_mu_lambda"], "s-",
                   label=f"TV(nu, mu_lambda(T~)) (slope {B['tv_slope_small_T_tilde']:.2f})")
    axes[1].loglog(t, B["tv_nu_sampler_output"], "^-", label="TV(nu, sampler output)")
    axes[1].loglog(t, B["tv_nu_mu_lambda"][-1] * (t / t[-1]) ** 0.25, "k:", label="T~^(1/4)")
    axes[1].set_xlabel("T~ (unequal variances, population lambda)")
    axes[1].legend(fontsize=7)
    return _plot.save(fig, path)


@claim("sf.thm4", title="Theorem 4: ScoreFusion's TV error ~ n^(-1/4) + T~^(1/4) (+ eps1, SE)",
       source="[SF] Theorem 4, App. C.3")
def check_thm4(ctx: Context) -> Record:
    """(A) 1-D Gaussian auxiliaries of equal variance, target their barycenter: score_fusion on
    n samples (replicates), weight error and TV(nu, law of the phase-II sampler) by quad vs n,
    log-log slopes with bootstrap intervals. (B) unequal variances, target the distribution-level
    barycenter (eps0 = 0): the population lambda(T~) (closed form), TV(nu, mu_lambda(T~)) and
    TV(nu, sampler output) vs T~. (C) the spread of lambda_hat at small T~ for gamma = v and 1."""
    ns = 2 ** np.arange(5, 12, 2) if ctx.quick else 2 ** np.arange(5, 14)
    tts = np.logspace(-3, 0.5, ctx.size(6, 12))
    m, floor = measure_thm4(ctx.rng(0), ns, ctx.size(10, 40), tts, ctx.size(256, 1024),
                            ctx.size(5, 20))
    ctx.figure("tv_vs_n_and_ttilde", _draw_thm4, m)
    worst = m.worst()
    # paper: with exact scores and the exact SDE (eps_score = 0, h -> 0), n -> oo and T~ -> 0
    # (eps1 -> 0 as lambda(T~) -> lambda*, the T~ term -> 0), the bound tends to its SE term
    # e^{-T} max_i KL(p^i_T || pi)^(1/2) <= e^{-T}; the sampler's TV tends to the floor
    # TV(nu, law at lambda*). At T = 20 the floor is compared with 1000 e^{-T} (a generous
    # constant for "<~"): any constant fails as T grows, the floor does not move.
    paper = dict(worst)
    paper["B_output_tv_floor_T20_over_1000_e^-T"] = floor / (1000 * math.exp(-20.0))
    fixed = dict(worst)
    return ctx.verdict(
        corrected(paper=paper, fixed=fixed,
                  fix="add the process-level gap TV(mu_lambda, law of the lambda-weighted "
                      "sampler), which Lemma 6 omits: zero for equal covariances, "
                      f"{floor:.3g} here, independent of n, T~ and T; the n- and T~-rates "
                      "then hold (faster than stated)"),
        compared=[("TV(nu, sampler output) of score_fusion's lambda vs n: slope",
                   "Theorem 4: n^(-1/4)"),
                  ("TV(nu, mu_lambda(T~)) vs T~: slope", "Theorem 4: T~^(1/4)"),
                  ("sampler law by mean/variance ODE", "fusion.barycenter_sampler_terminal_law"),
                  ("TV(nu, sampler output at lambda*)", "the theorem's residual SE ~ e^-T")],
        claimed={"thm4": "TV(nu, nu_P) <~ sigma eps1 + O(n^(-1/4)) + sqrt(k) O(T~^(1/4)) + SE"},
        measured={"A": m.numbers["A"], "B": m.numbers["B"],
                  "C_lambda_sd_over_replicates": m.numbers["C_lambda_sd_over_replicates"]},
        tolerance={"rate": "fitted slope on the bound's side (bootstrap interval recorded)",
                   "ode": 1e-8},
        rows=m.rows,
        notes="The n-rate is n^(-1/2) (TV is linear in the weight error, whose regression "
              "estimate is root-n), faster than the stated n^(-1/4). The T~ term of the "
              "distribution-level barycenter decays like T~^1, faster than T~^(1/4). With "
              "unequal variances the sampler driven by sum lambda_i s_i does not end at "
              "mu_lambda (claim sf.lemma6), so TV(nu, output) keeps a floor as T~ -> 0, "
              "n -> oo, T -> oo that the bound does not contain (Gaussians are not compactly "
              "supported as Assumption 1 asks, but the gap comes from Lemma 6, which does not "
              "use the support). Larger T~ even lowers the sampler's TV here: the regression "
              "then fits the scores the sampler actually uses. Part C: small T~ is unstable "
              "through the Monte Carlo variance of the DSM target: with gamma = v the spread of "
              "lambda_hat grows as T~ -> 0 and shrinks like n_mc^(-1/2); with gamma = 1 it is "
              "larger and shrinks more slowly (the variance is infinite).")


# ---- sf.dimfree ---------------------------------------------------------------------------------
def measure_dimfree(rng, dims, ns, reps: int, T_tilde: float = 0.5) -> Measured:
    out = Measured()
    lam_star = np.array([0.35, 0.65])
    for fam in ("equal_cov", "unequal_var"):
        vars_ = np.array([1.0, 1.0]) if fam == "equal_cov" else np.array([0.5, 2.0])
        consts, slopes = {}, {}
        for d in dims:
            u = rng.normal(size=d)
            u /= np.linalg.norm(u)
            mus = np.stack([-2.0 * u, 3.0 * u])
            covs = np.stack([v * np.eye(d) for v in vars_])  # the closed form's full matrices
            prec = float(np.sum(lam_star / vars_))
            tmean = (lam_star / vars_) @ mus / prec
            tcov = np.eye(d) / prec
            if fam == "equal_cov":
                ref = lam_star  # identifiable: the population lambda is lambda* (sf.alg1)
            else:
                G, b, _ = closed_form_quadratic(mus, covs, tmean, tcov, T_tilde)
                ref = qp_reference(G, b)  # the population lambda(T~) the estimator targets
            aux = [Gaussian(m, float(v)) for m, v in zip(mus, vars_)]  # isotropic: O(N d) scores
            err = np.empty((len(ns), reps))
            for a, n in enumerate(ns):
                for r in range(reps):
                    X = tmean + rng.standard_normal((int(n), d)) / math.sqrt(prec)
                    res = fusion.score_fusion(aux, X, OU(), T_tilde,
                                              n_mc=max(2 ** 12, 8 * int(n)), seed=rng,
                                              n_boot=0)
                    err[a, r] = float(np.max(np.abs(np.asarray(res.weights) - ref)))
            s = _slope(ns, err, rng)
            slopes[d] = s
            # the constant: the fitted error at n = 1000
            consts[d] = float(math.exp(s["intercept"] + s["slope"] * math.log(1000.0)))
            out.rows.append({"family": fam, "d": int(d), "slope": s["slope"],
                             "slope_ci95": s["ci95"], "fitted_error_at_n1000": consts[d],
                             "mean_error": err.mean(1).tolist(), "reference_lambda": ref.tolist()})
            # the fitted slope must be <= -1/4 (the bound's exponent); the bootstrap interval is
            # recorded (half-width ~0.15 with these sizes, the expected slope is -1/2)
            out.add(f"{fam}_slope_vs_-1/4", rate_at_most(s["slope"], -0.25), d)
        c1 = consts[dims[0]]
        for d in dims:
            # dimension-free: the constant at d is at most 2x the constant at d = 1 (the
            # bootstrap spread of a fitted constant from reps replicates is ~20-30 %)
            out.add(f"{fam}_constant_ratio_over_2", consts[d] / c1 / 2.0, d)
        out.numbers[fam] = {"dims": [int(d) for d in dims],
                            "fitted_error_at_n1000": [consts[d] for d in dims],
                            "slopes": [slopes[d]["slope"] for d in dims]}
    out.numbers["ns"] = [int(n) for n in ns]
    return out


def _draw_dimfree(path, m: Measured):
    plt = _plot.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ns = np.array(m.numbers["ns"], float)
    for ax, fam in zip(axes, ("equal_cov", "unequal_var")):
        for r in m.rows:
            if r["family"] == fam:
                ax.loglog(ns, r["mean_error"], "o-", label=f"d={r['d']} (slope {r['slope']:.2f})")
        ax.set_title(f"{fam}: weight error vs n")
        ax.set_xlabel("n")
        ax.legend(fontsize=7)
    return _plot.save(fig, path)


@claim("sf.dimfree", title="Sec. 4: ScoreFusion's sample complexity is dimension-free",
       source="[SF] abstract, Sec. 4 (Theorem 4)")
def check_dimfree(ctx: Context) -> Record:
    """The same fit (two Gaussian auxiliaries, target their barycenter, T~ = 0.5) in d = 1..64:
    the weight error of score_fusion vs n per d (replicates), its log-log slope with a bootstrap
    interval and its fitted value at n = 1000; equal covariances (error vs lambda*) and unequal
    isotropic variances (error vs the closed-form population lambda(T~))."""
    dims = [1, 64] if ctx.quick else [1, 2, 4, 8, 16, 32, 64]
    ns = 2 ** np.arange(5, 12, 2) if ctx.quick else 2 ** np.arange(5, 13)
    m = measure_dimfree(ctx.rng(0), dims, ns, ctx.size(20, 40))
    ctx.figure("weight_error_vs_n_per_d", _draw_dimfree, m)
    return ctx.verdict(
        within(m.worst()),
        compared=[("weight error of score_fusion vs n, per d: slope", "n^(-1/4) or faster"),
                  ("fitted error at n = 1000, per d", "2 x its value at d = 1")],
        claimed={"dimfree": "the sample complexity of both fusion methods is dimension-free"},
        measured={"equal_cov": m.numbers["equal_cov"], "unequal_var": m.numbers["unequal_var"],
                  "ns": m.numbers["ns"]},
        tolerance={"constant_ratio": 2.0, "slope": "fitted slope <= -1/4"},
        rows=m.rows,
        notes="With Gaussian auxiliaries only the score differences s_i - s_j enter the weights; "
              "for equal covariances they are constant in x, so the estimator sees a "
              "(k-1)-dimensional projection of the data and its law does not depend on d. With "
              "unequal isotropic variances every coordinate carries information and the error "
              "constant falls with d.")
