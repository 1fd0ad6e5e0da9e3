"""Numba kernels: log-density and score of a Gaussian mixture at N points.

The formula is :func:`sftheory.models._formulas.mixture_logpdf_score` ([SF] Sec. 2; Tweedie);
this is its compiled realization, one pass over components per point, parallel over blocks of
points. Components are given by whitening factors U_k with U_k^T U_k = Sigma_k^{-1}
(lower triangular, ``full``) or by scalars c_k with Sigma_k = c_k^{-2} I (``iso``);
``lognorm_k = log w_k + log|det U_k| - d/2 log(2 pi)``.

Log-sum-exp is two-pass per point (max, then weighted sums), so nothing overflows or underflows
for t = 1e-8, |x| = 1e4 or 1e5 components. ``fastmath`` stays off: these kernels verify claims.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

BLOCK = 256  # points per parallel task; amortizes scratch allocation


@njit(parallel=True, cache=True, error_model="numpy")
def mixture_full(x, means, whiten, lognorm, out_logpdf, out_score):  # pragma: no cover - compiled
    n, d = x.shape
    k_count = means.shape[0]
    nblocks = (n + BLOCK - 1) // BLOCK
    for blk in prange(nblocks):
        lp = np.empty(k_count, dtype=x.dtype)
        z = np.empty(d, dtype=x.dtype)
        acc = np.empty(d, dtype=x.dtype)
        start = blk * BLOCK
        stop = min(start + BLOCK, n)
        for i in range(start, stop):
            mx = -np.inf
            for k in range(k_count):
                if lognorm[k] == -np.inf:
                    lp[k] = -np.inf
                    continue
                q = 0.0
                for a in range(d):
                    s = 0.0
                    for b in range(a + 1):
                        s += whiten[k, a, b] * (x[i, b] - means[k, b])
                    q += s * s
                val = lognorm[k] - 0.5 * q
                lp[k] = val
                if val > mx:
                    mx = val
            tot = 0.0
            for b in range(d):
                acc[b] = 0.0
            for k in range(k_count):
                if lp[k] == -np.inf:
                    continue
                w = np.exp(lp[k] - mx)
                if w == 0.0:
                    continue
                tot += w
                for a in range(d):
                    s = 0.0
                    for b in range(a + 1):
                        s += whiten[k, a, b] * (x[i, b] - means[k, b])
                    z[a] = s
                # component score -U^T z, weighted
                for b in range(d):
                    g = 0.0
                    for a in range(b, d):
                        g += whiten[k, a, b] * z[a]
                    acc[b] -= w * g
            out_logpdf[i] = mx + np.log(tot)
            for b in range(d):
                out_score[i, b] = acc[b] / tot


@njit(parallel=True, cache=True, error_model="numpy")
def mixture_iso(x, means, prec_sqrt, lognorm, out_logpdf, out_score):  # pragma: no cover
    n, d = x.shape
    k_count = means.shape[0]
    nblocks = (n + BLOCK - 1) // BLOCK
    for blk in prange(nblocks):
        lp = np.empty(k_count, dtype=x.dtype)
        acc = np.empty(d, dtype=x.dtype)
        start = blk * BLOCK
        stop = min(start + BLOCK, n)
        for i in range(start, stop):
            mx = -np.inf
            for k in range(k_count):
                if lognorm[k] == -np.inf:
                    lp[k] = -np.inf
                    continue
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
                if lp[k] == -np.inf:
                    continue
                w = np.exp(lp[k] - mx)
                if w == 0.0:
                    continue
                tot += w
                c2 = prec_sqrt[k] * prec_sqrt[k]
                for b in range(d):
                    acc[b] -= w * c2 * (x[i, b] - means[k, b])
            out_logpdf[i] = mx + np.log(tot)
            for b in range(d):
                out_score[i, b] = acc[b] / tot


def evaluate(x: np.ndarray, means, factor, lognorm, kind: str):
    """Run the kernel for ``kind`` in {"full", "iso"}; returns (logpdf (N,), score (N, d))."""
    n, d = x.shape
    out_lp = np.empty(n, dtype=x.dtype)
    out_score = np.empty((n, d), dtype=x.dtype)
    if n == 0:
        return out_lp, out_score
    x = np.ascontiguousarray(x)
    if kind == "full":
        mixture_full(x, means, factor, lognorm, out_lp, out_score)
    elif kind == "iso":
        mixture_iso(x, means, factor, lognorm, out_lp, out_score)
    else:  # pragma: no cover - internal
        raise ValueError(kind)
    return out_lp, out_score
