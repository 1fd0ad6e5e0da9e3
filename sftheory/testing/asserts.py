"""Measurements and assertions that turn an identity into numbers.

Each ``measure_*`` function returns the numbers (so claim checks can record them); each
``assert_*`` wraps one with a named tolerance from :mod:`sftheory.testing.tolerances` and raises
``AssertionError`` with the worst case spelled out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import tolerances as tol

EPS = np.finfo(np.float64).eps


@dataclass
class Measurement:
    """Elementwise errors of ``measured`` vs ``reference``; summary numbers for records."""

    err: np.ndarray
    scale: np.ndarray

    @property
    def max_abs_err(self) -> float:
        return float(self.err.max(initial=0.0))

    @property
    def max_rel_err(self) -> float:
        return float((self.err / np.maximum(self.scale, np.finfo(float).tiny)).max(initial=0.0))

    def excess(self, t: tol.Tolerance) -> float:
        """max of |m - r| / (atol + rtol |r|): <= 1 means within the tolerance."""
        return float((self.err / (t.atol + t.rtol * self.scale)).max(initial=0.0))

    def ok(self, t: tol.Tolerance) -> bool:
        return self.excess(t) <= 1.0


def compare(measured, reference) -> Measurement:
    """Elementwise comparison; ``ok(tol)`` means |m - r| <= atol + rtol |r| everywhere."""
    m = np.asarray(measured, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if m.shape != r.shape:
        raise AssertionError(f"shape mismatch: {m.shape} vs {r.shape}")
    return Measurement(np.abs(m - r).ravel(), np.abs(r).ravel())


def _assert(meas: Measurement, t: tol.Tolerance, what: str):
    if not meas.ok(t):
        worst = int(np.argmax(meas.err / (t.atol + t.rtol * meas.scale)))
        raise AssertionError(
            f"{what}: max abs err {meas.max_abs_err:.3e}, max rel err {meas.max_rel_err:.3e} "
            f"exceed {t.name} (rtol={t.rtol}, atol={t.atol}; {t.why}); worst at flat index "
            f"{worst}; error/tolerance = {meas.excess(t):.3g}")


# ---- score = gradient of log-density ------------------------------------------------------------
def finite_difference_gradient(logpdf, x: np.ndarray, *, length_scale: float = 1.0) -> np.ndarray:
    """Central differences of ``logpdf`` at points x (N, d).

    Step h_j = eps^(1/3) * length_scale * max(1, |x_j|): the truncation error is
    O((h / length_scale)^2) relative and the rounding error O(eps |x| / h), both ~ 1e-10 for the
    length scale of the density (the smallest component standard deviation).
    """
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    grad = np.empty_like(x)
    h = EPS ** (1 / 3) * length_scale * np.maximum(1.0, np.abs(x))
    for j in range(d):
        xp, xm = x.copy(), x.copy()
        xp[:, j] += h[:, j]
        xm[:, j] -= h[:, j]
        grad[:, j] = (np.asarray(logpdf(xp)) - np.asarray(logpdf(xm))) / (xp[:, j] - xm[:, j])
    return grad


def length_scale(model) -> float:
    """Smallest standard deviation of the model's Gaussian components (1.0 if unknown)."""
    covs = getattr(model, "covs", None)
    if covs is None:
        covs = getattr(model, "cov", None)
    if covs is None or callable(covs):
        return 1.0
    covs = np.asarray(covs)
    if covs.ndim == 2:
        covs = covs[None]
    return float(np.sqrt(np.linalg.eigvalsh(covs).min()))


def measure_score_gradient(model, x) -> Measurement:
    """score(x) vs central differences of logpdf(x) at the model's length scale."""
    x = np.asarray(x, dtype=np.float64)
    fd = finite_difference_gradient(model.logpdf, x, length_scale=min(1.0, length_scale(model)))
    return compare(model.score(x), fd)


def assert_score_is_gradient(model, x, tolerance: tol.Tolerance = tol.SCORE_FD):
    """``model.score`` (or any object with ``score``/``logpdf``) equals the gradient of ``logpdf``.

    The FD error scales with the third derivative of log p, so the tolerance is relative to the
    score's size plus an absolute floor; see :data:`~sftheory.testing.tolerances.SCORE_FD`.
    """
    meas = measure_score_gradient(model, x)
    _assert(meas, tolerance, "score vs finite-difference gradient of logpdf")
    return meas


