r"""Linearized Fokker-Planck solution v_T and L(h) of the ODE-vs-SDE paper ([OS] Prop. 3.2,
eq. (10)) for an arbitrary 1D law p0 with a density (a Gaussian or a Gaussian mixture).

Setting ([OS] Sec. 3.1-3.2, same conventions as :mod:`sftheory.theory.odesde`)
------------------------------------------------------------------------------
Forward process f = -x/2, g = 1 (``sftheory.processes.OU()``), forward marginals p_tau. Generative
time t in [0, T] is forward time tau = T - t; q_t = p_{T-t}, S_t = grad log p_{T-t} (exact, from
``p0.path(OU())``). The perturbed generative process (7) uses the score S + eps E with
E_t = c(t) S_t (``case`` 1..5 of (44) or a callable c(t)) and the diffusion h_t (a float or a
callable h(t)). Its Fokker-Planck operator (8) is

.. math::
    \mathcal L_t \mu = -\partial_x\big(b_t \mu\big) + \tfrac{h_t^2}{2}\partial_x^2\mu,
    \qquad b_t = \tfrac{x}{2} + \tfrac{1 + h_t^2}{2} S_t ,

and the first-order perturbation v_t = d q~_t / d eps at eps = 0 solves (proof of Prop. 3.2,
App. C.3)

.. math::
    \partial_t v = \mathcal L_t v - \partial_x\Big(\tfrac{1 + h_t^2}{2} E_t q_t\Big)
                 = \mathcal L_t v - \tfrac{1 + h_t^2}{2} c(t)\, \partial_x^2 q_t ,
    \qquad v_0 = 0,

(E q = c S q = c q'), whose Duhamel form is eq. (10); then
:math:`L(h) = \tfrac12 \int v_T^2 / p_0` and KL(p0 || q~_T) = L eps^2 + O(eps^3) (9).

What is integrated: the half-density form
-----------------------------------------
v_T / p0 grows polynomially in the tails while v_T decays like p0, so v itself is a poor unknown
(a tiny absolute error of v far out is amplified by 1/p0). We solve for psi := v / sqrt(q_t),
for which L = 1/2 int psi_T^2 dx (no division) and psi decays like sqrt(q_t) times a polynomial.
With D = h^2/2, substituting v = sqrt(q) psi into the equation above and using the Fokker-Planck
equation of q (d_t log q = -b' - b S + D (S' + S^2)) gives exactly

.. math::
    \partial_t\psi = D\,\psi'' - \tfrac{x + S}{2}\,\psi'
        - \Big[\tfrac{1 + S'}{4} + D\big(\tfrac{S^2}{4} + \tfrac{S'}{2}\big)\Big]\psi
        - \tfrac{1 + h_t^2}{2}\, c(t)\,(S' + S^2)\,\sqrt{q_t},
    \qquad \psi_0 = 0 .                                                              (P)

(q''/q = S' + S^2.) The advection speed (x + S)/2 is the probability-flow velocity, and
D(psi'' - (S^2/4 + S'/2) psi) is the symmetrized Langevin generator (ground state sqrt(q)),
so (P) is the h = 0 transport plus a non-positive Schroedinger-type part.

Discretization (method of lines)
--------------------------------
* Space: a uniform grid on [-R, R] (:func:`linearized_grid`): R from p0's path tails
  (every component of every marginal p_tau, tau in [0, T], is below e^{-Z^2/2} of its peak
  beyond R, Z = 8.5, so sqrt(q) ~ 1e-8 at the edge), spacing from the narrowest component
  standard deviation over the path (default 6.5 points per standard deviation). psi'' and psi'
  by 6th-order central differences, psi = 0 outside [-R, R]. S' by 4th-order central
  differences of the exact score with step 1e-4 * (narrowest sd): truncation ~1e-16 relative,
  rounding ~1e-16 |S| / step.
* Time: ``scipy.integrate.solve_ivp(method="Radau")`` (implicit, order 5, L-stable: the
  generator is stiff, rates ~ (1 + h^2)/sigma^2 and D/dx^2) with the sparse Jacobian, restarted
  at the jumps of c (cases 4, 5); its adaptive steps resolve the fast change of the mixture
  scores near generative t = T (forward tau -> 0, where components sharpen on tau ~ sigma^2).
* Error estimate (:func:`linearized_solution`): grid part |L - L_coarse|, the same solve on a
  grid with 2/3 of the points (it over-estimates the fine grid's error by about 1.5^6 - 1 ~ 10
  for the 6th-order scheme), plus a time part 10 rtol |L| (``TIME_ERROR_FACTOR``; the global
  time error measured against the exact Gaussian L stays below 3 rtol |L|).

Source: [OS] Prop. 3.2, eq. (8)-(10), proof in App. C.3. Checked by claim ``os.prop32``.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.integrate import solve_ivp

from sftheory._refs import source
from sftheory._validation import check_positive

from ._cases import case_function as _case_function
from ._cases import h_function as _h_function

__all__ = ["linearized_L", "linearized_solution", "linearized_grid", "LinearizedSolution"]

Z_TAIL = 8.5            # grid radius: every component below exp(-Z^2/2) of its peak beyond R
POINTS_PER_SD = 6.5     # default grid spacing: narrowest standard deviation / POINTS_PER_SD
MIN_POINTS = 101
MAX_POINTS = 200_001
RTOL = 1e-6             # Radau's relative tolerance
# time error of L taken as <= TIME_ERROR_FACTOR rtol |L|: Radau's local tolerance does not bound
# the global error; against the exact Gaussian L it measured up to ~3 rtol (case 4, after the
# jump of c), below 0.3 rtol otherwise
TIME_ERROR_FACTOR = 10.0
COARSE_FACTOR = 2.0 / 3.0
SCORE_STEP = 1e-4       # step of the differences for S', in units of the narrowest sd

# 6th-order central stencils (offsets -3..3)
_D1_6 = np.array([-1 / 60, 3 / 20, -3 / 4, 0.0, 3 / 4, -3 / 20, 1 / 60])
_D2_6 = np.array([1 / 90, -3 / 20, 3 / 2, -49 / 18, 3 / 2, -3 / 20, 1 / 90])


# ---- the law ------------------------------------------------------------------------------------
def _law_parts(p0):
    """(weights, means, variances) of a 1D Gaussian or Gaussian mixture with a density."""
    from sftheory.models import Gaussian, GaussianMixture

    if isinstance(p0, Gaussian):
        if p0.dim != 1:
            raise ValueError(f"p0 must be a law on R^1 (d = 1), got dimension {p0.dim}")
        w = np.ones(1)
        mu, var = np.asarray(p0.mean, float).ravel(), np.asarray(p0.cov, float).ravel()
    elif isinstance(p0, GaussianMixture):
        if p0.dim != 1:
            raise ValueError(f"p0 must be a law on R^1 (d = 1), got dimension {p0.dim}")
        w = np.asarray(p0.weights, float)
        mu = np.asarray(p0.means, float)[:, 0]
        var = np.asarray(p0.covs, float)[:, 0, 0]
        keep = w > 0
        w, mu, var = w[keep], mu[keep], var[keep]
    else:
        raise ValueError("p0 must be a law with a density on R^1: a sftheory.models.Gaussian or "
                         f"GaussianMixture with d = 1, got {type(p0).__name__} (an empirical law "
                         "has no density at t = 0)")
    if not (np.all(np.isfinite(var)) and np.all(var > 0) and np.all(np.isfinite(mu))):
        raise ValueError("p0 must have a density: every component variance must be finite and > 0")
    return w, mu, var


def _path_sd_range(mu, var, T, n_tau=257):
    """(narrowest component sd over tau in [0, T], grid radius R) of the path under OU():
    component k of p_tau is N(m mu_k, m^2 var_k + v), (m, v) = OU().conditional(tau)."""
    from sftheory.processes import OU

    tau = np.linspace(0.0, T, n_tau)
    m, v = (np.asarray(a, dtype=np.float64)[:, None] for a in OU().conditional_many(tau))
    s = np.sqrt(m * m * var[None, :] + v)      # (n_tau, K)
    radius = float(np.max(np.abs(m * mu[None, :]) + Z_TAIL * s))
    return float(s.min()), radius


def _check_n(n, name="n"):
    if n is None:
        return None
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (numbers.Integral,)):
        raise ValueError(f"{name} must be an integer number of grid points or None, got {n!r}")
    n = int(n)
    if not MIN_POINTS <= n <= MAX_POINTS:
        raise ValueError(f"{name} must be in [{MIN_POINTS}, {MAX_POINTS}], got {n}")
    return n


def linearized_grid(p0, T, *, n=None, points_per_sd=POINTS_PER_SD) -> np.ndarray:
    """The uniform grid on [-R, R] that the solvers use for ``p0`` on [0, T] (see module docs).

    R covers every component of every forward marginal p_tau, tau in [0, T], out to Z = 8.5 of
    its standard deviations; ``n`` points (default: the narrowest standard deviation over the
    path divided by ``points_per_sd`` sets the spacing; at least 101 points).
    """
    _, mu, var = _law_parts(p0)
    T = check_positive(T, "T")
    n = _check_n(n)
    pps = check_positive(points_per_sd, "points_per_sd")
    s_min, radius = _path_sd_range(mu, var, T)
    if n is None:
        n = int(math.ceil(2 * radius * pps / s_min)) + 1
        n = min(max(n, MIN_POINTS), MAX_POINTS)
    return np.linspace(-radius, radius, n)


# ---- operators ----------------------------------------------------------------------------------
def _banded(n, coeffs, scale):
    offs = np.arange(-(len(coeffs) // 2), len(coeffs) // 2 + 1)
    return sp.diags([np.full(n - abs(o), c) for o, c in zip(offs, coeffs) if c != 0.0],
                    [o for o, c in zip(offs, coeffs) if c != 0.0], format="csr") * scale


def _source_factor(h2, c):
    """-(1 + h^2) c(t) / 2: the factor of q'' in the source -div((1 + h^2)/2 E q) of v's equation
    (App. C.3), E = c S."""
    return -0.5 * (1.0 + h2) * c


class _Coefficients:
    """Coefficients of (P) at generative time t, cached per t (Radau revisits stage times)."""

    def __init__(self, path, x, T, hfun, cfun, s_min):
        self.path, self.x, self.T, self.hfun, self.cfun = path, x, T, hfun, cfun
        self.step = SCORE_STEP * s_min
        d = self.step
        self.points = np.concatenate([x, x + d, x - d, x + 2 * d, x - 2 * d])[:, None]
        self.n = x.shape[0]
        self._cache: dict = {}

    def __call__(self, t):
        got = self._cache.get(t)
        if got is not None:
            return got
        tau = max(self.T - t, 0.0)
        logq, s5 = self.path.logpdf_and_score(self.points, tau)
        s5 = np.asarray(s5, dtype=np.float64)[:, 0].reshape(5, self.n)
        logq = np.asarray(logq, dtype=np.float64)[: self.n]
        S = s5[0]
        dS = (8.0 * (s5[1] - s5[2]) - (s5[3] - s5[4])) / (12.0 * self.step)
        h2 = float(self.hfun(t)) ** 2
        D = 0.5 * h2
        speed = 0.5 * (self.x + S)
        potential = -0.25 * (1.0 + dS) - D * (0.25 * S * S + 0.5 * dS)
        source = _source_factor(h2, float(self.cfun(t))) * (dS + S * S) * np.exp(0.5 * logq)
        if not (np.all(np.isfinite(speed)) and np.all(np.isfinite(potential))
                and np.all(np.isfinite(source))):
            raise FloatingPointError(f"the coefficients of (P) are not finite at forward time "
                                     f"{tau:.6g} (generative t = {t:.6g}): the score or "
                                     f"log-density of p0's path is not finite there")
        if len(self._cache) > 32:
            self._cache.clear()
        out = (D, speed, potential, source)
        self._cache[t] = out
        return out


def _solve_psi(p0, T, hfun, cfun, breaks, x, rtol):
    """psi_T on the grid x from (P); returns (psi_T, number of right-hand-side evaluations)."""
    from sftheory.processes import OU

    _, mu, var = _law_parts(p0)
    s_min, _ = _path_sd_range(mu, var, T)
    n = x.shape[0]
    dx = float(x[1] - x[0])
    D1 = _banded(n, _D1_6, 1.0 / dx)
    D2 = _banded(n, _D2_6, 1.0 / dx ** 2)
    coef = _Coefficients(p0.path(OU()), x, T, hfun, cfun, s_min)

    def rhs(t, psi):
        D, speed, pot, src = coef(t)
        return D * (D2 @ psi) - speed * (D1 @ psi) + pot * psi + src

    def jac(t, psi):
        D, speed, pot, _ = coef(t)
        return (D * D2 - sp.diags(speed) @ D1 + sp.diags(pot)).tocsc()

    peak = math.sqrt(float(np.max(np.exp(np.asarray(p0.logpdf(x[:, None]), float)))))
    atol = rtol * 1e-3 * peak
    knots = [0.0, *sorted(b for b in breaks if 0.0 < b < T), T]
    psi = np.zeros(n)
    nfev = 0
    for t0, t1 in zip(knots[:-1], knots[1:]):
        if t1 <= t0:
            continue
        sol = solve_ivp(rhs, (t0, t1), psi, method="Radau", jac=jac, rtol=rtol, atol=atol)
        if not sol.success:
            raise FloatingPointError(f"Radau failed on [{t0:.6g}, {t1:.6g}]: {sol.message}")
        psi = sol.y[:, -1]
        nfev += sol.nfev
    if not np.all(np.isfinite(psi)):
        raise FloatingPointError("the linearized solution psi_T is not finite")
    return psi, nfev


def _check_common(p0, T, h, case, rtol):
    _law_parts(p0)
    T = check_positive(T, "T")
    hfun = _h_function(h, T)
    cfun, breaks = _case_function(case, T)
    rtol = check_positive(rtol, "rtol")
    if not rtol < 1e-2:
        raise ValueError(f"rtol must be < 1e-2, got {rtol}")
    return T, hfun, cfun, breaks, rtol


def _L_from_psi(psi, x):
    return 0.5 * float(np.sum(psi * psi)) * float(x[1] - x[0])


# ---- public -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LinearizedSolution:
    """What :func:`linearized_solution` found.

    ``x`` the grid (n,); ``v_T`` the first-order perturbation of the generated law at t = T on
    it; ``psi_T`` = v_T / sqrt(p0); ``L`` = 1/2 int v_T^2/p0 = 1/2 int psi_T^2; ``L_coarse`` the
    same on the coarse grid (``n_coarse`` points); ``grid_error`` = |L - L_coarse| (~10x the
    actual grid error of the 6th-order scheme); ``error_estimate`` = grid_error + 10 rtol |L|
    (a conservative bound on the error of ``L``, time included); ``mass`` = int v_T dx (0 in
    exact arithmetic, since q~ stays normalized).
    """

    x: np.ndarray
    v_T: np.ndarray
    psi_T: np.ndarray
    L: float
    L_coarse: float
    grid_error: float
    error_estimate: float
    mass: float
    n: int
    n_coarse: int
    radius: float
    rtol: float
    nfev: int


@source("OS", "Prop. 3.2, eq. (8)-(10), App. C.3", "os.prop32")
def linearized_solution(p0, T, h, case, *, n=None, rtol=RTOL, points_per_sd=POINTS_PER_SD
                        ) -> LinearizedSolution:
    r"""Solve the linearized Fokker-Planck equation of [OS] Prop. 3.2 and return v_T and L(h).

    .. math:: L(h) = \frac12 \int \frac{v_T^2}{p_0}\,dx, \qquad
              v_T = -\frac12 \int_0^T (1 + h_t^2)\, \Phi_{t,T}\big(\partial_x(p_t^\leftarrow
              \mathcal E_t)\big)\,dt  \quad\text{([OS] eq. (10))}

    Parameters
    ----------
    p0 : sftheory.models.Gaussian or GaussianMixture, d = 1
    T : float > 0, the horizon.
    h : float >= 0 or callable h(t) of generative time (h = 0: probability-flow ODE).
    case : 1..5 ([OS] eq. (44)) or a callable c(t); the score error is E_t = c(t) S_t.
    n : grid points (default from p0, see :func:`linearized_grid`).
    rtol : Radau's relative tolerance (default 1e-6).
    points_per_sd : default grid spacing (narrowest component sd / points_per_sd).

    Returns a :class:`LinearizedSolution` with the grid, v_T, L and an error estimate from a
    second solve on a grid with 2/3 of the points. The method is in the module docstring.
    Raises ``ValueError`` naming the argument for bad inputs and ``FloatingPointError`` when the
    path's score is not finite or the solve fails.

    Source: [OS] Prop. 3.2, eq. (10), App. C.3. Checked by claim ``os.prop32``.
    """
    T, hfun, cfun, breaks, rtol = _check_common(p0, T, h, case, rtol)
    x = linearized_grid(p0, T, n=n, points_per_sd=points_per_sd)
    psi, nfev = _solve_psi(p0, T, hfun, cfun, breaks, x, rtol)
    L = _L_from_psi(psi, x)
    n_c = max(MIN_POINTS, int(round((x.shape[0] - 1) * COARSE_FACTOR)) + 1)
    xc = np.linspace(x[0], x[-1], n_c)
    psi_c, nfev_c = _solve_psi(p0, T, hfun, cfun, breaks, xc, rtol)
    Lc = _L_from_psi(psi_c, xc)
    sqrt_p0 = np.exp(0.5 * np.asarray(p0.logpdf(x[:, None]), float))
    v = psi * sqrt_p0
    return LinearizedSolution(x=x, v_T=v, psi_T=psi, L=L, L_coarse=Lc, grid_error=abs(L - Lc),
                              error_estimate=abs(L - Lc) + TIME_ERROR_FACTOR * rtol * abs(L),
                              mass=float(np.sum(v)) * float(x[1] - x[0]), n=x.shape[0],
                              n_coarse=n_c, radius=float(x[-1]), rtol=rtol, nfev=nfev + nfev_c)


@source("OS", "Prop. 3.2, eq. (9)-(10)", "os.prop32")
def linearized_L(p0, T, h, case, *, n=None, rtol=RTOL, points_per_sd=POINTS_PER_SD) -> float:
    r"""L(h) = 1/2 int v_T^2 / p0 of [OS] Prop. 3.2 / eq. (10) for a 1D law p0 with a density.

    KL(p0 || q~_T) = L eps^2 + O(eps^3) for the generative process (7) with score S + eps E,
    E_t = c(t) grad log p_{T-t}. Same arguments and conventions as
    :func:`sftheory.theory.odesde.gaussian_L` (forward f = -x/2, g = 1; generative time t =
    T - forward time; ``case`` 1..5 of (44) or a callable c(t); ``h`` a float or callable),
    with ``p0`` a :class:`~sftheory.models.Gaussian` or :class:`~sftheory.models.GaussianMixture`
    in d = 1 in place of sigma0. One solve of (P) (module docstring) on the default grid; use
    :func:`linearized_solution` for v_T itself and a discretization-error estimate.

    Source: [OS] Prop. 3.2, eq. (10). Checked by claim ``os.prop32``.
    """
    T, hfun, cfun, breaks, rtol = _check_common(p0, T, h, case, rtol)
    x = linearized_grid(p0, T, n=n, points_per_sd=points_per_sd)
    psi, _ = _solve_psi(p0, T, hfun, cfun, breaks, x, rtol)
    return _L_from_psi(psi, x)
