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
The full-covariance kernel stores parameters component-minor ((d, K), (d, d, K); see
:func:`kernel_layout`) so its inner loops run over components with unit stride and vectorize;
the isotropic kernel (empirical laws, up to 1e5+ components) keeps (K, d) and skips components
whose weight underflows. ``fastmath`` stays off: these kernels verify claims.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

BLOCK = 256  # points per block; each thread walks its blocks with one set of scratch arrays
PARALLEL_MIN_WORK = 1 << 16  # N*K*d below which one thread is faster than waking the pool


@njit(parallel=True, cache=True, error_model="numpy")
def mixture_full(x, means_t, whiten_t, lognorm, off_t, mat_t, nthreads, out_logpdf, out_vec):  # pragma: no cover
    # Component-minor layout: means_t (d, K), whiten_t (d, d, K), off_t (d, K) or (d, 0),
    # mat_t (d, d, K), so every inner loop runs over components with unit stride (SIMD).
    n, d = x.shape
    k_count = means_t.shape[1]
    has_off = off_t.shape[1] == k_count
    nblocks = (n + BLOCK - 1) // BLOCK
    for tid in prange(nthreads):
        diff = np.empty((d, k_count), dtype=np.float64)
        z = np.empty((d, k_count), dtype=np.float64)
        lp = np.empty(k_count, dtype=np.float64)
        tmp = np.empty(k_count, dtype=np.float64)
        for blk in range(tid, nblocks, nthreads):
            start = blk * BLOCK
            stop = min(start + BLOCK, n)
            for i in range(start, stop):
                for b in range(d):
                    xb = x[i, b]
                    for k in range(k_count):
                        diff[b, k] = xb - means_t[b, k]
                # z_k = U_k (x - mu_k) (U_k lower triangular); q_k = |z_k|^2
                for k in range(k_count):
                    lp[k] = 0.0
                for a in range(d):
                    for k in range(k_count):
                        z[a, k] = 0.0
                    for b in range(a + 1):
                        for k in range(k_count):
                            z[a, k] += whiten_t[a, b, k] * diff[b, k]
                    for k in range(k_count):
                        lp[k] += z[a, k] * z[a, k]
                mx = -np.inf
                for k in range(k_count):
                    lp[k] = lognorm[k] - 0.5 * lp[k]  # -inf for a zero weight
                    if lp[k] > mx:
                        mx = lp[k]
                tot = 0.0
                for k in range(k_count):
                    lp[k] = np.exp(lp[k] - mx)  # now the unnormalized weight
                    tot += lp[k]
                out_logpdf[i] = mx + np.log(tot)
                # sum_k w_k (off_k + M_k z_k), one output coordinate at a time
                for a in range(d):
                    for k in range(k_count):
                        tmp[k] = off_t[a, k] if has_off else 0.0
                    for b in range(d):
                        for k in range(k_count):
                            tmp[k] += mat_t[a, b, k] * z[b, k]
                    s = 0.0
                    for k in range(k_count):
                        s += lp[k] * tmp[k]
                    out_vec[i, a] = s / tot


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


def kernel_layout(means, factor, lognorm, kind: str, off, mat) -> tuple:
    """Arrays in the layout the kernel for ``kind`` takes (component-minor for "full").

    ``means`` (K, d); ``factor`` (K, d, d) or (K,); ``off`` (K, d) or None; ``mat`` (K, d, d) or
    (K,). Computed once per model and dtype by the caller and reused for every call.
    """
    d = means.shape[1]
    if off is None:
        off = np.zeros((0, d), dtype=means.dtype)
    if kind == "full":
        t2 = lambda a: np.ascontiguousarray(a.T)  # noqa: E731  (K, d) -> (d, K)
        t3 = lambda a: np.ascontiguousarray(np.transpose(a, (1, 2, 0)))  # noqa: E731
        return kind, t2(means), t3(factor), np.ascontiguousarray(lognorm), t2(off), t3(mat)
    c = np.ascontiguousarray
    return kind, c(means), c(factor), c(lognorm), c(off), c(mat)


def evaluate(x: np.ndarray, layout: tuple):
    """Run the kernel on points x (N, d) with arrays from :func:`kernel_layout`;
    returns (logpdf (N,), average (N, d))."""
    kind, means, factor, lognorm, off, mat = layout
    n, d = x.shape
    k_count = lognorm.shape[0]
    out_lp = np.empty(n, dtype=x.dtype)
    out_vec = np.empty((n, d), dtype=x.dtype)
    if n == 0:
        return out_lp, out_vec
    x = np.ascontiguousarray(x)
    kern = mixture_full if kind == "full" else mixture_iso
    threads = numba.get_num_threads()
    nthreads = min(threads, (n + BLOCK - 1) // BLOCK)
    if nthreads > 1 and n * k_count * d >= PARALLEL_MIN_WORK:
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
