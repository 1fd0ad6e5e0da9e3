r"""Numba kernel: the per-lambda quadrature of vanilla fusion ([SF] problem (9)) in one pass.

Given the log-densities H[j, i] = log p_i(x_j) of the k references at N nodes x_j with log
weights logw_j (a trapezoid grid or importance draws), and lambda on the simplex, it returns

* log Z(lambda) = log sum_j exp(a_j),  a_j = sum_i lambda_i H[j, i] + logw_j   ([SF] (9)),
* E_{p_lambda}[h_i] = sum_j pi_j H[j, i],  pi_j = exp(a_j - log Z)          ([SF] Remark 2),
* Cov_{p_lambda}(h_i, h_l) = sum_j pi_j (H[j, i] - E h_i)(H[j, l] - E h_l) (proof of [SF] Prop. 1),

the quantities whose single definition and numpy reference is
:meth:`sftheory.fusion.FusionObjective._parts_numpy`; ``tests/fusion/test_quadrature_kernel.py``
checks kernel == reference. ``order`` 0 computes log Z only, 1 adds the mean, 2 the covariance.

Layout of the computation: the nodes are cut into blocks of ``BLOCK``; blocks run in parallel
(``prange``), and each computes, from its own maximum M_b, the sum S_b = sum exp(a_j - M_b), the
weighted mean m_b and the centred sum C_b = sum exp(a_j - M_b) (h_j - m_b)(h_j - m_b)^T (the rows
of a block stay in cache for the centred second pass). The blocks are then merged in their fixed
order by the exact pairwise rule (Chan, Golub & LeVeque 1979, with the weights rescaled to the
common maximum M = max(M_a, M_b)):

    S = S_a e^{M_a - M} + S_b e^{M_b - M},  delta = m_b - m_a,  m = m_a + delta S_b' / S,
    C = C_a e^{M_a - M} + C_b e^{M_b - M} + delta delta^T S_a' S_b' / S,

with S_a' = S_a e^{M_a - M}, S_b' = S_b e^{M_b - M}. Nothing overflows (every exponent is <= 0),
the covariance is accumulated centred (no E[hh^T] - E[h]E[h]^T cancellation), and the result does
not depend on the number of threads (fixed blocks, fixed merge order). A block whose a_j are all
-inf contributes nothing; a NaN in a makes every output NaN, as in the reference (a +inf gives
NaN where the reference gives log Z = +inf: both are rejected by the callers).
``fastmath`` stays off; the weights use :func:`~sftheory._kernels.fastexp.exp_weight` (within
1.3 ulp of exp).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .fastexp import exp_weight

BLOCK = 1024  # nodes per block: k = 8 rows of a block are 64 KiB, in L2 for the second pass


@njit(parallel=True, cache=True, error_model="numpy")
def lse_moments(H, lam, logw, order):  # pragma: no cover
    """(log Z, mean (k,), cov (k, k)) of the module docstring; ``mean`` is zeros for
    ``order`` 0 and ``cov`` zeros for ``order`` < 2. H (N, k) C-contiguous float64."""
    n, k = H.shape
    nb = (n + BLOCK - 1) // BLOCK
    bmax = np.empty(nb)
    bsum = np.empty(nb)
    bmean = np.zeros((nb, k))
    bcov = np.zeros((nb if order >= 2 else 1, k, k))
    for b in prange(nb):
        lo = b * BLOCK
        hi = min(n, lo + BLOCK)
        m = hi - lo
        w = np.empty(m)
        for jj in range(m):
            dot = 0.0
            for i in range(k):
                dot += lam[i] * H[lo + jj, i]
            w[jj] = dot + logw[lo + jj]
        mx = -np.inf
        nan = False
        for jj in range(m):
            a = w[jj]
            if a > mx:
                mx = a
            elif a != a:
                nan = True
        bmax[b] = np.nan if nan else mx
        if nan or mx == -np.inf:
            bsum[b] = 0.0
            continue
        for jj in range(m):
            w[jj] = exp_weight(w[jj] - mx)
        s = 0.0
        for jj in range(m):
            s += w[jj]
        bsum[b] = s
        if order >= 1:
            acc = np.zeros(k)
            for j in range(lo, hi):
                e = w[j - lo]
                for i in range(k):
                    acc[i] += e * H[j, i]
            for i in range(k):
                bmean[b, i] = acc[i] / s
        if order >= 2:
            c = np.empty(k)
            mloc = np.empty(k)
            cacc = np.zeros((k, k))  # full square: the inner loop vectorizes; lower half kept
            for i in range(k):
                mloc[i] = bmean[b, i]
            for j in range(lo, hi):
                e = w[j - lo]
                for i in range(k):
                    c[i] = H[j, i] - mloc[i]
                for i in range(k):
                    ec = e * c[i]
                    for l in range(k):
                        cacc[i, l] += ec * c[l]
            for i in range(k):
                for l in range(i + 1):
                    bcov[b, i, l] = cacc[i, l]
    # exact merge in block order
    m_run = -np.inf
    s_run = 0.0
    mean = np.zeros(k)
    cov = np.zeros((k, k))
    delta = np.zeros(k)
    for b in range(nb):
        mb = bmax[b]
        if mb != mb:
            mean[:] = np.nan
            cov[:, :] = np.nan
            return np.nan, mean, cov
        if mb == -np.inf:
            continue
        if m_run == -np.inf:
            m_run = mb
            s_run = bsum[b]
            for i in range(k):
                mean[i] = bmean[b, i]
            if order >= 2:
                for i in range(k):
                    for l in range(i + 1):
                        cov[i, l] = bcov[b, i, l]
            continue
        mnew = max(m_run, mb)
        fa = math.exp(m_run - mnew)
        fb = math.exp(mb - mnew)
        sa = s_run * fa
        sb = bsum[b] * fb
        st = sa + sb
        if order >= 1:
            for i in range(k):
                delta[i] = bmean[b, i] - mean[i]
                mean[i] += delta[i] * (sb / st)
        if order >= 2:
            g = sa * sb / st
            for i in range(k):
                for l in range(i + 1):
                    cov[i, l] = cov[i, l] * fa + bcov[b, i, l] * fb + delta[i] * delta[l] * g
        s_run = st
        m_run = mnew
    logz = m_run + math.log(s_run) if m_run != -np.inf else -np.inf
    if order >= 2:
        for i in range(k):
            for l in range(i + 1):
                v = cov[i, l] / s_run
                cov[i, l] = v
                cov[l, i] = v
    return logz, mean, cov
