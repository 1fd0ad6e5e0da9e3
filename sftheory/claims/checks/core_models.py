"""``core.models.*``: exact laws and their paths against independent computations.

The measuring functions take the laws and processes they measure as arguments (tests feed them
deliberately wrong ones); where a reference needs the forward process's (m, v) it comes from the
textbook SDE (:mod:`sftheory.testing.textbook`), never from the library's own clock.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats
from scipy.special import logsumexp, softmax

from ... import testing as sft
from ...testing import textbook as tb
from ...testing import tolerances as tol
from .. import _plot
from ..record import Context, Record
from ..registry import claim
from ..verdicts import within, worst_of
from ._common import Measured, diffused_parts, eval_points, model_zoo, processes


# ---- score = grad log p ------------------------------------------------------------------------
def measure_score_gradient(zoo, procs, times, rng, *, n_points: int = 16) -> Measured:
    """``marginal(t).score`` vs central differences of ``marginal(t).logpdf`` for every law,
    process and time; and ``path.score(x, t)`` with one time per point vs central differences of
    ``path.logpdf(., t)`` (the per-point-time contract)."""
    out = Measured()
    for name, law in zoo:
        for proc in procs:
            path = law.path(proc)
            for t in times:
                pt = path.marginal(t)
                x = eval_points(pt, rng, n_points)
                meas = sft.measure_score_gradient(pt, x)
                ex = meas.excess(tol.SCORE_FD)
                out.add("score_vs_fd", ex, f"{name}, {proc!r}, t={t}")
                out.rows.append({"model": name, "process": repr(proc), "t": t,
                                 "max_rel_err": meas.max_rel_err, "error_over_tol": ex})
            tvec = np.resize(np.asarray(times, dtype=np.float64), n_points)
            x = eval_points(path.marginal(float(np.max(times))), rng, n_points)
            scale = min(1.0, min(sft.asserts.length_scale(path.marginal(t)) for t in times))
            ex = sft.measure_score_gradient(path, x, tvec, length_scale_=scale).excess(tol.SCORE_FD)
            out.add("path_score_per_point_t_vs_fd", ex, f"{name}, {proc!r}, t per point")
    return out


@claim("core.models.score_is_gradient",
       title="score(x) is the gradient of logpdf(x) for every model, process and time",
       source="[SF] Sec. 2; [SM] eq. (14), (19)")
def check_score_is_gradient(ctx: Context) -> Record:
    """Central differences of logpdf (step eps^(1/3) times the smallest component sd) against
    score, for random Gaussians, mixtures (iso, diag, full) and empirical laws in d = 1..3 under
    every process; also a path's score at one time per point."""
    rng = ctx.rng()
    times = (1e-3, 0.1, 1.0) if ctx.quick else (1e-4, 1e-3, 1e-2, 0.1, 0.5, 1.0, 3.0)
    m = measure_score_gradient(model_zoo(rng), processes(), times, rng)
    return ctx.verdict(
        within(m.excess),
        compared=[("marginal(process, t).score(x)", "central differences of marginal.logpdf"),
                  ("path.score(x, t_i), one t per point", "central differences of path.logpdf(., t_i)")],
        claimed={"score": "grad_x logpdf"},
        measured={"cases": len(m.rows)},
        tolerance=tol.SCORE_FD.as_dict(), inputs={"times": times, "seed": ctx.seed},
        rows=m.worst_rows("error_over_tol"), notes="rows: the 12 worst cases")


