"""``core.samplers.*``: the samplers' routes (compiled numba loop, numpy Python loop, torch device
loop, torch Python loop, CUDA under ``--device cuda``, and shards at their global offsets) all run
the textbook Euler-Maruyama chain of the reverse SDE, given the same counter-based noise
(:class:`~sftheory.samplers.IndexedNoise`).

Reference, independent of the library's coefficients and scores: per step, the reverse-SDE
Euler-Maruyama update written from the SDE's definition ([OS] eq. (3), (7) with h = g; drift
f = -a(t) x),

    x <- x + Delta (a(t_k) x + g(t_k)^2 S(x, t_k)) + sqrt(Delta g(t_k)^2) xi_k,

with (a, g^2) from :mod:`sftheory.testing.textbook`, and the exact score S of the diffused law
written out in numpy from its components N(m mu_k, m^2 Sigma_k + v I) at the textbook (m, v)
(mpmath), by slogdet and linear solves.
"""
from __future__ import annotations

import numpy as np
from scipy.special import logsumexp, softmax

from ...testing import textbook
from ..record import Context, Record
from ..registry import claim
from ..verdicts import not_run, within
from ._common import Measured, diffused_parts, model_zoo

EPS = float(np.finfo(np.float64).eps)
#: Rounding budget per step and coordinate in units of eps (the score's K-term sums, the update
#: and the transcendental functions of the normals), before the chain's own amplification.
ROUNDING_PER_STEP = 64.0


def textbook_score(law, process, x, t):
    """The exact score of the law diffused to time t, from its components at the textbook (m, v):
    -sum_k r_k C_k^{-1} (x - m mu_k), r the posterior component weights."""
    m, v = textbook.exact_mv(process, float(t))
    w, mus, covs = diffused_parts(law, m, v)
    keep = w > 0
    w, mus, covs = w[keep], mus[keep], covs[keep]
    d = x.shape[1]
    r = x[:, None, :] - mus[None]                                  # (N, K, d)
    sol = np.linalg.solve(covs[None], r[..., None])[..., 0]       # C_k^{-1}(x - mu_k)
    logdet = np.linalg.slogdet(covs)[1]
    logc = np.log(w)[None] - 0.5 * (d * np.log(2 * np.pi) + logdet[None]
                                    + np.einsum("nkd,nkd->nk", r, sol))
    return -np.einsum("nk,nkd->nd", softmax(logc, axis=1), sol), logsumexp(logc, axis=1)


def textbook_chain(law, process, x0, ts, normals):
    """The Euler-Maruyama chain of the reverse SDE (h = g) from the SDE's definition;
    ``normals(k)`` gives step k's (N, d) standard normals."""
    x = np.array(x0, dtype=np.float64, copy=True)
    for k in range(len(ts) - 1):
        t, dt = float(ts[k]), float(ts[k] - ts[k + 1])
        a, g2 = float(textbook.drift_coef(process, t)), float(textbook.diffusion_sq(process, t))
        s, _ = textbook_score(law, process, x, t)
        x = x + dt * (a * x + g2 * s) + np.sqrt(dt * g2) * normals(k)
    return x


def chain_sensitivity(law, process, x0, ts, normals, rel: float = 1e-7) -> float:
    """|d out| / |d in| of the reference chain for a relative perturbation ``rel`` of the start
    (max norms): how much the chain amplifies an error made early on (rounding enters every step
    like such a perturbation)."""
    base = textbook_chain(law, process, x0, ts, normals)
    dx = rel * max(1.0, float(np.max(np.abs(x0)))) * np.sign(np.sin(np.arange(x0.size) + 1.0))
    pert = textbook_chain(law, process, x0 + dx.reshape(x0.shape), ts, normals)
    return float(np.max(np.abs(pert - base)) / np.max(np.abs(dx)))


def run_routes(law, process, x0, ts, noise, routes):
    """{route: final points as float64 numpy} for each requested route, all given ``noise``."""
    from ... import use_kernels
    from ...fields import as_field
    from ...samplers import sample_euler_maruyama
    from ...samplers._core import run_shard

    path = law.path(process)
    out = {}
    for route in routes:
        if route == "numba":
            out[route] = sample_euler_maruyama(path, x0, ts, process, noise=noise, disable=True).x
        elif route == "numpy-loop":
            with use_kernels("numpy"):
                out[route] = sample_euler_maruyama(path, x0, ts, process, noise=noise,
                                                   disable=True).x
        else:
            import torch

            dev = "cuda" if route.startswith("cuda") else "cpu"
            xt = torch.from_numpy(np.array(x0)).to(dev)
            if route in ("torch-device", "cuda-device"):
                r = sample_euler_maruyama(path, xt, ts, process, noise=noise, disable=True).x
            elif route == "torch-loop":
                net = as_field(lambda x, t: path.score(x, t), law.dim)
                r = sample_euler_maruyama(net, xt, ts, process, noise=noise, disable=True).x
            elif route == "torch-shards":
                cut = x0.shape[0] // 2 + 1
                r = torch.cat([run_shard(sample_euler_maruyama, path, xt[sl], ts, process,
                                         particle_offset=sl.start, noise=noise, disable=True).x
                               for sl in (slice(0, cut), slice(cut, x0.shape[0]))])
            else:
                raise ValueError(f"unknown route {route!r}")
            out[route] = r.detach().cpu().numpy()
        out[route] = np.asarray(out[route], dtype=np.float64).reshape(x0.shape)
    return out