# ---- normalization -----------------------------------------------------------------------------
def _box(model, n_std: float):
    mean = np.asarray(model.mean, dtype=np.float64)
    sd = np.sqrt(np.diag(np.asarray(model.cov, dtype=np.float64)))
    return mean - n_std * sd, mean + n_std * sd


def measure_normalization(model, *, n_std: float = 12.0) -> tuple[float, float]:
    """(integral of pdf, error estimate) for models in d = 1 or 2.

    d = 1: ``scipy.integrate.quad`` over the whole line with the component means as break points
    (its own error estimate). d = 2: tensor Gauss-Legendre on a mean +- n_std*sd box, split into
    panels at the component means; error estimated by doubling the order. The tail mass outside
    the box is below the Chebyshev bound 2/n_std^2 for a single coordinate, and for the Gaussian
    laws here below 1e-30 per coordinate at n_std = 12.
    """
    from scipy import integrate

    d = model.dim
    lo, hi = _box(model, n_std)
    if d == 1:
        breaks = np.unique(np.clip(_component_points(model)[:, 0], lo[0], hi[0]))
        f = lambda u: float(model.pdf(np.array([u]))[0])  # noqa: E731
        val, err = integrate.quad(f, lo[0], hi[0], points=breaks[:50], limit=500,
                                  epsabs=1e-13, epsrel=1e-12)
        return val, err
    if d == 2:
        def gl(order):
            nodes, wts = np.polynomial.legendre.leggauss(order)
            edges = [np.unique(np.concatenate([[lo[j], hi[j]],
                                               np.clip(_component_points(model)[:, j], lo[j], hi[j])]))
                     for j in range(2)]
            pts, ws = [], []
            for j in range(2):
                p, w = [], []
                for a, b in zip(edges[j][:-1], edges[j][1:]):
                    p.append(0.5 * (b - a) * nodes + 0.5 * (a + b))
                    w.append(0.5 * (b - a) * wts)
                pts.append(np.concatenate(p))
                ws.append(np.concatenate(w))
            gx, gy = np.meshgrid(pts[0], pts[1], indexing="ij")
            wx, wy = np.meshgrid(ws[0], ws[1], indexing="ij")
            vals = model.pdf(np.column_stack([gx.ravel(), gy.ravel()]))
            return float(np.sum(vals * (wx * wy).ravel()))

        a, b = gl(48), gl(96)
        return b, abs(b - a)
    raise ValueError(f"measure_normalization supports d <= 2, got d = {d}")


def _component_points(model) -> np.ndarray:
    if hasattr(model, "means") and not callable(model.means):
        return np.asarray(model.means)
    return np.asarray(model.mean)[None]


def assert_density_normalized(model, tolerance: tol.Tolerance = tol.QUADRATURE):
    """The density of ``model`` (d <= 2) integrates to one."""
    val, err = measure_normalization(model)
    if not abs(val - 1.0) <= tolerance.atol + tolerance.rtol + 10 * err:
        raise AssertionError(f"density integrates to {val!r} (quadrature error estimate {err:.2e}); "
                             f"{tolerance.name}: {tolerance.why}")
    return val, err


# ---- Fokker-Planck ----------------------------------------------------------------------------
def measure_fokker_planck(model, process, t: float, x, *, h_t: float | None = None,
                          h_x: float = 1e-4):
    """Residual of the Fokker-Planck equation of ``process`` for p_t = model.marginal(process, t).

    Everything comes from ``logpdf`` by central differences: d/dt log p_t with step h_t (default
    1e-4 t), the gradient and the Laplacian of log p_t with step h_x. Returns
    ``(lhs, rhs, scale)`` with rhs from :meth:`~sftheory.processes.LinearSDE.log_fokker_planck_rhs`
    and ``scale`` the size of the individual terms (for a relative residual).
    """
    x = np.asarray(x, dtype=np.float64)
    h_t = 1e-4 * t if h_t is None else h_t
    if t - h_t <= 0:
        raise ValueError("need t > h_t")
    lhs = (model.marginal(process, t + h_t).logpdf(x)
           - model.marginal(process, t - h_t).logpdf(x)) / (2 * h_t)
    pt = model.marginal(process, t)
    n, d = x.shape
    f0 = pt.logpdf(x)
    grad = np.empty_like(x)
    lap = np.zeros(n)
    for j in range(d):
        xp, xm = x.copy(), x.copy()
        xp[:, j] += h_x
        xm[:, j] -= h_x
        fp, fm = pt.logpdf(xp), pt.logpdf(xm)
        grad[:, j] = (fp - fm) / (2 * h_x)
        lap += (fp - 2 * f0 + fm) / h_x**2
    rhs = process.log_fokker_planck_rhs(t, x, grad, lap)
    a = float(process.drift_coef(t))
    g2 = float(process.diffusion(t)) ** 2
    scale = (np.abs(a) * (d + np.abs((x * grad).sum(1)))
             + 0.5 * g2 * (np.abs(lap) + (grad * grad).sum(1)))
    return lhs, rhs, scale


