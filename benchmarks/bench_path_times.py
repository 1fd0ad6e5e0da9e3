"""Benchmark: what a new time costs on a diffusion path (issue 6's per-time cost factors).

What is measured (K = 16 full-covariance components, d = 2, float64, seed 0, VP process):

1. ``path_1pt``: 1,000 calls ``path.score(x, t_i)`` at 1,000 distinct times, N = 1 point each
   (a sampler or an ODE solver stepping one particle);
   ``marginal_built_1pt``: 1,000 calls ``pt.score(x)`` of one already-built marginal (no new time:
   the floor a path call is compared with; target factor <= 3);
   ``marginal_rebuilt_1pt``: 1,000 calls ``law.marginal(process, t_i).score(x)`` (what a user
   without paths writes);
   ``scipy_by_hand_1pt``: 1,000 calls of the same score written with scipy per component at each
   time (m^2 Sigma_k + v I, cho_factor, logsumexp, softmax), what a user would write by hand.
2. ``path_per_point``: one call with N = 10^4 points at 10^4 different times (t of shape (N,));
   ``path_one_time``: one call with the same points at a single time (target factor ~1);
   ``numpy_reference_per_point``: the numpy reference formula on the same per-point call.

Each timing is the best of R repeats (time.perf_counter, GC off). Before timing, the per-point call
is compared with single-time calls at 16 of its points (max |a - b| / max(|b|, 1) <= 1e-12) and
with scipy; disagreement aborts (exit 1). No wall-clock pass/fail threshold.

Rerun:  .venv/bin/python benchmarks/bench_path_times.py [--repeats 5] [--out PATH]
JSON: benchmarks/results/path_times.json (git-ignored).
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from pathlib import Path

import numba
import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.special import logsumexp, softmax

from sftheory import use_kernels
from sftheory.processes import VP
from sftheory.testing.random import random_mixture


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        gc.disable()
        try:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        finally:
            gc.enable()
    return min(times)


def scipy_score(mix, process, x, t):
    """The score of p_t written by hand: per component m^2 Sigma + v I, Cholesky, log-sum-exp."""
    m, v = process.conditional(t)
    d = x.shape[1]
    logc, grads = [], []
    for w, mu, c in zip(mix.weights, mix.means, mix.covs):
        cf = cho_factor(m * m * c + v * np.eye(d), lower=True)
        r = x - m * mu
        sol = cho_solve(cf, r.T).T
        logdet = 2 * np.log(np.diag(cf[0])).sum()
        logc.append(np.log(w) - 0.5 * (r * sol).sum(1) - 0.5 * logdet - 0.5 * d * np.log(2 * np.pi))
        grads.append(-sol)
    logc = np.stack(logc, 1)
    return np.einsum("nk,knd->nd", softmax(logc, axis=1), np.stack(grads)), logsumexp(logc, 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--out", default="benchmarks/results/path_times.json")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    mix = random_mixture(rng, 16, 2)
    proc = VP()
    path = mix.path(proc)
    ts = np.linspace(0.01, 1.0, args.calls)
    x1 = mix.sample(1, seed=1)
    pt = mix.marginal(proc, 0.5)
    xn = mix.sample(args.n, seed=2)
    tn = rng.uniform(0.01, 1.0, args.n)

    # correctness first
    per_point = path.score(xn, tn)
    idx = rng.choice(args.n, 16, replace=False)
    worst = 0.0
    for i in idx:
        for ref in (path.score(xn[i:i + 1], float(tn[i]))[0], scipy_score(mix, proc, xn[i:i + 1], float(tn[i]))[0][0]):
            worst = max(worst, float(np.max(np.abs(per_point[i] - ref) / np.maximum(np.abs(ref), 1.0))))
    if not worst <= 1e-10:  # NaN fails too
        print(f"disagreement {worst}: per-point path call vs single-time / scipy", file=sys.stderr)
        return 1
    path.score(x1, 0.3), pt.score(x1)  # compile / warm

    r = {}
    r["path_1pt"] = best_of(lambda: [path.score(x1, t) for t in ts], args.repeats)
    r["marginal_built_1pt"] = best_of(lambda: [pt.score(x1) for t in ts], args.repeats)
    r["marginal_rebuilt_1pt"] = best_of(lambda: [mix.marginal(proc, t).score(x1) for t in ts], args.repeats)
    r["scipy_by_hand_1pt"] = best_of(lambda: [scipy_score(mix, proc, x1, t) for t in ts], max(1, args.repeats // 2))
    r["path_per_point"] = best_of(lambda: path.score(xn, tn), args.repeats)
    r["path_one_time"] = best_of(lambda: path.score(xn, 0.5), args.repeats)
    with use_kernels("numpy"):
        r["numpy_reference_per_point"] = best_of(lambda: path.score(xn, tn), args.repeats)
    ratios = {
        "path_vs_built_marginal (target <= 3)": r["path_1pt"] / r["marginal_built_1pt"],
        "rebuilt_marginal_vs_path": r["marginal_rebuilt_1pt"] / r["path_1pt"],
        "scipy_by_hand_vs_path": r["scipy_by_hand_1pt"] / r["path_1pt"],
        "per_point_times_vs_one_time (target ~1)": r["path_per_point"] / r["path_one_time"],
        "numpy_reference_vs_numba_per_point": r["numpy_reference_per_point"] / r["path_per_point"],
    }
    print(f"{args.calls} calls, N = 1, K = 16, d = 2 (best of {args.repeats}):")
    for k in ("path_1pt", "marginal_built_1pt", "marginal_rebuilt_1pt", "scipy_by_hand_1pt"):
        print(f"  {k:<28} {r[k] * 1e3:9.2f} ms   ({r[k] / args.calls * 1e6:6.1f} us/call)")
    print(f"one call, N = {args.n}:")
    for k in ("path_per_point", "path_one_time", "numpy_reference_per_point"):
        print(f"  {k:<28} {r[k] * 1e3:9.2f} ms")
    print("ratios:")
    for k, v in ratios.items():
        print(f"  {k:<44} {v:6.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": vars(args), "seconds": r, "ratios": ratios,
                               "agreement_max_rel": worst, "numba_threads": numba.get_num_threads(),
                               "python": platform.python_version(), "numpy": np.__version__},
                              indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
