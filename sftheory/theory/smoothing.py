r"""Smoothed empirical score functions of the score-smoothing paper ([SM],
``../shared/papers/score-smoothing-paper.md``, Sec. 3 and App. A).

Setting
-------
VE forward process dX = dW (eq. (1)); training points y_1 < ... < y_n (n >= 2) spaced uniformly,
Delta = (y_{k+1} - y_k)/2 (half the spacing), midpoints a_k = y_k + Delta (Sec. 3.3);
p_t = (1/n) sum_k N(y_k, t). The ESF itself is the toolkit's
``EmpiricalDistribution(points).path(VE()).score`` and is not re-implemented here.

Conventions
-----------
* Every 1D score of this module is ``g(x) / t`` with g independent of t ((9), (15), (16)).
  The functions take the forward time as an optional last argument ``t`` (default 1.0): with
  the default they return ``g(x) = t * s(x)``, the "t-scaled" score.
* ``tau`` must lie in (0, Delta) ((8): tau in (0, 1) for S = {-1, 1}; Sec. 3.3: tau in
  (0, Delta)); tau_t = Delta - sqrt(kappa t) (Prop. 2/8, Sec. 3.2).
* F is exactly the function of the proof of Prop. 8, eq. (29):
  F(k) = 2 int_k^inf (u - k)^2 phi(u) du = 2 [(1 + k^2) Q(k) - k phi(k)], Q = 1 - Phi.
  (Note for users of Prop. 2/8: with kappa = (Delta - tau)^2 / t the lower limit in (29) is
  delta/sigma = sqrt(kappa), so the loss limit is (n-1)/n F(sqrt(kappa)); see the claim
  ``sm.prop2``.)

Smoothing operators (numerical, for any score callable)
-------------------------------------------------------
* :func:`smooth_interval` -- eq. (7), 1D: (1/(2 tau)) int_{x-tau}^{x+tau} f, by adaptive quadrature
  (``scipy.integrate.quad``) with optional break points.
* :func:`smooth_cube` -- eq. (18), d dims: average over the cube x + [-tau, tau]^d by
  tensor-product composite Gauss-Legendre.
* :func:`smooth_min_norm` -- eq. (37), App. A.3: the minimum-norm element of the line averages
  (1/(2 tau)) int_{-tau}^{tau} f(x + r v) dr over directions v in S^{d-1} (sampled, then polished
  by a local minimisation over the sphere).
* :func:`smoothed_esf` -- eq. (7) of the ESF itself, exactly: [log p_t(x+tau) - log p_t(x-tau)]/(2 tau).
"""
from __future__ import annotations

import math
import numbers

import numpy as np
from scipy import integrate, optimize, special

from .._refs import source
from ..fields import ScoreField
from .._validation import as_float_array, check_positive, check_real, check_seed, check_time, is_torch

#: relative tolerance (of the span y_n - y_1) on the uniform spacing of the training points;
#: linspace-built grids are uniform to a few eps, hand-typed decimals to ~1e-15 relative.
UNIFORM_RTOL = 1e-9

