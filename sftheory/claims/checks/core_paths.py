"""``core.paths.*``: a law's diffusion path at one time per point, on every route (numba kernel,
numpy reference, torch), against densities written out with scipy at the textbook (m(t), v(t))."""
from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.special import logsumexp, softmax

from ...testing import textbook
from ...testing import tolerances as tol
from ..record import Context, Record
from ..registry import claim
from ..verdicts import not_run, within
from ._common import Measured, diffused_parts, eval_points, model_zoo, processes


def scipy_path_reference(law, process, x, ts):
    """(log p_t(x_i), score, E[X_0 | X_t = x_i]) at t_i for each point, written out with scipy:
    (m, v) from the SDE's definition in mpmath, each component N(m mu_k, m^2 S_k + v I) by
    scipy.stats.multivariate_normal, the score and the conditional means by linear solves."""
    n, d = x.shape
    lp, sc, pm = np.empty(n), np.empty((n, d)), np.empty((n, d))
    w0, mus0, covs0 = diffused_parts(law, 1.0, 0.0)
    for i, t in enumerate(ts):
        m, v = textbook.exact_mv(process, float(t))
        w, mus, covs = diffused_parts(law, m, v)
        keep = w > 0
        logc = np.array([np.log(wk) + stats.multivariate_normal(mu, c).logpdf(x[i])
                         for wk, mu, c in zip(w[keep], mus[keep], covs[keep])])
        r = softmax(logc)
        lp[i] = logsumexp(logc)
        sol = np.stack([np.linalg.solve(c, x[i] - mu) for mu, c in zip(mus[keep], covs[keep])])
        sc[i] = -(r @ sol)
        cond = np.stack([mu0 + m * s0 @ s for mu0, s0, s in zip(mus0[keep], covs0[keep], sol)])
        pm[i] = r @ cond
    return lp, sc, pm


def term_scale(law, process, x, ts):
    """Per point, the size of the largest per-component term summed into the score and the
    posterior mean, |x - m mu_k| / min variance (plus |mu_k|): sums of K such terms round to
    ~K eps times it however much they cancel."""
    w, mus, covs = diffused_parts(law, 1.0, 0.0)
    lam_min, lam_max = float(np.linalg.eigvalsh(covs).min()), float(np.linalg.eigvalsh(covs).max())
    out = np.empty(len(ts))
    for i, t in enumerate(ts):
        m, v = textbook.exact_mv(process, float(t))
        dist = np.abs(x[i]).max() + m * np.abs(mus).max()
        out[i] = len(w) * (dist / (m * m * lam_min + v) * (1 + m * max(lam_max, 1.0))
                           + np.abs(mus).max())
    return out


def measure_path_times(zoo, procs, rng, *, n_points: int = 12, routes=("numba", "numpy", "torch")):
    """For each law and process, N points each at its own time (log-uniform in [1e-3, 3]):
    ``path.logpdf``, ``path.score`` and ``path.posterior_mean`` on each route vs
    :func:`scipy_path_reference`. Error/tolerance with EXACT_FLOAT64-size rounding relative to
    max(|reference|, 1) for log p and to the size of the summed terms for the vectors, times 1e2
    for the covariances' condition numbers (<= 1e2 by construction of the zoo)."""
    out = Measured()
    rt = 1e2 * tol.EXACT_FLOAT64.rtol
    torch = None
    if "torch" in routes or "cuda" in routes:
        try:
            import torch
        except ImportError:
            out.numbers["torch"] = not_run("torch is not installed")
    for name, law in zoo:
        for proc in procs:
            path = law.path(proc)
            ts = np.exp(rng.uniform(np.log(1e-3), np.log(3.0), size=n_points))
            x = eval_points(path.marginal(float(np.median(ts))), rng, n_points)
            ref = scipy_path_reference(law, proc, x, ts)
            scale = term_scale(law, proc, x, ts)[:, None]
            for route in routes:
                if route in ("torch", "cuda"):
                    if torch is None:
                        continue
                    dev = "cuda" if route == "cuda" else "cpu"
                    xt, tt = torch.from_numpy(x).to(dev), torch.from_numpy(ts).to(dev)
                    got = [a.cpu().numpy() for a in (*path.logpdf_and_score(xt, tt),
                                                     path.posterior_mean(xt, tt))]
                else:
                    got = [*path.logpdf_and_score(x, ts, impl=route),
                           path.posterior_mean(x, ts, impl=route)]
                errs = {}
                for key, a, b, sc in (("logpdf", got[0], ref[0], 1.0),
                                      ("score", got[1], ref[1], scale),
                                      ("posterior_mean", got[2], ref[2], scale)):
                    with np.errstate(invalid="ignore"):
                        e = np.abs(np.asarray(a, dtype=np.float64) - b) / (rt * np.maximum(np.abs(b), sc))
                    e[~np.isfinite(np.asarray(a, dtype=np.float64))] = np.nan
                    errs[key] = out.add(f"{route}_{key}", e, f"{name}, {proc!r}")
                out.rows.append({"model": name, "process": repr(proc), "route": route,
                                 **{f"{k}_err_over_tol": v for k, v in errs.items()},
                                 "worst": max(errs.values()) if all(np.isfinite(list(errs.values()))) else np.nan})
    return out


@claim("core.paths.per_point_times",
       title="law.path(process) at one time per point equals scipy at the textbook (m, v), on "
             "every route",
       source="[SF] Sec. 2; [SM] eq. (14); issue 6 (paths)")
def check_path_times(ctx: Context) -> Record:
    """Every family (Gaussian, mixtures of each covariance kind, empirical) in d = 1..3 under every
    process: log-density, score and posterior mean with one time per point from the numba
    kernel, the numpy reference and torch (CPU float64), each against scipy densities built from
    the SDE's own (m(t), v(t))."""
    rng = ctx.rng()
    zoo = model_zoo(rng, max_dim=ctx.size(2, 3))
    routes = ("numba", "numpy", "torch") + (("cuda",) if ctx.device == "cuda" else ())
    m = measure_path_times(zoo, processes(), rng, n_points=ctx.size(8, 32), routes=routes)
    if ctx.device != "cuda":
        m.numbers["cuda"] = not_run("needs --device cuda")
    compared = [(f"path.logpdf/score/posterior_mean(x, t of shape (N,)) via {r}",
                 "scipy multivariate_normal at textbook (m(t_i), v(t_i)), linear solves")
                for r in ("numba kernel", "numpy reference", "torch CPU float64", "cuda float64")
                if any(k.startswith(r.split()[0]) for k in m.excess)]
    return ctx.verdict(
        within(m.excess), compared=compared,
        claimed={"per-point-time path": "equals the marginal at each point's own time"},
        measured={**m.worst(), **m.numbers},
        tolerance={"rtol": 1e2 * tol.EXACT_FLOAT64.rtol,
                   "why": "EXACT_FLOAT64 times the condition numbers (<= 1e2); vectors relative "
                          "to the size of the K summed terms (rounding scales with it)"},
        inputs={"seed": ctx.seed, "n_laws": len(zoo), "times": "log-uniform in [1e-3, 3]"},
        rows=m.worst_rows("worst", 10), notes="rows: the 10 worst (law, process, route)")