def assert_fokker_planck(model, process, t, x, tolerance: tol.Tolerance = tol.FOKKER_PLANCK):
    lhs, rhs, scale = measure_fokker_planck(model, process, t, x)
    resid = np.abs(lhs - rhs)
    bound = tolerance.atol + tolerance.rtol * np.maximum(scale, np.abs(lhs))
    if not np.all(resid <= bound):
        i = int(np.argmax(resid / bound))
        raise AssertionError(f"Fokker-Planck residual {resid[i]:.3e} at x={x[i]} exceeds "
                             f"{bound[i]:.3e} ({tolerance.name}: {tolerance.why})")
    return float(np.max(resid / np.maximum(scale, 1e-300)))


# ---- Monte Carlo ------------------------------------------------------------------------------
def mean_zscores(samples: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """z = (sample mean - exact mean) / (exact sd / sqrt(n)) per coordinate."""
    samples = np.asarray(samples, dtype=np.float64)
    n = samples.shape[0]
    se = np.sqrt(np.diag(cov) / n)
    return (samples.mean(axis=0) - mean) / se


def cov_zscores(samples: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """z-scores of the sample covariance entries vs the exact covariance.

    The standard error of each entry is estimated from the samples' own fourth moments
    (var of (x_a - xbar_a)(x_b - xbar_b)), valid for any law with finite fourth moments.
    """
    samples = np.asarray(samples, dtype=np.float64)
    n = samples.shape[0]
    c = samples - samples.mean(axis=0)
    prods = c[:, :, None] * c[:, None, :]
    s_cov = prods.mean(axis=0) * n / (n - 1)
    se = prods.std(axis=0, ddof=1) / math.sqrt(n)
    return (s_cov - cov) / se


def assert_moments_match(samples, mean, cov, n_sigma: float = tol.MC_SIGMAS):
    """Sample mean and covariance agree with exact ones within ``n_sigma`` standard errors."""
    zm = mean_zscores(samples, np.asarray(mean), np.asarray(cov))
    zc = cov_zscores(samples, np.asarray(cov))
    worst = max(np.abs(zm).max(), np.abs(zc).max())
    if worst > n_sigma:
        raise AssertionError(f"Monte Carlo moments off by {worst:.2f} standard errors (> {n_sigma}): "
                             f"mean z = {zm}, cov z = {zc}")
    return float(worst)


# ---- backends ----------------------------------------------------------------------------------
def measure_backend_parity(model, x) -> dict:
    """Max relative differences of (logpdf, score) between numba, numpy reference and torch (CPU,
    float64, if installed) at points x. Keys: 'numba_vs_numpy', 'torch_vs_numpy' (or None)."""
    x = np.asarray(x, dtype=np.float64)
    lp_nb, s_nb = model.logpdf_and_score(x, impl="numba")
    lp_np, s_np = model.logpdf_and_score(x, impl="numpy")
    out = {"numba_vs_numpy": _rel_pair(lp_nb, s_nb, lp_np, s_np), "torch_vs_numpy": None}
    try:
        import torch
    except ImportError:
        return out
    lp_t, s_t = model.logpdf_and_score(torch.from_numpy(x))
    out["torch_vs_numpy"] = _rel_pair(lp_t.numpy(), s_t.numpy(), lp_np, s_np)
    return out


def _rel_pair(lp_a, s_a, lp_b, s_b) -> float:
    """max |a - b| / max(|b|, 1) over logpdf and score entries (relative, with a floor of 1 so that
    values at or near zero, a score at a mode, are compared absolutely)."""
    def rel(a, b):
        a, b = np.asarray(a), np.asarray(b)
        return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1.0), initial=0.0))
    return max(rel(lp_a, lp_b), rel(s_a, s_b))
