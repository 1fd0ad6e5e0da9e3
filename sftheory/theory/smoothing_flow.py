r"""Closed-form flow maps of the denoising ODE driven by the smoothed score, and the law they
produce at t = 0 ([SM] = ``../shared/papers/score-smoothing-paper.md``, Sec. 3.2-3.4, App. A.4-A.6).

Setting
-------
VE forward process dX = dW, training points y_1 < ... < y_n (n >= 2) spaced uniformly,
Delta = (y_{k+1} - y_k)/2, midpoints a_k = y_k + Delta, p_t = (1/n) sum_k N(y_k, t).
The denoising dynamics is eq. (11),

.. math:: \frac{d}{dt} x_t = -\tfrac12 \hat s_{t,\tau_t}(x_t), \qquad \tau_t = \Delta - \sqrt{\kappa t},

solved backward in time from t to s <= t (``t`` is always forward time). ``shat`` is
:func:`sftheory.theory.smoothing.s_hat` (eq. (9)/(16)); tau_t > 0 requires t < Delta^2/kappa.
With rho_t = sqrt(kappa t), the line is cut into "attracting" regions |x - y_k| <= rho_t (and the
two outer half-lines), whose trajectories go to y_k on straight lines in the (x, sqrt t) plane,
and "interpolating" regions [y_k + rho_t, y_{k+1} - rho_t], whose points are scaled about a_k by
tau_s/tau_t.

Notes on the paper
------------------
* Eq. (17) as printed gives its second case as ``x <= y_n - sqrt(kappa t)``; the region of y_n is
  ``x >= y_n - sqrt(kappa t)`` (as printed, the case swallows every point left of
  y_n - sqrt(kappa t) and leaves x > y_n - sqrt(kappa t) without a case). :func:`flow_map`
  implements the corrected condition (claim ``sm.eq17``).
* Prop. 3 and Prop. 6 state t in (0, 1/kappa]; at t = 1/kappa (Delta = 1) tau_t = 0 and (12) is
  0/0 at x = 0. The functions here need tau_t > 0 (t < Delta^2/kappa) and raise otherwise.
* Prop. 6 states Phi_{s|t}(x_t) = [phi_{s|t}(x_{t,1}), 0, ..., 0]; the dynamics (22) gives
  x_{s,i} = sqrt(s/t) x_{t,i} for i >= 2 (zero only at s = 0), as the main text after Prop. 6
  says. :func:`flow_map_d` implements the dynamics (claim ``sm.prop6``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from .._refs import source
from .._validation import as_float_array, check_positive, check_seed, check_time
from .smoothing import _x_array, half_spacing, tau_t

__all__ = ["flow_map", "flow_map_to_zero", "flow_map_d", "pushforward", "Pushforward",
           "kl_bound_cor5"]


# ------------------------------------------------------------------ validation ------------------
def _setup(s, t, points, kappa):
    """Validated (s, t, y, Delta, kappa, tau_t, tau_s) for a map from time t back to s."""
    t = check_time(t, "t")
    s = check_time(s, "s")
    if s > t:
        raise ValueError(f"s must satisfy 0 <= s <= t (the map runs backward in time from t to s), "
                         f"got s = {s} > t = {t}")
    kappa = check_positive(kappa, "kappa")
    y = as_float_array(points, "points", ndim=1)
    delta = half_spacing(y)  # validates n >= 2, sorted, uniform
    ts = tau_t(t, y, kappa)  # ValueError unless tau_t > 0
    ss = tau_t(s, y, kappa)
    return s, t, y, delta, kappa, ts, ss


def _out(arr: np.ndarray):
    return float(arr) if arr.ndim == 0 else arr


# ------------------------------------------------------------------ 1D flow maps ----------------
@source("SM", "eq. (12), Prop. 3", "sm.prop3", "sm.prop6")
def _flow_map_eq12(z: np.ndarray, r: float, ratio: float, tau_n: float) -> np.ndarray:
    r"""Eq. (12) for S = {-1, 1}, on validated input:

    .. math::
        \phi_{s|t}(z) = \begin{cases} (\tau_s/\tau_t) z & |z| \le \tau_t \\
                        \sqrt{s/t}(z + 1) - 1 & z \le -\tau_t \\
                        \sqrt{s/t}(z - 1) + 1 & z \ge \tau_t \end{cases}

    ``r`` = sqrt(s/t), ``ratio`` = tau_s/tau_t, ``tau_n`` = tau_t (all for S = {-1, 1}).
    Source: [SM] eq. (12), Prop. 3. Checked by claims ``sm.prop3``, ``sm.prop6``.
    """
    return np.where(z <= -tau_n, r * (z + 1.0) - 1.0,
                    np.where(z >= tau_n, r * (z - 1.0) + 1.0, ratio * z))


@source("SM", "eq. (17) (second case corrected to x >= y_n - sqrt(kappa t))", "sm.eq17")
def _flow_map_eq17(x: np.ndarray, y: np.ndarray, delta: float, r: float, ratio: float,
                   rho: float) -> np.ndarray:
    r"""Eq. (17) for n uniformly spaced points, on validated input (rho = sqrt(kappa t),
    r = sqrt(s/t), ratio = (Delta - sqrt(kappa s))/(Delta - sqrt(kappa t))):

    .. math::
        \phi_{s|t}(x) = \begin{cases} \sqrt{s/t}(x - y_k) + y_k & |x - y_k| \le \rho
                         \text{ (} x \le y_1 + \rho \text{ for } k = 1,\ x \ge y_n - \rho
                         \text{ for } k = n \text{)} \\
                         \frac{\Delta - \sqrt{\kappa s}}{\Delta - \sqrt{\kappa t}} (x - a_k) + a_k
                         & x \in [y_k + \rho, y_{k+1} - \rho] \end{cases}

    Corrects [SM] eq. (17): its second case reads ``x <= y_n - sqrt(kappa t)``; it must be
    ``x >= y_n - sqrt(kappa t)`` (the region of y_n).
    Source: [SM] eq. (17). Checked by claim ``sm.eq17``.
    """
    j = np.clip(np.floor((x - y[0]) / (2.0 * delta)), 0, y.shape[0] - 2).astype(np.intp)
    left, right = y[j], y[j + 1]
    a = left + delta
    return np.where(x <= left + rho, r * (x - left) + left,
                    np.where(x >= right - rho, r * (x - right) + right, ratio * (x - a) + a))


@source("SM", "eq. (12), Prop. 3 (n = 2); eq. (17) (n points)", "sm.prop3", "sm.eq17")
def flow_map(x, s, t, points, kappa):
    r"""phi_{s|t}(x): where the backward solution of eq. (11) started at x at time t is at time s.

    Parameters
    ----------
    x : array_like, any shape (elementwise), finite.
    s, t : forward times with 0 <= s <= t and tau_t = Delta - sqrt(kappa t) > 0.
    points : sorted, uniformly spaced training points y_1 < ... < y_n (n >= 2).
    kappa : > 0, the smoothing schedule tau_t = Delta - sqrt(kappa t).

    n = 2 uses eq. (12) (after the affine map of {y_1, y_2} onto {-1, 1}, under which
    kappa -> kappa/Delta^2); n > 2 uses eq. (17) with its second case corrected
    (x >= y_n - sqrt(kappa t)). Returns a float for scalar ``x``, else an array of x's shape.
    ``flow_map(x, t, t, ...) == x``.

    Source: [SM] eq. (12), Prop. 3 (n = 2); eq. (17) (n points). Checked by claims ``sm.prop3``,
    ``sm.eq17``.
    """
    s, t, y, delta, kappa, ts, ss = _setup(s, t, points, kappa)
    xa = _x_array(x)
    if s == t:
        return _out(xa.copy())
    r = math.sqrt(s / t)
    ratio = ss / ts
    if y.shape[0] == 2:
        a = y[0] + delta
        return _out(a + delta * _flow_map_eq12((xa - a) / delta, r, ratio, ts / delta))
    return _out(_flow_map_eq17(xa, y, delta, r, ratio, math.sqrt(kappa * t)))


@source("SM", "Sec. 3.2 and Sec. 3.3: phi_{0|t}", "sm.eq17", "sm.eq13")
def flow_map_to_zero(x, t, points, kappa):
    r"""phi_{0|t}(x), the end point at time 0 of the backward solution of (11) from x at time t:

    .. math::
        \phi_{0|t}(x) = \begin{cases} (\Delta x - a_k \sqrt{\kappa t})/(\Delta - \sqrt{\kappa t})
        & x \in [y_k + \sqrt{\kappa t}, y_{k+1} - \sqrt{\kappa t}] \\
        y_{\arg\min_k |y_k - x|} & \text{otherwise} \end{cases}

    (for S = {-1, 1}: x/tau_t on [-tau_t, tau_t], sgn(x) otherwise). Elementwise in ``x``;
    ``t`` >= 0 with tau_t > 0. Written from the paper's phi_{0|t} display, not through
    :func:`flow_map` (the tests check the two agree).

    Source: [SM] Sec. 3.2 (phi_{0|t}, n = 2), Sec. 3.3 (phi_{0|t}, n points). Checked by claims
    ``sm.eq17``, ``sm.eq13``.
    """
    _, t, y, delta, kappa, ts, _ = _setup(0.0, t, points, kappa)
    xa = _x_array(x)
    if t == 0.0:  # phi_{0|0} is the identity
        return _out(xa.copy())
    rho = math.sqrt(kappa * t)
    j = np.clip(np.floor((xa - y[0]) / (2.0 * delta)), 0, y.shape[0] - 2).astype(np.intp)
    a = y[j] + delta
    inner = np.abs(xa - a) <= delta - rho
    nearest = np.where(xa < a, y[j], y[j + 1])
    return _out(np.where(inner, (delta * xa - a * rho) / ts, nearest))


@source("SM", "Prop. 6, eqs. (21), (22) (coordinates i >= 2 as sqrt(s/t) x_i)", "sm.prop6")
def flow_map_d(x, s, t, points_d, kappa):
    r"""Phi_{s|t}(x) in d dimensions for training points on the first axis ([SM] Sec. 3.4):
    the backward solution of (21), (22) from x at time t to time s,

    .. math:: \Phi_{s|t}(x) = [\phi_{s|t}(x_1), \sqrt{s/t}\, x_2, \dots, \sqrt{s/t}\, x_d],

    phi_{s|t} = :func:`flow_map` (eq. (12) for n = 2, (17) for n > 2), and (22),
    dx_i/dt = x_i/(2t), giving x_{s,i} = sqrt(s/t) x_{t,i} for i = 2..d.

    ``x``: shape (..., d); ``points_d``: shape (n, d), rows [y_k, 0, ..., 0] with y_k sorted and
    uniformly spaced (ValueError if another coordinate is non-zero or d differs).

    Corrects [SM] Prop. 6, which states Phi_{s|t}(x_t) = [phi_{s|t}(x_{t,1}), 0, ..., 0] for
    0 <= s <= t: the coordinates i >= 2 vanish only at s = 0 (the main text after Prop. 6:
    they shrink to zero at the rate sqrt(t)).
    Source: [SM] Prop. 6, eqs. (21), (22). Checked by claim ``sm.prop6``.
    """
    pd = as_float_array(points_d, "points_d", ndim=2)
    if pd.shape[1] < 1:
        raise ValueError(f"points_d must have shape (n, d) with d >= 1, got {pd.shape}")
    if np.any(pd[:, 1:] != 0.0):
        raise ValueError("points_d must lie on the first axis (rows [y_k, 0, ..., 0], Sec. 3.4): "
                         "a coordinate i >= 2 is non-zero")
    xa = _x_array(x)
    if xa.ndim == 0 or xa.shape[-1] != pd.shape[1]:
        raise ValueError(f"x must have shape (..., d) with d = {pd.shape[1]} (the dimension of "
                         f"points_d), got shape {xa.shape}")
    first = flow_map(xa[..., 0], s, t, pd[:, 0], kappa)
    s, t = float(s), float(t)
    r = 1.0 if s == t else math.sqrt(s / t)
    out = np.empty_like(xa)
    out[..., 0] = first
    out[..., 1:] = r * xa[..., 1:]
    return out


# ------------------------------------------------------------------ the law at time 0 -----------
def _mixture_cdf(x: np.ndarray, y: np.ndarray, t: float) -> np.ndarray:
    """P(X <= x) for X ~ p_t = (1/n) sum_k N(y_k, t) (x may hold +-inf)."""
    x = np.asarray(x, dtype=np.float64)
    return special.ndtr((x[..., None] - y) / math.sqrt(t)).mean(axis=-1)


def _mixture_pdf(x: np.ndarray, y: np.ndarray, t: float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (np.exp(-0.5 * (x[..., None] - y) ** 2 / t).mean(axis=-1) / math.sqrt(2 * math.pi * t))


@dataclass(frozen=True)
class Pushforward:
    r"""The law of x_0 = phi_{0|t}(x_t) for x_t ~ p_t = (1/n) sum_k N(y_k, t) ([SM] eq. (13)):
    atoms ``weights[k]`` at ``atoms[k]`` = y_k plus an absolutely continuous part of total mass
    ``continuous_mass`` on [y_1, y_n] with density :meth:`pdf`.

    Built by :func:`pushforward`; ``tau`` = tau_t, ``delta`` = Delta.
    """

    atoms: np.ndarray
    weights: np.ndarray
    continuous_mass: float
    t: float
    kappa: float
    tau: float
    delta: float

    @property
    def points(self) -> np.ndarray:
        return self.atoms

    def _inverse(self, z: np.ndarray) -> np.ndarray:
        """psi(z) = a_k + (tau/Delta)(z - a_k) on [y_k, y_{k+1}]: the inverse of phi_{0|t} on the
        interpolating regions (Sec. 3.3), -inf below y_1, +inf at and above y_n."""
        y = self.atoms
        return np.where(z < y[0], -np.inf, np.where(z >= y[-1], np.inf, self._psi(z)))

    def _psi(self, z: np.ndarray) -> np.ndarray:
        y, delta = self.atoms, self.delta
        j = np.clip(np.floor((z - y[0]) / (2.0 * delta)), 0, y.shape[0] - 2).astype(np.intp)
        a = y[j] + delta
        return a + (self.tau / delta) * (z - a)

    @source("SM", "eq. (13), extended to n points (Sec. 3.3)", "sm.eq13", "sm.lemma4")
    def pdf(self, z):
        r"""Density of the absolutely continuous part, eq. (13) extended to n points:

        .. math:: \hat p_{0;t}(z) = \frac{\tau_t}{\Delta}\, p_t\!\Big(a_k + \frac{\tau_t}{\Delta}
                  (z - a_k)\Big), \quad z \in [y_k, y_{k+1}],

        zero outside [y_1, y_n] (for S = {-1, 1}: tau_t p_t(tau_t z) on [-1, 1]). Integrates to
        ``continuous_mass``. Elementwise in ``z``.
        Source: [SM] eq. (13). Checked by claims ``sm.eq13``, ``sm.lemma4``.
        """
        za = _x_array(z, "z")
        y = self.atoms
        psi = self._psi(za)
        inside = (za >= y[0]) & (za <= y[-1])
        dens = (self.tau / self.delta) * _mixture_pdf(np.where(inside, psi, 0.0), y, self.t)
        return _out(np.where(inside, dens, 0.0))

    def cdf(self, z):
        """P(x_0 <= z) of the whole law (atoms included): phi_{0|t} is non-decreasing, so this is
        P(x_t <= psi(z)) with psi the inverse of phi_{0|t} on the interpolating regions."""
        za = _x_array(z, "z")
        return _out(_mixture_cdf(self._inverse(za), self.atoms, self.t))

    def ac_cdf(self, z):
        """Mass of the absolutely continuous part on (-inf, z] (rises from 0 to
        ``continuous_mass``)."""
        za = _x_array(z, "z")
        at = np.sum(self.weights * (self.atoms <= za[..., None]), axis=-1)
        return _out(np.asarray(self.cdf(za)) - at)

    def sample(self, n, seed=None) -> np.ndarray:
        """n draws of x_0: x_t ~ p_t pushed through :func:`flow_map_to_zero`. ``seed``: int,
        None or ``np.random.Generator``."""
        rng = check_seed(seed)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        y = self.atoms
        xt = y[rng.integers(0, y.shape[0], size=int(n))] + math.sqrt(self.t) * rng.standard_normal(int(n))
        return np.asarray(flow_map_to_zero(xt, self.t, y, self.kappa), dtype=np.float64).reshape(-1)


@source("SM", "Sec. 3.2: w+, w- and eq. (13), extended to n points", "sm.eq13")
def pushforward(points, t, kappa) -> Pushforward:
    r"""The law at time 0 of the backward solution of (11) started from x_t ~ p_t
    = (1/n) sum_k N(y_k, t) ([SM] Sec. 3.2, eq. (13); Sec. 3.3 for n points):

    atoms at each y_k with weight P(x_t in the attracting region of y_k),

    .. math:: w_1 = P(x_t \le y_1 + \rho_t),\ w_n = P(x_t \ge y_n - \rho_t),\
              w_k = P(|x_t - y_k| \le \rho_t),\quad \rho_t = \sqrt{\kappa t}

    (for S = {-1, 1}: w_- and w_+), plus the absolutely continuous part of :meth:`Pushforward.pdf`.
    ``t`` > 0 with tau_t = Delta - sqrt(kappa t) > 0.

    Source: [SM] Sec. 3.2 (w_+, w_-, eq. (13)), Sec. 3.3. Checked by claim ``sm.eq13``.
    """
    t = check_time(t, "t", strictly_positive=True)
    kappa = check_positive(kappa, "kappa")
    y = as_float_array(points, "points", ndim=1)
    delta = half_spacing(y)
    tau = tau_t(t, y, kappa)
    rho = math.sqrt(kappa * t)
    lo = np.concatenate([[-np.inf], y[1:] - rho])
    hi = np.concatenate([y[:-1] + rho, [np.inf]])
    w = _mixture_cdf(hi, y, t) - _mixture_cdf(lo, y, t)
    # the continuous mass from the interpolating regions directly (not 1 - sum w: no cancellation)
    cont = float(np.sum(_mixture_cdf(y[1:] - rho, y, t) - _mixture_cdf(y[:-1] + rho, y, t)))
    atoms = y.copy()
    atoms.flags.writeable = False
    w.flags.writeable = False
    return Pushforward(atoms, w, cont, t, kappa, tau, delta)


# ------------------------------------------------------------------ Cor. 5 ----------------------
@source("SM", "Cor. 5", "sm.cor5")
def kl_bound_cor5(t0, kappa) -> float:
    r"""The bound of [SM] Cor. 5 on KL(u_{[-1,1]} || p^_0) for S = {-1, 1}, x_{t0} ~ p_{t0}:

    .. math:: \frac{1}{3 t_0 (1 - \sqrt{\kappa t_0})} + \log\frac{\sqrt{t_0}}{1 - \sqrt{\kappa t_0}}
              + \log(2\sqrt{2\pi}),

    for kappa > 0 and 0 < t0 < 1/kappa (ValueError otherwise).
    Source: [SM] Cor. 5, App. A.6. Checked by claim ``sm.cor5``.
    """
    t0 = check_time(t0, "t0", strictly_positive=True)
    kappa = check_positive(kappa, "kappa")
    if not kappa * t0 < 1.0:
        raise ValueError(f"Cor. 5 needs 0 < t0 < 1/kappa = {1 / kappa:.6g}, got t0 = {t0}")
    tau = 1.0 - math.sqrt(kappa * t0)
    return 1.0 / (3.0 * t0 * tau) + math.log(math.sqrt(t0) / tau) + math.log(2.0 * math.sqrt(2.0 * math.pi))