# ---- normalization ----------------------------------------------------------------------------
def measure_normalization(zoo, procs, times, *, skip_2d_spikes_below: float = 0.0) -> Measured:
    """Integral of each marginal density (adaptive Gauss-Legendre cubature split around every
    component) vs 1, allowing QUADRATURE plus 10x the integrator's own error estimate; an
    integral whose error estimate exceeds QUADRATURE_MAX_ERR_ESTIMATE does not count as a
    reference (it fails). 2-D empirical marginals at t < ``skip_2d_spikes_below`` are left out
    (12 spikes of sd sqrt(v(t)) cost ~1 s each)."""
    out = Measured()
    for name, law in zoo:
        for proc in procs:
            for t in times:
                if law.dim == 2 and "Empirical" in name and t < skip_2d_spikes_below:
                    continue
                val, err = sft.measure_normalization(law.marginal(proc, t))
                where = f"{name}, {proc!r}, t={t}"
                ex = abs(val - 1.0) / (tol.QUADRATURE.rtol + 10 * err)
                out.add("integral_vs_one", ex, where)
                out.add("quadrature_error_estimate_over_ceiling",
                        err / tol.QUADRATURE_MAX_ERR_ESTIMATE, where)
                out.rows.append({"model": name, "process": repr(proc), "t": t, "integral": val,
                                 "quad_error_estimate": err, "error_over_tol": ex})
    return out


@claim("core.models.normalization",
       title="Every density p_t (d = 1, 2) integrates to one",
       source="[SF] Sec. 2")
def check_normalization(ctx: Context) -> Record:
    """The integral of every marginal density in d = 1, 2 against 1: adaptive tensor
    Gauss-Legendre cubature (orders 10 and 20, bisecting where they disagree) over a box of
    12 standard deviations, first split on a ladder of break points around every component, with
    its own error estimate, which must stay below 1e-10."""
    rng = ctx.rng()
    times = (1e-3, 0.3) if ctx.quick else (1e-4, 1e-2, 0.3, 2.0)
    from ...processes import OU, VE, VP

    m = measure_normalization(model_zoo(rng, max_dim=2), (OU(), VP(), VE(sigma=25.0)), times,
                              skip_2d_spikes_below=1e-2 if ctx.quick else 0.0)
    return ctx.verdict(
        within(m.excess),
        compared=[("integral of marginal(process, t).pdf (quad / cubature)", "1")],
        claimed={"integral": 1.0},
        measured={"max_abs_deviation": worst_of(abs(r["integral"] - 1) for r in m.rows)},
        tolerance={"integral": tol.QUADRATURE.as_dict(),
                   "error estimate ceiling": tol.QUADRATURE_MAX_ERR_ESTIMATE},
        inputs={"times": times, "seed": ctx.seed}, rows=m.worst_rows("error_over_tol"),
        notes=("quick mode leaves out 2-D empirical marginals at t < 1e-2 (12 spikes, ~1 s each; "
               "--full includes them). " if ctx.quick else "") + "Rows: the 12 worst cases.")


# ---- Fokker-Planck ----------------------------------------------------------------------------
def measure_fokker_planck(laws, procs, times, rng, *, n_points: int = 8) -> Measured:
    """The Fokker-Planck equation of the *textbook* SDE for log p_t, every derivative by central
    differences of ``marginal(t).logpdf``; and the library's ``log_fokker_planck_rhs`` against
    the same right-hand side written from the textbook coefficients."""
    out = Measured()
    t_fp = tol.FOKKER_PLANCK
    for name, law in laws:
        for proc in procs:
            for t in times:
                x = eval_points(law.marginal(proc, t), rng, n_points)
                lhs, grad, lap = sft.asserts.fokker_planck_terms(law, proc, t, x)
                a, g2 = float(tb.drift_coef(proc, t)), float(tb.diffusion_sq(proc, t))
                d = x.shape[1]
                rhs = a * (d + (x * grad).sum(1)) + 0.5 * g2 * (lap + (grad * grad).sum(1))
                scale = np.abs(a) * (d + np.abs((x * grad).sum(1))) + 0.5 * g2 * (
                    np.abs(lap) + (grad * grad).sum(1))
                bound = t_fp.atol + t_fp.rtol * np.maximum(scale, np.abs(lhs))
                resid = np.abs(lhs - rhs) / bound
                lib = np.abs(proc.log_fokker_planck_rhs(x, t, grad, lap) - rhs)
                lib_ex = lib / (tol.EXACT_FLOAT64.atol + tol.EXACT_FLOAT64.rtol * scale)
                where = f"{name}, {proc!r}, t={t}"
                out.add("pde_residual", resid, where)
                out.add("library_rhs_vs_textbook_rhs", lib_ex, where)
                out.rows.append({"model": name, "process": repr(proc), "t": t,
                                 "max_rel_residual": worst_of([np.abs(lhs - rhs) / np.maximum(scale, 1e-300)]),
                                 "error_over_tol": worst_of([resid])})
    return out


