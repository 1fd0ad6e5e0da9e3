r"""Exact d-dimensional Gaussian theory of the ODE-vs-SDE paper ([OS], ``ode-vs-sde-paper.md``).

The d-dimensional version of :mod:`sftheory.theory.odesde` for p0 = N(0, Sigma0) with a full
symmetric positive definite covariance; same process, cases, h and time conventions.

Setting
-------
Forward process (1) with f = -x/2, g = 1 ([OS] Assumption 3.1): p_tau = N(0, Sigma_tau) with

    Sigma_tau = I + (Sigma0 - I) e^{-tau},   grad log p_tau(x) = -Sigma_tau^{-1} x,
    d Sigma_tau / d tau = I - Sigma_tau.

Generative time t in [0, T] is forward time tau = T - t; V0(t) := Sigma_{T-t}, P(t) := V0(t)^{-1},
so dV0/dt = V0 - I. The score error is E_t(x) = c(t) grad log p_{T-t}(x) = -c(t) P(t) x with c
from [OS] (44) (``sftheory.theory._cases``). The perturbed generative SDE (7) is linear,

    dY = A(t) Y dt + h_t dW,   A(t) = I/2 - (1 + h_t^2) (1 + eps c(t)) P(t) / 2,

so Y_t is a centred Gaussian whose covariance V solves the Lyapunov ODE
dV/dt = A V + V A^T + h_t^2 I, V(0) = Sigma_T. At eps = 0, A V0 + V0 A^T + h^2 I = V0 - I =
dV0/dt, so V = V0 for every h (Lemma B.1).

Deviation form (integrated, full d x d matrices). With D := V - V0 and A V0 = V0/2 -
(1 + h^2)(1 + eps c) I / 2 (P and V0 commute),

    dD/dt = A D + D A^T - (1 + h_t^2) eps c(t) I,   D(0) = 0.                          (D_d)

KL(p0 || q~_T) = KL(N(0, Sigma0) || N(0, S)), S = Sigma0 + D(T):
(1/2) sum_i (x_i - log1p(x_i)) with x_i the eigenvalues of S^{-1} Sigma0 - I = -S^{-1} D(T)
(computed as those of the symmetric -L^{-1} D L^{-T}, S = L L^T, so small eps loses nothing).

Sensitivity (eps-derivative at eps = 0), U := dD/d eps:

    dU/dt = A0 U + U A0^T - (1 + h_t^2) c(t) I,   U(0) = 0,   A0 = I/2 - (1 + h_t^2) P / 2,   (S_d)

and since KL(N(0, A) || N(0, A + delta)) = tr(A^{-1} delta A^{-1} delta)/4 + O(delta^3),

    L = tr((Sigma0^{-1} U(T))^2) / 4                        ([OS] Prop. 3.2, eqs (9)-(10)).

For d = 1 these are exactly ``odesde``'s (D), (S) and L = u^2/(4 sigma0^4). Because every matrix
here is a function of Sigma0, the eigenbasis of Sigma0 decouples the problem into d independent
1D problems with sigma0^2 = the eigenvalues, so KL and L are the sums of the 1D values; the
tests use that as the independent route (this module never diagonalizes Sigma0 for the ODE).

Integration: ``scipy.integrate.solve_ivp`` (DOP853, rtol 1e-12, atol 1e-14 on the
eps-normalised state), restarted at the jumps of c (cases 4, 5), as in ``odesde``.
"""
from __future__ import annotations

import math

import numpy as np

from sftheory._validation import as_float_array, check_positive, check_real, check_spd

from ._cases import case_function as _case_function, h_function as _h_function
from ._cases import half_x_minus_log1p as _half_x_minus_log1p
from ._cases import integrate_piecewise

__all__ = ["gaussian_kl_nd", "gaussian_L_nd"]

RTOL = 1e-12
ATOL = 1e-14


def _check_sigma0(Sigma0) -> np.ndarray:
    S = as_float_array(Sigma0, "Sigma0", ndim=2)
    check_spd(S, "Sigma0")
    return 0.5 * (S + S.T)


def _check_common(Sigma0, T, h, case):
    S = _check_sigma0(Sigma0)
    T = check_positive(T, "T")
    hfun = _h_function(h, T)
    cfun, breaks = _case_function(case, T)
    return S, T, hfun, cfun, breaks


def _precision(S0, T, t):
    """P(t) = Sigma_{T-t}^{-1} (full matrix inverse, [OS] (42) in d dimensions)."""
    d = S0.shape[0]
    eye = np.eye(d)
    V0 = eye + (S0 - eye) * math.exp(-(T - t))
    P = np.linalg.inv(V0)
    return 0.5 * (P + P.T)


