r"""Counter-based standard normals: the noise of particle i at step k, coordinate j, as a pure
function of (seed, i, k, j) for a given dimension d (the counter layout below depends on d), the
same bits on numpy, torch CPU and CUDA and under any sharding (the normals to an ulp of the
backends' log/cos/sin).

Bits: Threefry-2x32 with 20 rounds (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as
easy as 1, 2, 3", SC 2011; the generator of JAX's ``jax.random``): a 2 x 32-bit key and a
2 x 32-bit counter map to 2 x 32 bits through additions mod 2^32, rotations and xors only, so the
one function below runs unchanged on numpy int64 arrays and torch int64 tensors (every
intermediate is masked to 32 bits; the largest, ``x << 29``, stays below 2^61).

Normals: the two output words of one counter give a 53-bit uniform
:math:`u = (2^{21} w_0 + \lfloor w_1 / 2^{11}\rfloor + \tfrac12)\,2^{-53} \in (0, 1)`; two
uniforms give two normals by Box--Muller,
:math:`z_0 = \sqrt{-2\log u_1}\cos 2\pi u_2,\ z_1 = \sqrt{-2\log u_1}\sin 2\pi u_2`
(Box & Muller 1958), evaluated in float64 (largest |z| = sqrt(2 * 54 log 2) = 8.65).

Two implementations of the normals, one bit generator: numpy arrays always go through the
compiled numba kernel :func:`_normals_numba` (particles in parallel, several steps per call; the
``kernel_impl("numpy")`` switch of the mixture kernels does not apply: the array code below is
the kernel's reference in the tests), torch tensors through the array code of
:func:`_normals_xp` (any device). Both call :func:`threefry2x32` itself (numba compiles the same
Python function) and evaluate Box--Muller with the same operations in the same order, so the bits
are identical and the normals agree to an ulp of the backends' log/cos/sin (parity tests in
``tests/samplers/test_indexed_noise.py``).

Counter layout: c0 = the global particle index i (< 2^32), c1 = 2 (k P + p) + r with
P = ceil(d / 2) coordinate pairs, p = j // 2 the pair and r in {0, 1} which uniform of the pair;
so c1 < 2^32 bounds steps x d (:func:`check_counter_room`). Key: the 64-bit seed split into two
32-bit words.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .._validation import is_torch

MASK32 = 0xFFFFFFFF
#: Threefry-2x32 rotation constants (Random123 ``R_32x2``), rounds 1-8, repeated.
ROTATIONS = (13, 15, 26, 6, 17, 29, 16, 24)
#: Threefry key-schedule parity constant (Random123 ``SKEIN_KS_PARITY32``).
KS_PARITY = 0x1BD11BDA
ROUNDS = 20
TWO_PI = 2.0 * math.pi


def threefry2x32(k0, k1, c0, c1):
    """Threefry-2x32-20 of counters (c0, c1) under key (k0, k1): two words in [0, 2^32).

    Arguments are non-negative integers < 2^32 as numpy int64 arrays, torch int64 tensors or
    Python ints (broadcast together); the result has their backend. Written with operators only
    (``+ ^ & << >> |``) so one definition serves numpy and torch; known-answer vectors of
    Random123 in the tests."""
    k0 = k0 & MASK32
    k1 = k1 & MASK32
    ks = (k0, k1, (k0 ^ k1 ^ KS_PARITY) & MASK32)
    x0 = (c0 + ks[0]) & MASK32
    x1 = (c1 + ks[1]) & MASK32
    for i in range(ROUNDS):
        r = ROTATIONS[i % 8]
        x0 = (x0 + x1) & MASK32
        x1 = ((x1 << r) & MASK32) | (x1 >> (32 - r))
        x1 = x1 ^ x0
        if i % 4 == 3:  # key injection s after rounds 4, 8, 12, 16, 20
            s = (i + 1) // 4
            x0 = (x0 + ks[s % 3]) & MASK32
            x1 = (x1 + ks[(s + 1) % 3] + s) & MASK32
    return x0, x1


def _uniform53(w0, w1):
    """The 53-bit uniform of two words (int64 arrays/tensors), still as an integer in [0, 2^53)."""
    return (w0 << 21) | (w1 >> 11)


def _unit(f):
    """The uniform in (0, 1) of a 53-bit integer already converted to float64 (exact: < 2^53)."""
    return (f + 0.5) * (2.0 ** -53)


def check_counter_room(n_rows_total: int, steps_total: int, d: int) -> None:
    """ValueError unless particle indices fit c0 (< 2^32) and step x pair counters fit c1."""
    if n_rows_total > 2**32:
        raise ValueError(f"indexed noise supports at most 2^32 particles, got {n_rows_total}")
    pairs = (d + 1) // 2
    if 2 * steps_total * pairs > 2**32:
        raise ValueError(f"indexed noise supports steps x ceil(d/2) <= 2^31, got "
                         f"{steps_total} steps x {pairs} pairs")


def particle_rows(row0: int, n: int, like):
    """The global particle indices row0 .. row0 + n - 1 as int64, in ``like``'s backend and
    device."""
    if is_torch(like):
        import torch

        return torch.arange(row0, row0 + n, dtype=torch.int64, device=like.device)
    return np.arange(row0, row0 + n, dtype=np.int64)


def indexed_normals(seed: int, rows, step: int, d: int):
    """Standard normals z[r, j] for particles ``rows`` (an int64 array or tensor (n,) of global
    particle indices, e.g. :func:`particle_rows`) at step ``step``, coordinates j < d: shape
    (n, d), float64 in ``rows``' backend and device. ``step``: an int, or a 0-d int64 tensor on
    ``rows``' device (no host sync)."""
    if is_torch(rows):
        return _normals_xp(seed, rows, step, d)
    return indexed_normals_steps(seed, rows, int(step), 1, d)[0]