@claim("core.models.fokker_planck",
       title="p_t solves the Fokker-Planck equation of its process",
       source="[OS] App. B.1")
def check_fokker_planck(ctx: Context) -> Record:
    """d/dt log p_t = a(t)(d + x . grad log p_t) + g(t)^2/2 (lap log p_t + |grad log p_t|^2) with
    a, g from the textbook SDE and every derivative from central differences of logpdf
    (independent of score); mixtures and empirical laws in d = 1, 2 under every process."""
    rng = ctx.rng()
    laws = [(n, m) for n, m in model_zoo(rng, max_dim=2) if "Mixture" in n or "Empirical" in n]
    m = measure_fokker_planck(laws, processes(), (0.05, 0.5), rng)
    return ctx.verdict(
        within(m.excess),
        compared=[("d/dt log p_t by central differences of marginal(t +- h).logpdf",
                   "the textbook SDE's Fokker-Planck right-hand side from FD derivatives in x"),
                  ("proc.log_fokker_planck_rhs(x, t, grad, lap)", "the textbook right-hand side")],
        claimed={"d/dt log p_t": "a(t)(d + x.grad log p) + g^2/2 (lap log p + |grad log p|^2)"},
        measured={"cases": len(m.rows)},
        tolerance={"pde": tol.FOKKER_PLANCK.as_dict(), "rhs": tol.EXACT_FLOAT64.as_dict()},
        inputs={"times": [0.05, 0.5], "seed": ctx.seed},
        rows=m.worst_rows("error_over_tol"), notes="rows: the 12 worst cases")


# ---- Monte Carlo --------------------------------------------------------------------------------
def measure_marginal_mc(cases, procs, t: float, n: int, rng) -> Measured:
    """Draws of X_t = m X_0 + sqrt(v) Z with X_0 from the law's sampler and (m, v) from the
    textbook SDE, against the closed-form marginal: mean and covariance z-scores, and in d = 1
    a KS test against the marginal's cdf (built from its weights, means and variances)."""
    out = Measured()
    for name, law in cases:
        for proc in procs:
            pt = law.marginal(proc, t)
            m, v = tb.exact_mv(proc, t)
            x0 = law.sample(n, seed=rng)
            xt = m * x0 + math.sqrt(v) * rng.standard_normal(x0.shape)
            z = worst_of([np.abs(sft.asserts.mean_zscores(xt, pt.mean, pt.cov)),
                          np.abs(sft.asserts.cov_zscores(xt, pt.cov))])
            where = f"{name}, {proc!r}, t={t}"
            row = {"model": name, "process": repr(proc), "t": t, "max_abs_z": z}
            out.add("mc_z_over_MC_SIGMAS", z / tol.MC_SIGMAS, where)
            if law.dim == 1:
                w, mu, cv = pt.weights, pt.means[:, 0], pt.covs[:, 0, 0]
                cdf = lambda u, w=w, mu=mu, sd=np.sqrt(cv): stats.norm.cdf(  # noqa: E731
                    (np.asarray(u)[:, None] - mu) / sd) @ w
                p = float(stats.kstest(xt[:, 0], cdf).pvalue)
                row["ks_p"] = p
                out.add("KS_ALPHA_over_ks_p", tol.KS_ALPHA / p if p > 0 else math.inf, where)
            out.rows.append(row)
            out.numbers.setdefault("draws", []).append((name, repr(proc), xt[:4000], pt))
    return out


