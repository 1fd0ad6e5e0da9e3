"""Benchmark: torch at scale (issue 11) -- one run, side by side, with ratios and a JSON record.

Sections (each in its own try/except: an error is recorded in the JSON and the run goes on):

(d) ``peak``      -- the device's measured matmul peak in this run: an 8192^3 GEMM in float32
                     (IEEE), TF32, float64 and bf16 (TFLOP/s = 2 n^3 / t); later sections print
                     their fraction of it.
(a) ``empirical`` -- empirical score / posterior mean, B = 4096 queries, n = 60000 points,
                     d = 784 (uniform [0,1] "images"; queries a y + sqrt(w) z, a = 0.8, w = 4):
                     naive torch (materialize the B x n logits, softmax, matmul) in float32,
                     TF32, float64 vs ``lse_average_torch`` (augmented GEMMs, online LSE,
                     bounded memory; point tiles swept) exact float32 / float64, its fast
                     precisions (tf32, fp16, bf16), the SDPA route
                     (``posterior_average_sdpa`` fp16 / bf16 / fp32) and the fast route
                     (``lse_average_fast``: centred points, one fp16/bf16/TF32 GEMM with float32
                     output, row max, exp and rounding of the weights, one GEMM; keys prepared
                     or per call, with and without log p, a smaller budget, eager or compiled;
                     also back to back, no host sync, against naive TF32). TFLOP/s counts 4 B n d;
                     error = max |ybar - ybar_float64| (data in [0, 1]); peak device memory per
                     variant; plus one exact float32 run at n = 1e6 (memory bounded).
                     Issue 11 follow-up, side by side with the above: ``ours 3xtf32``
                     (``precision="fp32-3xtf32"``: float32 accuracy from three TF32 products,
                     Ootomo & Yokota 2022 / CUTLASS 3xTF32; eager and, where compiled, with the
                     fused tile step; ``uncentred``: without the centring of the points) and
                     ``ours fused exact fp32 / fp64`` (``fuse="compile"``:
                     row max, rescale and exp of a tile in one compiled function); every variant
                     gets its ratio to naive fp32 / TF32 / fp64 of the same run and its max
                     relative error against float64 (``max_rel_err_vs_fp64`` = max |ybar -
                     ybar64| / max |ybar64|; ``lse_max_abs_err_vs_fp64`` for our routes), and
                     ``targets`` says whether fp64 >= 50, float32-accurate >= 45 TFLOP/s and the
                     fast path >= 2x naive TF32 were met.
(b) ``mixture``   -- mixture score, d = 2, K = 16 full covariances, N = 4M points: naive torch
                     (the library's reference formula on torch tensors, (N, K, d) temporaries)
                     vs ``torch_mixture.mixture_eval`` eager and through ``torch.compile``,
                     float32 / float64; point-evaluations/s (one point's score over all K);
                     error vs the numba kernel on 100k points.
(c) ``sampling``  -- 1e6 particles x 1000 Euler-Maruyama steps of that mixture (OU, T = 3 ->
                     0.01), float32, compiled step (falls back to eager with the reason
                     recorded), noise drawn on the device; seconds, and eager for the ratio.
(f) ``fusion``    -- ScoreFusion's Monte Carlo quadratic (``score_fusion``, method "exact") for
                     k = 3 isotropic Gaussian auxiliaries on n = 60000 target points uniform on
                     [0, 1]^784,
                     n_mc = 16384 draws, float64: the target on the device with the host numpy
                     Generator's draws (z copied to the device per batch) against
                     ``draws="indexed"`` (counter-based z and permutations computed on the
                     device), and the numpy route on the CPU; seconds, ratios, and the two draw
                     sources' G compared in standard errors (independent samples of one
                     estimator). Not in the default sections: add ``fusion``.
(e) ``cpu``       -- the CPU numba paths at sizes that run in seconds: the mixture kernel, the
                     numpy/BLAS empirical-score engine, the fused numba sampler; rates for the
                     device / CPU ratios.

Timing: CUDA events with ``torch.cuda.synchronize``, warm-ups, median of repeats (perf_counter on
CPU). Compile time is reported separately and excluded. TF32 is set through
``sftheory.models._esf_gemm.tf32_matmul`` (restored after).

Run
---
    PYTHONPATH=. python benchmarks/bench_gpu.py --device cuda --out bench_gpu.json   # < 4 min
    PYTHONPATH=. python benchmarks/bench_gpu.py --device cpu --small                 # < 60 s
    # only the empirical section, only the exact / 3xTF32 / fused variants (+ naive baselines):
    PYTHONPATH=. python benchmarks/bench_gpu.py --device cuda --sections peak,empirical \
        --variants "exact|3xtf32|fused" --out bench_3xtf32.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from sftheory._kernels import torch_mixture as tm  # noqa: E402
from sftheory.models import _esf_gemm as eg  # noqa: E402

T0 = time.perf_counter()


#: Wall-clock budget (s) after which optional parts (eager sampling, the numba sampler) are
#: skipped and recorded as such, so the whole run stays under ~4 minutes.
SOFT_BUDGET_S = 190.0


def over_budget() -> bool:
    return time.perf_counter() - T0 > SOFT_BUDGET_S


def log(msg):
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", flush=True)


# ---- timing ----------------------------------------------------------------------------------
def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timeit(fn, dev, repeats=5, warmup=1, calls=1):
    """Median and all of ``repeats`` timings (after ``warmup`` untimed calls), seconds per call.
    Each timing spans ``calls`` back-to-back calls between two CUDA events (no host sync between
    them: the host queues call i+1 while the device runs call i, as in a loop over batches);
    perf_counter on CPU."""
    for _ in range(warmup):
        fn()
    sync(dev)
    ts = []
    for _ in range(repeats):
        if dev.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            for _ in range(calls):
                fn()
            b.record()
            b.synchronize()
            ts.append(a.elapsed_time(b) / 1e3 / calls)
        else:
            t = time.perf_counter()
            for _ in range(calls):
                fn()
            ts.append((time.perf_counter() - t) / calls)
    return statistics.median(ts), ts


def timeit_stream(fn, dev, calls=10, repeats=3):
    """Per-call seconds of ``calls`` back-to-back calls, median over ``repeats``."""
    return timeit(fn, dev, repeats=repeats, warmup=1, calls=calls)[0]


def peak_mem_reset(dev):
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def peak_mem_mib(dev):
    return torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None


def failure(name, exc, keep=3000) -> dict:
    """The JSON record of a failed section or variant (the run goes on), logged."""
    log(f"   {name} FAILED: {type(exc).__name__}: {exc}")
    return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-keep:]}


def section(results, name, fn, *args):
    log(f"== {name}")
    try:
        results[name] = fn(*args)
    except Exception as exc:  # noqa: BLE001 -- recorded, the run goes on
        results[name] = failure(name, exc)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---- (d) matmul peak -------------------------------------------------------------------------------
def bench_peak(dev, cfg):
    n = cfg["gemm_n"]
    out = {"n": n}
    for name, dt, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                           ("fp64", torch.float64, False), ("bf16", torch.bfloat16, False)):
        try:
            g = torch.Generator(device=dev).manual_seed(0)
            a = torch.randn(n, n, device=dev, dtype=dt, generator=g)
            b = torch.randn(n, n, device=dev, dtype=dt, generator=g)
            with eg.tf32_matmul(tf32):
                t, _ = timeit(lambda: a @ b, dev, repeats=cfg["rep_gemm"], warmup=1)
            out[name] = {"seconds": t, "tflops": 2 * n**3 / t / 1e12}
            log(f"   peak {name:5s}: {out[name]['tflops']:7.1f} TFLOP/s ({t * 1e3:.2f} ms)")
            del a, b
        except Exception as exc:  # noqa: BLE001
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def peak_of(results, key):
    try:
        return results["peak"][key]["tflops"]
    except (KeyError, TypeError):
        return None


# ---- (a) empirical score -----------------------------------------------------------------------------
def naive_esf(x, y, a, w, yn):
    """Materialize the logits, softmax, matmul (the issue's naive torch baseline)."""
    logits = (x @ y.T) * (a / w) - (0.5 * a * a / w) * yn
    return torch.softmax(logits, dim=1) @ y


class _Skipped(Exception):
    """A part of a section left out on request (recorded as skipped, not as an error)."""


def esf_problem(dev, b, n, d, seed=0):
    g = torch.Generator(device=dev).manual_seed(seed)
    y = torch.rand(n, d, device=dev, dtype=torch.float64, generator=g)
    idx = torch.randint(0, n, (b,), device=dev, generator=g)
    a, w = 0.8, 4.0
    x = a * y[idx] + math.sqrt(w) * torch.randn(b, d, device=dev, dtype=torch.float64,
                                                generator=g)
    return x, y, a, w


def bench_empirical(dev, cfg, results):
    b, n, d = cfg["esf"]
    flops = 4.0 * b * n * d
    x64, y64, a, w = esf_problem(dev, b, n, d)
    x32, y32 = x64.float(), y64.float()
    yn64, yn32 = (y64 * y64).sum(1), (y32 * y32).sum(1)
    ref_lse, ref = eg.lse_average_torch(x64, y64, a, w, precision="exact")
    ref_scale = float(ref.abs().max())
    wanted = re.compile(cfg.get("variants") or "")
    out = {"B": b, "n": n, "d": d, "a": a, "w": w, "flops_counted": "4 B n d",
           "variants": {}}
    peaks = {"fp32": peak_of(results, "fp32"), "tf32": peak_of(results, "tf32"),
             "fp64": peak_of(results, "fp64"), "half": peak_of(results, "bf16")}

    def record(name, fn, peak_key, repeats=None):
        """Time ``fn`` (returns ybar, or (lse, ybar) of lse_average_torch) and record it."""
        if not name.startswith("naive") and not wanted.search(name):
            return
        try:
            peak_mem_reset(dev)
            t, ts = timeit(fn, dev, repeats=repeats or cfg["rep"], warmup=1)
            res = fn()
            lse = None
            if isinstance(res, tuple):
                lse, res = res
            err = float((res.to(torch.float64) - ref).abs().max())
            tf = flops / t / 1e12
            pk = peaks.get(peak_key)
            row = {"ms": t * 1e3, "tflops": tf, "max_abs_err_vs_fp64": err,
                   "max_rel_err_vs_fp64": err / ref_scale,
                   "frac_of_peak": (tf / pk) if pk else None, "peak_key": peak_key,
                   "peak_mem_mib": peak_mem_mib(dev), "all_ms": [u * 1e3 for u in ts]}
            if lse is not None:
                row["lse_max_abs_err_vs_fp64"] = float((lse.to(torch.float64) - ref_lse)
                                                       .abs().max())
            if not math.isfinite(err) or not math.isfinite(row.get("lse_max_abs_err_vs_fp64",
                                                                   0.0)):
                row["error"] = "non-finite output"
            out["variants"][name] = row
            fr = f"{100 * row['frac_of_peak']:5.1f}% of {peak_key}" if pk else ""
            log(f"   {name:28s} {t * 1e3:9.2f} ms {tf:7.1f} TFLOP/s {fr}  err {err:.2e}")
        except Exception as exc:  # noqa: BLE001
            out["variants"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"   {name} FAILED: {type(exc).__name__}: {exc}")

    with eg.tf32_matmul(False):
        record("naive fp32", lambda: naive_esf(x32, y32, a, w, yn32), "fp32")
    with eg.tf32_matmul(True):
        record("naive tf32", lambda: naive_esf(x32, y32, a, w, yn32), "tf32")
    record("naive fp64", lambda: naive_esf(x64, y64, a, w, yn64), "fp64")
    for kb in cfg["key_blocks"]:
        record(f"ours exact fp32 kb={kb}", lambda kb=kb: eg.lse_average_torch(
            x32, y32, a, w, precision="exact", key_block=kb), "fp32")
        record(f"ours exact fp64 kb={kb}", lambda kb=kb: eg.lse_average_torch(
            x64, y64, a, w, precision="exact", key_block=kb), "fp64")
    kb = eg.KEY_BLOCK_ACCEL if dev.type == "cuda" else eg.KEY_BLOCK
    # 3xTF32 (float32 accuracy on TF32 tensor cores), eager tile steps; point tiles swept
    for kb3 in cfg["key_blocks_3x"]:
        record(f"ours 3xtf32 kb={kb3}", lambda kb3=kb3: eg.lse_average_torch(
            x32, y32, a, w, precision="fp32-3xtf32", key_block=kb3), "tf32")
    # 3xTF32 without the centring of the points (larger partial sums: shows what it buys)
    cen = eg._3XTF32_CENTER
    try:
        eg._3XTF32_CENTER = False
        record(f"ours 3xtf32 uncentred kb={kb}", lambda: eg.lse_average_torch(
            x32, y32, a, w, precision="fp32-3xtf32", key_block=kb), "tf32")
    finally:
        eg._3XTF32_CENTER = cen
    # the fused tile step (one compiled function for row max, rescale, exp [and TF32 split]);
    # compile time measured separately (first call), excluded from the timings
    # (point tiles swept: a shorter row may let inductor keep it in registers, one read)
    if cfg["compile_tile"]:
        for name, xx, yy, prec, pk in (("ours fused exact fp32", x32, y32, "exact", "fp32"),
                                       ("ours fused exact fp64", x64, y64, "exact", "fp64"),
                                       ("ours 3xtf32 fused", x32, y32, "fp32-3xtf32", "tf32")):
            if not wanted.search(name):
                continue
            for kbf in cfg["key_blocks_fused"]:
                t0 = time.perf_counter()
                try:
                    eg.lse_average_torch(xx, yy, a, w, precision=prec, key_block=kbf,
                                         fuse="compile")
                    sync(dev)
                except Exception as exc:  # noqa: BLE001
                    eg._FUSED_TILE.setdefault("reason", f"{type(exc).__name__}: {exc}")
                ck = f"compile {name} kb={kbf}"
                out[ck] = {"seconds": time.perf_counter() - t0,
                           "fell_back": bool(eg._FUSED_TILE.get("failed")),
                           "reason": eg._FUSED_TILE.get("reason")}
                log(f"   {ck}: {out[ck]}")
                record(f"{name} kb={kbf}", lambda xx=xx, yy=yy, prec=prec, kbf=kbf:
                       eg.lse_average_torch(xx, yy, a, w, precision=prec, key_block=kbf,
                                            fuse="compile"), pk)
    else:
        out["fused_tile_note"] = ("fused tile step not run: torch.compile off (cpu run without "
                                  "--compile-tile, or --no-compile)")
    for prec, pk in (("tf32", "tf32"), ("fp16", "half"), ("bf16", "half")):
        record(f"ours fast {prec}", lambda p=prec: eg.lse_average_torch(
            x32, y32, a, w, precision=p, key_block=kb)[1], pk)
    for prec, pk in (("fp16", "half"), ("bf16", "half"), ("fp32", "tf32")):
        record(f"ours sdpa {prec}", lambda p=prec: eg.posterior_average_sdpa(
            x32, y32, a, w, precision=p), pk)
    for prec in ("fp16", "bf16"):
        prep = eg.prepare_sdpa_keys(y32, prec)
        record(f"ours sdpa {prec} keys prepared", lambda p=prec, prep=prep:
               eg.posterior_average_sdpa(x32, y32, a, w, precision=p, prepared=prep), "half")
        del prep
    # the fast route (lse_average_fast): centred points, one half / TF32 GEMM with float32
    # output, row max, exp and rounding of the weights (eager passes, or one compiled kernel),
    # one GEMM; posterior mean only (as the naive baseline) unless "+lse"; keys prepared once
    # (time-independent) unless "keys per call"
    fuses = ("eager", "compile") if cfg["compile"] else ("eager",)
    for prec, pk in (("fp16", "half"), ("bf16", "half"), ("tf32", "tf32")):
        if not wanted.search(f"fast-route {prec}"):  # --variants: skip its compile too
            continue
        prep = eg.prepare_fast_keys(y32, prec)
        for fz in fuses if prec != "tf32" else ("eager",):
            if fz == "compile":
                t0 = time.perf_counter()
                try:
                    eg.lse_average_fast(x32, y32, a, w, precision=prec, prepared=prep,
                                        want_lse=False, fuse="compile")
                    sync(dev)
                except Exception as exc:  # noqa: BLE001
                    eg._FUSED["reason"] = f"{type(exc).__name__}: {exc}"
                out[f"fast_compile_{prec}"] = {"seconds": time.perf_counter() - t0,
                                               "fell_back": bool(eg._FUSED.get("failed")),
                                               "reason": eg._FUSED.get("reason")}
                log(f"   fast-route compile {prec}: {out[f'fast_compile_{prec}']}")
            record(f"fast-route {prec} {fz}", lambda p=prec, prep=prep, fz=fz:
                   eg.lse_average_fast(x32, y32, a, w, precision=p, prepared=prep,
                                       want_lse=False, fuse=fz)[1], pk)
        if prec == "fp16":
            fz = fuses[-1]
            record(f"fast-route {prec} {fz} +lse", lambda p=prec, prep=prep, fz=fz:
                   eg.lse_average_fast(x32, y32, a, w, precision=p, prepared=prep,
                                       want_lse=True, fuse=fz)[1], pk)
            record(f"fast-route {prec} {fz} keys per call", lambda p=prec, fz=fz:
                   eg.lse_average_fast(x32, y32, a, w, precision=p, want_lse=False,
                                       fuse=fz)[1], pk)
            fb = cfg["fast_budget"]
            record(f"fast-route {prec} {fz} budget {fb / 2**20:g}MiB",
                   lambda p=prec, prep=prep, fz=fz: eg.lse_average_fast(
                       x32, y32, a, w, precision=p, prepared=prep, want_lse=False,
                       budget_bytes=fb, fuse=fz)[1], pk)
        del prep
    # back-to-back calls (no host sync between calls; check_finite=False for the fast route,
    # whose per-call finiteness check is a host sync): the naive TF32 baseline and the fast
    # route, same timing method, so the ratio is like for like
    stream = {}
    try:
        if not wanted.search("fast-route"):
            raise _Skipped(f"--variants {cfg.get('variants')!r}")
        with eg.tf32_matmul(True):
            stream["naive tf32"] = timeit_stream(lambda: naive_esf(x32, y32, a, w, yn32), dev,
                                                 calls=cfg["stream_calls"])
        fz = fuses[-1]
        for prec in ("fp16", "bf16", "tf32"):
            prep = eg.prepare_fast_keys(y32, prec)
            fzp = fz if prec != "tf32" else "eager"
            stream[f"fast-route {prec} {fzp}"] = timeit_stream(
                lambda p=prec, prep=prep, fzp=fzp: eg.lse_average_fast(
                    x32, y32, a, w, precision=p, prepared=prep, want_lse=False, fuse=fzp,
                    check_finite=False), dev, calls=cfg["stream_calls"])
            del prep
        base = stream["naive tf32"]
        out["back_to_back"] = {k: {"ms": t * 1e3, "tflops": flops / t / 1e12,
                                   "speedup_vs_naive_tf32": base / t} for k, t in stream.items()}
        for k, r in out["back_to_back"].items():
            log(f"   back-to-back {k:26s} {r['ms']:8.2f} ms {r['tflops']:7.1f} TFLOP/s "
                f"x{r['speedup_vs_naive_tf32']:.2f} vs naive tf32")
    except _Skipped as exc:
        out["back_to_back"] = {"skipped": str(exc)}
    except Exception as exc:  # noqa: BLE001
        out["back_to_back"] = {"error": f"{type(exc).__name__}: {exc}", "partial": stream}
        log(f"   back-to-back FAILED: {type(exc).__name__}: {exc}")
    out["sdpa_backends"] = sdpa_backends(dev, d)
    out["mm_out_dtype_fallback"] = {k: (not v) for k, v in eg._MM_OUT_DTYPE_OK.items()}
    # best of each kind, and ratios against the naive anchors
    v = out["variants"]

    def best(prefix):
        rows = [(k, r) for k, r in v.items() if k.startswith(prefix) and "ms" in r]
        return min(rows, key=lambda kr: kr[1]["ms"]) if rows else (None, None)
    summary = {}
    for label, prefix, base in (("exact fp32", "ours exact fp32", "naive fp32"),
                                ("exact fp64", "ours exact fp64", "naive fp64"),
                                ("fast", "ours fast", "naive tf32"),
                                ("sdpa", "ours sdpa", "naive tf32"),
                                ("fast route", "fast-route", "naive tf32"),
                                ("fast route tf32", "fast-route tf32", "naive tf32")):
        k, r = best(prefix)
        if k is not None and "ms" in v.get(base, {}):
            summary[label] = {"best": k, "ms": r["ms"], "tflops": r["tflops"],
                              "err": r["max_abs_err_vs_fp64"],
                              "speedup_vs_" + base.replace(" ", "_"): v[base]["ms"] / r["ms"]}
            log(f"   -> {label:10s}: {k} {r['ms']:.2f} ms, x{v[base]['ms'] / r['ms']:.2f} vs "
                f"{base}")
    # every variant against the three naive anchors of this run
    for k, r in v.items():
        if "ms" not in r:
            continue
        for base in ("naive fp32", "naive tf32", "naive fp64"):
            if "ms" in v.get(base, {}):
                r["x_vs_" + base.replace(" ", "_")] = v[base]["ms"] / r["ms"]
    for label, prefix, base in (("exact fp32 3xtf32", "ours 3xtf32", "naive fp32"),
                                ("exact fp32 fused", "ours fused exact fp32", "naive fp32"),
                                ("exact fp64 fused", "ours fused exact fp64", "naive fp64")):
        k, r = best(prefix)
        if k is not None:
            summary[label] = {"best": k, "ms": r["ms"], "tflops": r["tflops"],
                              "err": r["max_abs_err_vs_fp64"],
                              "rel_err": r["max_rel_err_vs_fp64"],
                              **{kk: vv for kk, vv in r.items() if kk.startswith("x_vs_")}}
            log(f"   -> {label:18s}: {k} {r['ms']:.2f} ms {r['tflops']:.1f} TFLOP/s, "
                f"x{r.get('x_vs_naive_fp32', float('nan')):.2f} / "
                f"x{r.get('x_vs_naive_tf32', float('nan')):.2f} / "
                f"x{r.get('x_vs_naive_fp64', float('nan')):.2f} vs naive fp32 / tf32 / fp64, "
                f"rel err {r['max_rel_err_vs_fp64']:.2e}")
    out["summary"] = summary
    out["targets"] = targets(v)
    for k_, t_ in out["targets"].items():
        log(f"   target {k_}: {t_}")
    del x64, y64, x32, y32, ref
    # memory bound at large n (exact fp32, one run)
    try:
        nb_, nn = cfg["esf_big"]
        peak_mem_reset(dev)
        g = torch.Generator(device=dev).manual_seed(1)
        yb = torch.rand(nn, d, device=dev, dtype=torch.float32, generator=g)
        xb = 0.8 * yb[:nb_] + 2.0 * torch.randn(nb_, d, device=dev, dtype=torch.float32,
                                                generator=g)
        base_mem = peak_mem_mib(dev)
        sync(dev)
        t = time.perf_counter()
        lse, ybar = eg.lse_average_torch(xb, yb, 0.8, 4.0, precision="exact")
        sync(dev)
        t = time.perf_counter() - t
        out["large_n"] = {"B": nb_, "n": nn, "d": d, "seconds": t,
                          "tflops": 4.0 * nb_ * nn * d / t / 1e12,
                          "peak_mem_mib": peak_mem_mib(dev), "inputs_mib": base_mem,
                          "B_x_n_fp32_mib": nb_ * nn * 4 / 2**20,
                          "finite": bool(torch.isfinite(ybar).all())}
        log(f"   large n={nn}: {t:.3f} s, peak mem {out['large_n']['peak_mem_mib']} MiB "
            f"(a B x n fp32 matrix would be {out['large_n']['B_x_n_fp32_mib']:.0f} MiB)")
        del ybar
        # the fast route at large n (points tiled, tiles merged by their log-sum-exp)
        peak_mem_reset(dev)
        sync(dev)
        t = time.perf_counter()
        _, ybar = eg.lse_average_fast(xb, yb, 0.8, 4.0, precision="fp16", fuse="eager")
        sync(dev)
        t = time.perf_counter() - t
        out["large_n_fast_fp16"] = {"B": nb_, "n": nn, "d": d, "seconds": t,
                                    "tflops": 4.0 * nb_ * nn * d / t / 1e12,
                                    "peak_mem_mib": peak_mem_mib(dev),
                                    "finite": bool(torch.isfinite(ybar).all())}
        log(f"   large n={nn} fast fp16 (keys per tile): {t:.3f} s, peak mem "
            f"{out['large_n_fast_fp16']['peak_mem_mib']} MiB")
        del yb, xb, ybar
    except Exception as exc:  # noqa: BLE001
        out["large_n"] = {"error": f"{type(exc).__name__}: {exc}"}
        log(f"   large n FAILED: {exc}")
    return out


def targets(v):
    """Issue 11's targets from this run's rows: float64 >= 50 TFLOP/s (best exact fp64, plain or
    fused); float32-accurate >= 45 TFLOP/s (best of exact fp32, fused exact fp32 and 3xTF32 --
    3xTF32 counts only when its ybar error is within 4x the exact fp32 route's, the criterion of
    tests/models/test_esf_3xtf32.py); fast path >= 2x naive TF32 (best "ours fast" /
    "fast-route" row)."""
    def rows(*prefixes):
        return [(k, r) for k, r in v.items() if "ms" in r and k.startswith(prefixes)]

    out = {}
    f64 = rows("ours exact fp64", "ours fused exact fp64")
    if f64:
        k, r = max(f64, key=lambda kr: kr[1]["tflops"])
        out["fp64 >= 50 TFLOP/s"] = {"best": k, "tflops": r["tflops"], "met": r["tflops"] >= 50}
    e32 = rows("ours exact fp32", "ours fused exact fp32")
    ref_err = min((r["max_abs_err_vs_fp64"] for _, r in e32), default=None)
    acc32 = list(e32)
    for k, r in rows("ours 3xtf32"):
        ok = ref_err is not None and r["max_abs_err_vs_fp64"] <= 4 * max(ref_err, 1e-12)
        r["float32_accurate"] = ok
        if ok:
            acc32.append((k, r))
    if acc32:
        k, r = max(acc32, key=lambda kr: kr[1]["tflops"])
        out["exact fp32 >= 45 TFLOP/s"] = {"best": k, "tflops": r["tflops"],
                                           "err": r["max_abs_err_vs_fp64"],
                                           "exact_fp32_err": ref_err, "met": r["tflops"] >= 45}
    fast = rows("ours fast", "fast-route")
    if fast and "ms" in v.get("naive tf32", {}):
        k, r = min(fast, key=lambda kr: kr[1]["ms"])
        x = v["naive tf32"]["ms"] / r["ms"]
        out["fast >= 2x naive tf32"] = {"best": k, "x": x, "met": x >= 2}
    return out


def sdpa_backends(dev, d):
    """Which fused SDPA kernels accept the route's shapes (head dim pad8(d + 3)), per dtype."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:
        return {"error": "torch.nn.attention unavailable"}
    import torch.nn.functional as F

    res = {}
    dd = eg._pad8(d + 3)
    for dt in (torch.float16, torch.bfloat16, torch.float32):
        q = torch.randn(1, 1, 64, dd, device=dev, dtype=dt)
        for be in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"):
            if not hasattr(SDPBackend, be):
                continue
            try:
                with sdpa_kernel(getattr(SDPBackend, be)):
                    F.scaled_dot_product_attention(q, q, q, scale=0.1)
                ok = True
            except Exception:  # noqa: BLE001
                ok = False
            res[f"{str(dt).split('.')[-1]}:{be}"] = ok
    return res


# ---- (b) mixture score -------------------------------------------------------------------------
def make_mixture(k=16, d=2, seed=0):
    from sftheory import GaussianMixture

    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(k))
    mu = 4 * rng.normal(size=(k, d))
    a = rng.normal(size=(k, d, d))
    cov = a @ np.swapaxes(a, 1, 2) / d + 0.2 * np.eye(d)
    return GaussianMixture(w, mu, cov)


def bench_mixture(dev, cfg):
    from sftheory._kernels import mixture as nb
    from sftheory.backend import get_backend
    from sftheory.models import _formulas

    n = cfg["mix_n"]
    gm = make_mixture()
    p = gm._params
    m, v = 0.7, 0.5
    g = torch.Generator(device=dev).manual_seed(2)
    x64 = 3 * torch.randn(n, 2, device=dev, dtype=torch.float64, generator=g)
    nsub = min(n, 100_000)
    xs_np = x64[:nsub].cpu().numpy()
    _, ref_sub = nb.evaluate(xs_np, m, v, nb.kernel_layout(p.means, p.logw, p.lam, p.rot), False)
    out = {"N": n, "K": 16, "d": 2, "m": m, "v": v, "variants": {}}
    for dtn, dt in (("fp32", torch.float32), ("fp64", torch.float64)):
        x = x64.to(dt)
        tens = tm.mixture_tensors(p, x)
        nx = get_backend(x)
        mt = torch.tensor(m, dtype=dt, device=dev)
        vt = torch.tensor(v, dtype=dt, device=dev)
        variants = [("naive", lambda: _formulas.mixture_path_eval(nx, x, m, v, *tens, False)),
                    ("eager", lambda: tm.mixture_eval(x, mt, vt, *tens, False,
                                                      overflow="ignore"))]
        if cfg["compile"]:
            cm = tm.CompiledMixture(dynamic=False)
            t0 = time.perf_counter()
            try:
                tm.mixture_eval(x, mt, vt, *tens, False, overflow="ignore", compiled=cm)
                sync(dev)
            except Exception as exc:  # noqa: BLE001
                cm.reason = f"{type(exc).__name__}: {exc}"
            out[f"compile_{dtn}"] = {"seconds": time.perf_counter() - t0,
                                     "compiled": cm.is_compiled, "reason": cm.reason}
            log(f"   compile {dtn}: {time.perf_counter() - t0:.1f} s, compiled={cm.is_compiled}"
                f" {cm.reason or ''}")
            variants.append(("compiled", lambda cm=cm: tm.mixture_eval(
                x, mt, vt, *tens, False, overflow="ignore", compiled=cm)))
        for name, fn in variants:
            key = f"{name} {dtn}"
            try:
                peak_mem_reset(dev)
                t, _ = timeit(fn, dev, repeats=cfg["rep"], warmup=1)
                res = fn()[1][:nsub].to(torch.float64).cpu().numpy()
                err = float(np.max(np.abs(res - ref_sub) / np.maximum(np.abs(ref_sub), 1.0)))
                out["variants"][key] = {"ms": t * 1e3, "evals_per_s": n / t,
                                        "max_rel_err_vs_numba": err,
                                        "peak_mem_mib": peak_mem_mib(dev)}
                log(f"   {key:14s} {t * 1e3:9.2f} ms {n / t:10.3e} evals/s  rel err {err:.2e}")
            except Exception as exc:  # noqa: BLE001
                out["variants"][key] = {"error": f"{type(exc).__name__}: {exc}"}
                log(f"   {key} FAILED: {type(exc).__name__}: {exc}")
    v_ = out["variants"]
    for dtn in ("fp32", "fp64"):
        for name in ("eager", "compiled"):
            k = f"{name} {dtn}"
            if "ms" in v_.get(k, {}) and "ms" in v_.get(f"naive {dtn}", {}):
                v_[k]["speedup_vs_naive"] = v_[f"naive {dtn}"]["ms"] / v_[k]["ms"]
                log(f"   -> {k}: x{v_[k]['speedup_vs_naive']:.2f} vs naive {dtn}")
    return out


# ---- (c) sampling ------------------------------------------------------------------------------------
def em_coefficients(steps, t_hi=3.0, t_lo=0.01):
    from sftheory import OU
    from sftheory.samplers._core import euler_maruyama_coefficients

    proc = OU()
    ts = np.linspace(t_hi, t_lo, steps + 1)
    al, be, sg = euler_maruyama_coefficients(proc, ts, None)
    ms = np.array([proc.mean_coef(t) for t in ts[:-1]])
    vs = np.array([proc.var(t) for t in ts[:-1]])
    return al, be, sg, ms, vs


def bench_sampling(dev, cfg):
    n, steps = cfg["sample"]
    gm = make_mixture()
    out = {"particles": n, "steps": steps, "dtype": "float32", "variants": {}}
    al, be, sg, ms, vs = em_coefficients(steps)
    # start from the exact p_T (a N(0, v) start would leave a bias of the prior's mean in the
    # final sample, which the mean check below would report as a sampler error)
    from sftheory import OU
    x0 = torch.from_numpy(gm.marginal(OU(), 3.0).sample(n, seed=0)).to(dev, torch.float32)
    tens = tm.mixture_tensors(gm._params, x0)
    # "-indexed": the counter-based noise of IndexedNoise (Threefry normals keyed by particle and
    # step: what sharded runs use off the numba route) instead of the device generator
    modes = [("compiled", True, False), ("compiled-indexed", True, True)] if cfg["compile"] \
        else []
    modes += [("eager", False, False), ("eager-indexed", False, True)]
    for name, comp, indexed in modes:
        if not comp and cfg["compile"] and over_budget():
            out["variants"][name] = {"skipped": f"over the {SOFT_BUDGET_S:.0f} s soft budget"}
            log(f"   {name}: skipped (time budget)")
            continue
        try:
            info = {}
            t0 = time.perf_counter()
            w = cfg["sample_warm"]
            def noise_kw(seed):
                if indexed:
                    return {"indexed_noise": (seed, 0, 0)}
                return {"generator": torch.Generator(device=dev).manual_seed(seed)}

            tm._em_sample_mixture(x0, al[:w], be[:w], sg[:w], ms[:w], vs[:w], *tens,
                                  compile=comp, compile_kwargs={"dynamic": False}, info=info,
                                  **noise_kw(1))
            sync(dev)
            warm_s = time.perf_counter() - t0
            kw = noise_kw(2)
            sync(dev)
            t0 = time.perf_counter()
            xT = tm._em_sample_mixture(x0, al, be, sg, ms, vs, *tens, compile=comp,
                                       compile_kwargs={"dynamic": False}, info=info, **kw)
            sync(dev)
            t = time.perf_counter() - t0
            # sanity (information only; includes the EM bias): the sample mean against the mean
            # of the law at the last step's end, m(t_end) * sum_k w_k mu_k, SE-scaled
            from sftheory import OU
            mean_true = OU().mean_coef(0.01) * (gm.weights[:, None] * gm.means).sum(0)
            xm = xT.double().mean(0).cpu().numpy()
            sd = xT.double().std(0).cpu().numpy()
            z = (xm - mean_true) / (sd / math.sqrt(n))
            out["variants"][name] = {"seconds": t, "warmup_seconds": warm_s,
                                     "particle_steps_per_s": n * steps / t,
                                     "compiled": info.get("compiled"),
                                     "compile_reason": info.get("compile_reason"),
                                     "mean_z_vs_target": z.tolist()}
            log(f"   {name:9s}: {t:.3f} s for {n} x {steps} steps ({n * steps / t:.3e} "
                f"particle-steps/s), warm-up {warm_s:.1f} s, compiled={info.get('compiled')}, "
                f"mean z {np.round(z, 1)}")
        except Exception as exc:  # noqa: BLE001
            out["variants"][name] = failure(name, exc, 2000)
    v = out["variants"]
    if "seconds" in v.get("compiled", {}) and "seconds" in v.get("eager", {}):
        v["compiled"]["speedup_vs_eager"] = v["eager"]["seconds"] / v["compiled"]["seconds"]
    for mode in ("compiled", "eager"):
        a, b = v.get(mode, {}), v.get(f"{mode}-indexed", {})
        if "seconds" in a and "seconds" in b:
            b["cost_vs_generator"] = b["seconds"] / a["seconds"]
    return out


# ---- (f) ScoreFusion's Monte Carlo on the device ---------------------------------------------------
def bench_fusion(dev, cfg):
    from sftheory import OU
    from sftheory.fusion import score_fusion
    from sftheory.models import Gaussian

    n, d, n_mc = cfg["fusion"]
    rng = np.random.default_rng(0)
    X = rng.random((n, d))
    # target uniform on [0, 1]^d (mean 1/2, variance 1/12): the fitted weights are interior,
    # about (0.27, 0.27, 0.47) at d = 784 (a corner solution would test less of the QP)
    aux = [Gaussian(np.full(d, c), np.full(d, s)) for c, s in ((0.4, 0.06), (0.6, 0.06),
                                                                (0.5, 0.12))]
    out = {"n_target": n, "dim": d, "n_mc": n_mc, "k": len(aux), "variants": {}}
    Xd = torch.from_numpy(X).to(dev)
    runs = [("device-generator", Xd, "generator"), ("device-indexed", Xd, "indexed"),
            ("numpy-cpu", X, "generator")]
    res = {}
    for name, x, draws in runs:
        try:
            kw = dict(n_mc=n_mc, seed=1, n_boot=0, draws=draws)
            score_fusion(aux, x[:1000] if not is_small(cfg) else x, OU(), 0.5,
                         **{**kw, "n_mc": 256})  # warm-up (kernels, caches)
            sync(dev)
            t0 = time.perf_counter()
            r = score_fusion(aux, x, OU(), 0.5, **kw)
            sync(dev)
            t = time.perf_counter() - t0
            res[name] = r
            out["variants"][name] = {"seconds": t, "draws_per_s": n_mc / t,
                                     "weights": np.asarray(r.weights).tolist()}
            log(f"   {name:16s}: {t:.3f} s ({n_mc / t:.3e} draws/s), weights "
                f"{np.round(r.weights, 4)}")
        except Exception as exc:  # noqa: BLE001
            out["variants"][name] = failure(name, exc, 2000)
    v = out["variants"]
    if "seconds" in v.get("device-generator", {}) and "seconds" in v.get("device-indexed", {}):
        v["device-indexed"]["speedup_vs_generator"] = (v["device-generator"]["seconds"]
                                                       / v["device-indexed"]["seconds"])
    if "seconds" in v.get("numpy-cpu", {}):
        for name in ("device-generator", "device-indexed"):
            if "seconds" in v.get(name, {}):
                v[name]["speedup_vs_numpy_cpu"] = v["numpy-cpu"]["seconds"] / v[name]["seconds"]
    if "device-generator" in res and "numpy-cpu" in res:  # same draws: parity
        a, b = res["device-generator"], res["numpy-cpu"]
        out["gram_parity_device_vs_numpy"] = float(np.max(np.abs(a.gram - b.gram))
                                                   / np.max(np.abs(b.gram)))
    if "device-generator" in res and "device-indexed" in res:  # independent draws: in SE
        a, b = res["device-generator"], res["device-indexed"]
        out["gram_indexed_vs_generator_max_z"] = float(np.max(
            np.abs(a.gram - b.gram) / np.hypot(a.gram_se, b.gram_se)))
    log(f"   G parity device/numpy {out.get('gram_parity_device_vs_numpy')}, indexed vs "
        f"generator max z {out.get('gram_indexed_vs_generator_max_z')}")
    return out


def is_small(cfg) -> bool:
    return cfg["fusion"][0] < 10_000


# ---- (e) CPU numba ----------------------------------------------------------------------------------
def bench_cpu(cfg):
    import numba

    from sftheory import OU
    from sftheory._kernels import mixture as nb
    from sftheory.backend import get_backend
    from sftheory.samplers import sample_euler_maruyama

    out = {"numba_threads": numba.get_num_threads(), "cpu_count": os.cpu_count()}
    gm = make_mixture()
    p = gm._params
    lay = nb.kernel_layout(p.means, p.logw, p.lam, p.rot)
    n = cfg["cpu_mix_n"]
    x = 3 * np.random.default_rng(3).normal(size=(n, 2))
    cpu = torch.device("cpu")
    nb.evaluate(x[:1000], 0.7, 0.5, lay, False)
    t, _ = timeit(lambda: nb.evaluate(x, 0.7, 0.5, lay, False), cpu, repeats=3)
    out["mixture_numba_fp64"] = {"N": n, "ms": t * 1e3, "evals_per_s": n / t}
    log(f"   numba mixture fp64 N={n}: {t * 1e3:.1f} ms, {n / t:.3e} evals/s")
    b, nn, d = cfg["cpu_esf"]
    xt, yt, a, w = esf_problem(cpu, b, nn, d)
    xnp, ynp = xt.numpy(), yt.numpy()
    store = eg.EmpiricalStore(ynp)
    nx = get_backend(xnp)
    eg.evaluate_empirical(nx, xnp[:8], a, w, True, store)
    t, _ = timeit(lambda: eg.evaluate_empirical(nx, xnp, a, w, True, store), cpu, repeats=2)
    out["empirical_numpy_blas_fp64"] = {"B": b, "n": nn, "d": d, "ms": t * 1e3,
                                        "tflops": 4.0 * b * nn * d / t / 1e12}
    log(f"   CPU empirical fp64 B={b} n={nn} d={d}: {t * 1e3:.1f} ms "
        f"({out['empirical_numpy_blas_fp64']['tflops']:.3f} TFLOP/s)")
    if not cfg["cpu_sampler"]:
        out["sampling_numba_fp64"] = {"skipped": "--small: the fused numba sampler's JIT compile "
                                      "(30-60 s on 2 shared cores) would dominate the smoke run"}
        log("   numba EM: skipped (--small)")
        return out
    if over_budget():
        out["sampling_numba_fp64"] = {"skipped": f"over the {SOFT_BUDGET_S:.0f} s soft budget"}
        log("   numba EM: skipped (time budget)")
        return out
    np_, steps = cfg["cpu_sample"]
    proc = OU()
    ts = np.linspace(3.0, 0.01, steps + 1)
    x0 = np.random.default_rng(4).normal(size=(np_, 2)) * math.sqrt(proc.var(3.0))
    path = gm.path(proc)
    sample_euler_maruyama(path, x0[:100], ts[:3], proc, seed=0)
    t0 = time.perf_counter()
    sample_euler_maruyama(path, x0, ts, proc, seed=1)
    t = time.perf_counter() - t0
    out["sampling_numba_fp64"] = {"particles": np_, "steps": steps, "seconds": t,
                                  "particle_steps_per_s": np_ * steps / t}
    log(f"   numba EM fp64 {np_} x {steps}: {t:.2f} s ({np_ * steps / t:.3e} particle-steps/s)")
    return out


def ratios(results):
    """Device vs CPU numba (rates), printed and stored; each ratio on its own (a missing section
    leaves only its ratio out)."""
    r = {}

    def one(name, fn):
        try:
            r[name] = fn()
        except Exception as exc:  # noqa: BLE001
            r[name] = {"unavailable": f"{type(exc).__name__}: {exc}"}

    def mix():
        mixv = results["mixture"]["variants"]
        best = max((v["evals_per_s"], k) for k, v in mixv.items()
                   if "evals_per_s" in v and k.endswith("fp64"))
        return {"best": best[1],
                "ratio": best[0] / results["cpu"]["mixture_numba_fp64"]["evals_per_s"]}

    def emp():
        e = results["empirical"]["summary"]["exact fp64"]
        return {"best": e["best"],
                "ratio": e["tflops"] / results["cpu"]["empirical_numpy_blas_fp64"]["tflops"]}

    def samp():
        sv = results["sampling"]["variants"]
        best = max((v["particle_steps_per_s"], k) for k, v in sv.items() if "seconds" in v)
        cpu = results["cpu"]["sampling_numba_fp64"]["particle_steps_per_s"]
        return {"best": best[1], "ratio": best[0] / cpu}

    one("mixture_fp64_best_vs_numba", mix)
    one("empirical_exact_fp64_vs_cpu_numpy_blas", emp)
    one("sampling_best_vs_numba_fused", samp)
    for k, v in r.items():
        log(f"   ratio {k}: {v}")
    return r


CONFIGS = {
    "full": {"gemm_n": 8192, "rep_gemm": 5, "rep": 5, "esf": (4096, 60000, 784),
             "key_blocks": (1024, 2048, 4096, 8192), "key_blocks_3x": (2048, 4096),
             "key_blocks_fused": (1024, 2048),
             "esf_big": (4096, 1_000_000),
             "fast_budget": 2**28, "stream_calls": 10,
             "mix_n": 4_000_000, "sample": (1_000_000, 1000), "sample_warm": 3,
             "cpu_mix_n": 1_000_000, "cpu_esf": (256, 60000, 784), "cpu_sample": (20000, 200),
             "cpu_sampler": True, "fusion": (60000, 784, 16384)},
    "small": {"gemm_n": 512, "rep_gemm": 3, "rep": 3, "esf": (256, 2000, 64),
              "key_blocks": (512, 4096), "key_blocks_3x": (512, 4096),
              "key_blocks_fused": (4096,), "esf_big": (64, 20000),
              "fast_budget": 2**18, "stream_calls": 2, "mix_n": 20000,
              "sample": (2000, 20), "sample_warm": 2, "cpu_mix_n": 20000,
              "cpu_esf": (64, 2000, 64), "cpu_sample": (2000, 20), "cpu_sampler": False,
              "fusion": (500, 16, 2048)},
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--small", action="store_true", help="tiny sizes (CPU smoke run)")
    ap.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "gpu.json"))
    ap.add_argument("--no-compile", action="store_true",
                    help="skip torch.compile (default: compile on cuda, not on cpu)")
    ap.add_argument("--sections", default="peak,empirical,mixture,sampling,cpu")
    ap.add_argument("--variants", default="",
                    help="regex: run only the empirical variants whose name matches (the naive "
                         "baselines always run), e.g. 'exact|3xtf32|fused'")
    ap.add_argument("--compile-tile", action="store_true",
                    help="run the fused (torch.compile) tile step of the exact / 3xTF32 routes "
                         "even on cpu (inductor C++ build, ~20 s per graph)")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but torch.cuda.is_available() is False")
    dev = torch.device(args.device)
    cfg = dict(CONFIGS["small" if args.small else "full"])
    cfg["compile"] = args.device == "cuda" and not args.no_compile
    cfg["compile_tile"] = cfg["compile"] or (args.compile_tile and not args.no_compile)
    cfg["variants"] = args.variants
    results = {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
               "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else
               platform.processor() or platform.machine(),
               "torch": torch.__version__, "python": sys.version.split()[0],
               "numpy": np.__version__, "cuda": torch.version.cuda,
               "triton": _version("triton"), "numba": _version("numba"),
               "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if not cfg["compile"]:
        results["compile_note"] = ("torch.compile skipped: " + ("--no-compile" if args.no_compile
                                   else "cpu run (inductor's C++ build takes ~30 s per graph on "
                                   "small CPUs; the compiled path is tested in "
                                   "tests/models/test_torch_scale.py -m slow)"))
    log(f"device {results['device']}, torch {torch.__version__}, config "
        f"{'small' if args.small else 'full'}")
    wanted = args.sections.split(",")
    secs = {"peak": (bench_peak, dev, cfg), "empirical": (bench_empirical, dev, cfg, results),
            "mixture": (bench_mixture, dev, cfg), "sampling": (bench_sampling, dev, cfg),
            "cpu": (bench_cpu, cfg), "fusion": (bench_fusion, dev, cfg)}
    for name in ("peak", "empirical", "mixture", "sampling", "cpu", "fusion"):
        if name in wanted:
            fn, *a = secs[name]
            section(results, name, fn, *a)
    results["ratios_device_vs_cpu"] = ratios(results)
    results["total_seconds"] = time.perf_counter() - T0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    log(f"wrote {out} (total {results['total_seconds']:.1f} s)")
    return results


def _version(mod):
    try:
        return __import__(mod).__version__
    except Exception:  # noqa: BLE001
        return None


if __name__ == "__main__":
    main()
