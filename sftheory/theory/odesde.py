r"""Exact 1D Gaussian theory of the ODE-vs-SDE paper (``../shared/papers/ode-vs-sde-paper.md``).

Setting (paper Sec. 2-3 and App. G)
-----------------------------------
Forward process (1) with f_t(x) = -x/2, g = 1 and p0 = N(0, sigma0^2); by (42)

    p_tau = N(0, sigma_tau^2),  sigma_tau^2 = 1 + (sigma0^2 - 1) e^{-tau},
    grad log p_tau(x) = -x / sigma_tau^2,        d sigma_tau^2 / d tau = 1 - sigma_tau^2.

Generative time t in [0, T] is forward time tau = T - t; write v0(t) := sigma_{T-t}^2
(so dv0/dt = v0 - 1).  The perturbed generative process (7), with the drift of (3) and the
trained score (6), S = grad log p + eps * E, is

    dY = [ Y/2 + (1 + h_t^2)/2 * (S_t(Y) + eps E_t(Y)) ] dt + h_t dW,   law(Y_0) = p_T,

and the score error is E_t(x) = c(t) grad log p_{T-t}(x) = -c(t) x / v0(t), c from (44):
case 1: c = 1; case 2: c = -1; case 3: c = (1 + sin(2 pi t/T))/2; case 4: c = 1{t < 0.95 T};
case 5: c = 1{t > 0.99 T}; or any callable c(t) of generative time.  This is App. G's ansatz
(43), E_t(x) = alpha_t x, with alpha_t = -c(t)/v0(t).

Variance ODE
------------
The SDE is linear, dY = a(t) Y dt + h_t dW with

    a(t) = 1/2 - (1 + h_t^2) (1 + eps c(t)) / (2 v0(t)),

so Y_t stays a centred Gaussian and its variance v(t) = Var(Y_t) solves (Ito)

    dv/dt = 2 a(t) v + h_t^2,   v(0) = sigma_T^2 = v0(0).                         (V)

Check of (3) / Lemma B.1: at eps = 0, 2 a v0 + h^2 = v0 - (1 + h^2) + h^2 = v0 - 1 = dv0/dt,
so v = v0 for every h and v(T) = sigma0^2 (q_T = p0).

Deviation form (what is integrated).  With y := v - v0, subtracting dv0/dt = v0 - 1 from (V),
and using 2 a v0 = v0 - (1 + h^2)(1 + eps c),

    dy/dt = 2 a(t) y - (1 + h_t^2) eps c(t),    y(0) = 0,                          (D)

exactly (no cancellation: y = 0 identically at eps = 0).  App. G.1's explicit formula is the
variation-of-constants solution of (V): Var(Y_T) = G_T^{-2} Var(Y_0) + int_0^T G_T^{-2} G_t^2
h_t^2 dt with G_t = exp(-int_0^t a).  For constant c and h it is closed form, because
int_{tau1}^{tau2} dtau / sigma_tau^2 = log(e^{tau2} sigma_{tau2}^2 / (e^{tau1} sigma_{tau1}^2)).

KL (App. G.1)
-------------
q~_T = N(0, s^2) with s^2 = v(T) = sigma0^2 + y(T), and

    KL(p0 || q~_T) = 1/2 log(s^2/sigma0^2) + sigma0^2/(2 s^2) - 1/2 = (x - log1p(x))/2,
    x := sigma0^2/s^2 - 1 = -y(T)/s^2,

evaluated with a series for small |x| (no cancellation for small eps).

Leading coefficient L (Prop. 3.2, KL = L eps^2 + O(eps^3))
---------------------------------------------------------
y(T) = eps u(T) + O(eps^2) with the sensitivity u = dy/d eps at eps = 0; differentiating (D):

    du/dt = 2 a_0(t) u - (1 + h_t^2) c(t),   u(0) = 0,   a_0 = 1/2 - (1 + h_t^2)/(2 v0(t)).   (S)

For KL(N(0, A) || N(0, A + delta)) = delta^2/(4 A^2) + O(delta^3) (expand (x - log1p x)/2 with
x = -delta/(A + delta)), so with A = sigma0^2, delta = eps u(T):

    L = u(T)^2 / (4 sigma0^4).

(S) is the Gaussian form of v_T in (10): v_T = u(T) * d/dA N(0, A)|_{A = sigma0^2} and
1/2 int v_T^2/p0 = u^2/(4 sigma0^4).  Note L is even in c (cases 1 and 2 share one L);
they differ only at O(eps^3).

Both (D) and (S) are integrated with ``scipy.integrate.solve_ivp`` (DOP853, rtol 1e-12,
atol 1e-14 on the eps-normalised state), piecewise between the jumps of c for cases 4 and 5.
They become stiff for large h^2 / sigma0^2 (rate ~ (1 + h^2)/sigma0^2 near t = T); DOP853 then
takes ~T (1 + h^2)/sigma0^2 steps, still fast for the paper's ranges (h^2 <= ~100).
"""
from __future__ import annotations

import math

import numpy as np

from sftheory._validation import check_positive, check_real

from ._cases import CASES, case_function as _case_function, h_function as _h_function
from ._cases import half_x_minus_log1p as _half_x_minus_log1p
from ._cases import integrate_piecewise

__all__ = ["gaussian_kl", "gaussian_L", "CASES", "gaussian_kl_nd", "gaussian_L_nd", "linearized_L",
           "linearized_solution"]

RTOL = 1e-12
ATOL = 1e-14
def _check_common(sigma0, T, h, case):
    sigma0 = check_positive(sigma0, "sigma0")
    T = check_positive(T, "T")
    hfun = _h_function(h, T)
    cfun, breaks = _case_function(case, T)
    return sigma0, T, hfun, cfun, breaks