def _draw_marginals(path, draws):
    plt = _plot.pyplot()
    vp = [d for d in draws if d[1].startswith("VP(")]
    fig, axes = plt.subplots(1, len(vp), figsize=(4 * len(vp), 3.5), squeeze=False)
    for ax, (name, _, xt, pt) in zip(axes[0], vp):
        if xt.shape[1] == 1:
            ax.hist(xt[:, 0], bins=80, density=True, alpha=0.5, label="MC (textbook kernel)")
            grid = np.linspace(xt[:, 0].min(), xt[:, 0].max(), 400)
            ax.plot(grid, pt.pdf(grid), "k", lw=1.2, label="closed form p_t")
            ax.legend(fontsize=7)
        else:
            ax.scatter(*xt.T, s=1, alpha=0.4)
            g0 = np.linspace(*np.percentile(xt[:, 0], [0.5, 99.5]), 120)
            g1 = np.linspace(*np.percentile(xt[:, 1], [0.5, 99.5]), 120)
            gx, gy = np.meshgrid(g0, g1)
            ax.contour(gx, gy, pt.pdf(np.column_stack([gx.ravel(), gy.ravel()])).reshape(gx.shape),
                       levels=8, colors="k", linewidths=0.8)
        ax.set(title=f"{name}, VP", xlabel="x")
    _plot.save(fig, path)


@claim("core.models.marginal_mc",
       title="Closed-form marginals match Monte Carlo through the textbook transition kernel",
       source="[SF] Sec. 2; [SM] Sec. 2")
def check_marginal_mc(ctx: Context) -> Record:
    """X_0 drawn from the law, X_t = m X_0 + sqrt(v) Z with the textbook (m, v); the sample mean,
    covariance (5 standard errors) and, in d = 1, the KS distance to the closed-form marginal."""
    from ...models import EmpiricalDistribution
    from ...processes import OU, VE, VP
    from ...testing.random import random_mixture

    rng = ctx.rng()
    n = ctx.size(200_000, 2_000_000)
    cases = [("Mixture[K=3,iso,d=1]", random_mixture(rng, 3, 1, kind="iso")),
             ("Mixture[K=3,full,d=2]", random_mixture(rng, 3, 2, kind="full")),
             ("Empirical[n=5,d=1]", EmpiricalDistribution(rng.uniform(-2, 2, size=(5, 1))))]
    m = measure_marginal_mc(cases, (OU(), VP(), VE(sigma=25.0)), 0.2, n, rng)
    ctx.figure("marginals", _draw_marginals, m.numbers.pop("draws"))
    ks = [r["ks_p"] for r in m.rows if "ks_p" in r]
    return ctx.verdict(
        within(m.excess),
        compared=[("sample moments and law of m X_0 + sqrt(v) Z, (m, v) textbook",
                   "marginal(process, t).mean, .cov and its mixture cdf")],
        claimed={"p_t": "law of m X_0 + sqrt(v) Z"},
        measured={"max_abs_z": worst_of(r["max_abs_z"] for r in m.rows),
                  "min_ks_p": float(np.min(ks))},
        tolerance={"MC_SIGMAS": tol.MC_SIGMAS, "KS_ALPHA": tol.KS_ALPHA},
        inputs={"n": n, "t": 0.2, "seed": ctx.seed}, rows=m.rows)


# ---- Tweedie / posterior mean -------------------------------------------------------------------
def direct_posterior(weights, means, covs, m, v, x):
    """E[X_0 | X_t = x] for X_0 ~ sum_k w_k N(mu_k, S_k), X_t = m X_0 + sqrt(v) Z, written out
    with scipy: responsibilities from scipy.stats.multivariate_normal, each component conditioned
    by a linear solve."""
    d = x.shape[1]
    logc = np.stack([np.log(w) + np.atleast_1d(
        stats.multivariate_normal(m * mu, m * m * S + v * np.eye(d)).logpdf(x))
        for w, mu, S in zip(weights, means, covs)], axis=-1).reshape(len(x), -1)
    r = softmax(logc, axis=1)
    comps = np.stack([mu + (m * S @ np.linalg.solve(m * m * S + v * np.eye(d), (x - m * mu).T)).T
                      for mu, S in zip(means, covs)], axis=1)  # (N, K, d)
    return np.einsum("nk,nkd->nd", r, comps)


