"""Benchmark: batched Gaussian-mixture log-density + score, three implementations in one run.

What is measured
----------------
``log p(x)`` and ``grad_x log p(x)`` of a K-component Gaussian mixture in R^d at N points, float64,
full (random SPD) covariances, random simplex weights, everything drawn from a fixed seed
(defaults: N = 1_000_000, K = 16, d = 2, seed = 0). The points are draws from the mixture itself.

1. ``numba``  -- ``GaussianMixture.logpdf_and_score(x, impl="numba")``: the parallel numba kernel
   in ``sftheory/_kernels/mixture.py``.
2. ``numpy``  -- ``GaussianMixture.logpdf_and_score(x, impl="numpy")``: the vectorized (chunked)
   reference formula in ``sftheory/models/_formulas.py``.
3. ``scipy``  -- written here, as a researcher would by hand: per component
   ``scipy.stats.multivariate_normal(mu_k, Sigma_k).logpdf(x) + log w_k``, then
   ``scipy.special.logsumexp`` (log-density) and ``scipy.special.softmax`` (responsibilities r_k),
   and the score ``sum_k r_k * (-(x - mu_k) @ inv(Sigma_k))`` with ``inv(Sigma_k)`` from
   ``scipy.linalg.cho_factor`` / ``cho_solve``. The per-component setup (frozen distributions,
   Cholesky inverses; microseconds for K = 16, d = 2) is inside the timed call.

Before anything is timed the three results are compared pairwise. The relative difference of an
array ``a`` against a reference ``b`` is ``max_i |a_i - b_i| / max(|b_i|, 1)`` (relative where
|b_i| >= 1, absolute below, so score components that cancel to ~0 do not divide by ~0); the raw
max absolute difference is reported as well. Disagreement above 1e-10 aborts the run (exit code
1): that is the correctness of the comparison, not a timing assertion.

The first numba call (JIT compile, or a load from numba's on-disk cache since the kernel is
``cache=True``, plus thread-pool start-up) is timed separately as "compile+first call" and
excluded from the timings. Each implementation is then timed with ``time.perf_counter`` (GC off
during a call, as in ``timeit``) over R repeats (numba 5, numpy 3, scipy 3 by default); best and
median are reported, with speedups ``t_other_best / t_impl_best``.

No wall-clock threshold is a pass/fail. The issue's target (numba >= 20x the numpy reference on
2 cores) is printed as information only.

Rerun
-----
    cd /work/main && .venv/bin/python benchmarks/bench_mixture_score.py
    .venv/bin/python benchmarks/bench_mixture_score.py --n 100000 --k 8 --d 3 --repeats 2
    .venv/bin/python benchmarks/bench_mixture_score.py --numba-threads 1   # single-thread kernel

Results (config, timings, ratios, versions, threads, BLAS, env, git commit, agreement) are
written as JSON to ``benchmarks/results/mixture_score.json`` (``--out``; git-ignored).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numba
import numpy as np
import scipy
import scipy.linalg
import scipy.special
import scipy.stats

import sftheory

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "mixture_score.json"
AGREEMENT_TOL = 1e-10
TARGET_SPEEDUP = 20.0  # numba / numpy reference, stated for 2 cores (information only)
DEFAULT_REPEATS = {"numba": 5, "numpy": 3, "scipy": 3}
ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "NUMBA_CACHE_DIR",
            "NUMBA_DISABLE_JIT", "NUMBA_OPT", "NUMBA_CPU_NAME")


# ---- problem -----------------------------------------------------------------------------------
def make_problem(n: int, k: int, d: int, seed: int):
    """Random mixture (simplex weights, spread means, well-conditioned SPD covs) and N draws."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(k))
    means = rng.normal(scale=3.0, size=(k, d))
    a = rng.normal(size=(k, d, d))
    covs = np.einsum("kab,kcb->kac", a, a) / d + 0.25 * np.eye(d)[None]
    model = sftheory.GaussianMixture(weights, means, covs)
    x = np.ascontiguousarray(model.sample(n, seed=rng), dtype=np.float64)
    return weights, means, covs, model, x


def scipy_logpdf_and_score(x, weights, means, covs):
    """The hand-written scipy evaluation (see module docstring)."""
    n, d = x.shape
    k = weights.shape[0]
    logw = np.log(weights)
    logc = np.empty((n, k))
    precs = []
    for j in range(k):
        logc[:, j] = scipy.stats.multivariate_normal(means[j], covs[j]).logpdf(x) + logw[j]
        precs.append(scipy.linalg.cho_solve(scipy.linalg.cho_factor(covs[j], lower=True),
                                            np.eye(d)))
    logp = scipy.special.logsumexp(logc, axis=1)
    resp = scipy.special.softmax(logc, axis=1)
    score = np.zeros((n, d))
    for j in range(k):
        score += resp[:, j:j + 1] * (-(x - means[j]) @ precs[j])
    return logp, score


