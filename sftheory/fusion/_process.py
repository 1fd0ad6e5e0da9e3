r"""The exact terminal law of the barycenter sampler ([SF] eq. (16), Lemma 6) for Gaussian
references under a linear forward process.

Forward process dX = f dt + g dW with f(x, t) = -a(t) x, a = kappa g^2 (OU, VP, VE). A Gaussian
reference N(mu_i, Sigma_i) diffuses to p^i_t = N(m(t) mu_i, C_i(t)), C_i = m^2 Sigma_i + v I
((m, v) = ``process.conditional(t)``), so the lambda-weighted score of [SF] Thm. 2 / eq. (16) is
affine in x:

.. math:: S_\lambda(x, t) = \sum_i \lambda_i \nabla\log p^i_t(x) = -P(t) x + q(t),\quad
          P = \sum_i \lambda_i C_i^{-1},\quad q = \sum_i \lambda_i C_i^{-1} m(t) \mu_i .

The generative SDE with diffusion h ([OS] eq. (3); h = g is [SF] eq. (16)) in generative time
s = T - t, dY = [a Y + k S_lambda(Y, t)] ds + h dB, k = (g^2 + h^2)/2, is linear, so Y stays
Gaussian with mean M and covariance V solving

.. math:: \frac{dM}{ds} = B M + k q,\qquad \frac{dV}{ds} = B V + V B^T + h^2 I,\qquad
          B(t) = a(t) I - k(t) P(t),

integrated here from t = T (s = 0) to t = 0 (s = T) with ``scipy.integrate.solve_ivp``
(DOP853, rtol 1e-11).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.integrate import solve_ivp

from .._refs import source
from .._validation import check_simplex
from ..models import Gaussian
from ..processes import LinearSDE
from ._barycenter import gaussian_barycenter_params

RTOL = 1e-11
ATOL = 1e-13
STARTS = ("stationary", "barycenter")


def _check_inputs(gaussians, weights, process, T, start, h):
    if isinstance(gaussians, (str, bytes)) or not hasattr(gaussians, "__len__"):
        raise ValueError(f"gaussians must be a sequence of Gaussian laws, got "
                         f"{type(gaussians).__name__}")
    gaussians = list(gaussians)
    if not gaussians:
        raise ValueError("gaussians must contain at least one Gaussian")
    for i, g in enumerate(gaussians):
        if not isinstance(g, Gaussian):
            raise ValueError(f"gaussians[{i}] must be a sftheory.models.Gaussian, got "
                             f"{type(g).__name__}")
    dims = {g.dim for g in gaussians}
    if len(dims) != 1:
        raise ValueError(f"gaussians must share one dimension, got {sorted(dims)}")
    w = check_simplex(weights, "weights")
    if w.shape[0] != len(gaussians):
        raise ValueError(f"weights has {w.shape[0]} entries but there are {len(gaussians)} "
                         "gaussians")
    if not isinstance(process, LinearSDE):
        raise ValueError(f"process must be a sftheory.processes process, got {process!r}")
    if isinstance(T, bool) or not isinstance(T, (int, float, np.integer, np.floating)):
        raise ValueError(f"T must be a number > 0, got {T!r}")
    T = float(T)
    if not (math.isfinite(T) and T > 0):
        raise ValueError(f"T must be finite and > 0, got {T}")
    if start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, got {start!r}")
    if start == "stationary" and process.stationary_variance() is None:
        raise ValueError(f"start='stationary' needs a stationary law; {process!r} has none "
                         "(use start='barycenter')")
    if h is not None and not callable(h):
        if isinstance(h, bool) or not isinstance(h, (int, float, np.integer, np.floating)):
            raise ValueError(f"h must be None (h = g), a number >= 0 or a callable h(t), got {h!r}")
        if not (math.isfinite(float(h)) and float(h) >= 0):
            raise ValueError(f"h must be finite and >= 0, got {h}")
    return gaussians, w, T


def _h_at(h, process, t: float) -> float:
    g = float(process.diffusion(t))
    if h is None:
        return g
    val = float(h(t)) if callable(h) else float(h)
    if not (math.isfinite(val) and val >= 0):
        raise ValueError(f"h(t) must be finite and >= 0, got h({t}) = {val}")
    return val


@source("SF", "eq. (16), Lemma 6 (Gaussian references; [OS] eq. (3) for general h)", "sf.lemma6")
def barycenter_sampler_terminal_law(gaussians, weights, process, T, start="stationary", h=None):
    r"""The exact law at forward time 0 of the backward SDE [SF] (16) driven by the
    lambda-weighted scores sum_i lambda_i grad log p^i_t of Gaussian references.

    Parameters
    ----------
    gaussians : sequence of :class:`~sftheory.models.Gaussian` (the references mu_i at time 0)
    weights : (k,) on the simplex (lambda)
    process : a forward process (OU, VP; VE only with ``start="barycenter"``)
    T : horizon > 0 (the backward SDE starts at forward time T)
    start : ``"stationary"`` (the process's invariant law, [SF] scheme (8)) or ``"barycenter"``
        (gamma_T^d, the distribution-level barycenter of the p^i_T, as in (16))
    h : None (h = g, the reverse SDE (16)), a number >= 0 or a callable h(t) of forward time:
        the generative diffusion of [OS] eq. (3), drift -f + (g^2 + h^2)/2 S_lambda.

    Returns the :class:`~sftheory.models.Gaussian` law of Y at forward time 0, by the mean and
    covariance ODEs of the module docstring (solve_ivp, rtol 1e-11). Not in general the
    barycenter mu_lambda of Theorem 1: see the claim check ``sf.lemma6``.
    """
    gaussians, w, T = _check_inputs(gaussians, weights, process, T, start, h)
    d = gaussians[0].dim
    mus = np.stack([np.asarray(g.mean, dtype=np.float64) for g in gaussians])
    sigmas = np.stack([np.asarray(g.cov, dtype=np.float64) for g in gaussians])
    eye = np.eye(d)
    mT, vT = process.conditional(T)
    if start == "stationary":
        M0, V0 = np.zeros(d), process.stationary_variance() * eye
    else:
        M0, V0 = gaussian_barycenter_params(mT * mus, mT**2 * sigmas + vT * eye, w)

    def rhs(s, y):
        t = max(T - s, 0.0)
        m, v = process.conditional(t)
        prec = np.linalg.inv(m * m * sigmas + v * eye)
        P = np.einsum("k,kab->ab", w, prec)
        q = np.einsum("k,kab,kb->a", w, prec, m * mus)
        g = float(process.diffusion(t))
        hh = _h_at(h, process, t)
        k = 0.5 * (g * g + hh * hh)
        B = float(process.drift_coef(t)) * eye - k * P
        M, V = y[:d], y[d:].reshape(d, d)
        dV = B @ V + V @ B.T + hh * hh * eye
        return np.concatenate([B @ M + k * q, dV.ravel()])

    sol = solve_ivp(rhs, (0.0, T), np.concatenate([M0, V0.ravel()]), method="DOP853",
                    rtol=RTOL, atol=ATOL)
    if not sol.success:
        raise RuntimeError(f"solve_ivp failed on the moment ODEs: {sol.message}")
    M, V = sol.y[:d, -1], sol.y[d:, -1].reshape(d, d)
    V = 0.5 * (V + V.T)
    if not (np.all(np.isfinite(M)) and np.all(np.isfinite(V))):
        raise FloatingPointError("the terminal mean or covariance is not finite")
    return Gaussian(M, V)