def measure_tweedie(laws, procs, times, rng, *, n_points: int = 10) -> Measured:
    """``path.posterior_mean(x, t)`` (scalar t, and one t per point) against direct conditioning
    with the textbook (m, v); Tweedie's (x + v path.score(x, t))/m against the same reference,
    allowing its cancellation 16 eps |x| / m. Empirical laws: the softmax formula of [SM] (14)."""
    from ...models import EmpiricalDistribution

    eps = np.finfo(float).eps
    out = Measured()
    for name, law in laws:
        emp = isinstance(law, EmpiricalDistribution)
        for proc in procs:
            path = law.path(proc)
            xs, refs, ts = [], [], []
            for t in times:
                m, v = tb.exact_mv(proc, t)
                x = eval_points(path.marginal(t), rng, n_points)
                if emp:
                    y = law.points
                    logits = -((x[:, None, :] - m * y[None]) ** 2).sum(-1) / (2 * v)
                    ref = softmax(logits, axis=1) @ y
                else:
                    w, mus, covs = diffused_parts(law, 1.0, 0.0)
                    ref = direct_posterior(w, mus, covs, m, v, x)
                where = f"{name}, {proc!r}, t={t}"
                e_post = sft.asserts.compare(path.posterior_mean(x, t), ref).excess(tol.EXACT_FLOAT64)
                out.add("posterior_mean_vs_direct", e_post, where)
                row = {"model": name, "process": repr(proc), "t": t, "m": m,
                       "posterior_err_over_tol": e_post}
                if not emp:
                    meas_t = sft.asserts.compare((x + v * path.score(x, t)) / m, ref)
                    d = x.shape[1]
                    allow = (tol.EXACT_FLOAT64.atol + tol.EXACT_FLOAT64.rtol * meas_t.scale
                             + 16 * eps * np.repeat(np.abs(x).max(1), d) / m)
                    e_tw = worst_of([meas_t.err / allow])
                    out.add("tweedie_identity_vs_direct", e_tw, where)
                    row["tweedie_identity_err_over_tol"] = e_tw
                out.rows.append(row)
                xs.append(x)
                refs.append(ref)
                ts.append(np.full(len(x), t))
            x_all, ref_all, t_all = np.concatenate(xs), np.concatenate(refs), np.concatenate(ts)
            e_many = sft.asserts.compare(path.posterior_mean(x_all, t_all), ref_all).excess(tol.EXACT_FLOAT64)
            out.add("posterior_mean_per_point_t_vs_direct", e_many, f"{name}, {proc!r}, t per point")
    return out


@claim("core.models.tweedie",
       title="posterior_mean(x, t) = E[X_0 | X_t = x] matches direct conditioning",
       source="Tweedie's formula; [SM] eq. (6), (14)")
def check_tweedie(ctx: Context) -> Record:
    """A path's posterior_mean against direct conditioning written out with scipy (Gaussian,
    3-component mixtures of every covariance kind) and the softmax formula (empirical law), with
    (m, v) from the textbook SDE, at scalar times and at one time per point; Tweedie's identity
    (x + v score)/m against the same reference, allowing its cancellation 16 eps |x| / m."""
    from ...models import EmpiricalDistribution
    from ...testing.random import random_gaussian, random_mixture

    rng = ctx.rng()
    times = (1e-3, 0.3, 2.0)
    laws = []
    for d in (1, 2, 3):
        laws.append((f"Gaussian,d={d}", random_gaussian(rng, d)))
        laws += [(f"Mixture[K=3,{k}],d={d}", random_mixture(rng, 3, d, kind=k))
                 for k in ("iso", "diag", "full")]
        laws.append((f"Empirical[n=7],d={d}", EmpiricalDistribution(rng.uniform(-2, 2, size=(7, d)))))
    m = measure_tweedie(laws, processes(), times, rng)
    return ctx.verdict(
        within(m.excess),
        compared=[("path.posterior_mean(x, t)", "direct conditioning (scipy), textbook (m, v)"),
                  ("(x + v path.score(x, t)) / m", "direct conditioning (scipy), textbook (m, v)"),
                  ("path.posterior_mean(x, t_i), one t per point", "the same references")],
        claimed={"posterior_mean": "E[X_0 | X_t = x] by direct conditioning; equals (x + v score)/m"},
        measured={"cases": len(m.rows)},
        tolerance=tol.EXACT_FLOAT64.as_dict(), inputs={"times": times, "seed": ctx.seed},
        rows=m.worst_rows("posterior_err_over_tol", 10),
        notes="Tweedie's identity is checked with an extra allowance 16 eps |x| / m for its "
              "cancellation; posterior_mean itself has none. Rows: the 10 worst.")