_SQRT_HALF_PI = math.sqrt(math.pi / 2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# ------------------------------------------------------------------ validation ------------------
def _points_1d(points, name: str = "points") -> np.ndarray:
    """Training points as a float64 1D array (shape (n,) or (n, 1)), n >= 2, strictly increasing
    and uniformly spaced (Sec. 3.3)."""
    y = as_float_array(points, name, ndim=(1, 2))
    if y.ndim == 2:
        if y.shape[1] != 1:
            raise ValueError(f"{name} must be 1D (shape (n,) or (n, 1)), got shape {y.shape}; use "
                             f"s_hat_d for points in R^d")
        y = y[:, 0]
    if y.shape[0] < 2:
        raise ValueError(f"{name} must hold n >= 2 training points, got {y.shape[0]}")
    gaps = np.diff(y)
    if not np.all(gaps > 0):
        raise ValueError(f"{name} must be sorted strictly increasing (Sec. 3.3: y_1 < ... < y_n)")
    span = y[-1] - y[0]
    if np.max(np.abs(gaps - span / (y.shape[0] - 1))) > UNIFORM_RTOL * span:
        raise ValueError(f"{name} must be uniformly spaced (Sec. 3.3: y_k = 2(k-1) Delta - D); "
                         f"spacings range over [{gaps.min():.6g}, {gaps.max():.6g}]")
    return y


def _x_array(x, name: str = "x") -> np.ndarray:
    if is_torch(x):
        x = x.detach().cpu().numpy()
    try:
        arr = np.array(x, dtype=np.float64)  # a copy: callers may write into it
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a real array ({exc})") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _check_tau(tau, delta: float, name: str = "tau") -> float:
    tau = check_real(tau, name)
    if not 0.0 < tau < delta:
        raise ValueError(f"{name} must lie in (0, Delta) = (0, {delta:.6g}) (eq. (8)/(16)), got {tau}")
    return tau


def _check_t(t) -> float:
    return check_time(t, "t", strictly_positive=True)


# ------------------------------------------------------------------ F, Delta, tau_t -------------
@source("SM", "proof of Prop. 8, eq. (29): F(k) = 2 int_k^inf (u - k)^2 phi(u) du", "sm.prop2", "sm.rate")
def F(kappa):
    r"""F(k) = 2 \int_k^\infty (u - k)^2 \phi(u) du ([SM] eq. (29)), elementwise.

    Closed form 2 [(1 + k^2) Q(k) - k phi(k)] with Q = 1 - Phi. For k >= 0 written with the
    scaled complementary error function, Q(k) = phi(k) sqrt(pi/2) erfcx(k/sqrt 2), so
    F = 2 phi(k) [(1 + k^2) R(k) - k] (relative rounding ~ k^4 eps / 2 from the cancellation,
    < 1e-12 up to k = 9); beyond k = 9 the asymptotic series
    (1 + k^2) R - k = sum_{j>=1} (-1)^{j+1} 2j (2j-1)!! / k^{2j+1} (terms shrink until j ~ k^2/2,
    40 terms reach ~1e-13 relative for k > 9). F(0) = 1, F strictly decreases to 0 on [0, inf); for
    k < 0 F(k) > 1 (the paper's "F: R -> [0, 1]" holds on [0, inf) only). Accepts any real
    array (or scalar; returns a float then).

    Corrects [SM] Prop. 2 / Prop. 8: with kappa = (Delta - tau)^2/t the loss limit is
    (n-1)/n F(sqrt(kappa)), not (n-1)/n F(kappa) (the lower limit in (29) is delta/sigma).

    Source: [SM] proof of Prop. 8, eq. (29). Checked by claims ``sm.prop2``, ``sm.rate``.
    """
    k = _x_array(kappa, "kappa")
    scalar = k.ndim == 0
    k = np.atleast_1d(k)
    out = np.empty_like(k)
    neg = k < 0
    kn = k[neg]
    out[neg] = 2.0 * ((1.0 + kn * kn) * special.ndtr(-kn) - kn * _INV_SQRT_2PI * np.exp(-0.5 * kn * kn))
    mid = (k >= 0) & (k <= 9.0)
    km = k[mid]
    phi = _INV_SQRT_2PI * np.exp(-0.5 * km * km)
    out[mid] = 2.0 * phi * ((1.0 + km * km) * _SQRT_HALF_PI * special.erfcx(km / math.sqrt(2.0)) - km)
    big = k > 9.0
    kb = k[big]
    term = 2.0 / kb ** 3  # j = 1
    acc = term.copy()
    for j in range(2, 41):
        term = -term * (2 * j - 1) * j / ((j - 1) * kb * kb)  # 2j (2j-1)!! / (2(j-1) (2j-3)!!)
        acc += term
    out[big] = 2.0 * _INV_SQRT_2PI * np.exp(-0.5 * kb * kb) * acc
    return float(out[0]) if scalar else out


def half_spacing(points) -> float:
    """Delta = (y_{k+1} - y_k)/2 for sorted, uniformly spaced training points ([SM] Sec. 3.3).

    ValueError for fewer than two points, unsorted or non-uniform points, NaN/inf.

    Source: [SM] Sec. 3.3 (Delta = D/(n-1) = (y_{k+1} - y_k)/2).
    """
    y = _points_1d(points)
    return float((y[-1] - y[0]) / (2.0 * (y.shape[0] - 1)))


@source("SM", "Prop. 2 / Prop. 8 and Sec. 3.2: tau_t = Delta - sqrt(kappa t)", "sm.prop2")
def tau_t(t, points, kappa) -> float:
    """The time-dependent smoothing scale tau_t = Delta - sqrt(kappa t) ([SM] Sec. 3.2, 3.3).

    ``t`` >= 0 forward time, ``kappa`` > 0; ValueError if tau_t <= 0 (t >= Delta^2 / kappa).

    Source: [SM] Prop. 2, Prop. 8, Sec. 3.2. Checked by claims ``sm.prop2``, ``sm.rate``.
    """
    t = check_time(t, "t")
    kappa = check_positive(kappa, "kappa")
    delta = half_spacing(points)
    tau = delta - math.sqrt(kappa * t)
    if not tau > 0:
        raise ValueError(f"tau_t = Delta - sqrt(kappa t) = {tau:.6g} must be > 0: need "
                         f"t < Delta^2/kappa = {delta * delta / kappa:.6g}, got t = {t}")
    return tau


# ------------------------------------------------------------------ piecewise-linear scores -----
def _segment(x: np.ndarray, y: np.ndarray, delta: float):
    """Index j of the segment [y_j, y_{j+1}] holding x (clipped to the end segments) and its
    midpoint a_j."""
    j = np.clip(np.floor((x - y[0]) / (2.0 * delta)), 0, y.shape[0] - 2).astype(np.intp)
    return j, y[j] + delta


@source("SM", "eq. (15) (eq. (8)'s sbar for n = 2)", "sm.eq8", "sm.lemma1")
def s_bar(x, points, t=1.0):
    """Piecewise-linear approximation of the ESF, sbar_t(x) = (y_k(x) - x)/t with y_k(x) the
    training point nearest to x ([SM] eq. (15); for S = {-1, 1}: (sgn x - x)/t, Sec. 3.1).

    Elementwise in ``x`` (any shape). ``t`` > 0 forward time (default 1: returns t * sbar).
    At a midpoint a_k, where (15) has two values, the right one (y_{k+1} - a_k)/t is returned.

    Source: [SM] eq. (15), Sec. 3.1. Checked by claims ``sm.eq8``, ``sm.lemma1``.
    """
    y = _points_1d(points)
    delta = float((y[-1] - y[0]) / (2.0 * (y.shape[0] - 1)))
    t = _check_t(t)
    xa = _x_array(x)
    j, a = _segment(xa, y, delta)
    nearest = np.where(xa < a, y[j], y[j + 1])
    out = (nearest - xa) / t
    return float(out) if out.ndim == 0 else out


@source("SM", "eq. (9) (n = 2), eq. (16) (n uniform points)", "sm.eq8", "sm.lemma1", "sm.prop2")
def s_hat(x, points, tau, t=1.0):
    """The tau-smoothed piecewise-linear score shat_{t,tau}(x) ([SM] eq. (16); (9) for S = {-1, 1}):

        (y_k - x)/t                       away from the midpoints (|x - a_k| >= tau),
        (Delta - tau)(x - a_k)/(tau t)    on [a_k - tau, a_k + tau],

    i.e. the tau-average (7) of sbar (eq. (8)). Elementwise in ``x`` (any shape); ``tau`` in
    (0, Delta); ``t`` > 0 forward time (default 1: returns t * shat).

    Source: [SM] eq. (9), (16), (8). Checked by claims ``sm.eq8``, ``sm.lemma1``, ``sm.prop2``.
    """
    y = _points_1d(points)
    delta = float((y[-1] - y[0]) / (2.0 * (y.shape[0] - 1)))
    tau = _check_tau(tau, delta)
    t = _check_t(t)
    xa = _x_array(x)
    out = _g_hat(xa, y, delta, tau) / t
    return float(out) if out.ndim == 0 else out


def _g_hat(x: np.ndarray, y: np.ndarray, delta: float, tau: float) -> np.ndarray:
    """t * shat_{t,tau}(x) of eq. (16) on validated inputs (the one place the formula lives)."""
    j, a = _segment(x, y, delta)
    u = x - a
    inner = np.abs(u) <= tau
    nearest = np.where(u < 0, y[j], y[j + 1])
    return np.where(inner, (delta - tau) * u / tau, nearest - x)


# ------------------------------------------------------------------ d dimensions ----------------
def _line(points_d, name: str = "points_d"):
    """Training points on a line in R^d: (origin c, unit direction u, 1D coordinates r_k = u.y_k)
    with the r_k sorted and uniformly spaced (the order given must run along the line)."""
    y = as_float_array(points_d, name, ndim=2)
    n, d = y.shape
    if n < 2:
        raise ValueError(f"{name} must hold n >= 2 training points, got {n}")
    span = y[-1] - y[0]
    length = float(np.linalg.norm(span))
    if not length > 0:
        raise ValueError(f"{name}: the first and last training points coincide")
    u = span / length
    rel = y - y[0]
    off = rel - np.outer(rel @ u, u)
    if np.max(np.linalg.norm(off, axis=1)) > UNIFORM_RTOL * length:
        raise ValueError(f"{name} must lie on one line in R^d (Sec. 3.4: y_k = [y_k1, 0, ..., 0])")
    r = y @ u
    _points_1d(r, name + " (coordinates along the line)")
    c_perp = y[0] - (y[0] @ u) * u  # the line's offset from the origin, orthogonal to u
    return c_perp, u, r


@source("SM", "eq. (20) (points on the first axis); App. A.3 for any line", "sm.A3")
def s_hat_d(x, points_d, tau, t=1.0):
    """The d-dimensional lift of shat ([SM] eq. (20)): for points y_k = [y_k1, 0, ..., 0],

        shat(x) = [shat_{t,tau}(x_1), -x_2/t, ..., -x_d/t].

    ``points_d`` (n, d) may lie on any line (sorted and uniformly spaced along it): with unit
    direction u the tangential part is u shat_{t,tau}(u.x) and the normal part -(x_perp - c_perp)/t
    (the rotated form of (20), which is what the rotation-invariant smoothing (37) of App. A.3
    gives; the cube smoothing (18) gives it only for a line along a coordinate axis).
    ``x`` (N, d) or (d,); ``tau`` in (0, Delta); ``t`` > 0 (default 1: returns t * shat).

    Source: [SM] eq. (20), App. A.3. Checked by claim ``sm.A3``.
    """
    c_perp, u, r = _line(points_d)
    delta = float((r[-1] - r[0]) / (2.0 * (r.shape[0] - 1)))
    tau = _check_tau(tau, delta)
    t = _check_t(t)
    xa = _x_array(x)
    if xa.shape[-1:] != u.shape or xa.ndim not in (1, 2):
        raise ValueError(f"x must have shape (N, {u.shape[0]}) or ({u.shape[0]},), got {xa.shape}")
    return _g_hat_d(xa, c_perp, u, r, delta, tau) / t


def _g_hat_d(x, c_perp, u, r, delta, tau):
    """t * (20) on validated inputs; tau may be an array broadcasting against x[..., 0]."""
    s = x @ u
    normal = x - s[..., None] * u - c_perp
    return u * _g_hat(s, r, delta, tau)[..., None] - normal


class SmoothedScore(ScoreField):
    """The score field s(x, t) = shat_{t, tau_t}(x) with tau_t = Delta - sqrt(kappa t) ([SM] (11),
    Sec. 3.2-3.4; eq. (16) in 1D, eq. (20) in d dims).

    ``points``: 1D training points (n,) (then ``dim`` = 1) or (n, d) points on a line (``dim`` = d).
    Callable as ``field(x, t)`` like every :class:`sftheory.fields.ScoreField`: x (N, d) (or (N,)
    when d = 1), t a forward time (scalar or (N,)) in (0, Delta^2/kappa); ValueError otherwise.

    Source: [SM] eq. (11), (16), (20).
    """

    def __init__(self, points, kappa):
        self._setup(points, kappa)

    def _setup(self, points, kappa):
        pts = as_float_array(points, "points", ndim=(1, 2))
        if pts.ndim == 1 or pts.shape[1] == 1:
            r = _points_1d(pts)
            self.dim = 1
            self._u, self._c = np.ones(1), np.zeros(1)
        else:
            self._c, self._u, r = _line(pts, "points")
            self.dim = pts.shape[1]
        self.points = pts
        self._r = r
        self.delta = float((r[-1] - r[0]) / (2.0 * (r.shape[0] - 1)))
        self.kappa = check_positive(kappa, "kappa")
        self.t_max = self.delta ** 2 / self.kappa

    def tau(self, t):
        """tau_t = Delta - sqrt(kappa t) (scalar or array t)."""
        return self.delta - np.sqrt(self.kappa * np.asarray(t, dtype=np.float64))

    def _eval(self, x, t):
        torch_in = is_torch(x)
        xn = x.detach().cpu().numpy().astype(np.float64) if torch_in else np.asarray(x, np.float64)
        tt = t.detach().cpu().numpy() if is_torch(t) else np.asarray(t, dtype=np.float64)
        if np.any(tt <= 0) or np.any(tt >= self.t_max):
            raise ValueError(f"t must lie in (0, Delta^2/kappa) = (0, {self.t_max:.6g}) so that "
                             f"tau_t = Delta - sqrt(kappa t) > 0 and the score is finite; got "
                             f"t in [{tt.min():.6g}, {tt.max():.6g}]")
        tau = self.tau(tt)
        out = _g_hat_d(xn, self._c, self._u, self._r, self.delta, tau) / (tt[..., None] if tt.ndim else tt)
        if torch_in:
            import torch

            return torch.as_tensor(out, dtype=x.dtype, device=x.device)
        return out.astype(xn.dtype if not hasattr(x, "dtype") else x.dtype, copy=False)

    def __repr__(self):
        return f"SmoothedScore(n={self._r.shape[0]}, Delta={self.delta:.6g}, kappa={self.kappa:g}, dim={self.dim})"


# ------------------------------------------------------------------ the smoothed ESF ------------
@source("SM", "eq. (7) applied to the ESF: (tau * d/dx log p_t)(x) = [log p_t(x+tau) - log p_t(x-tau)]/(2 tau)",
        "sm.lemma1")
def smoothed_esf(x, points, tau, t):
    """(tau * d/dx log p_t^(n))(x) ([SM] eq. (7) of the ESF, Lemma 1), exactly: by the fundamental
    theorem of calculus it is [log p_t(x + tau) - log p_t(x - tau)] / (2 tau), with log p_t from
    the toolkit's ``EmpiricalDistribution(points).path(VE()).logpdf``. 1D; ``points`` need not
    be uniform here; ``tau`` > 0, ``t`` > 0; elementwise in ``x``.

    Source: [SM] eq. (7), Lemma 1. Checked by claim ``sm.lemma1``.
    """
    from ..models import EmpiricalDistribution
    from ..processes import VE

    y = as_float_array(points, "points", ndim=(1, 2)).reshape(-1, 1)
    tau = check_positive(tau, "tau")
    t = _check_t(t)
    xa = _x_array(x)
    path = EmpiricalDistribution(y).path(VE())
    flat = xa.reshape(-1, 1)
    out = (path.logpdf(flat + tau, t) - path.logpdf(flat - tau, t)) / (2.0 * tau)
    out = np.asarray(out, dtype=np.float64).reshape(xa.shape)
    return float(out) if out.ndim == 0 else out


# ------------------------------------------------------------------ smoothing operators ---------
def _check_callable(f, name="f"):
    if not callable(f):
        raise ValueError(f"{name} must be callable, got {f!r}")
    return f


@source("SM", "eq. (7): (tau * f)(x) = (1/(2 tau)) int_{x-tau}^{x+tau} f", "sm.eq8")
def smooth_interval(f, x, tau, *, breakpoints=None, epsrel=1e-11, limit=200):
    """(tau * f)(x) of [SM] eq. (7) for a scalar function f on R, by adaptive quadrature
    (``scipy.integrate.quad`` on each window, with the ``breakpoints`` (kinks or jumps of f)
    that fall inside it passed as ``points``). Elementwise in ``x`` (any shape); ``tau`` > 0.
    ``f`` is called with float scalars and must return a finite float.

    Source: [SM] eq. (7). Checked by claim ``sm.eq8``.
    """
    _check_callable(f)
    tau = check_positive(tau, "tau")
    xa = _x_array(x)
    bps = np.sort(_x_array([] if breakpoints is None else breakpoints, "breakpoints").ravel())
    epsrel = check_positive(epsrel, "epsrel")
    out = np.empty(xa.shape)
    for idx, xi in np.ndenumerate(xa):
        lo, hi = xi - tau, xi + tau
        inside = bps[(bps > lo) & (bps < hi)]
        # absolute floor: epsrel times the size of f on the window (a zero average is reached
        # only to rounding, and a purely relative request would never be met there)
        floor = epsrel * 2.0 * tau * max(abs(float(f(lo))), abs(float(f(xi))), abs(float(f(hi))), 1e-300)
        val, _err = integrate.quad(lambda z: float(f(z)), lo, hi, points=inside if inside.size else None,
                                   epsabs=floor, epsrel=epsrel, limit=limit)
        out[idx] = val / (2.0 * tau)
    if not np.all(np.isfinite(out)):
        raise FloatingPointError("smooth_interval: f returned NaN or infinite values")
    return float(out) if out.ndim == 0 else out


def _composite_gl(order: int, panels: int):
    """Nodes and weights of composite Gauss-Legendre on [-1, 1] (``panels`` equal panels)."""
    if isinstance(order, bool) or not isinstance(order, numbers.Integral) or order < 1:
        raise ValueError(f"order must be an integer >= 1, got {order!r}")
    if isinstance(panels, bool) or not isinstance(panels, numbers.Integral) or panels < 1:
        raise ValueError(f"panels must be an integer >= 1, got {panels!r}")
    z, w = np.polynomial.legendre.leggauss(int(order))
    edges = np.linspace(-1.0, 1.0, int(panels) + 1)
    half = 0.5 * (edges[1:] - edges[:-1])
    mid = 0.5 * (edges[1:] + edges[:-1])
    return (mid[:, None] + half[:, None] * z).ravel(), (half[:, None] * w).ravel()


def _points_nd(x, name="x"):
    xa = _x_array(x, name)
    if xa.ndim != 2:
        raise ValueError(f"{name} must have shape (N, d), got {xa.shape}")
    return xa


def _call_field(f, pts, d):
    out = np.asarray(f(pts), dtype=np.float64)
    if out.shape != pts.shape:
        raise ValueError(f"f must map (M, {d}) points to (M, {d}) values, returned shape {out.shape}")
    if not np.all(np.isfinite(out)):
        raise FloatingPointError("f returned NaN or infinite values")
    return out


@source("SM", "eq. (18): average over the cube x + [-tau, tau]^d", "sm.A3")
def smooth_cube(f, x, tau, *, order=8, panels=16, max_evals=4_000_000):
    """(tau * f)(x) of [SM] eq. (18): the average of f over the cube x + [-tau, tau]^d, by
    tensor-product composite Gauss-Legendre (``panels`` panels of ``order`` nodes per axis;
    error O((tau/panels)^2) per axis at a kink of f, spectral where f is smooth).

    ``f`` maps points (M, d) to values (M, d) (a score field at a fixed time); ``x`` (N, d);
    ``tau`` > 0. ValueError if (order * panels)^d * N exceeds ``max_evals``.

    Source: [SM] eq. (18).
    """
    _check_callable(f)
    xa = _points_nd(x)
    tau = check_positive(tau, "tau")
    z, w = _composite_gl(order, panels)
    n, d = xa.shape
    m = z.shape[0]
    if n * m ** d > max_evals:
        raise ValueError(f"(order*panels)^d * N = {n * m ** d} evaluations exceeds max_evals = {max_evals}")
    grids = np.meshgrid(*([z] * d), indexing="ij")
    offs = tau * np.stack([g.ravel() for g in grids], axis=1)           # (m^d, d)
    wts = np.prod(np.stack(np.meshgrid(*([w] * d), indexing="ij")).reshape(d, -1), axis=0) / 2.0 ** d
    out = np.empty((n, d))
    for i in range(n):
        vals = _call_field(f, xa[i] + offs, d)
        out[i] = wts @ vals
    return out


def _line_averages(f, x0, dirs, tau, z, w):
    """(1/(2 tau)) int_{-tau}^{tau} f(x0 + r v) dr for each row v of ``dirs`` (K, d) -> (K, d)."""
    k, d = dirs.shape
    pts = x0 + tau * z[None, :, None] * dirs[:, None, :]                 # (K, m, d)
    vals = _call_field(f, pts.reshape(-1, d), d).reshape(k, z.shape[0], d)
    return np.einsum("m,kmd->kd", w, vals) / 2.0


def _gauss_lobatto(n: int):
    """n-point Gauss-Lobatto nodes/weights on [-1, 1] (endpoints included; exact to degree 2n-3)."""
    from numpy.polynomial import legendre as L

    inner = L.Legendre.basis(n - 1).deriv().roots()
    z = np.concatenate([[-1.0], np.sort(inner.real), [1.0]])
    w = 2.0 / (n * (n - 1) * L.legval(z, [0] * (n - 1) + [1]) ** 2)
    return z, w


# endpoints in the rule: a jump of f anywhere in a panel changes the panel rule and the rule on
# its halves differently (a Gauss rule misses a jump in the sliver beyond its last node)
_GLOB8 = _gauss_lobatto(8)


def _line_average_quad(f, x0, v, tau, epsrel, max_levels=80):
    """(1/(2 tau)) int_{-tau}^{tau} f(x0 + r v) dr by vectorised adaptive Gauss-Lobatto: 64
    panels, each accepted when its 8-point rule and the sum of the 8-point rules on its two
    halves agree to epsrel x (its share of the interval) x (the size of f), else halved; one
    call of f per level, so a jump of f (sbar at the midpoints) costs ~log2(1/epsrel) levels."""
    d = x0.shape[0]
    edges = np.linspace(-tau, tau, 65)
    lo, hi = edges[:-1], edges[1:]
    total = np.zeros(d)
    scale = None
    z, w = _GLOB8
    for _level in range(max_levels):
        mid = 0.5 * (lo + hi)
        # nodes on the whole panel, its left half, its right half
        seg_lo = np.concatenate([lo, lo, mid])
        seg_hi = np.concatenate([hi, mid, hi])
        c, h = 0.5 * (seg_lo + seg_hi), 0.5 * (seg_hi - seg_lo)
        r = (c[:, None] + h[:, None] * z).ravel()
        vals = _call_field(f, x0 + r[:, None] * v, d).reshape(seg_lo.size, 8, d)
        integ = h[:, None] * np.einsum("k,pkd->pd", w, vals)
        m = lo.size
        whole, halves = integ[:m], integ[m:2 * m] + integ[2 * m:]
        if scale is None:
            scale = max(float(np.abs(vals).mean()), 1e-300)
        ok = np.abs(whole - halves).max(axis=1) <= epsrel * scale * (hi - lo)
        total += halves[ok].sum(axis=0)
        if np.all(ok):
            return total / (2.0 * tau)
        lo, hi = np.concatenate([lo[~ok], mid[~ok]]), np.concatenate([mid[~ok], hi[~ok]])
    raise FloatingPointError(f"line average did not converge to epsrel={epsrel} in {max_levels} levels")


@source("SM", "eq. (37), App. A.3: minimum-norm element of the line averages over v in S^{d-1}", "sm.A3")
def smooth_min_norm(f, x, tau, *, n_directions=512, seed=0, directions=None, refine=True,
                    order=4, panels=64, epsrel=1e-10, tie_rtol=1e-12, return_directions=False):
    """(tau * f)(x) of [SM] eq. (37): gamma({(1/(2 tau)) int_{-tau}^{tau} f(x + r v) dr : v in S^{d-1}}),
    gamma(A) the element of A of minimum Euclidean norm (0 if that element is not unique).

    Numerically, per point: (1) line averages over ``directions`` (K, d) (normalised) or
    ``n_directions`` uniform random directions (``seed``) by composite Gauss-Legendre (``panels``
    x ``order`` nodes; coarse where f jumps); the minimum-norm one picks a direction; two sampled
    averages with norms within ``tie_rtol`` of the minimum that differ (by more than 1e-9
    relative) make the minimiser non-unique, and gamma = 0 there, as in (37); (2) with
    ``refine``, the direction is polished by a local minimisation over the sphere (bounded scalar
    search in the angle for d = 2, Nelder-Mead otherwise) of the norm of the line average
    computed by vectorised adaptive Gauss-Lobatto (panel vs halves, ``epsrel``), which also
    gives the returned value (to ~``epsrel`` of the size of f even where f jumps). ``f`` maps (M, d) -> (M, d); ``x`` (N, d).
    Returns (N, d) (and the minimising directions (N, d) if ``return_directions``).

    Source: [SM] eq. (37), App. A.3. Checked by claim ``sm.A3``.
    """
    _check_callable(f)
    xa = _points_nd(x)
    tau = check_positive(tau, "tau")
    epsrel = check_positive(epsrel, "epsrel")
    n, d = xa.shape
    z, w = _composite_gl(order, panels)
    if directions is None:
        if isinstance(n_directions, bool) or not isinstance(n_directions, numbers.Integral) or n_directions < 1:
            raise ValueError(f"n_directions must be an integer >= 1, got {n_directions!r}")
        g = check_seed(seed).standard_normal((int(n_directions), d))
    else:
        g = _x_array(directions, "directions")
        if g.ndim != 2 or g.shape[1] != d:
            raise ValueError(f"directions must have shape (K, {d}), got {g.shape}")
    norms = np.linalg.norm(g, axis=1)
    if not np.all(norms > 0):
        raise ValueError("directions must be non-zero vectors")
    dirs = g / norms[:, None]
    out = np.empty((n, d))
    best_dirs = np.empty((n, d))
    for i in range(n):
        x0 = xa[i]
        avg = _line_averages(f, x0, dirs, tau, z, w)
        nrm = np.linalg.norm(avg, axis=1)
        j = int(np.argmin(nrm))
        best, v = avg[j], dirs[j]
        close = nrm <= nrm[j] * (1 + tie_rtol) + 1e-300
        scale = max(float(np.linalg.norm(best)), 1e-300)
        if np.any(np.linalg.norm(avg[close] - best, axis=1) > 1e-9 * scale):
            out[i], best_dirs[i] = 0.0, v  # the minimiser is not unique: gamma = 0 (37)
            continue
        if refine:
            if d == 1:
                v = np.ones(1)
            elif d == 2:
                th0 = math.atan2(v[1], v[0])
                span = 4.0 * math.pi / math.sqrt(dirs.shape[0])  # wider than the sampling gap

                def obj_angle(th):
                    return float(np.linalg.norm(_line_average_quad(
                        f, x0, np.array([math.cos(th), math.sin(th)]), tau, epsrel)))

                res = optimize.minimize_scalar(obj_angle, bounds=(th0 - span, th0 + span),
                                               method="bounded", options={"xatol": 1e-7})
                v = np.array([math.cos(res.x), math.sin(res.x)])
            else:
                def obj(wv):
                    vv = wv / max(np.linalg.norm(wv), 1e-300)
                    return float(np.linalg.norm(_line_average_quad(f, x0, vv, tau, epsrel)))

                res = optimize.minimize(obj, v, method="Nelder-Mead",
                                        options={"xatol": 1e-6, "fatol": 1e-12 * nrm[j], "maxiter": 2000})
                v = res.x / np.linalg.norm(res.x)
            best = _line_average_quad(f, x0, v, tau, epsrel)
        out[i], best_dirs[i] = best, v
    return (out, best_dirs) if return_directions else out


# ------------------------------------------------------------------ flow maps --------------------
# The closed-form flow maps live in :mod:`sftheory.theory.smoothing_flow` (which imports the scores
# above); they are part of this module's public API, ``sftheory.theory.smoothing.flow_map``, and
# are resolved lazily so that either module can be imported first.
_FLOW_NAMES = ("flow_map", "flow_map_to_zero", "flow_map_d", "pushforward", "Pushforward",
               "kl_bound_cor5")

__all__ = ["F", "half_spacing", "tau_t", "s_bar", "s_hat", "s_hat_d", "SmoothedScore",
           "smoothed_esf", "smooth_interval", "smooth_cube", "smooth_min_norm", *_FLOW_NAMES]


def __getattr__(name):
    if name in _FLOW_NAMES:
        from . import smoothing_flow

        return getattr(smoothing_flow, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_FLOW_NAMES))
