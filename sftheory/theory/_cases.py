"""Score-error cases of [OS] eq. (44) and the generative diffusion h, shared by every function of
:mod:`sftheory.theory` (the exact Gaussian theory, the linearized Fokker-Planck solver, the
bounds): one definition of c(t) and h(t), in the paper's generative time t in [0, T]."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy.integrate import solve_ivp

from sftheory._validation import check_real

__all__ = ["CASES", "h_function", "case_function", "half_x_minus_log1p", "integrate_piecewise"]

_GRID = 1001  # points of [0, T] on which callables h(t), c(t) are checked

CASES = {
    1: "c(t) = 1",
    2: "c(t) = -1",
    3: "c(t) = (1 + sin(2 pi t / T)) / 2",
    4: "c(t) = 1{t < 0.95 T}",
    5: "c(t) = 1{t > 0.99 T}",
}


def _check_callable_values(fn, T, name, *, nonneg):
    grid = np.linspace(0.0, T, _GRID)
    for t in grid:
        try:
            val = fn(float(t))
        except Exception as exc:  # noqa: BLE001 - report which argument failed
            raise ValueError(f"{name}(t) raised {type(exc).__name__} at t = {t:.6g}: {exc}") from exc
        val = np.asarray(val)
        if val.ndim != 0 or val.dtype.kind not in "fiu":
            raise ValueError(f"{name}(t) must return a real scalar, got {val!r} at t = {t:.6g}")
        val = float(val)
        if not math.isfinite(val):
            raise ValueError(f"{name}(t) must be finite, got {val} at t = {t:.6g}")
        if nonneg and val < 0:
            raise ValueError(f"{name}(t) must be >= 0, got {val} at t = {t:.6g}")


def h_function(h, T) -> Callable[[float], float]:
    if callable(h):
        _check_callable_values(h, T, "h", nonneg=True)
        return lambda t: float(h(t))
    if isinstance(h, (bool, np.bool_)):
        raise ValueError(f"h must be a real number >= 0 or a callable h(t), got {h!r}")
    try:
        hv = check_real(h, "h")
    except ValueError:
        raise ValueError(f"h must be a finite real number >= 0 or a callable h(t), got {h!r}") from None
    if hv < 0:
        raise ValueError(f"h must be >= 0, got {hv}")
    return lambda t: hv


def case_function(case, T):
    """(c, breakpoints inside (0, T)) for case 1..5 of (44) or a callable c(t)."""
    if callable(case):
        _check_callable_values(case, T, "case", nonneg=False)
        return (lambda t: float(case(t))), ()
    if isinstance(case, (bool, np.bool_)) or not isinstance(case, (int, np.integer)) \
            or int(case) not in CASES:
        raise ValueError(f"case must be one of 1, 2, 3, 4, 5 (paper eq. (44)) or a callable c(t), "
                         f"got {case!r}")
    case = int(case)
    if case == 1:
        return (lambda t: 1.0), ()
    if case == 2:
        return (lambda t: -1.0), ()
    if case == 3:
        return (lambda t: 0.5 * (1.0 + math.sin(2.0 * math.pi * t / T))), ()
    if case == 4:
        tb = 0.95 * T
        return (lambda t: 1.0 if t < tb else 0.0), (tb,)
    tb = 0.99 * T
    return (lambda t: 1.0 if t > tb else 0.0), (tb,)


def half_x_minus_log1p(x):
    """(x - log1p(x)) / 2 without cancellation for small |x| (x > -1)."""
    if abs(x) < 0.05:
        # sum_{k>=2} (-1)^k x^k / k, 40 terms: truncation < 0.05^41 relative to x^2
        total = 0.0
        p = x * x
        for k in range(2, 42):
            total += (p / k) if k % 2 == 0 else -(p / k)
            p *= x
        return 0.5 * total
    return 0.5 * (x - math.log1p(x))


def integrate_piecewise(rhs, y0, T, breaks, *, rtol, atol):
    """solve_ivp(DOP853) of y' = rhs(t, y) on [0, T], restarted at each jump of c (``breaks``
    inside (0, T)); returns y(T) as a 1-D float64 array."""
    knots = [0.0, *sorted(b for b in breaks if 0.0 < b < T), T]
    y = np.atleast_1d(np.asarray(y0, dtype=np.float64)).ravel()
    for t0, t1 in zip(knots[:-1], knots[1:]):
        if t1 <= t0:
            continue
        sol = solve_ivp(rhs, (t0, t1), y, method="DOP853", rtol=rtol, atol=atol)
        if not sol.success:  # pragma: no cover - DOP853 on a linear ODE does not fail
            raise RuntimeError(f"solve_ivp failed on [{t0}, {t1}]: {sol.message}")
        y = sol.y[:, -1]
    return y