# ---- robustness ---------------------------------------------------------------------------------
def mp_mixture_reference(weights, means, covs, x):
    """logpdf and score of a full-covariance mixture at one point in 50-digit arithmetic."""
    import mpmath

    with mpmath.workdps(50):
        terms, grads = [], []
        for k in range(len(weights)):
            if weights[k] == 0:
                continue
            S = mpmath.matrix(np.asarray(covs[k]).tolist())
            diff = mpmath.matrix([mpmath.mpf(float(a)) - mpmath.mpf(float(b)) for a, b in zip(x, means[k])])
            sol = mpmath.lu_solve(S, diff)
            q = sum(diff[i] * sol[i] for i in range(len(x)))
            logc = (mpmath.log(weights[k]) - 0.5 * q - 0.5 * mpmath.log(mpmath.det(S))
                    - 0.5 * len(x) * mpmath.log(2 * mpmath.pi))
            terms.append(logc)
            grads.append([-sol[i] for i in range(len(x))])
        mx = max(terms)
        ws = [mpmath.exp(tt - mx) for tt in terms]
        tot = sum(ws)
        lp = mx + mpmath.log(tot)
        sc = [sum(ws[k] * grads[k][i] for k in range(len(ws))) / tot for i in range(len(x))]
        return float(lp), np.array([float(s) for s in sc])


