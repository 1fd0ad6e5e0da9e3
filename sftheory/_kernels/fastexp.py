r"""A vectorizable ``exp`` for the kernels' softmax weights, exp(l_k - max_j l_j) <= 1.

LLVM cannot vectorize calls to libm's ``exp`` (numba has no SVML on this stack), and in the
mixture kernels those calls were about half of a 2-D, 4-component score evaluation. This is the
textbook algorithm written in plain arithmetic, so a loop over components compiles to SIMD code:

* argument reduction (Cody-Waite): y = n ln 2 + r with n = round(y / ln 2), |r| <= ln(2)/2,
  ln 2 split into a 32-bit head (n * LN2_HI exact for |n| < 2^21) and a tail;
* exp(r) by its Taylor polynomial of degree 13 in Horner form (truncation
  (ln 2 / 2)^14 / 14! < 5e-18, below half an ulp of 1);
* the factor 2^n assembled from its bits: round-to-nearest of y/ln 2 by adding 1.5 * 2^52, so the
  integer n sits in the low mantissa bits, shifted into the exponent field (no float-to-int
  conversion, which AVX2 lacks for 64-bit lanes).

Domain and accuracy: y in [-708, 709]: at most 1.3 ulp from the correctly rounded value (measured
against mpmath, ``tests/models/test_kernels.py``). y < -708 returns 0.0 (the exact value is below
3.3e-308, i.e. zero relative to the largest weight, which is 1); y = -inf gives 0.0, y = 0 gives
exactly 1.0, NaN propagates. Source of the method: J.-M. Muller, *Elementary Functions*, ch. 6
(additive range reduction) and Cody & Waite (1980).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

LOG2E = 1.4426950408889634
LN2_HI = 6.93147180369123816490e-01  # 32 significant bits: n * LN2_HI is exact
LN2_LO = 1.90821492927058770002e-10  # ln 2 - LN2_HI
ROUND_SHIFT = 6755399441055744.0  # 1.5 * 2^52: x + ROUND_SHIFT rounds x to an integer in the mantissa
EXP_MIN_ARG = -708.0  # below: 0.0 (2^n would leave the normal range)
_C = tuple(1.0 / math.factorial(i) for i in range(14))


@intrinsic
def _f64_from_bits(typingctx, x):
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return sig, codegen


@intrinsic
def _f64_bits(typingctx, x):
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int64))

    return sig, codegen


_C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12, _C13 = _C[2:]


@njit(cache=True, inline="always")
def exp_weight(y):  # pragma: no cover
    """exp(y) for y <= 709 within 1.3 ulp, 0.0 for y < -708 (see the module docstring)."""
    yc = EXP_MIN_ARG if y < EXP_MIN_ARG else y  # NaN stays NaN
    t = yc * LOG2E + ROUND_SHIFT
    n = t - ROUND_SHIFT  # round(yc / ln 2), exactly
    r = (yc - n * LN2_HI) - n * LN2_LO
    p = _C13
    p = p * r + _C12
    p = p * r + _C11
    p = p * r + _C10
    p = p * r + _C9
    p = p * r + _C8
    p = p * r + _C7
    p = p * r + _C6
    p = p * r + _C5
    p = p * r + _C4
    p = p * r + _C3
    p = p * r + _C2
    p = p * r + 1.0
    p = p * r + 1.0
    scale = _f64_from_bits((_f64_bits(t) + np.int64(1023)) << np.int64(52))  # 2^n
    return 0.0 if y < EXP_MIN_ARG else p * scale


@njit(cache=True)
def exp_weights(y, out):  # pragma: no cover
    """out[i] = exp_weight(y[i]) (for tests and benchmarks of the function itself)."""
    for i in range(y.shape[0]):
        out[i] = exp_weight(y[i])
