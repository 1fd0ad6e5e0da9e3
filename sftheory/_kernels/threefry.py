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

Counter layout: c0 = the global particle index i (< 2^32), c1 = 2 (k P + p) + r with
P = ceil(d / 2) coordinate pairs, p = j // 2 the pair and r in {0, 1} which uniform of the pair;
so c1 < 2^32 bounds steps x d (:func:`check_counter_room`). Key: the 64-bit seed split into two
32-bit words.
"""
from __future__ import annotations

import math

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


def check_counter_room(n_rows_total: int, steps_total: int, d: int) -> None:
    """ValueError unless particle indices fit c0 (< 2^32) and step x pair counters fit c1."""
    if n_rows_total > 2**32:
        raise ValueError(f"indexed noise supports at most 2^32 particles, got {n_rows_total}")
    pairs = (d + 1) // 2
    if 2 * steps_total * pairs > 2**32:
        raise ValueError(f"indexed noise supports steps x ceil(d/2) <= 2^31, got "
                         f"{steps_total} steps x {pairs} pairs")


def indexed_normals(seed: int, rows, step: int, d: int, to_float):
    """Standard normals z[r, j] for particles ``rows`` (an int64 array or tensor (n,) of global
    particle indices) at step ``step``, coordinates j < d: shape (n, d), float64 in ``rows``'s
    backend. ``step``: an int, or a 0-d int64 tensor on ``rows``' device (no host sync).
    ``to_float(int_array)`` converts an int64 array/tensor to float64 (the only
    backend-specific operation besides the math functions, which come from ``rows``' module)."""
    pairs = (d + 1) // 2
    k0, k1 = int(seed) & MASK32, (int(seed) >> 32) & MASK32
    c0 = rows.reshape(-1, 1)                                     # (n, 1)
    lane = _arange_like(rows, 2 * pairs)                         # (2P,): pair p, uniform r
    c1 = (step * (2 * pairs) + lane).reshape(1, -1)              # (1, 2P)
    w0, w1 = threefry2x32(k0, k1, c0, c1)                        # (n, 2P) each
    u = (to_float(_uniform53(w0, w1)) + 0.5) * (2.0 ** -53)
    u1, u2 = u[:, 0::2], u[:, 1::2]                              # (n, P) each
    mod = _math_module(u)
    rad = mod.sqrt(-2.0 * mod.log(u1))
    ang = TWO_PI * u2
    z = _stack_last(rad * mod.cos(ang), rad * mod.sin(ang))      # (n, P, 2) -> (n, 2P)
    return z.reshape(z.shape[0], 2 * pairs)[:, :d]


def _arange_like(rows, n):
    if is_torch(rows):
        import torch

        return torch.arange(n, dtype=torch.int64, device=rows.device)
    import numpy as np

    return np.arange(n, dtype=np.int64)


def _math_module(a):
    if is_torch(a):
        import torch

        return torch
    import numpy as np

    return np


def _stack_last(a, b):
    if is_torch(a):
        import torch

        return torch.stack((a, b), dim=-1)
    import numpy as np

    return np.stack((a, b), axis=-1)
