"""Numba step loop of the one-step samplers for an exact Gaussian-mixture score.

Every one-step integrator of :mod:`sftheory.samplers` has the form
x_{k+1} = alpha_k x_k + beta_k S(x_k, t_k) + sigma_k xi_k (see ``sftheory/samplers/_core.py``,
where the coefficients are defined). When S is the exact score of a diffused mixture (a
:class:`~sftheory.models.path.MixturePath`, possibly times a factor of time), the whole loop runs
here: particles are independent, so each thread takes blocks of particles and walks them through
all the steps, with the particle state and the per-step constants (m(t_k) and the component
constants of :func:`~sftheory._kernels.mixture._iso_coefs` / ``_full_coefs``, precomputed once per
step) in cache. The score is evaluated by the same per-point functions as the mixture kernels
(``_iso_point`` / ``_full_point``), so there is one definition of the math.

Noise: either given (an array (S, N, d) of standard normals, e.g. the increments of a
:class:`~sftheory.samplers.BrownianPath`, so the Python loop and this one can be compared step for
step), or drawn here by a per-particle generator: xoshiro256** seeded through splitmix64 from
(key, particle index), normals by a 256-layer ziggurat (one 64-bit draw per normal on the fast
path). Each particle owns its stream, so
results do not depend on the number of threads or on the block layout. The state lives in
arrays the caller keeps, so a run can be split into chunks (a progress bar between chunks)
without changing the numbers.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from .mixture import (BLOCK_MAX_COMPONENTS, _full_coefs, _full_point, _iso_block_score, _iso_coefs,
                      _iso_point)

PBLOCK = 64  # particles per block: their state stays in L1 while the step constants stream
_INV_2_53 = 1.0 / 9007199254740992.0


@njit(cache=True, inline="always")
def _rotl(x, k):  # pragma: no cover
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@njit(cache=True, inline="always")
def _splitmix64(z):  # pragma: no cover
    """(next state, output) of splitmix64 (Steele, Lea, Flood 2014)."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    r = z
    r = (r ^ (r >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    r = (r ^ (r >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z, r ^ (r >> np.uint64(31))


@njit(cache=True)
def seed_states(key, start, n, states):  # pragma: no cover
    """Seed xoshiro256** states for particles start..start+n-1 from a 64-bit key: particle i's
    state is four outputs of splitmix64 started at key + i * 2^32 + 1 (distinct, nonzero)."""
    for j in range(n):
        z = np.uint64(key) + np.uint64(start + j) * np.uint64(4294967296) + np.uint64(1)
        for w in range(4):
            z, out = _splitmix64(z)
            states[j, w] = out


@njit(cache=True, inline="always")
def _next_u64(st):  # pragma: no cover
    s0, s1, s2, s3 = st[0], st[1], st[2], st[3]
    result = _rotl(s1 * np.uint64(5), 7) * np.uint64(9)
    t = s1 << np.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    st[0], st[1], st[2], st[3] = s0, s1, s2, s3
    return result


@njit(cache=True, inline="always")
def _next_uniform(st):  # pragma: no cover
    """A uniform double in (0, 1] from xoshiro256** (Blackman, Vigna 2018); st (4,) uint64."""
    return (np.float64(np.int64(_next_u64(st) >> np.uint64(11))) + 1.0) * _INV_2_53


def _ziggurat_tables(n=256, r=3.6541528853610088, v=0.00492867323399):
    """Layer edges of the 256-layer normal ziggurat (Marsaglia, Tsang 2000): x_1 = r, each layer
    [0, x_i] x [f(x_i), f(x_{i+1})] has area v (f(x) = exp(-x^2/2)), the base strip [0, x_0] x
    [0, f(r)] with x_0 = v / f(r) holds the tail beyond r. Returns (k, w, f): the fast-path
    thresholds x_{i+1}/x_i in units of 2^-52, widths x_i 2^-52, and f(x_i) (f(x_256) = 1)."""
    f = lambda x: math.exp(-0.5 * x * x)  # noqa: E731
    x = np.zeros(n + 1)
    x[0], x[1] = v / f(r), r
    for i in range(2, n):
        x[i] = math.sqrt(-2.0 * math.log(v / x[i - 1] + f(x[i - 1])))
    two52 = float(2 ** 52)
    k = np.array([np.floor(two52 * x[i + 1] / x[i]) for i in range(n)], dtype=np.int64)
    w = x[:n] / two52
    fx = np.array([f(xi) for xi in x])
    return k, w, fx


_ZK, _ZW, _ZF = _ziggurat_tables()
_ZR = 3.6541528853610088


@njit(cache=True)
def _normal_slow(st, i, x):  # pragma: no cover
    """The ziggurat's rare branches: the tail beyond r (layer 0) or a wedge test."""
    if i == 0:
        while True:  # Marsaglia's tail method
            xx = -math.log(_next_uniform(st)) / _ZR
            yy = -math.log(_next_uniform(st))
            if yy + yy > xx * xx:
                return _ZR + xx
    if _ZF[i] + _next_uniform(st) * (_ZF[i + 1] - _ZF[i]) < math.exp(-0.5 * x * x):
        return x
    return -1.0  # rejected: the caller draws again


@njit(cache=True, inline="always")
def _normal(st):  # pragma: no cover
    """One standard normal by the 256-layer ziggurat: 8 bits pick the layer, 1 the sign, 52 the
    position; ~99 % of draws take the fast path (one multiply, one compare)."""
    while True:
        r = _next_u64(st)
        i = np.int64(r & np.uint64(255))
        neg = (r >> np.uint64(8)) & np.uint64(1)
        rabs = np.int64((r >> np.uint64(9)) & np.uint64(0xFFFFFFFFFFFFF))  # < 2^52: exact
        x = np.float64(rabs) * _ZW[i]
        if rabs < _ZK[i]:
            return -x if neg else x
        y = _normal_slow(st, i, x)
        if y >= 0.0:
            return -y if neg else y


@njit(cache=True)
def step_constants_iso(m_s, v_s, d, lam, logw, equal_var):  # pragma: no cover
    """(inv (S, K), lnorm (S, K)) of :func:`_iso_coefs` at each step's (m, v)."""
    n_steps = m_s.shape[0]
    k_count = lam.shape[0]
    inv = np.empty((n_steps, k_count))
    lnorm = np.empty((n_steps, k_count))
    for s in range(n_steps):
        _iso_coefs(m_s[s], v_s[s], d, lam, logw, equal_var, inv[s], lnorm[s])
    return inv, lnorm


@njit(cache=True)
def step_constants_full(m_s, v_s, lam_t, logw):  # pragma: no cover
    """(inv (S, d, K), coef (S, d, K), lnorm (S, K)) of :func:`_full_coefs` (score) per step."""
    n_steps = m_s.shape[0]
    d, k_count = lam_t.shape
    inv = np.empty((n_steps, d, k_count))
    coef = np.empty((n_steps, d, k_count))
    lnorm = np.empty((n_steps, k_count))
    tmp = np.empty(k_count)
    for s in range(n_steps):
        _full_coefs(m_s[s], v_s[s], lam_t, logw, False, inv[s], coef[s], lnorm[s], tmp)
    return inv, coef, lnorm


@njit(cache=True, inline="always")
def _add_noise(xs, j, d, sig, noise, k, i, states):  # pragma: no cover
    """xs[j] += sig * xi, xi standard normal (given noise[k, i], else the particle's stream)."""
    if noise.shape[0] > 0:
        for b in range(d):
            xs[j, b] += sig * noise[k, i, b]
        return
    st = states[i]
    for b in range(d):
        xs[j, b] += sig * _normal(st)


@njit(cache=True, inline="always")
def _copy_rows(src, src_start, dst, dst_start, nb, d):  # pragma: no cover
    """dst[dst_start + j] = src[src_start + j] for j < nb (a block of particles in or out)."""
    for j in range(nb):
        for b in range(d):
            dst[dst_start + j, b] = src[src_start + j, b]


@njit(cache=True, inline="always")
def _advance(xs, j, d, a, be, acc, sig, noise, k, i, states):  # pragma: no cover
    """One step of particle j: x <- a x + be S(x) (+ sig xi), S(x) already in acc."""
    for b in range(d):
        xs[j, b] = a * xs[j, b] + be * acc[b]
    if sig > 0.0:
        _add_noise(xs, j, d, sig, noise, k, i, states)


@njit(parallel=True, cache=True, error_model="numpy")
def loop_iso(x, alpha, beta, sigma, m_s, inv_s, lnorm_s, means, lam, noise, states, nthreads):  # pragma: no cover
    """Run steps k = 0..S-1 on x (N, d) in place (isotropic components)."""
    n, d = x.shape
    k_count = means.shape[0]
    n_steps = alpha.shape[0]
    nblocks = (n + PBLOCK - 1) // PBLOCK
    for tid in prange(nthreads):
        lp = np.empty(k_count)
        acc = np.empty(d)
        xs = np.empty((PBLOCK, d))
        for blk in range(tid, nblocks, nthreads):
            start = blk * PBLOCK
            nb = min(start + PBLOCK, n) - start
            _copy_rows(x, start, xs, 0, nb, d)
            for k in range(n_steps):
                a, be, sig, m = alpha[k], beta[k], sigma[k], m_s[k]
                inv, lnorm = inv_s[k], lnorm_s[k]
                for j in range(nb):
                    xi = xs[j]
                    _iso_point(xi, m, means, lam, inv, lnorm, False, lp, acc)
                    _advance(xs, j, d, a, be, acc, sig, noise, k, start + j, states)
            _copy_rows(xs, 0, x, start, nb, d)


@njit(parallel=True, cache=True, error_model="numpy")
def loop_iso_block(x, alpha, beta, sigma, m_s, inv_s, lnorm_s, means, lam, noise, states,
                   nthreads):  # pragma: no cover
    """:func:`loop_iso` for few components (K <= BLOCK_MAX_COMPONENTS), particle-minor: a block's
    coordinates are the rows of xt (d, PBLOCK), so the score (:func:`_iso_block_score`) and the
    update vectorize over particles. Same arithmetic per particle and the same random stream
    (particle i at step k draws coordinates 0..d-1 in order) as :func:`loop_iso`."""
    n, d = x.shape
    k_count = means.shape[0]
    n_steps = alpha.shape[0]
    nblocks = (n + PBLOCK - 1) // PBLOCK
    given = noise.shape[0] > 0
    for tid in prange(nthreads):
        xt = np.empty((d, PBLOCK))
        lp = np.empty((k_count, PBLOCK))
        mxv = np.empty(PBLOCK)
        tot = np.empty(PBLOCK)
        acc = np.empty((d, PBLOCK))
        row = np.empty(d)
        acc1 = np.empty(d)
        for blk in range(tid, nblocks, nthreads):
            start = blk * PBLOCK
            nb = min(start + PBLOCK, n) - start
            for j in range(nb):
                for b in range(d):
                    xt[b, j] = x[start + j, b]
            for k in range(n_steps):
                a, be, sig, m = alpha[k], beta[k], sigma[k], m_s[k]
                _iso_block_score(xt, nb, m, means, lam, inv_s[k], lnorm_s[k], lp, mxv, tot, acc,
                                 row, acc1)
                for b in range(d):
                    for j in range(nb):
                        xt[b, j] = a * xt[b, j] + be * acc[b, j]
                if sig > 0.0:
                    if given:
                        for b in range(d):
                            for j in range(nb):
                                xt[b, j] += sig * noise[k, start + j, b]
                    else:
                        for j in range(nb):
                            st = states[start + j]
                            for b in range(d):
                                xt[b, j] += sig * _normal(st)
            for j in range(nb):
                for b in range(d):
                    x[start + j, b] = xt[b, j]


@njit(parallel=True, cache=True, error_model="numpy")
def loop_full(x, alpha, beta, sigma, m_s, inv_s, coef_s, lnorm_s, means_t, rot_t, lam_t, logw,
              noise, states, nthreads):  # pragma: no cover
    """Run steps k = 0..S-1 on x (N, d) in place (full covariances, component-minor layout)."""
    n, d = x.shape
    k_count = means_t.shape[1]
    n_steps = alpha.shape[0]
    nblocks = (n + PBLOCK - 1) // PBLOCK
    for tid in prange(nthreads):
        diff = np.empty((d, k_count))
        y = np.empty((d, k_count))
        lp = np.empty(k_count)
        qk = np.empty(k_count)
        tmp = np.empty(k_count)
        rdet = np.ones(k_count)
        acc = np.empty(d)
        xs = np.empty((PBLOCK, d))
        for blk in range(tid, nblocks, nthreads):
            start = blk * PBLOCK
            nb = min(start + PBLOCK, n) - start
            _copy_rows(x, start, xs, 0, nb, d)
            for k in range(n_steps):
                a, be, sig, m = alpha[k], beta[k], sigma[k], m_s[k]
                inv, coef, lnorm = inv_s[k], coef_s[k], lnorm_s[k]
                for j in range(nb):
                    xi = xs[j]
                    _full_point(xi, m, 1.0, False, means_t, rot_t, lam_t, logw, False, inv, coef,
                                lnorm, rdet, diff, y, lp, qk, tmp, acc)
                    _advance(xs, j, d, a, be, acc, sig, noise, k, start + j, states)
            _copy_rows(xs, 0, x, start, nb, d)


class StepLoop:
    """The fused loop for one mixture layout (from :func:`~sftheory._kernels.mixture.
    kernel_layout`) and one set of particles: ``run(alpha, beta, sigma, m_s, v_s, noise)`` advances
    ``self.x`` (float64 (N, d)) through those steps; the random state persists between calls."""

    def __init__(self, layout: tuple, x: np.ndarray, key: int, start: int = 0):
        """``start``: the global index of x's first particle (a shard of a larger batch): particle
        j of x draws from stream ``start + j``, so shards reproduce the unsharded run."""
        self.layout = layout
        self.x = np.array(x, dtype=np.float64, order="C", copy=True)
        n = self.x.shape[0]
        self.states = np.empty((n, 4), dtype=np.uint64)
        seed_states(np.uint64(key), int(start), n, self.states)
        self._no_noise = np.zeros((0, n, self.x.shape[1]))

    def run(self, alpha, beta, sigma, m_s, v_s, noise=None):
        n, d = self.x.shape
        if n == 0 or alpha.shape[0] == 0:
            return
        f = lambda a: np.ascontiguousarray(a, dtype=np.float64)  # noqa: E731
        alpha, beta, sigma, m_s, v_s = map(f, (alpha, beta, sigma, m_s, v_s))
        noise = self._no_noise if noise is None else f(noise)
        nthreads = max(1, min(numba.get_num_threads(), (n + PBLOCK - 1) // PBLOCK))
        kind = self.layout[0]
        if kind == "iso":
            _, means, lam, logw, equal = self.layout
            inv, lnorm = step_constants_iso(m_s, v_s, d, lam, logw, equal)
            loop = loop_iso_block if means.shape[0] <= BLOCK_MAX_COMPONENTS else loop_iso
            loop(self.x, alpha, beta, sigma, m_s, inv, lnorm, means, lam, noise, self.states,
                 nthreads)
        else:
            _, means_t, rot_t, lam_t, logw = self.layout
            inv, coef, lnorm = step_constants_full(m_s, v_s, lam_t, logw)
            loop_full(self.x, alpha, beta, sigma, m_s, inv, coef, lnorm, means_t, rot_t, lam_t,
                      logw, noise, self.states, nthreads)


@njit(cache=True)
def standard_normals(key, n, d, steps):  # pragma: no cover
    """(steps, n, d) draws of the loops' generator exactly as the loops consume them (particle i
    at step k gets coordinates 0..d-1 in order): for tests of the stream itself."""
    states = np.empty((n, 4), dtype=np.uint64)
    seed_states(key, 0, n, states)
    out = np.zeros((steps, n, d))
    no_noise = np.zeros((0, n, d))
    xs = np.zeros((1, d))
    for k in range(steps):
        for i in range(n):
            for b in range(d):
                xs[0, b] = 0.0
            _add_noise(xs, 0, d, 1.0, no_noise, k, i, states)
            for b in range(d):
                out[k, i, b] = xs[0, b]
    return out