def measure_robustness(mix, rng, *, n_big: int = 100_000) -> Measured:
    """Extreme inputs: t = 1e-8, |x| = 1e4 against 50-digit references (marginal parameters from
    the textbook (m, v)); 1e5 empirical points at t = 1e-8 against the nearest point and scipy's
    logsumexp; float32 inputs against float64."""
    from scipy.spatial import cKDTree

    from ...models import EmpiricalDistribution
    from ...processes import OU, VE, VP

    out = Measured()
    big = rng.normal(size=(4, 2)) * 1e4 / np.sqrt(2)
    cases = [("VE t=1e-8, |x|~3", VE(), 1e-8, eval_points(mix, rng, 4)),
             ("OU t=1e-8, |x|=1e4", OU(), 1e-8, big),
             ("VP t=1, |x|=1e4", VP(), 1.0, rng.normal(size=(4, 2)) * 1e4 / np.sqrt(2)),
             ("model |x|=1e4", None, 0.0, rng.normal(size=(4, 2)) * 1e4 / np.sqrt(2))]
    for name, proc, t, x in cases:
        if proc is None:
            pt, (w, mus, covs) = mix, diffused_parts(mix, 1.0, 0.0)
        else:
            pt, (w, mus, covs) = mix.marginal(proc, t), diffused_parts(mix, *tb.exact_mv(proc, t))
        lp, sc = pt.logpdf_and_score(x)
        rel = Measured()
        for i in range(len(x)):
            lp_ref, sc_ref = mp_mixture_reference(w, mus, covs, x[i])
            rel.add("r", abs(lp[i] - lp_ref) / max(abs(lp_ref), 1.0), i)
            rel.add("r", np.abs(sc[i] - sc_ref) / np.maximum(np.abs(sc_ref), 1.0), i)
        r = rel.excess["r"].value
        out.add("vs_mpmath50", r / tol.ROBUST_VS_MPMATH.rtol, name)
        out.rows.append({"case": name, "finite": bool(np.all(np.isfinite(lp)) and np.all(np.isfinite(sc))),
                         "max_rel_err_vs_mpmath50": r})
    # 1e5 training points at t = 1e-8: queries 1e-5 from a training point whose nearest other
    # point is >= 2e-3 away snap to it (the other weights are < exp(-(2e-3)^2 / 2e-8) = e^-200)
    pts = rng.uniform(-1, 1, size=(n_big, 2))
    nn_dist = cKDTree(pts).query(pts, k=2)[0][:, 1]
    idx = rng.choice(np.flatnonzero(nn_dist > 2e-3), size=32, replace=False)
    x = pts[idx] + rng.normal(size=(32, 2)) * 1e-5
    t_small = 1e-8
    emp = EmpiricalDistribution(pts)
    path = emp.path(VE())
    lp, sc = path.marginal(t_small).logpdf_and_score(x)
    expected_score = (pts[idx] - x) / t_small
    rel_big = worst_of([np.abs(sc - expected_score) / np.maximum(np.abs(expected_score), 1.0)])
    sq = ((x[:, None, :] - pts[None, :, :]) ** 2).sum(-1)
    lp_ref = logsumexp(-sq / (2 * t_small), axis=1) - np.log(n_big) - np.log(2 * np.pi * t_small)
    lp_big = worst_of([np.abs(lp - lp_ref) / np.maximum(np.abs(lp_ref), 1.0)])
    post_err = worst_of([np.abs(path.posterior_mean(x, t_small) - pts[idx])])
    where = "Empirical n=1e5, VE t=1e-8"
    out.add("empirical_score_vs_nearest_point", rel_big / tol.SNAP_SCORE.rtol, where)
    out.add("empirical_logpdf_vs_logsumexp", lp_big / tol.EXACT_FLOAT64.rtol, where)
    out.add("empirical_posterior_vs_nearest_point", post_err / tol.SNAP_POSTERIOR.atol, where)
    out.rows.append({"case": where, "score_rel_err_vs_nearest_point": rel_big,
                     "logpdf_rel_err_vs_logsumexp": lp_big, "posterior_mean_abs_err": post_err})
    # float32 inputs keep their dtype and agree with float64
    x32 = eval_points(mix, rng, 64).astype(np.float32)
    lp32, sc32 = mix.logpdf_and_score(x32)
    lp64, sc64 = mix.logpdf_and_score(x32.astype(np.float64))
    f32 = sft.asserts._rel_pair(lp32, sc32, lp64, sc64)
    kept = lp32.dtype == np.float32 and sc32.dtype == np.float32
    out.add("float32_vs_float64", f32 / tol.FLOAT32.rtol, "float32")
    out.add("float32_dtype_kept", 0.0 if kept else math.inf, "float32")
    out.rows.append({"case": "float32 vs float64", "dtype_kept": kept, "max_rel_diff": f32})
    out.numbers.update({"empirical_1e5_score_rel_err": rel_big, "empirical_1e5_logpdf_rel_err": lp_big,
                        "empirical_1e5_posterior_abs_err": post_err, "float32_rel_diff": f32})
    return out


@claim("core.models.robustness",
       title="No overflow, underflow or lost score at t = 1e-8, |x| = 1e4, 1e5 components",
       source="toolkit contract (issue 3)")
def check_robustness(ctx: Context) -> Record:
    """logpdf and score at t = 1e-8 and |x| = 1e4 against 50-digit mpmath; an empirical law of
    1e5 points at t = 1e-8 (score and posterior mean snap to the nearest point, logpdf against
    scipy's logsumexp over all terms); float32 inputs keep their dtype and agree with float64."""
    from ...testing.random import random_mixture

    rng = ctx.rng()
    m = measure_robustness(random_mixture(rng, 4, 2), rng)
    return ctx.verdict(
        within(m.excess),
        compared=[("marginal logpdf and score at extreme t and x", "50-digit mpmath of the "
                   "textbook marginal's parameters"),
                  ("empirical score, posterior mean (n = 1e5, t = 1e-8)", "the nearest training point"),
                  ("empirical logpdf (n = 1e5)", "scipy logsumexp over every term"),
                  ("float32 logpdf and score", "float64")],
        claimed={"outputs": "finite and accurate at extreme inputs"},
        measured=m.numbers,
        tolerance={"vs_mpmath": tol.ROBUST_VS_MPMATH.as_dict(), "empirical_score": tol.SNAP_SCORE.as_dict(),
                   "posterior": tol.SNAP_POSTERIOR.as_dict(), "float32": tol.FLOAT32.as_dict()},
        inputs={"seed": ctx.seed, "n_big": 100_000}, rows=m.rows)