def indexed_normals_steps(seed: int, rows, step0: int, n_steps: int, d: int) -> np.ndarray:
    """The normals of steps step0 .. step0 + n_steps - 1 for numpy ``rows`` at once: float64
    (n_steps, n, d), from the compiled kernel (particles in parallel)."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    out = np.empty((int(n_steps), rows.shape[0], int(d)))
    k0, k1 = _key(seed)
    _normals_numba(k0, k1, rows, int(step0), out)
    return out


def indexed_bits53(seed: int, rows, step):
    """The 53-bit integers int64 of counters (rows, step) (broadcast together): one Threefry block
    each, in ``rows``' backend and device (random sort keys: a permutation is their argsort)."""
    k0, k1 = _key(seed)
    w0, w1 = threefry2x32(k0, k1, rows, step)
    return _uniform53(w0, w1)


def indexed_uniforms(seed: int, rows, step):
    """Uniforms float64 in (0, 1) (never 0 or 1) of counters (rows, step) (broadcast together):
    :func:`_unit` of :func:`indexed_bits53`, in ``rows``' backend and device."""
    return _unit(_float64(indexed_bits53(seed, rows, step)))


def substream_seed(seed: int, stream: int) -> int:
    """A 64-bit seed for an independent stream ``stream`` (an int in [0, 2^32)) of one seed:
    the Threefry block of counter (stream, 2^32 - 1) under the seed's key, used as a new key
    (Threefry output, so the substreams are unrelated streams). The block is not reserved:
    IndexedNoise reaches c1 = 2^32 - 1 only at steps x ceil(d/2) = 2^31, and computing the same
    bits there as noise is harmless."""
    k0, k1 = _key(seed)
    w0, w1 = threefry2x32(k0, k1, int(stream) & MASK32, MASK32)
    return int(w0) | (int(w1) << 32)


def _key(seed: int):
    """The two 32-bit key words of a 64-bit seed."""
    return int(seed) & MASK32, (int(seed) >> 32) & MASK32


def _normals_xp(seed: int, rows, step, d: int):
    """:func:`indexed_normals` as array operations on numpy or torch (the torch route; on numpy
    the independent reference of the compiled kernel in the tests)."""
    xp = _namespace(rows)
    pairs = (d + 1) // 2
    c0 = rows.reshape(-1, 1)                                     # (n, 1)
    lane = particle_rows(0, 2 * pairs, rows)                     # (2P,): pair p, uniform r
    c1 = (step * (2 * pairs) + lane).reshape(1, -1)              # (1, 2P)
    u = indexed_uniforms(seed, c0, c1)                           # (n, 2P) in (0, 1)
    u1, u2 = u[:, 0::2], u[:, 1::2]                              # (n, P) each
    rad = xp.sqrt(-2.0 * xp.log(u1))
    ang = TWO_PI * u2
    z = xp.stack((rad * xp.cos(ang), rad * xp.sin(ang)), -1)   # (n, P, 2) -> (n, 2P)
    return z.reshape(z.shape[0], 2 * pairs)[:, :d]


# the same Python functions, compiled (their module constants are frozen at compile time)
_threefry_nb = njit(cache=True, inline="always")(threefry2x32)
_uniform53_nb = njit(cache=True, inline="always")(_uniform53)
_unit_nb = njit(cache=True, inline="always")(_unit)


@njit(parallel=True, cache=True)
def _normals_numba(k0, k1, rows, step0, out):  # pragma: no cover
    """out[s, i, j] = the normal of particle rows[i] at step step0 + s, coordinate j: the
    counters, 53-bit uniforms and Box--Muller of :func:`_normals_xp`, per particle in parallel."""
    n_steps, n, d = out.shape
    pairs = (d + 1) // 2
    for i in prange(n):
        c0 = rows[i]
        for s in range(n_steps):
            base = (step0 + s) * (2 * pairs)
            for p in range(pairs):
                a0, a1 = _threefry_nb(k0, k1, c0, base + 2 * p)
                b0, b1 = _threefry_nb(k0, k1, c0, base + 2 * p + 1)
                u1 = _unit_nb(float(_uniform53_nb(a0, a1)))
                u2 = _unit_nb(float(_uniform53_nb(b0, b1)))
                # Box--Muller, the operations of _normals_xp in the same order
                rad = math.sqrt(-2.0 * math.log(u1))
                ang = TWO_PI * u2
                out[s, i, 2 * p] = rad * math.cos(ang)
                if 2 * p + 1 < d:
                    out[s, i, 2 * p + 1] = rad * math.sin(ang)


def _namespace(a):
    """numpy or torch, whichever ``a`` belongs to."""
    if is_torch(a):
        import torch

        return torch
    import numpy as np

    return np


def _float64(a):
    """An int64 array or tensor as float64 (torch would promote int64 + float to float32)."""
    return a.to(_namespace(a).float64) if is_torch(a) else a.astype("float64")