def _integrate(rhs, y0, T, breaks):
    return integrate_piecewise(rhs, y0, T, breaks, rtol=RTOL, atol=ATOL)


def _deviation_nd(S0, T, hfun, cfun, breaks, eps):
    """D(T) = Cov(Y~_T) - Sigma0 from (D_d), integrated as Z = D / eps."""
    d = S0.shape[0]
    eye = np.eye(d)
    scale = eps if eps != 0.0 else 1.0

    def rhs(t, z):
        Z = z.reshape(d, d)
        k = 1.0 + hfun(t) ** 2
        c = cfun(t)
        A = 0.5 * eye - 0.5 * k * (1.0 + eps * c) * _precision(S0, T, t)
        dZ = A @ Z + Z @ A.T - (k * eps * c / scale) * eye
        return dZ.ravel()

    Z = _integrate(rhs, np.zeros(d * d), T, breaks).reshape(d, d)
    return 0.5 * (Z + Z.T) * scale


def _sensitivity_nd(S0, T, hfun, cfun, breaks):
    """U(T) = d Cov(Y~_T)/d eps at eps = 0, from (S_d)."""
    d = S0.shape[0]
    eye = np.eye(d)

    def rhs(t, u):
        U = u.reshape(d, d)
        k = 1.0 + hfun(t) ** 2
        A0 = 0.5 * eye - 0.5 * k * _precision(S0, T, t)
        return (A0 @ U + U @ A0.T - k * cfun(t) * eye).ravel()

    U = _integrate(rhs, np.zeros(d * d), T, breaks).reshape(d, d)
    return 0.5 * (U + U.T)


def kl_gaussian_cov_deviation(Sigma0, D) -> float:
    """KL(N(0, Sigma0) || N(0, Sigma0 + D)) in nats, stable for small D (series per eigenvalue).

    (1/2) sum_i (x_i - log1p x_i), x_i the eigenvalues of -L^{-1} D L^{-T}, L L^T = Sigma0 + D.
    """
    S0 = np.asarray(Sigma0, dtype=np.float64)
    D = np.asarray(D, dtype=np.float64)
    S = S0 + D
    try:
        Lc = np.linalg.cholesky(0.5 * (S + S.T))
    except np.linalg.LinAlgError:  # pragma: no cover - a linear SDE keeps its covariance SPD
        raise FloatingPointError("generated covariance is not positive definite") from None
    B = -np.linalg.solve(Lc, np.linalg.solve(Lc, D).T)
    x = np.linalg.eigvalsh(0.5 * (B + B.T))
    return float(sum(_half_x_minus_log1p(float(xi)) for xi in x))


def gaussian_kl_nd(Sigma0, T, h, eps, case) -> float:
    """KL(p0 || q~_T) in nats for p0 = N(0, Sigma0) in d dimensions, f = -x/2, g = 1.

    The d-dimensional version of :func:`sftheory.theory.odesde.gaussian_kl` ([OS] App. G in d
    dimensions): ``Sigma0`` a (d, d) symmetric positive definite covariance (ValueError
    otherwise), ``T`` > 0, ``h`` >= 0 or a callable h(t), ``eps`` real, ``case`` 1..5 of [OS]
    (44) or a callable c(t); E_t = c(t) grad log p_{T-t}. Exact up to the ODE tolerance: the
    covariance deviation (D_d) of the module docstring, full matrices.
    """
    S0, T, hfun, cfun, breaks = _check_common(Sigma0, T, h, case)
    eps = check_real(eps, "eps")
    if eps == 0.0:
        return 0.0
    D = _deviation_nd(S0, T, hfun, cfun, breaks, eps)
    return kl_gaussian_cov_deviation(S0, D)


def gaussian_L_nd(Sigma0, T, h, case) -> float:
    """Leading coefficient L(h) of KL(p0 || q~_T) = L eps^2 + O(eps^3), p0 = N(0, Sigma0).

    [OS] Prop. 3.2 (9)-(10) for a d-dimensional Gaussian: L = tr((Sigma0^{-1} U(T))^2)/4 with U
    the covariance sensitivity (S_d) of the module docstring. Same arguments as
    :func:`gaussian_kl_nd`; d = 1 gives :func:`sftheory.theory.odesde.gaussian_L`.
    """
    S0, T, hfun, cfun, breaks = _check_common(Sigma0, T, h, case)
    U = _sensitivity_nd(S0, T, hfun, cfun, breaks)
    W = np.linalg.solve(S0, U)
    return float(np.trace(W @ W)) / 4.0