def measure_sampler_routes(zoo, procs, rng, *, n_particles: int, n_steps: int, routes,
                           t_end: float = 0.1, run=run_routes) -> Measured:
    """Each (law, process): the chain on every route against :func:`textbook_chain` with the same
    IndexedNoise. Error over tolerance per route, tolerance = steps x ROUNDING_PER_STEP x eps x
    max(1, sensitivity) x max|x| (the sensitivity measured on the reference chain)."""
    from ...samplers import IndexedNoise

    m = Measured()
    for i, (name, law) in enumerate(zoo):
        process = procs[i % len(procs)]
        T = 1.0
        ts = np.linspace(T, t_end, n_steps + 1)
        x0 = law.marginal(process, T).sample(n_particles, seed=rng)
        x0 = np.asarray(x0, dtype=np.float64).reshape(n_particles, law.dim)
        noise = IndexedNoise(int(rng.integers(0, 2**63)))
        like = np.zeros_like(x0)

        def normals(k):
            return noise.normals(0, k, like)

        ref = textbook_chain(law, process, x0, ts, normals)
        sens = chain_sensitivity(law, process, x0, ts, normals)
        scale = max(1.0, float(np.max(np.abs(ref))))
        tol = n_steps * ROUNDING_PER_STEP * EPS * max(1.0, sens) * scale
        got = run(law, process, x0, ts, noise, routes)
        row = {"law": name, "process": repr(process), "sensitivity": sens, "tolerance": tol}
        worst = -np.inf
        for route, x in got.items():
            err = float(np.max(np.abs(x - ref))) if np.all(np.isfinite(x)) else np.nan
            row[route] = err
            worst = np.nan if np.isnan(err) or np.isnan(worst) else max(worst, err / tol)
            m.add(route, err / tol, where=f"{name} / {process!r}")
        row["worst"] = worst
        m.rows.append(row)
    return m


@claim("core.samplers.routes",
       title="every sampler route runs the textbook Euler-Maruyama chain, given IndexedNoise",
       source="[OS] eq. (3), (7); issue 11 (torch routes, noise by global particle index)")
def check_sampler_routes(ctx: Context) -> Record:
    """Laws of every family (d = 1..2 quick, 1..3 full) under OU and VP: 20 (quick) / 40 (full)
    Euler-Maruyama steps of the reverse SDE from p_1 to t = 0.1, on the compiled numba loop, the
    numpy loop, the torch device loop and Python loop (CPU float64), two torch shards at their
    global offsets, and CUDA float64 with ``--device cuda``: each equals the textbook chain with
    the same normals to rounding."""
    from ...processes import OU, VP

    rng = ctx.rng()
    zoo = model_zoo(rng, max_dim=ctx.size(2, 3))
    routes = ["numba", "numpy-loop", "torch-device", "torch-loop", "torch-shards"]
    if ctx.device == "cuda":
        routes.append("cuda-device")
    m = measure_sampler_routes(zoo, [OU(), VP()], rng, n_particles=ctx.size(16, 64),
                               n_steps=ctx.size(20, 40), routes=routes)
    numbers = {"max_sensitivity": max(r["sensitivity"] for r in m.rows)}
    if ctx.device != "cuda":
        numbers["cuda-device"] = not_run("needs --device cuda")
    return ctx.verdict(
        within(m.excess),
        compared=[(f"sample_euler_maruyama(..., noise=IndexedNoise(seed)) via {r}",
                   "Euler-Maruyama from the SDE's definition, exact mixture score from scipy/"
                   "numpy linear algebra at the textbook (m, v)") for r in routes],
        claimed={"routes": "one chain: the same numbers on every route, device and sharding"},
        measured={**m.worst(), **numbers},
        tolerance={"rtol": f"steps x {ROUNDING_PER_STEP:g} eps x max(1, sensitivity)",
                   "why": "float64 rounding per step (score sums, update, normals) propagated by "
                          "the chain; the sensitivity |d out|/|d in| is measured on the "
                          "reference chain by a 1e-7 start perturbation"},
        inputs={"seed": ctx.seed, "n_laws": len(zoo), "routes": routes,
                "steps": ctx.size(20, 40), "grid": "linspace(1, 0.1)"},
        rows=m.worst_rows("worst", 10), notes="rows: the 10 worst (law, process); errors in "
                                              "max-norm, absolute")
