"""Benchmark: vanilla fusion ([SF] problem (9)) in 2-D, numba kernels vs the numpy reference, and
scipy SLSQP, in one run.

What is measured
----------------
k = 8 reference Gaussian mixtures in R^2 with K = 16 components each (random simplex weights,
means uniform on [-6, 6]^2, full covariances 0.15 I + A A^T with A ~ 0.25 N(0, 1): well
separated, components ~0.4-0.6 wide) and a target nu of the same kind (a model: E_nu[log p_i] by
the same grid), all from one seed. ``sftheory.fusion.vanilla_fusion(refs, nu, gap_tol=1e-8)``
builds the trapezoid grid of ``sftheory/fusion/_grid.py`` (801 x 801 = 641,601 nodes here) and runs
away-step Frank-Wolfe with exact line search until the Frank-Wolfe duality gap is <= 1e-8.

1. ``numba`` -- the default: log p_i on the grid by the mixture kernel
   (``sftheory/_kernels/mixture.py``), and per lambda the fused one-pass kernel
   ``sftheory/_kernels/quadrature.py:lse_moments`` (log Z and E_{p_lambda}[log p_i]).
2. ``numpy`` -- the same call under ``sftheory.use_kernels("numpy")``: the numpy reference
   formulas (``GaussianMixture`` numpy route, ``FusionObjective._parts_numpy``).
3. ``scipy SLSQP`` -- ``scipy.optimize.minimize(method="SLSQP")`` on the same (numba-backed)
   ``FusionObjective`` with its analytic gradient, simplex as bounds + equality constraint,
   ftol 1e-14: the general-purpose tool a user would otherwise pick. Reported: time, iterations,
   function/gradient evaluations, max |lambda_SLSQP - lambda_FW|, and the Frank-Wolfe gap at the
   SLSQP point (a certificate of its optimality).

Split of each vanilla_fusion run (``result.timings`` and ``result.problem.timings``): grid nodes,
log p_i on the grid, the target moments E_nu[log p_i] (together "setup": the log-densities and
the normalizer's ingredients, paid once) against the Frank-Wolfe iterations (each a log-normalizer
and/or E_{p_lambda}[log p_i] over the grid); iteration count and evaluation counts. Besides,
one evaluation of log Z / +mean / +covariance (``order`` 0 / 1 / 2) is timed per implementation
(best of R).

Before timing, both implementations are compared at a few lambdas (log Z, E_{p_lambda}[log p_i],
covariance: relative difference max |a - b| / max(|b|, 1) must be <= 1e-12), and after the runs
the fitted weights must agree to 1e-10; otherwise the script exits 1 (the timings would compare
different things). No wall-clock threshold is a pass/fail.

The first numba calls (compile or on-disk cache load of both kernels, thread-pool start) are timed
separately and excluded.

Rerun
-----
    cd /work/main && .venv/bin/python benchmarks/bench_fusion.py
    .venv/bin/python benchmarks/bench_fusion.py --k 4 --components 8 --repeats 1
    .venv/bin/python benchmarks/bench_fusion.py --numba-threads 1

Results go as JSON to ``benchmarks/results/fusion.json`` (``--out``; git-ignored).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numba
import numpy as np
import scipy
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_mixture_score import blas_info, git_info, time_call  # noqa: E402

import sftheory  # noqa: E402
from sftheory import use_kernels  # noqa: E402
from sftheory.fusion import FusionObjective, vanilla_fusion  # noqa: E402
from sftheory.models import GaussianMixture  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "fusion.json"
PARITY_TOL = 1e-12
WEIGHTS_TOL = 1e-10
ENV_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
            "NUMBA_THREADING_LAYER", "NUMBA_CACHE_DIR", "NUMBA_DISABLE_JIT")


# ---- problem -----------------------------------------------------------------------------------
def random_mixture(rng, n_comp: int, d: int = 2) -> GaussianMixture:
    w = rng.dirichlet(np.full(n_comp, 5.0))
    means = rng.uniform(-6.0, 6.0, size=(n_comp, d))
    a = 0.25 * rng.normal(size=(n_comp, d, d))
    covs = np.einsum("kab,kcb->kac", a, a) + 0.15 * np.eye(d)
    return GaussianMixture(w, means, covs)


def make_problem(k: int, n_comp: int, seed: int):
    rng = np.random.default_rng(seed)
    refs = [random_mixture(rng, n_comp) for _ in range(k)]
    return refs, random_mixture(rng, n_comp)


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1.0)))


def fw_gap(prob, lam) -> float:
    g = prob.grad(lam)
    return float(g @ lam - g.min())


def slsqp(prob):
    k = prob.k

    def proj(x):  # SLSQP's iterates satisfy the constraints only to ~1e-9
        x = np.clip(x, 0.0, None)
        return x / x.sum()

    t0 = time.perf_counter()
    res = minimize(lambda x: prob.value(proj(x)), np.full(k, 1.0 / k),
                   jac=lambda x: prob.grad(proj(x)), method="SLSQP", bounds=[(0.0, 1.0)] * k,
                   constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1.0}],
                   options={"ftol": 1e-14, "maxiter": 1000})
    seconds = time.perf_counter() - t0
    return proj(res.x), seconds, res


# ---- main --------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, default=8, help="number of references (default 8)")
    p.add_argument("--components", type=int, default=16, help="components per mixture (16)")
    p.add_argument("--gap", type=float, default=1e-8, help="Frank-Wolfe gap tolerance (1e-8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1,
                   help="full vanilla_fusion runs per implementation (default 1; best reported)")
    p.add_argument("--eval-repeats", type=int, default=5,
                   help="repeats of the single-evaluation timings (default 5)")
    p.add_argument("--numba-threads", type=int, default=None)
    p.add_argument("--no-slsqp", action="store_true", help="skip the scipy SLSQP solve")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    if min(args.k, args.components, args.repeats, args.eval_repeats) < 1:
        p.error("--k, --components, --repeats, --eval-repeats must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.numba_threads is not None:
        numba.set_num_threads(args.numba_threads)
    print(f"vanilla fusion, d=2: k={args.k} references x {args.components} components, target a "
          f"{args.components}-component mixture, FW gap <= {args.gap:g}, seed={args.seed}")
    print(f"cpus={os.cpu_count()}  numba threads={numba.get_num_threads()}  numpy {np.__version__}"
          f"  scipy {scipy.__version__}  numba {numba.__version__}")
    refs, target = make_problem(args.k, args.components, args.seed)

    # ---- first numba calls (compile or cache load), excluded --------------------------------
    from sftheory._kernels.quadrature import lse_moments

    t0 = time.perf_counter()
    small = FusionObjective(refs[:2], target, method="mc", n_mc=2000, seed=0)
    for order in (0, 1, 2):
        lse_moments(small._H, np.array([0.5, 0.5]), small._logw, order)
    first_call = time.perf_counter() - t0
    print(f"numba compile/cache-load + first calls: {first_call:.2f} s (excluded)")

    # ---- per-lambda parity before timing -------------------------------------------------------
    prob = FusionObjective(refs, target)
    rng = np.random.default_rng(args.seed + 1)
    lams = [np.full(args.k, 1.0 / args.k), np.eye(args.k)[0], rng.dirichlet(np.ones(args.k))]
    parity = 0.0
    for lam in lams:
        a = prob._parts(lam, 2)
        with use_kernels("numpy"):
            b = prob._parts(lam, 2)
        scale = np.maximum(np.sqrt(np.outer(np.diag(b[2]), np.diag(b[2]))), 1.0)
        parity = max(parity, rel(a[0], b[0]), rel(a[1], b[1]),
                     float(np.max(np.abs(a[2] - b[2]) / scale)))
    print(f"per-lambda parity numba vs numpy (log Z, E h, Cov h): {parity:.2e} "
          f"(<= {PARITY_TOL:g})")
    if not parity <= PARITY_TOL:
        print("ERROR: kernel and reference disagree; not timing.", file=sys.stderr)
        return 1
    print(f"grid: {prob._H.shape[0]:_} nodes, k={prob.k}")

    # ---- single evaluations ---------------------------------------------------------------------
    lam = lams[2]
    evals = {}
    for impl in ("numba", "numpy"):
        evals[impl] = {}
        for order in (0, 1, 2):
            with use_kernels(impl):
                ts = time_call(lambda: prob._parts(lam, order), args.eval_repeats)
            evals[impl][f"order{order}"] = {"best_s": min(ts), "median_s": statistics.median(ts)}
    del prob

    # ---- full runs -------------------------------------------------------------------------------
    runs = {"numba": [], "numpy": []}
    results = {}
    for _ in range(args.repeats):
        for impl in ("numba", "numpy"):
            with use_kernels(impl):
                t0 = time.perf_counter()
                res = vanilla_fusion(refs, target, gap_tol=args.gap)
                total = time.perf_counter() - t0
            entry = {"total_s": total, **res.timings, **{f"setup_{key}": v for key, v in
                                                         res.problem.timings.items()},
                     "n_iter": res.trace.n_iter, "converged": res.trace.converged,
                     "final_gap": float(res.trace.gaps[-1])}
            runs[impl].append(entry)
            results[impl] = res
            print(f"  {impl:>5}: total {total:7.2f} s = setup {res.timings['setup_s']:6.2f} s "
                  f"+ FW {res.timings['iterations_s']:7.2f} s ({res.trace.n_iter} iterations, "
                  f"{res.timings['n_grad']} gradients, {res.timings['n_objective']} objectives)")
    dw = float(np.max(np.abs(results["numba"].weights - results["numpy"].weights)))
    print(f"weights numba vs numpy: max |diff| = {dw:.2e} (<= {WEIGHTS_TOL:g})")
    if not dw <= WEIGHTS_TOL:
        print("ERROR: the fitted weights differ.", file=sys.stderr)
        return 1
    best = {impl: min(runs[impl], key=lambda e: e["total_s"]) for impl in runs}
    ratios = {key: best["numpy"][key] / best["numba"][key]
              for key in ("total_s", "setup_s", "iterations_s")}
    ratios.update({f"eval_order{o}": evals["numpy"][f"order{o}"]["best_s"]
                   / evals["numba"][f"order{o}"]["best_s"] for o in (0, 1, 2)})

    # ---- scipy SLSQP --------------------------------------------------------------------------
    slsqp_rec = None
    if not args.no_slsqp:
        prob = results["numba"].problem
        w_sl, sec, res = slsqp(prob)
        w_fw = results["numba"].weights
        slsqp_rec = {"seconds": sec, "nit": int(res.nit), "nfev": int(res.nfev),
                     "njev": int(res.njev), "success": bool(res.success),
                     "message": str(res.message), "weights": w_sl.tolist(),
                     "max_abs_weight_diff_vs_fw": float(np.max(np.abs(w_sl - w_fw))),
                     "objective_minus_fw": float(prob.value(w_sl) - prob.value(w_fw)),
                     "fw_gap_at_slsqp_point": fw_gap(prob, w_sl)}

    # ---- table ---------------------------------------------------------------------------------
    print()
    print(f"{'':<24}{'numba s':>10}{'numpy s':>10}{'numpy/numba':>13}")
    rows = [("grid nodes", "setup_nodes_s"), ("log p_i on grid", "setup_log_refs_s"),
            ("target E_nu[log p_i]", "setup_target_s"), ("setup total", "setup_s"),
            ("FW iterations", "iterations_s"), ("total", "total_s")]
    for label, key in rows:
        a, b = best["numba"][key], best["numpy"][key]
        print(f"{label:<24}{a:>10.3f}{b:>10.3f}{b / a:>12.1f}x")
    for o, label in ((0, "one log Z"), (1, "one log Z + E h"), (2, "one log Z + E h + Cov")):
        a = evals["numba"][f"order{o}"]["best_s"]
        b = evals["numpy"][f"order{o}"]["best_s"]
        print(f"{label:<24}{a:>10.4f}{b:>10.4f}{b / a:>12.1f}x")
    print(f"FW: {best['numba']['n_iter']} iterations, final gap {best['numba']['final_gap']:.2e}, "
          f"weights {np.array2string(results['numba'].weights, precision=4)}")
    if slsqp_rec is not None:
        print(f"scipy SLSQP (same objective, numba-backed): {slsqp_rec['seconds']:.2f} s, "
              f"{slsqp_rec['nit']} iterations, {slsqp_rec['nfev']} f / {slsqp_rec['njev']} grad "
              f"evaluations; max |w_SLSQP - w_FW| = {slsqp_rec['max_abs_weight_diff_vs_fw']:.2e}"
              f", F(w_SLSQP) - F(w_FW) = {slsqp_rec['objective_minus_fw']:.2e}, FW gap at the "
              f"SLSQP point {slsqp_rec['fw_gap_at_slsqp_point']:.2e} ({slsqp_rec['message']})")

    record = {
        "benchmark": "fusion",
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": {"k": args.k, "components": args.components, "d": 2, "gap_tol": args.gap,
                   "seed": args.seed, "repeats": args.repeats,
                   "eval_repeats": args.eval_repeats, "grid_nodes": int(
                       results["numba"].problem._H.shape[0]), "method": "quadrature",
                   "step": "away"},
        "numba_compile_plus_first_calls_s": first_call,
        "parity_max_rel": parity, "parity_tol": PARITY_TOL,
        "weights_max_abs_diff": dw, "weights_tol": WEIGHTS_TOL,
        "weights": results["numba"].weights.tolist(),
        "runs": runs, "best": best, "single_evaluation": evals, "ratios_numpy_over_numba": ratios,
        "slsqp": slsqp_rec,
        "numba": {"version": numba.__version__, "num_threads": numba.get_num_threads(),
                  "threading_layer": numba.threading_layer()},
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "scipy": scipy.__version__, "numba": numba.__version__,
                     "sftheory": getattr(sftheory, "__version__", None)},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None},
        "env": {name: os.environ[name] for name in ENV_VARS if name in os.environ},
        "blas": blas_info(),
        "git": git_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
