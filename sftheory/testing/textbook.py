r"""The forward SDEs as the textbooks write them, independent of sftheory's process machinery.

Every function here reads only a process's *parameters* (``OU.a``, ``OU.sigma``,
``VP.beta_min``, ``VP.beta_max``, ``VE.sigma``) and writes the SDE from its definition:

- OU: :math:`dX = -a X\,dt + \sigma\,dW`;
- VP (linear schedule): :math:`\beta(t) = \beta_{min} + t(\beta_{max} - \beta_{min})`,
  :math:`dX = -\tfrac12\beta(t) X\,dt + \sqrt{\beta(t)}\,dW`;
- VE: :math:`dX = dW`, or :math:`dX = \sigma^t\,dW` (Song et al.'s geometric schedule).

It never calls the library's ``kappa``, ``drift_coef``, ``diffusion``, ``clock`` or
``conditional``: checks and tests use it as the reference those are compared with, so an error
in the library's clock or coefficients cannot hide behind itself.

>>> from sftheory.processes import VP
>>> round(drift_coef(VP(), 1.0), 12), round(diffusion_sq(VP(), 1.0), 12)
(10.0, 20.0)
"""
from __future__ import annotations

import numpy as np

from ..processes import OU, VE, VP


def _kind(process) -> str:
    if isinstance(process, OU):
        return "OU"
    if isinstance(process, VP):
        return "VP"
    if isinstance(process, VE):
        return "VE"
    raise TypeError(f"no textbook definition for {process!r}")


def drift_coef(process, t):
    """a(t) with drift f(x, t) = -a(t) x, from the SDE's definition (t scalar or array)."""
    t = np.asarray(t, dtype=np.float64)
    kind = _kind(process)
    if kind == "OU":
        return process.a + 0.0 * t
    if kind == "VP":
        return 0.5 * (process.beta_min + t * (process.beta_max - process.beta_min))
    return 0.0 * t


def diffusion_sq(process, t):
    """g(t)^2 from the SDE's definition (t scalar or array)."""
    t = np.asarray(t, dtype=np.float64)
    kind = _kind(process)
    if kind == "OU":
        return process.sigma**2 + 0.0 * t
    if kind == "VP":
        return process.beta_min + t * (process.beta_max - process.beta_min)
    if process.sigma is None:
        return 1.0 + 0.0 * t
    return process.sigma ** (2.0 * t)


def drift(process, x, t):
    """f(x, t) = -a(t) x for points x (N, d); t a scalar or one time per point (N,)."""
    x = np.asarray(x, dtype=np.float64)
    a = np.asarray(drift_coef(process, t), dtype=np.float64)
    return -(a[:, None] if a.ndim == 1 else a) * x


def moment_ode(process, t0: float, t1: float, t_eval=None, *, rtol: float = 1e-12):
    r"""Integrate m' = -a(t) m, v' = -2 a(t) v + g(t)^2 from (m, v) = (1, 0) at t0 (scipy DOP853).

    The solution at t is the law of X_t given X_{t0} = x: N(m x, v I). Returns scipy's
    ``OdeResult`` (``.t``, ``.y[0]`` = m, ``.y[1]`` = v).
    """
    from scipy import integrate

    def rhs(t, y):
        a = float(drift_coef(process, t))
        return [-a * y[0], -2.0 * a * y[1] + float(diffusion_sq(process, t))]

    return integrate.solve_ivp(rhs, (t0, t1), [1.0, 0.0], method="DOP853", rtol=rtol,
                               atol=1e-15, t_eval=t_eval)


def exact_mv(process, t: float, s: float = 0.0) -> tuple[float, float]:
    """(m, v) of X_t | X_s for 0 <= s <= t from the textbook closed forms, in mpmath.

    OU: m = e^{-a(t-s)}, v = sigma^2 (1 - e^{-2a(t-s)}) / (2a); VP: with B(u) = beta_min u +
    (beta_max - beta_min) u^2 / 2, m = e^{-(B(t)-B(s))/2}, v = 1 - m^2; VE: m = 1, v = t - s, or
    (sigma^{2t} - sigma^{2s}) / (2 log sigma). Evaluated at 40 significant digits and rounded
    once to float64.
    """
    import mpmath as mp

    kind = _kind(process)
    with mp.workdps(40):
        t_, s_ = mp.mpf(float(t)), mp.mpf(float(s))
        if kind == "OU":
            a, sig = mp.mpf(process.a), mp.mpf(process.sigma)
            m = mp.exp(-a * (t_ - s_))
            v = sig**2 * (1 - mp.exp(-2 * a * (t_ - s_))) / (2 * a)
        elif kind == "VP":
            b0, b1 = mp.mpf(process.beta_min), mp.mpf(process.beta_max)

            def big_b(u):
                return b0 * u + (b1 - b0) * u**2 / 2

            db = big_b(t_) - big_b(s_)
            m = mp.exp(-db / 2)
            v = -mp.expm1(-db)
        else:
            m = mp.mpf(1)
            if process.sigma is None:
                v = t_ - s_
            else:
                sig = mp.mpf(process.sigma)
                v = (sig ** (2 * t_) - sig ** (2 * s_)) / (2 * mp.log(sig))
        return float(m), float(v)


def clock(process, t: float) -> float:
    r"""theta(t) = \int_0^t g^2 by the textbook closed form in mpmath (OU: sigma^2 t; VP:
    beta_min t + (beta_max - beta_min) t^2 / 2; VE: t or (sigma^{2t} - 1) / (2 log sigma))."""
    import mpmath as mp

    kind = _kind(process)
    with mp.workdps(40):
        t_ = mp.mpf(float(t))
        if kind == "OU":
            return float(mp.mpf(process.sigma) ** 2 * t_)
        if kind == "VP":
            b0, b1 = mp.mpf(process.beta_min), mp.mpf(process.beta_max)
            return float(b0 * t_ + (b1 - b0) * t_**2 / 2)
        if process.sigma is None:
            return float(t_)
        sig = mp.mpf(process.sigma)
        return float(mp.expm1(2 * t_ * mp.log(sig)) / (2 * mp.log(sig)))


def stationary_variance(process) -> float | None:
    """Per-coordinate variance of the invariant law (v(t) as t -> oo), None for VE."""
    kind = _kind(process)
    if kind == "OU":
        return process.sigma**2 / (2 * process.a)
    if kind == "VP":
        return 1.0
    return None
