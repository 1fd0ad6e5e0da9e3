"""Numba kernels: log-density of a diffused Gaussian mixture and a responsibility-weighted average
of per-component affine functions (the score or the posterior mean), at N points, each point at
its own time if asked.

The formula is :func:`sftheory.models._formulas.mixture_path_eval`; this is its compiled
realization. Components are given once, independent of time, by their eigendecomposition
Sigma_k = Q_k diag(lam_k) Q_k^T (``full``) or an isotropic variance lam_k (``iso``); a time enters
only through the scalars (m, v) of the forward process, which turn each component into
N(m mu_k, Q_k diag(m^2 lam_k + v) Q_k^T). So a new time costs O(K d) scalar work and no
factorization; with one (m, v) per point that work is done per point.

Per point, pass 1 computes the rotated residuals y_k = Q_k^T (x - m mu_k), the component
log-densities and their max; pass 2 the weights exp(l_k - max) and the sums, so nothing overflows
or underflows for t = 1e-8, |x| = 1e4 or 1e5 components. When every term overflows (|x| = 1e155:
|y|^2 = inf), the point's responsibility goes to the component with the smallest Mahalanobis
distance, compared in a scaled form, and log p = -inf: the score is still finite and right.
All arithmetic is float64 (a float32 input is widened on load and its outputs rounded once).
Components with zero weight are dropped by the caller. ``fastmath`` stays off: these kernels
verify claims. The weights exp(l_k - max) use :func:`~sftheory._kernels.fastexp.exp_weight`
(within 1.3 ulp of exp, vectorizable; weights below e^-708 relative to the largest are 0).
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from .fastexp import exp_weight

BLOCK = 256  # points per block; each thread walks its blocks with one set of scratch arrays
PARALLEL_MIN_WORK = 1 << 16  # N*K*d below which one thread is faster than waking the pool
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@njit(cache=True, inline="always")
def _full_coefs(m, v, lam_t, logw, posterior, inv, coef, lnorm, tmp):  # pragma: no cover
    """Per-time constants: inv[a,k] = 1/(m^2 lam + v), coef = -inv (score) or m lam inv
    (posterior), lnorm_k = log w_k - 1/2 sum_a log(m^2 lam + v) - d/2 log 2 pi.

    The log-determinant is one log of the product of the d variances per component (this runs
    once per point when every point has its own time); a product that leaves float64's normal
    range (variances beyond ~1e+-150 in d = 2) falls back to the sum of the d logs."""
    d, k_count = lam_t.shape
    m2 = m * m
    for k in range(k_count):
        tmp[k] = 1.0
    for a in range(d):
        for k in range(k_count):
            var = m2 * lam_t[a, k] + v
            inv[a, k] = var
            tmp[k] *= var
    for k in range(k_count):
        p = tmp[k]
        if p > 1e-300 and p < 1e300:
            ld = math.log(p)
        else:
            ld = 0.0
            for a in range(d):
                ld += math.log(inv[a, k])
        lnorm[k] = logw[k] - d * HALF_LOG_2PI - 0.5 * ld
    for a in range(d):
        for k in range(k_count):
            iv = 1.0 / inv[a, k]
            inv[a, k] = iv
            coef[a, k] = m * lam_t[a, k] * iv if posterior else -iv


@njit(cache=True, inline="always")
def _full_coefs_scaled(m, v, lam_t, logw, posterior, inv, coef, lnorm, rdet):  # pragma: no cover
    """Per-point variant of :func:`_full_coefs` without logarithms: lnorm_k = log w_k - d/2 log 2 pi
    and the determinant as a factor rdet_k = prod_a (m^2 lam_a + v)^(-1/2), applied to the weights
    in linear scale. The kernel falls back to :func:`_full_coefs` for a point whose weights leave
    the safe range."""
    d, k_count = lam_t.shape
    m2 = m * m
    for k in range(k_count):
        lnorm[k] = logw[k] - d * HALF_LOG_2PI
        rdet[k] = 1.0
    for a in range(d):
        for k in range(k_count):
            iv = 1.0 / (m2 * lam_t[a, k] + v)
            inv[a, k] = iv
            rdet[k] *= iv
            coef[a, k] = m * lam_t[a, k] * iv if posterior else -iv
    for k in range(k_count):
        rdet[k] = math.sqrt(rdet[k])


@njit(cache=True, inline="always")
def _full_point(xi, m, v, per_point, means_t, rot_t, lam_t, logw, posterior, inv, coef, lnorm,
                rdet, diff, y, lp, qk, tmp, acc):  # pragma: no cover
    """One point xi (d,) at one time: returns log p and writes the responsibility-weighted
    average (score or posterior mean) into acc (d,). The per-time constants ``inv``, ``coef``,
    ``lnorm`` come from :func:`_full_coefs` (``per_point`` False) or :func:`_full_coefs_scaled`
    with ``rdet`` (``per_point`` True, (m, v) the point's own time for the log fallback)."""
    d = xi.shape[0]
    k_count = means_t.shape[1]
    for b in range(d):
        xb = xi[b]
        for k in range(k_count):
            diff[b, k] = xb - m * means_t[b, k]
    # y_k = Q_k^T (x - m mu_k); q_k = sum_a y_a^2 / (m^2 lam_a + v)
    for k in range(k_count):
        qk[k] = 0.0
    for a in range(d):
        for k in range(k_count):
            y[a, k] = 0.0
        for b in range(d):
            for k in range(k_count):
                y[a, k] += rot_t[a, b, k] * diff[b, k]
        for k in range(k_count):
            qk[k] += y[a, k] * y[a, k] * inv[a, k]
    mx = -np.inf
    for k in range(k_count):
        lp[k] = lnorm[k] - 0.5 * qk[k]
        if lp[k] > mx:
            mx = lp[k]
    if mx == -np.inf:
        # every |y_k|^2 overflowed: compare Mahalanobis distances scaled by max|y_k|
        best_lq = np.inf
        for k in range(k_count):
            ymax = 0.0
            for a in range(d):
                ymax = max(ymax, abs(y[a, k]))
            qs = 0.0
            for a in range(d):
                r = y[a, k] / ymax
                qs += r * r * inv[a, k]
            lp[k] = 2.0 * math.log(ymax) + math.log(qs)  # log of the distance
            best_lq = min(best_lq, lp[k])
        # ties (equal scaled distances) share the responsibility, as in the reference
        for k in range(k_count):
            tmp[k] = 1.0 if lp[k] == best_lq else 0.0
        ties = 0.0
        for k in range(k_count):
            ties += tmp[k]
        for b in range(d):
            acc_b = 0.0
            for k in range(k_count):
                if tmp[k] > 0.0:
                    g = means_t[b, k] if posterior else 0.0
                    for a in range(d):
                        g += rot_t[a, b, k] * coef[a, k] * y[a, k]
                    acc_b += g
            acc[b] = acc_b / ties
        return -np.inf
    tot = 0.0
    if per_point:
        for k in range(k_count):
            lp[k] = exp_weight(lp[k] - mx) * rdet[k]  # the unnormalized weight
            tot += lp[k]
        if not (tot > 1e-280 and tot < 1e280):
            # determinant factors out of range: the log-domain route for this point
            _full_coefs(m, v, lam_t, logw, posterior, inv, coef, lnorm, tmp)
            mx = -np.inf
            for k in range(k_count):
                lp[k] = lnorm[k] - 0.5 * qk[k]
                if lp[k] > mx:
                    mx = lp[k]
            tot = 0.0
            for k in range(k_count):
                lp[k] = exp_weight(lp[k] - mx)
                tot += lp[k]
    else:
        for k in range(k_count):
            lp[k] = exp_weight(lp[k] - mx)  # now the unnormalized weight
            tot += lp[k]
    # sum_k w_k (off_k + Q_k diag(coef_k) y_k), one output coordinate at a time
    for a in range(d):
        for k in range(k_count):
            y[a, k] *= coef[a, k]
    for b in range(d):
        for k in range(k_count):
            tmp[k] = means_t[b, k] if posterior else 0.0
        for a in range(d):
            for k in range(k_count):
                tmp[k] += rot_t[a, b, k] * y[a, k]
        s = 0.0
        for k in range(k_count):
            if lp[k] > 0.0:  # a zero weight times an overflowed term is not NaN
                s += lp[k] * tmp[k]
        acc[b] = s / tot
    return mx + math.log(tot)


@njit(parallel=True, cache=True, error_model="numpy")
def mixture_full(x, m_arr, v_arr, means_t, rot_t, lam_t, logw, posterior, nthreads,
                 out_logpdf, out_vec):  # pragma: no cover
    # Component-minor layout: means_t (d, K), rot_t[a, b, k] = (Q_k^T)[a, b], lam_t (d, K), so
    # every inner loop runs over components with unit stride (SIMD).
    n, d = x.shape
    k_count = means_t.shape[1]
    per_point = m_arr.shape[0] > 1
    nblocks = (n + BLOCK - 1) // BLOCK
    for tid in prange(nthreads):
        diff = np.empty((d, k_count), dtype=np.float64)
        y = np.empty((d, k_count), dtype=np.float64)
        inv = np.empty((d, k_count), dtype=np.float64)
        coef = np.empty((d, k_count), dtype=np.float64)
        lnorm = np.empty(k_count, dtype=np.float64)
        lp = np.empty(k_count, dtype=np.float64)
        qk = np.empty(k_count, dtype=np.float64)
        tmp = np.empty(k_count, dtype=np.float64)
        rdet = np.ones(k_count, dtype=np.float64)
        xi = np.empty(d, dtype=np.float64)
        acc = np.empty(d, dtype=np.float64)
        m = m_arr[0]
        v = v_arr[0]
        _full_coefs(m, v, lam_t, logw, posterior, inv, coef, lnorm, tmp)
        for blk in range(tid, nblocks, nthreads):
            start = blk * BLOCK
            stop = min(start + BLOCK, n)
            for i in range(start, stop):
                if per_point:
                    m = m_arr[i]
                    v = v_arr[i]
                    _full_coefs_scaled(m, v, lam_t, logw, posterior, inv, coef, lnorm, rdet)
                for b in range(d):
                    xi[b] = np.float64(x[i, b])
                out_logpdf[i] = _full_point(xi, m, v, per_point, means_t, rot_t, lam_t, logw,
                                            posterior, inv, coef, lnorm, rdet, diff, y, lp, qk,
                                            tmp, acc)
                for b in range(d):
                    out_vec[i, b] = acc[b]


@njit(cache=True, inline="always")
def _iso_coefs(m, v, d, lam, logw, equal_var, inv, lnorm):  # pragma: no cover
    """Per-time constants of the isotropic kernel: inv_k = 1/(m^2 lam_k + v), lnorm_k."""
    k_count = lam.shape[0]
    if equal_var:
        var = m * m * lam[0] + v
        c = d * (0.5 * math.log(var) + HALF_LOG_2PI)
        for k in range(k_count):
            inv[k] = 1.0 / var
            lnorm[k] = logw[k] - c
    else:
        for k in range(k_count):
            var = m * m * lam[k] + v
            inv[k] = 1.0 / var
            lnorm[k] = logw[k] - d * (0.5 * math.log(var) + HALF_LOG_2PI)


@njit(cache=True, inline="always")
def _iso_point(xi, m, means, lam, inv, lnorm, posterior, lp, acc):  # pragma: no cover
    """One point xi (d,) at one time (constants from :func:`_iso_coefs`): returns log p and
    writes the responsibility-weighted average (score or posterior mean) into acc (d,)."""
    d = xi.shape[0]
    k_count = means.shape[0]
    mx = -np.inf
    for k in range(k_count):
        q = 0.0
        for b in range(d):
            r = xi[b] - m * means[k, b]
            q += r * r
        val = lnorm[k] - 0.5 * q * inv[k]
        lp[k] = val
        if val > mx:
            mx = val
    for b in range(d):
        acc[b] = 0.0
    if mx == -np.inf:
        # every term overflowed: the nearest component in scaled Mahalanobis distance
        best_lq = np.inf
        for k in range(k_count):
            rmax = 0.0
            for b in range(d):
                rmax = max(rmax, abs(xi[b] - m * means[k, b]))
            qs = 0.0
            for b in range(d):
                r = (xi[b] - m * means[k, b]) / rmax
                qs += r * r
            lp[k] = 2.0 * math.log(rmax) + math.log(qs * inv[k])  # log distance
            best_lq = min(best_lq, lp[k])
        # ties (equal scaled distances) share the responsibility, as in the reference
        ties = 0.0
        for k in range(k_count):
            if lp[k] != best_lq:
                continue
            ties += 1.0
            cm = (m * lam[k] * inv[k]) if posterior else -inv[k]
            for b in range(d):
                g = cm * (xi[b] - m * means[k, b])
                if posterior:
                    g += means[k, b]
                acc[b] += g
        for b in range(d):
            acc[b] /= ties
        return -np.inf
    tot = 0.0
    for k in range(k_count):  # a clean loop: exp vectorizes
        lp[k] = exp_weight(lp[k] - mx)
    for k in range(k_count):
        tot += lp[k]
    for k in range(k_count):
        w = lp[k]
        if w == 0.0:  # most of 1e5 components at small t: skip their d-loop
            continue
        cm = (m * lam[k] * inv[k]) if posterior else -inv[k]
        for b in range(d):
            g = cm * (xi[b] - m * means[k, b])
            if posterior:
                g += means[k, b]
            acc[b] += w * g
    for b in range(d):
        acc[b] /= tot
    return mx + math.log(tot)


BLOCK_MAX_COMPONENTS = 32  # the block form keeps (K, nb) weights in L1; beyond, _iso_point


@njit(cache=True, inline="always")
def _iso_block_score(xt, nb, m, means, lam, inv, lnorm, lp, mxv, tot, acc, row, acc1):  # pragma: no cover
    """The score of :func:`_iso_point` (posterior off) at nb points at once, particle-minor.

    xt (d, >= nb) holds the points as columns; lp (K, >= nb), mxv, tot (>= nb) and acc (d, >= nb)
    are scratch/output (acc receives the scores); row, acc1 (d,) scratch for the rare points whose
    every term overflows, which go through :func:`_iso_point` itself. The operations and their
    order per point are those of :func:`_iso_point`, so the two agree bit for bit (tested); only
    the loop nest differs: the innermost loop runs over points, so it compiles to SIMD code (the
    weights through :func:`~sftheory._kernels.fastexp.exp_weight`). For K <=
    :data:`BLOCK_MAX_COMPONENTS` (few components, many points: the samplers' step loop)."""
    d = xt.shape[0]
    k_count = means.shape[0]
    for j in range(nb):
        mxv[j] = -np.inf
    for k in range(k_count):
        for j in range(nb):
            tot[j] = 0.0  # q, the squared distance, accumulated over coordinates
        for b in range(d):
            mu = m * means[k, b]
            for j in range(nb):
                r = xt[b, j] - mu
                tot[j] += r * r
        ln, ik = lnorm[k], inv[k]
        for j in range(nb):
            val = ln - 0.5 * tot[j] * ik
            lp[k, j] = val
            mxv[j] = val if val > mxv[j] else mxv[j]
    for k in range(k_count):
        for j in range(nb):
            lp[k, j] = exp_weight(lp[k, j] - mxv[j])
    for j in range(nb):
        tot[j] = 0.0
    for k in range(k_count):
        for j in range(nb):
            tot[j] += lp[k, j]
    for b in range(d):
        for j in range(nb):
            acc[b, j] = 0.0
    for k in range(k_count):
        cm = -inv[k]
        for b in range(d):
            mu = m * means[k, b]
            for j in range(nb):
                acc[b, j] += lp[k, j] * (cm * (xt[b, j] - mu))
    for b in range(d):
        for j in range(nb):
            acc[b, j] /= tot[j]
    for j in range(nb):
        if mxv[j] == -np.inf:  # every term overflowed (|x| ~ 1e155): the point-wise fallback
            for b in range(d):
                row[b] = xt[b, j]
            _iso_point(row, m, means, lam, inv, lnorm, False, lp[:, j].copy(), acc1)
            for b in range(d):
                acc[b, j] = acc1[b]


@njit(parallel=True, cache=True, error_model="numpy")
def mixture_iso(x, m_arr, v_arr, means, lam, logw, posterior, equal_var, nthreads,
                out_logpdf, out_vec):  # pragma: no cover
    # means (K, d), lam (K,) isotropic variances (0 for the atoms of an empirical law);
    # ``equal_var``: all lam equal, so the per-time constants are one scalar (empirical laws).
    n, d = x.shape
    k_count = means.shape[0]
    per_point = m_arr.shape[0] > 1
    nblocks = (n + BLOCK - 1) // BLOCK
    for tid in prange(nthreads):
        lp = np.empty(k_count, dtype=np.float64)
        inv = np.empty(k_count, dtype=np.float64)
        lnorm = np.empty(k_count, dtype=np.float64)
        acc = np.empty(d, dtype=np.float64)
        xi = np.empty(d, dtype=np.float64)
        m = m_arr[0]
        _iso_coefs(m, v_arr[0], d, lam, logw, equal_var, inv, lnorm)
        for i_blk in range(tid, nblocks, nthreads):
            start = i_blk * BLOCK
            stop = min(start + BLOCK, n)
            for i in range(start, stop):
                if per_point:
                    m = m_arr[i]
                    _iso_coefs(m, v_arr[i], d, lam, logw, equal_var, inv, lnorm)
                for b in range(d):
                    xi[b] = np.float64(x[i, b])
                out_logpdf[i] = _iso_point(xi, m, means, lam, inv, lnorm, posterior, lp, acc)
                for b in range(d):
                    out_vec[i, b] = acc[b]


# The same kernels compiled without threading (prange runs as range): small calls (an ODE solver's
# one point) run on the calling thread without touching the thread pool, whose set-up costs more
# than the work, and far more when the cores are busy.
mixture_full_serial = njit(cache=True, error_model="numpy")(mixture_full.py_func)
mixture_iso_serial = njit(cache=True, error_model="numpy")(mixture_iso.py_func)


def kernel_layout(means, logw, lam, rot) -> tuple:
    """Writeable float64 arrays in the layout of the kernel (component-minor for ``full``).

    ``means`` (K, d); ``logw`` (K,); ``lam`` (K, d) with ``rot`` (K, d, d) = Q_k^T (full), or
    ``lam`` (K,) with ``rot`` None (iso). Computed once per law and reused for every call and
    every time. Copies are made on purpose: read-only arrays would compile a second kernel.
    """
    c = lambda a: np.array(a, dtype=np.float64, order="C", copy=True)  # noqa: E731
    if rot is not None:
        return ("full", c(means.T), c(np.transpose(rot, (1, 2, 0))), c(lam.T), c(logw))
    equal = bool(np.all(lam == lam[0]))
    return ("iso", c(means), c(lam), c(logw), equal)


def evaluate(x: np.ndarray, m, v, layout: tuple, posterior: bool):
    """Run the kernel on points x (N, d) (float32 or float64) with arrays from
    :func:`kernel_layout`; ``m``, ``v`` floats or float64 arrays of shape (N,).

    Returns (logpdf (N,), average (N, d)) in x's dtype.
    """
    n, d = x.shape
    out_lp = np.empty(n, dtype=x.dtype)
    out_vec = np.empty((n, d), dtype=x.dtype)
    if n == 0:
        return out_lp, out_vec
    if not (x.flags.c_contiguous and x.flags.writeable):
        x = np.array(x, order="C", copy=True)
    m_arr = np.array(m, dtype=np.float64, ndmin=1, copy=True)
    v_arr = np.array(v, dtype=np.float64, ndmin=1, copy=True)
    kind = layout[0]
    k_count = layout[1].shape[1] if kind == "full" else layout[1].shape[0]
    threads = numba.get_num_threads()
    nthreads = min(threads, (n + BLOCK - 1) // BLOCK)
    if kind == "full":
        _, means_t, rot_t, lam_t, logw = layout
        args = (x, m_arr, v_arr, means_t, rot_t, lam_t, logw, posterior)
        kern, serial = mixture_full, mixture_full_serial
    else:
        _, means, lam, logw, equal = layout
        args = (x, m_arr, v_arr, means, lam, logw, posterior, equal)
        kern, serial = mixture_iso, mixture_iso_serial
    if nthreads > 1 and n * k_count * d >= PARALLEL_MIN_WORK:
        kern(*args, nthreads, out_lp, out_vec)
    else:
        serial(*args, 1, out_lp, out_vec)
    return out_lp, out_vec