# ------------------------------------------------------------------ core ------------------------
def _v0(sigma0, T, t):
    """sigma_{T-t}^2, the exact variance at generative time t (paper (42))."""
    return 1.0 + (sigma0 * sigma0 - 1.0) * math.exp(-(T - t))


def _integrate(rhs, y0, T, breaks, *, rtol=RTOL, atol=ATOL):
    """solve_ivp(DOP853) on [0, T], restarted at each jump of c; returns y(T)."""
    return integrate_piecewise(rhs, y0, T, breaks, rtol=rtol, atol=atol)


def _deviation(sigma0, T, hfun, cfun, breaks, eps, *, plant=None):
    """y(T) = Var(Y~_T) - sigma0^2 from the deviation ODE (D).

    ``plant`` (tests only): {"drift": k} multiplies the -f coefficient 1/2 by k (then (D) gains
    the term (2 k/2 - 1) v0 that the exact coefficient cancels); {"forcing": k} multiplies
    (1 + h^2) in the eps-forcing.
    """
    plant = plant or {}
    fc = 0.5 * plant.get("drift", 1.0)
    kf = plant.get("forcing", 1.0)
    scale = eps if eps != 0.0 else 1.0  # integrate z = y / eps (an O(1) quantity)

    def rhs(t, z):
        v0 = _v0(sigma0, T, t)
        h2 = hfun(t) ** 2
        c = cfun(t)
        two_a = 2.0 * fc - (1.0 + h2) * (1.0 + eps * c) / v0
        forcing = (2.0 * fc - 1.0) * v0 - kf * (1.0 + h2) * eps * c
        return two_a * z + forcing / scale

    return float(_integrate(rhs, 0.0, T, breaks)[0]) * scale


def _sensitivity(sigma0, T, hfun, cfun, breaks, *, plant=None):
    """u(T) = d Var(Y~_T)/d eps at eps = 0, from the sensitivity ODE (S)."""
    plant = plant or {}
    fc = 0.5 * plant.get("drift", 1.0)
    kf = plant.get("forcing", 1.0)

    def rhs(t, u):
        v0 = _v0(sigma0, T, t)
        h2 = hfun(t) ** 2
        return (2.0 * fc - (1.0 + h2) / v0) * u - kf * (1.0 + h2) * cfun(t)

    return float(_integrate(rhs, 0.0, T, breaks)[0])


def _variance_full(sigma0, T, hfun, cfun, breaks, eps, *, plant=None):
    """Var(Y~_T) from the raw variance ODE (V), v(0) = sigma_T^2 (a cross-check of (D))."""
    plant = plant or {}
    fc = 0.5 * plant.get("drift", 1.0)

    def rhs(t, v):
        v0 = _v0(sigma0, T, t)
        h2 = hfun(t) ** 2
        return (2.0 * fc - (1.0 + h2) * (1.0 + eps * cfun(t)) / v0) * v + h2

    return float(_integrate(rhs, _v0(sigma0, T, 0.0), T, breaks, atol=1e-15)[0])


def kl_from_deviation(sigma0_sq, delta):
    """KL(N(0, A) || N(0, A + delta)) in nats, A = sigma0_sq, stable for small delta."""
    b = sigma0_sq + delta
    if not b > 0:  # pragma: no cover - the variance of a linear SDE with v(0) > 0 stays > 0
        raise FloatingPointError(f"generated variance is not positive: {b}")
    return _half_x_minus_log1p(-delta / b)


# ------------------------------------------------------------------ public ----------------------
def gaussian_kl(sigma0, T, h, eps, case) -> float:
    """KL(p0 || q~_T) in nats for p0 = N(0, sigma0^2), f = -x/2, g = 1 (paper App. G).

    The generative process (7) runs in generative time t in [0, T] from the exact p_T with the
    score S + eps * E, E_t = c(t) grad log p_{T-t}; ``case`` is 1..5 of (44) or a callable c(t);
    ``h`` is the generative diffusion coefficient (a float >= 0 or a callable h(t)); h = 0 is the
    probability-flow ODE, h = 1 the usual reverse SDE. Exact: the variance of the (Gaussian)
    generated law is integrated from the deviation ODE (D) of the module docstring.
    """
    sigma0, T, hfun, cfun, breaks = _check_common(sigma0, T, h, case)
    eps = check_real(eps, "eps")
    if eps == 0.0:
        return 0.0
    delta = _deviation(sigma0, T, hfun, cfun, breaks, eps)
    return kl_from_deviation(sigma0 * sigma0, delta)


def gaussian_L(sigma0, T, h, case) -> float:
    """Leading coefficient L(h) of KL(p0 || q~_T) = L eps^2 + O(eps^3) (Prop. 3.2, App. G).

    Exact, not a fit: L = u(T)^2 / (4 sigma0^4) with u = d Var(Y~_T)/d eps at eps = 0 from the
    sensitivity ODE (S) of the module docstring. Same arguments and conventions as
    :func:`gaussian_kl`.
    """
    sigma0, T, hfun, cfun, breaks = _check_common(sigma0, T, h, case)
    u = _sensitivity(sigma0, T, hfun, cfun, breaks)
    return u * u / (4.0 * sigma0 ** 4)


# the other exact routes of the ODE-vs-SDE theory, under the names the issue gives them
from .gaussian_nd import gaussian_L_nd, gaussian_kl_nd  # noqa: E402
from .linearized import linearized_L, linearized_solution  # noqa: E402
