"""Numba kernels: log-density of a Gaussian mixture and a responsibility-weighted average of
per-component affine functions of the whitened residual, at N points.

The formula is :func:`sftheory.models._formulas.mixture_logpdf_expect`; this is its compiled
realization: per point, pass 1 computes the component log-densities and their max, pass 2 the
weights exp(l_k - max) and the sums, so nothing overflows or underflows for t = 1e-8,
|x| = 1e4 or 1e5 components. Parallel over blocks of points. Components are given by whitening
factors U_k (U_k^T U_k = Sigma_k^{-1}, lower triangular, ``full``) or scalars c_k
(Sigma_k = c_k^{-2} I, ``iso``), with ``lognorm_k = log w_k + log|det U_k| - d/2 log 2 pi``.
The averaged quantity is ``off_k + mat_k z_k`` with z_k = U_k (x - mu_k): the score takes
off = 0, mat = -U_k^T; the posterior mean takes off = prior mean, mat = m Sigma0_k U_k^T.
``fastmath`` stays off: these kernels verify claims.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

BLOCK = 256  # points per block; each thread walks its blocks with one set of scratch arrays
PARALLEL_MIN_WORK = 1 << 16  # N*K*d below which one thread is faster than waking the pool


@njit(parallel=True, cache=True, error_model="numpy")
def mixture_full(x, means, whiten, lognorm, off, mat, nthreads, out_logpdf, out_vec):  # pragma: no cover
    n, d = x.shape
    k_count = means.shape[0]
    has_off = off.shape[0] == k_count
    nblocks = (n + BLOCK - 1) // BLOCK
    for tid in prange(nthreads):
        lp = np.empty(k_count, dtype=np.float64)
        z = np.empty((k_count, d), dtype=np.float64)
        acc = np.empty(d, dtype=np.float64)
        for blk in range(tid, nblocks, nthreads):
            start = blk * BLOCK
            stop = min(start + BLOCK, n)
            for i in range(start, stop):
                # pass 1: whitened residuals z_k = U_k (x - mu_k) and log-densities, their max
                mx = -np.inf
                for k in range(k_count):
                    q = 0.0
                    for a in range(d):
                        s = 0.0
                        for b in range(a + 1):
                            s += whiten[k, a, b] * (x[i, b] - means[k, b])
                        z[k, a] = s
                        q += s * s
                    val = lognorm[k] - 0.5 * q  # -inf for a zero weight
                    lp[k] = val
                    if val > mx:
                        mx = val
                # pass 2: weights exp(l_k - max) and the weighted sums
                tot = 0.0
                for a in range(d):
                    acc[a] = 0.0
                for k in range(k_count):
                    w = np.exp(lp[k] - mx)
                    tot += w
                    for a in range(d):
                        g = off[k, a] if has_off else 0.0
                        for b in range(d):
                            g += mat[k, a, b] * z[k, b]
                        acc[a] += w * g
                out_logpdf[i] = mx + np.log(tot)
                for a in range(d):
                    out_vec[i, a] = acc[a] / tot


@njit(parallel=True, cache=True, error_model="numpy")
def mixture_iso(x, means, prec_sqrt, lognorm, off, mat, nthreads, out_logpdf, out_vec):  # pragma: no cover
    n, d = x.shape
    k_count = means.shape[0]
    has_off = off.shape[0] == k_count
    nblocks = (n + BLOCK - 1) // BLOCK
    for tid in prange(nthreads):
        lp = np.empty(k_count, dtype=np.float64)
        acc = np.empty(d, dtype=np.float64)
        for blk in range(tid, nblocks, nthreads):
            start = blk * BLOCK
            stop = min(start + BLOCK, n)
            for i in range(start, stop):
                mx = -np.inf
                for k in range(k_count):
                    c = prec_sqrt[k]
                    q = 0.0
                    for b in range(d):
                        r = c * (x[i, b] - means[k, b])
                        q += r * r
                    val = lognorm[k] - 0.5 * q
                    lp[k] = val
                    if val > mx:
                        mx = val
                tot = 0.0
                for b in range(d):
                    acc[b] = 0.0
                for k in range(k_count):
                    w = np.exp(lp[k] - mx)
                    if w == 0.0:  # most of 1e5 components at small t: skip their d-loop
                        continue
                    tot += w
                    cm = mat[k] * prec_sqrt[k]
                    for b in range(d):
                        g = cm * (x[i, b] - means[k, b])
                        if has_off:
                            g += off[k, b]
                        acc[b] += w * g
                out_logpdf[i] = mx + np.log(tot)
                for b in range(d):
                    out_vec[i, b] = acc[b] / tot


def evaluate(x: np.ndarray, means, factor, lognorm, kind: str, off, mat):
    """Run the kernel for ``kind`` in {"full", "iso"}; returns (logpdf (N,), average (N, d)).

    ``off`` is (K, d) or None (zero offsets); ``mat`` is (K, d, d) for "full", (K,) for "iso".
    """
    n, d = x.shape
    out_lp = np.empty(n, dtype=x.dtype)
    out_vec = np.empty((n, d), dtype=x.dtype)
    if n == 0:
        return out_lp, out_vec
    x = np.ascontiguousarray(x)
    if off is None:
        off = np.zeros((0, d), dtype=means.dtype)
    kern = mixture_full if kind == "full" else mixture_iso
    threads = numba.get_num_threads()
    nthreads = min(threads, (n + BLOCK - 1) // BLOCK)
    if nthreads > 1 and n * means.shape[0] * d >= PARALLEL_MIN_WORK:
        kern(x, means, factor, lognorm, off, mat, nthreads, out_lp, out_vec)
    else:
        # small calls (an ODE solver's one point) run on the calling thread only: waking the
        # pool costs more than the work, and far more when the cores are busy
        numba.set_num_threads(1)
        try:
            kern(x, means, factor, lognorm, off, mat, 1, out_lp, out_vec)
        finally:
            numba.set_num_threads(threads)
    return out_lp, out_vec