# ---- measurement helpers -----------------------------------------------------------------------
def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max(|b|, 1), elementwise."""
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1.0)))


def abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)))


def time_call(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        gc.collect()
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            t0 = time.perf_counter()
            out = fn()
            t1 = time.perf_counter()
        finally:
            if gc_was_enabled:
                gc.enable()
        del out
        times.append(t1 - t0)
    return times


# ---- environment -------------------------------------------------------------------------------
def git_info() -> dict:
    def run(*args):
        try:
            r = subprocess.run(["git", "--no-optional-locks", *args], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10)
            return r.stdout.strip() if r.returncode == 0 else None
        except Exception:  # no git, not a repository, ...
            return None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def blas_info() -> dict:
    info: dict = {}
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        info["numpy_blas"] = {key: blas.get(key) for key in ("name", "version",
                                                             "openblas configuration")}
    except Exception as exc:  # older numpy without mode="dicts"
        info["numpy_blas"] = f"unavailable ({type(exc).__name__})"
    try:
        import threadpoolctl  # optional; not a dependency

        info["threadpoolctl"] = threadpoolctl.threadpool_info()
    except ImportError:
        info["threadpoolctl"] = "not installed"
    return info


def numba_info(kernel_stats: dict) -> dict:
    info = {"version": numba.__version__, "num_threads": numba.get_num_threads(),
            "config_NUMBA_NUM_THREADS": numba.config.NUMBA_NUM_THREADS}
    try:
        info["threading_layer"] = numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        info["threading_layer"] = None
    info["kernel_cache"] = kernel_stats
    return info


def kernel_cache_stats() -> dict:
    """Cache hits/misses of the full-covariance kernel (was the first call a compile or a load?)."""
    try:
        from sftheory._kernels import mixture as kmod

        st = kmod.mixture_full.stats
        return {"cache_path": str(st.cache_path),
                "cache_hits": {str(k): v for k, v in st.cache_hits.items()},
                "cache_misses": {str(k): v for k, v in st.cache_misses.items()}}
    except Exception as exc:
        return {"unavailable": f"{type(exc).__name__}: {exc}"}


# ---- main --------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="number of points (default 1e6)")
    p.add_argument("--k", type=int, default=16, help="number of components (default 16)")
    p.add_argument("--d", type=int, default=2, help="dimension (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of model and points (default 0)")
    p.add_argument("--repeats", type=int, default=None,
                   help="repeats for every implementation (default: numba 5, numpy 3, scipy 3)")
    p.add_argument("--numba-threads", type=int, default=None,
                   help="numba.set_num_threads before running (default: numba's default)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"JSON output (default {DEFAULT_OUT.relative_to(REPO_ROOT)})")
    args = p.parse_args(argv)
    for name in ("n", "k", "d"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.repeats is not None and args.repeats < 1:
        p.error("--repeats must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.numba_threads is not None:
        numba.set_num_threads(args.numba_threads)
    repeats = ({name: args.repeats for name in DEFAULT_REPEATS} if args.repeats is not None
               else dict(DEFAULT_REPEATS))

    print(f"Gaussian mixture logpdf+score: N={args.n:_}, K={args.k}, d={args.d}, float64, "
          f"full covariances, seed={args.seed}")
    print(f"cpus={os.cpu_count()}  numba threads={numba.get_num_threads()}  "
          f"numpy {np.__version__}  scipy {scipy.__version__}  numba {numba.__version__}")

    weights, means, covs, model, x = make_problem(args.n, args.k, args.d, args.seed)

    impls = {
        "numba": lambda: model.logpdf_and_score(x, impl="numba"),
        "numpy": lambda: model.logpdf_and_score(x, impl="numpy"),
        "scipy": lambda: scipy_logpdf_and_score(x, weights, means, covs),
    }

    # First numba call: compile (or cache load) + thread-pool start + one evaluation.
    t0 = time.perf_counter()
    results = {"numba": impls["numba"]()}
    first_call = time.perf_counter() - t0
    cache_stats = kernel_cache_stats()
    print(f"numba compile+first call: {first_call:.3f} s "
          f"(cache hits {sum(cache_stats.get('cache_hits', {}).values())}, "
          f"misses {sum(cache_stats.get('cache_misses', {}).values())})")
    results["numpy"] = impls["numpy"]()
    results["scipy"] = impls["scipy"]()

    # ---- agreement (before timing) ----
    agreement = {}
    worst = 0.0
    for a, b in (("numba", "numpy"), ("scipy", "numpy"), ("numba", "scipy")):
        (lp_a, s_a), (lp_b, s_b) = results[a], results[b]
        entry = {"logpdf_rel": rel_diff(lp_a, lp_b), "score_rel": rel_diff(s_a, s_b),
                 "logpdf_abs": abs_diff(lp_a, lp_b), "score_abs": abs_diff(s_a, s_b)}
        agreement[f"{a}_vs_{b}"] = entry
        worst = max(worst, entry["logpdf_rel"], entry["score_rel"])
        print(f"agreement {a:>5} vs {b:<5}: logpdf rel {entry['logpdf_rel']:.2e} "
              f"(abs {entry['logpdf_abs']:.2e}), score rel {entry['score_rel']:.2e} "
              f"(abs {entry['score_abs']:.2e})")
    agreement["max_rel"] = worst
    agreement["tolerance_rel"] = AGREEMENT_TOL
    agreement["definition"] = "max_i |a_i - b_i| / max(|b_i|, 1)"
    if not (worst <= AGREEMENT_TOL):
        print(f"ERROR: implementations disagree (max rel {worst:.3e} > {AGREEMENT_TOL:g}); "
              "not timing.", file=sys.stderr)
        return 1
    print(f"all agree to {worst:.2e} relative (<= {AGREEMENT_TOL:g})")
    del results

    # ---- timing ----
    timings = {}
    for name, fn in impls.items():
        ts = time_call(fn, repeats[name])
        timings[name] = {"repeats": repeats[name], "times_s": ts, "best_s": min(ts),
                         "median_s": statistics.median(ts)}

    best = {name: t["best_s"] for name, t in timings.items()}
    med = {name: t["median_s"] for name, t in timings.items()}
    ratios = {name: {"speedup_vs_numpy_best": best["numpy"] / best[name],
                     "speedup_vs_scipy_best": best["scipy"] / best[name],
                     "speedup_vs_numpy_median": med["numpy"] / med[name],
                     "speedup_vs_scipy_median": med["scipy"] / med[name]}
              for name in timings}

    print()
    print("speedup = t_other_best / t_impl_best (higher is faster)")
    header = f"{'implementation':<16}{'best s':>10}{'median s':>10}{'vs numpy':>10}{'vs scipy':>10}"
    print(header)
    print("-" * len(header))
    labels = {"numba": "numba kernel", "numpy": "numpy ref", "scipy": "scipy by hand"}
    for name in timings:
        r = ratios[name]
        print(f"{labels[name]:<16}{best[name]:>10.4f}{med[name]:>10.4f}"
              f"{r['speedup_vs_numpy_best']:>9.1f}x{r['speedup_vs_scipy_best']:>9.1f}x")
    print(f"{'(numba first)':<16}{first_call:>10.4f}{'':>10}{'':>10}{'':>10}"
          "   <- compile+first call, excluded")
    speedup = ratios["numba"]["speedup_vs_numpy_best"]
    met = speedup >= TARGET_SPEEDUP
    note = ("" if os.cpu_count() == 2
            else f" [target is stated for 2 cores; this machine has {os.cpu_count()}]")
    print()
    print(f"target numba/numpy >= {TARGET_SPEEDUP:g}x: {'met' if met else 'not met'} "
          f"({speedup:.1f}x; information only, not a pass/fail){note}")

    # ---- JSON ----
    record = {
        "benchmark": "mixture_score",
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": {"N": args.n, "K": args.k, "d": args.d, "dtype": "float64", "seed": args.seed,
                   "covariance": "full (random SPD)", "points": "draws from the mixture",
                   "repeats": repeats},
        "timings": timings,
        "numba_compile_plus_first_call_s": first_call,
        "ratios": ratios,
        "target": {"numba_vs_numpy_min_speedup": TARGET_SPEEDUP, "cores_stated": 2,
                   "measured": speedup, "met": met, "is_pass_fail": False},
        "agreement": agreement,
        "numba": numba_info(cache_stats),
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "scipy": scipy.__version__, "numba": numba.__version__,
                     "sftheory": getattr(sftheory, "__version__", None)},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(),
                    "affinity_cpus": (len(os.sched_getaffinity(0))
                                      if hasattr(os, "sched_getaffinity") else None)},
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
