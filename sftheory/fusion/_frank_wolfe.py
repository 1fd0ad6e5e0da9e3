r"""Frank-Wolfe on the probability simplex ([SF] App. C.1.2, Algorithm 2).

The linear minimization oracle over the simplex is a vertex: v = e_j, j = argmin_j grad_j.
The Frank-Wolfe (duality) gap g(x) = <grad f(x), x - v> >= f(x) - f* bounds the primal gap.

Step rules (``step``):

* ``"paper"`` -- [SF] Alg. 2 as printed: gamma_tau = 1 if tau = 1, 2/(tau + 3) if tau > 1, with
  the loop starting at tau = 0. The printed rule leaves gamma_0 undefined; it is read here as
  gamma_0 = 1 (a full step to the first vertex), the value the base case of the proof of [SF]
  (22) needs (h_1 <= L D^2 / 2 follows from (23) only with gamma_0 = 1). So the first two steps
  are full steps.
* ``"standard"`` -- the usual function-agnostic rule gamma_tau = 2/(tau + 2), tau >= 0 (Jaggi 2013).
* ``"line-search"`` -- exact line search along the Frank-Wolfe direction (root of the
  directional derivative, from ``grad``).
* ``"away"`` -- away-step Frank-Wolfe (Lacoste-Julien & Jaggi 2015) with exact line search:
  linear convergence for strongly convex objectives, reaches faces exactly (drop steps).

Backends: the driver works on host float64 numpy vectors (the iterate has k entries, k tiny);
``grad`` and ``objective`` may compute on any device (the torch route of
:class:`~sftheory.fusion.FusionObjective` does) as long as they take and return host numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from .._refs import source
from .._validation import check_count, check_real, check_simplex

STEPS = ("paper", "standard", "line-search", "away")


@source("SF", "App. C.1.2, Algorithm 2, line 5", "sf.alg2")
def paper_step(tau: int) -> float:
    """gamma_tau of [SF] Alg. 2: 1 for tau = 1 (and for tau = 0, which the paper leaves
    undefined), 2/(tau + 3) for tau > 1."""
    return 1.0 if tau <= 1 else 2.0 / (tau + 3.0)


def standard_step(tau: int) -> float:
    """gamma_tau = 2/(tau + 2), tau >= 0 (the standard function-agnostic rule)."""
    return 2.0 / (tau + 2.0)


@dataclass(frozen=True)
class FrankWolfeResult:
    """``x`` final point; ``iterates`` (T+1, k); ``objective`` (T+1,) or None; ``gaps`` (T+1,)
    Frank-Wolfe gaps <grad f(x_tau), x_tau - v_tau>; ``primal_gaps`` f(x_tau) - f_star or None;
    ``steps`` (T,) the gamma used; ``converged`` (gap <= gap_tol); ``n_iter`` = T; ``step``."""

    x: np.ndarray
    iterates: np.ndarray
    objective: np.ndarray | None
    gaps: np.ndarray
    primal_gaps: np.ndarray | None
    steps: np.ndarray
    converged: bool
    n_iter: int
    step: str


def _grad(grad, x, k):
    g = np.asarray(grad(x.copy()), dtype=np.float64).reshape(-1)
    if g.shape != (k,):
        raise ValueError(f"grad must return a vector of length {k}, got shape {g.shape}")
    if not np.all(np.isfinite(g)):
        raise ValueError(f"grad returned non-finite values at x = {x}")
    return g


def _on_simplex(y):
    """y with rounding negatives (|y_i| ~ 1e-17) clipped and renormalized."""
    y = np.maximum(y, 0.0)
    return y / y.sum()


def _line_search(grad, x, d, gmax, k):
    """Exact line search on [0, gmax] along d for a convex f: the root of the directional
    derivative phi'(g) = <grad f(x + g d), d> (brentq to 1e-15), or gmax if phi' <= 0 there.
    Root finding on the derivative resolves the step to rounding, where minimizing f values
    would stall at sqrt(eps) ~ 1e-8."""
    def dphi(g):
        return float(_grad(grad, _on_simplex(x + g * d), k) @ d)

    lo = dphi(0.0)
    if lo >= 0.0:
        return 0.0
    hi = dphi(gmax)
    if hi <= 0.0:
        return gmax
    return float(brentq(dphi, 0.0, gmax, xtol=1e-15, rtol=4 * np.finfo(float).eps))


@source("SF", "App. C.1.2, Algorithm 2", "sf.alg2")
def frank_wolfe(grad, x0, *, objective=None, step: str = "paper", max_iter: int = 1000,
                gap_tol: float = 1e-8, f_star=None) -> FrankWolfeResult:
    """Minimize a smooth convex f over the probability simplex by Frank-Wolfe ([SF] Alg. 2).

    ``grad(x)`` -> (k,); ``x0`` a point of the simplex; ``objective(x)`` -> float (recorded
    at each iterate when given); stops when the Frank-Wolfe gap is
    <= ``gap_tol`` or after ``max_iter`` steps. ``f_star`` (known optimum) adds primal gaps.
    """
    if not callable(grad):
        raise ValueError("grad must be callable")
    if objective is not None and not callable(objective):
        raise ValueError("objective must be callable or None")
    if step not in STEPS:
        raise ValueError(f"step must be one of {STEPS}, got {step!r}")
    max_iter = check_count(max_iter, "max_iter")
    gap_tol = check_real(gap_tol, "gap_tol")
    if gap_tol < 0:
        raise ValueError(f"gap_tol must be >= 0, got {gap_tol}")
    if f_star is not None:
        f_star = check_real(f_star, "f_star")
        if objective is None:
            raise ValueError("f_star (primal gaps) needs objective")
    x = check_simplex(x0, "x0").copy()
    k = x.shape[0]
    eye = np.eye(k)
    iterates, gaps, steps, objs = [x.copy()], [], [], []
    converged = False
    tau = 0
    while True:
        g = _grad(grad, x, k)
        j = int(np.argmin(g))
        d_fw = eye[j] - x
        gap = float(-g @ d_fw)
        gaps.append(gap)
        if objective is not None:
            objs.append(float(objective(x)))
        if gap <= gap_tol:
            converged = True
            break
        if tau >= max_iter:
            break
        if step == "paper":
            d, gamma = d_fw, paper_step(tau)
        elif step == "standard":
            d, gamma = d_fw, standard_step(tau)
        elif step == "line-search":
            d = d_fw
            gamma = _line_search(grad, x, d, 1.0, k)
        else:  # away steps
            support = np.flatnonzero(x > 0)
            a = int(support[np.argmax(g[support])])
            d_away = x - eye[a]
            if -g @ d_fw >= -g @ d_away or x[a] >= 1.0:
                d, gmax = d_fw, 1.0
            else:
                d, gmax = d_away, x[a] / (1.0 - x[a])
            gamma = _line_search(grad, x, d, gmax, k)
            if d is d_away and gamma >= gmax:  # drop step: vertex a leaves the support exactly
                x = x + gamma * d
                x[a] = 0.0
                x = _on_simplex(x)
                steps.append(gamma)
                iterates.append(x.copy())
                tau += 1
                continue
        x = _on_simplex(x + gamma * d)
        steps.append(gamma)
        iterates.append(x.copy())
        tau += 1
    objective_arr = np.array(objs) if objective is not None else None
    primal = None
    if f_star is not None and objective_arr is not None:
        primal = objective_arr - f_star
    return FrankWolfeResult(x=x, iterates=np.array(iterates), objective=objective_arr,
                            gaps=np.array(gaps), primal_gaps=primal, steps=np.array(steps),
                            converged=converged, n_iter=tau, step=step)
