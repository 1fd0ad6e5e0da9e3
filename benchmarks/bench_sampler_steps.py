"""Benchmark: Euler-Maruyama for the generative process with the exact score of a 2D 4-mode mixture.

Setting ([OS] App. H.2, Fig. 3/4): p0 = 0.25 sum N((+-1, +-1), 0.05^2 I), forward OU dX = -X/2 dt
+ dW (g = 1), T = 4, reverse SDE (h = g = 1), N = 10,000 particles started from the exact p_T.
Three implementations, side by side in one run:

1. ``sftheory``   -- ``sample_euler_maruyama(mix.path(OU()), x, ts, OU())``: an exact mixture path
   on numpy points takes the compiled route, the whole step loop in numba (per-particle
   random streams, particles in blocks across the threads); ``sftheory (Python loop)`` is the
   same call with a no-op ``callback``, which forces one kernel call per step from Python.
2. ``numpy loop`` -- written here as a user would: the mixture score in numpy (log-sum-exp over
   components, responsibilities, -(x - m mu_k)/(m^2 s0 + v)) and the Euler-Maruyama update.
3. ``torchsde``   -- ``torchsde.sdeint(method="euler")`` on CPU with the same score written in
   torch, in generative time s = T - t (the tool a user would otherwise pick).

Correctness first: the numpy and torch scores equal the library's at one step (max relative
difference <= 1e-12), and the three final samples agree in mean and covariance within 6 standard
errors (independent noise). Timings: seconds per step (best of the runs), and the extrapolation
to 80,000 steps, the paper's setting. No wall-clock pass/fail.

Rerun: .venv/bin/python benchmarks/bench_sampler_steps.py [--steps 2000] [--numpy-steps 100]
       [--full-run]   (--full-run also times sftheory over all 80,000 steps, about a minute)
JSON: benchmarks/results/sampler_steps.json (git-ignored).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numba
import numpy as np

from sftheory.models import GaussianMixture
from sftheory.processes import OU
from sftheory.samplers import initial_points, sample_euler_maruyama

MEANS = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
S0 = 0.05**2
T = 4.0


def numpy_score(x, t):
    """The exact score of p_t for the 4-mode mixture under dX = -X/2 dt + dW, by hand."""
    m = math.exp(-t / 2)
    v = 1.0 - math.exp(-t)
    c = m * m * S0 + v
    diff = x[:, None, :] - m * MEANS[None]
    logc = -0.5 * (diff**2).sum(-1) / c
    logc -= logc.max(1, keepdims=True)
    r = np.exp(logc)
    r /= r.sum(1, keepdims=True)
    return -(r[:, :, None] * diff).sum(1) / c


def numpy_loop(x, ts, seed):
    rng = np.random.default_rng(seed)
    x = x.copy()
    for k in range(len(ts) - 1):
        t, dt = ts[k], ts[k] - ts[k + 1]
        x = x + dt * (0.5 * x + numpy_score(x, t)) + math.sqrt(dt) * rng.standard_normal(x.shape)
    return x


def torchsde_run(x, ts, seed):
    import torch
    import torchsde

    means = torch.tensor(MEANS, dtype=torch.float64)

    def score(y, t):
        m = math.exp(-t / 2)
        c = m * m * S0 + 1.0 - math.exp(-t)
        diff = y[:, None, :] - m * means[None]
        r = torch.softmax(-0.5 * (diff**2).sum(-1) / c, dim=1)
        return -(r[:, :, None] * diff).sum(1) / c

    class Reverse(torch.nn.Module):
        noise_type, sde_type = "diagonal", "ito"

        def f(self, s, y):  # generative time s = T - t: drift -f + (g^2 + h^2)/2 S, g = h = 1
            return 0.5 * y + score(y, T - float(s))

        def g(self, s, y):
            return torch.ones_like(y)

    torch.manual_seed(seed)
    s_grid = torch.tensor(T - ts, dtype=torch.float64)
    y0 = torch.tensor(x, dtype=torch.float64)
    dt = float(ts[0] - ts[1])
    with torch.no_grad():
        out = torchsde.sdeint(Reverse(), y0, s_grid[[0, -1]], method="euler", dt=dt)
    return out[-1].numpy(), score


def best(fn, repeats):
    out, res = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = fn()
        out.append(time.perf_counter() - t0)
    return min(out), res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=2000, help="steps for sftheory and torchsde")
    ap.add_argument("--numpy-steps", type=int, default=200, help="steps for the numpy loop")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--full-run", action="store_true",
                    help="also run sftheory over the paper's 80,000 steps (measured, not scaled)")
    ap.add_argument("--out", default="benchmarks/results/sampler_steps.json")
    args = ap.parse_args(argv)
    mix = GaussianMixture(np.full(4, 0.25), MEANS, np.full(4, S0))
    proc = OU()
    path = mix.path(proc)
    x0 = initial_points(args.n, proc, T, law=mix, seed=0)
    t_end = 1e-3

    # correctness: the scores agree at one time, the samples agree in law
    t_chk = 0.7
    lib = path.score(x0, t_chk)
    worst = float(np.max(np.abs(numpy_score(x0, t_chk) - lib) / np.maximum(np.abs(lib), 1.0)))
    ts = np.linspace(T, t_end, args.steps + 1)
    ts_np = np.linspace(T, t_end, args.numpy_steps + 1)
    sample_euler_maruyama(path, x0[:10], ts[:3], proc, seed=0, disable=True)  # compile / warm
    t_lib, r_lib = best(lambda: sample_euler_maruyama(path, x0, ts, proc, seed=1, disable=True).x,
                        args.repeats)
    t_py, _ = best(lambda: sample_euler_maruyama(path, x0, ts_np, proc, seed=1, disable=True,
                                                 callback=lambda state: None).x, 1)
    t_np, r_np = best(lambda: numpy_loop(x0, ts_np, 2), 1)
    results = {"sftheory": t_lib / args.steps,
               "sftheory (Python loop)": t_py / args.numpy_steps,
               "numpy loop": t_np / args.numpy_steps}
    finals = {"sftheory": r_lib}
    try:
        t_ts, (r_ts, tscore) = best(lambda: torchsde_run(x0, ts, 3), 1)
        import torch

        worst = max(worst, float(np.max(np.abs(tscore(torch.from_numpy(x0), t_chk).numpy() - lib)
                                        / np.maximum(np.abs(lib), 1.0))))
        results["torchsde (CPU)"] = t_ts / args.steps
        finals["torchsde"] = r_ts
    except ImportError:
        results["torchsde (CPU)"] = "not run: torchsde is not installed"
    if not worst <= 1e-12:
        print(f"scores disagree: {worst}", file=sys.stderr)
        return 1
    # the same law: mean and covariance of sftheory's and torchsde's samples (same step count)
    agree = {}
    for name, r in finals.items():
        if name == "sftheory":
            continue
        se = np.sqrt(np.var(r_lib, axis=0) / args.n + np.var(r, axis=0) / args.n)
        agree[name] = float(np.max(np.abs(r_lib.mean(0) - r.mean(0)) / se))
        if not agree[name] <= 6.0:
            print(f"samples disagree in mean ({name}): z = {agree[name]}", file=sys.stderr)
            return 1
    print(f"N = {args.n} particles, 2D 4-mode mixture, OU, T = {T}, reverse SDE (h = g)")
    print(f"{'implementation':<18} {'s/step':>10} {'80k steps (s)':>14} {'vs sftheory':>12}")
    for name, v in results.items():
        if isinstance(v, str):
            print(f"{name:<18} {v}")
            continue
        print(f"{name:<18} {v:10.3e} {v * 80_000:14.1f} {v / results['sftheory']:11.1f}x")
    print(f"scores agree to {worst:.1e}; sample means agree (max |z|): {agree}")
    measured_80k = None
    if args.full_run:
        ts80 = np.linspace(T, t_end, 80_001)
        measured_80k, _ = best(lambda: sample_euler_maruyama(path, x0, ts80, proc, seed=1,
                                                             disable=False).x, 1)
        print(f"sftheory, 80,000 steps measured: {measured_80k:.1f} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": vars(args), "seconds_per_step": results,
                               "extrapolated_80k_steps_s": {k: (v * 80_000 if not isinstance(v, str) else v)
                                                            for k, v in results.items()},
                               "sftheory_80k_steps_measured_s": measured_80k,
                               "score_agreement": worst, "mean_z": agree,
                               "numba_threads": numba.get_num_threads(),
                               "python": platform.python_version()}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
