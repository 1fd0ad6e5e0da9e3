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
    """Elementwise errors of ``measured`` vs ``reference``; summary numbers for records.

    Every summary keeps NaN: a NaN or infinite measured value makes ``err`` NaN or infinite, so
    ``max_*`` and ``excess`` are not finite and ``ok`` is False (never a silent 0.0).
    """

    err: np.ndarray
    scale: np.ndarray
    allowance: np.ndarray | None = None
    """Per-entry error the reference itself may carry (e.g. the rounding of a finite difference,
    eps |f| / h); subtracted from ``err`` before the tolerance applies (NaN stays NaN)."""

    @property
    def non_finite(self) -> int:
        """How many entries have a non-finite error (a NaN or infinite value on either side)."""
        return int(np.count_nonzero(~np.isfinite(self.err)))

    @property
    def max_abs_err(self) -> float:
        return float(np.max(self.err, initial=0.0))

    @property
    def max_rel_err(self) -> float:
        return float(np.max(self.err / np.maximum(self.scale, np.finfo(float).tiny), initial=0.0))

    def excess(self, t: tol.Tolerance) -> float:
        """max of |m - r| / (atol + rtol |r|): <= 1 means within the tolerance (NaN if any
        entry is NaN)."""
        err = self.err if self.allowance is None else np.maximum(self.err - self.allowance, 0.0)
        return float(np.max(err / (t.atol + t.rtol * self.scale), initial=0.0))

    def ok(self, t: tol.Tolerance) -> bool:
        return self.excess(t) <= 1.0  # False for NaN


def compare(measured, reference) -> Measurement:
    """Elementwise comparison; ``ok(tol)`` means |m - r| <= atol + rtol |r| everywhere."""
    m = np.asarray(measured, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if m.size == 0:
        raise ValueError("nothing to compare: empty arrays (an empty comparison is not a pass)")
    if m.shape != r.shape:
        raise AssertionError(f"shape mismatch: {m.shape} vs {r.shape}")
    with np.errstate(invalid="ignore"):  # inf - inf = NaN: a failure, reported as such
        err = np.abs(m - r).ravel()
    err[~np.isfinite(m.ravel())] = np.nan  # a non-finite measured value never passes
    return Measurement(err, np.abs(r).ravel())


def _assert(meas: Measurement, t: tol.Tolerance, what: str):
    if not meas.ok(t):
        worst = int(np.argmax(meas.err / (t.atol + t.rtol * meas.scale)))  # first NaN if any
        bad = f"{meas.non_finite} non-finite values (NaN/inf fail); " if meas.non_finite else ""
        raise AssertionError(
            f"{what}: {bad}max abs err {meas.max_abs_err:.3e}, max rel err {meas.max_rel_err:.3e} "
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


def measure_score_gradient(model, x, t=None, *, length_scale_: float | None = None) -> Measurement:
    """score(x) vs central differences of logpdf(x) at the model's length scale.

    The difference quotient carries a rounding error of about eps |log p(x)| / h (log p itself is
    accurate to a few ulps of its largest term): far in a tail, where |log p| is in the hundreds,
    that exceeds the relative tolerance. It is recorded as the measurement's ``allowance``
    (8 eps (1 + |log p(x)|) / h per entry), so the tolerance judges what is left.

    With ``t`` (a scalar or one time per point) ``model`` is a path: ``score(x, t)`` vs central
    differences of ``logpdf(., t)``; ``length_scale_`` then sets the step (default 1).
    """
    x = np.asarray(x, dtype=np.float64)
    if t is None:
        logpdf, score = model.logpdf, model.score
        ls = min(1.0, length_scale(model)) if length_scale_ is None else length_scale_
    else:
        logpdf, score = (lambda z: model.logpdf(z, t)), (lambda z: model.score(z, t))
        ls = 1.0 if length_scale_ is None else length_scale_
    fd = finite_difference_gradient(logpdf, x, length_scale=ls)
    meas = compare(score(x), fd)
    h = EPS ** (1 / 3) * ls * np.maximum(1.0, np.abs(x))
    f = np.abs(np.asarray(logpdf(x), dtype=np.float64))[:, None]
    meas.allowance = (8 * EPS * (1.0 + f) / h).ravel()
    return meas


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
    """A box holding all but a negligible mass: the law's mean +- n_std sd, widened to cover
    every Gaussian component's mean +- n_std of its own sd (a light, wide component of a mixture
    can reach far beyond n_std sd of the whole law). Per coordinate the mass outside is below
    2 Phi(-n_std) per component (~3.6e-33 at n_std = 12)."""
    mean = np.asarray(model.mean, dtype=np.float64)
    sd = np.sqrt(np.diag(np.asarray(model.cov, dtype=np.float64)))
    lo, hi = mean - n_std * sd, mean + n_std * sd
    covs = getattr(model, "covs", None)
    means = getattr(model, "means", None)
    if covs is not None and means is not None and not callable(covs) and not callable(means):
        mus = np.asarray(means, dtype=np.float64)
        sds = np.sqrt(np.diagonal(np.asarray(covs, dtype=np.float64), axis1=1, axis2=2))
        lo = np.minimum(lo, (mus - n_std * sds).min(axis=0))
        hi = np.maximum(hi, (mus + n_std * sds).max(axis=0))
    return lo, hi


def measure_normalization(model, *, n_std: float = 12.0) -> tuple[float, float]:
    """(integral of pdf, error estimate) for models in d = 1 or 2.

    Adaptive tensor Gauss-Legendre cubature (:func:`adaptive_gauss_legendre`, relative tolerance
    1e-11) over the mean +- n_std*sd box, first split on a ladder around every component (d = 1:
    mu_k +- (0, 1, 2, 4, 8, 16) sd_k; d = 2: mu_k +- (0, 3, 16) sd_k per axis), so that no narrow peak
    (an empirical atom at t = 1e-4 has sd 3e-3) sits inside or at the edge of a wide region whose
    nodes all miss it; regions whose order-10 and order-20 rules disagree are bisected until the
    summed disagreement (the error estimate returned) is below 1e-11 of the integral. A fixed
    panel grid did not hold: its error estimate exceeded 1e-10 for some random models (--seed 3).
    The tail mass outside the box is below the Chebyshev bound 2/n_std^2 for a single coordinate,
    and for the Gaussian laws here below 1e-30 per coordinate at n_std = 12.
    """
    d = model.dim
    if d not in (1, 2):
        raise ValueError(f"measure_normalization supports d <= 2, got d = {d}")
    lo, hi = _box(model, n_std)
    mu, sd = _component_points(model), _component_sds(model)
    ladder = (np.array([-16.0, -8.0, -4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0, 8.0, 16.0]) if d == 1
              else np.array([-16.0, -3.0, 0.0, 3.0, 16.0]))
    edges = []
    for j in range(d):
        br = np.unique((mu[:, j, None] + sd[:, j, None] * ladder).ravel())
        edges.append(np.concatenate([[lo[j]], br[(br > lo[j]) & (br < hi[j])], [hi[j]]]))
    return adaptive_gauss_legendre(lambda u: np.asarray(model.pdf(u), dtype=np.float64), edges,
                                   rtol=1e-11)


def adaptive_gauss_legendre(f, edges, *, rtol: float, order: int = 10, max_iter: int = 40,
                            chunk: int = 1_000_000) -> tuple[float, float]:
    """Integral of ``f`` (points (N, d) -> values (N,)) over the box tiled by ``edges`` (one
    increasing array of break points per axis), and its error estimate.

    Every region gets the tensor Gauss-Legendre rules of order ``order`` and ``2 order``; the
    higher one is the estimate and their difference its error (pessimistic: it is the lower
    rule's error). Regions whose error exceeds an equal share of ``rtol |integral|`` are bisected
    along every axis, all regions of one pass evaluated in one vectorized call, until the summed
    error is below ``rtol |integral|`` or ``max_iter`` passes are done (then the returned error
    says the rule did not converge). A NaN anywhere gives a NaN integral and error.
    """
    d = len(edges)
    edges = [np.asarray(e, dtype=np.float64) for e in edges]
    cells = np.meshgrid(*[np.arange(len(e) - 1) for e in edges], indexing="ij")
    lo = np.stack([e[c.ravel()] for e, c in zip(edges, cells)], axis=1)
    hi = np.stack([e[c.ravel() + 1] for e, c in zip(edges, cells)], axis=1)

    def tensor_rule(n):
        g, w = np.polynomial.legendre.leggauss(n)
        nodes = np.stack(np.meshgrid(*([g] * d), indexing="ij"), -1).reshape(-1, d)
        weights = np.prod(np.stack(np.meshgrid(*([w] * d), indexing="ij"), -1).reshape(-1, d), axis=1)
        return nodes, weights

    rules = [tensor_rule(order), tensor_rule(2 * order)]

    def apply(lo, hi, rule):
        nodes, weights = rule
        half = 0.5 * (hi - lo)
        pts = ((0.5 * (hi + lo))[:, None, :] + half[:, None, :] * nodes[None]).reshape(-1, d)
        parts = np.array_split(pts, max(1, len(pts) // chunk))
        vals = np.concatenate([np.asarray(f(p), dtype=np.float64).reshape(-1) for p in parts])
        return (vals.reshape(len(lo), -1) @ weights) * np.prod(half, axis=1)

    done_est = done_err = 0.0
    for _ in range(max_iter):
        coarse, fine = apply(lo, hi, rules[0]), apply(lo, hi, rules[1])
        err = np.abs(fine - coarse)
        total, total_err = done_est + fine.sum(), done_err + err.sum()
        if not (np.isfinite(total) and np.isfinite(total_err)):
            return float("nan"), float("nan")
        if total_err <= rtol * abs(total):
            break
        split = err > rtol * abs(total) / (len(lo) + 1)
        done_est += fine[~split].sum()
        done_err += err[~split].sum()
        lo, hi = lo[split], hi[split]
        mid = 0.5 * (lo + hi)
        corners = [np.array(c, dtype=bool) for c in np.ndindex(*([2] * d))]
        lo, hi = (np.concatenate([np.where(c, mid, lo) for c in corners]),
                  np.concatenate([np.where(c, hi, mid) for c in corners]))
    return float(total), float(total_err)


def _component_sds(model) -> np.ndarray:
    """Per-component, per-coordinate standard deviations, shape (K, d)."""
    covs = getattr(model, "covs", None)
    if covs is None or callable(covs):
        covs = np.asarray(model.cov)[None]
    covs = np.asarray(covs, dtype=np.float64)
    return np.sqrt(np.diagonal(covs, axis1=1, axis2=2))


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
def fokker_planck_terms(model, process, t: float, x, *, h_t: float | None = None,
                        h_x: float | None = None):
    """(d/dt log p_t, grad log p_t, lap log p_t) at points x for p_t = model.marginal(process, t),
    all by central differences of ``logpdf``: nothing comes from ``score``.

    Steps: h_t (default 1e-4 t) and h_x (default 1e-4 max(1, sqrt(v(t)))). p_t is the law of
    m X_0 + sqrt(v) Z, so log p_t is (1/v)-smooth: its length scale is at least sqrt(v), and a
    step relative to it keeps the truncation error (h/length)^2 small while the rounding error of
    the second difference, ~eps |log p| / h^2 (times g^2 in the equation), does not grow with the
    spread of wide laws. With a fixed 1e-4, VE(sigma=2) at t = 5 (v ~ 740, g^2 ~ 1400) gave a
    residual of 1e-4 from rounding alone: 8e-5 at h = 1e-4, 7e-7 at 1e-3, 6e-9 at 1e-2."""
    x = np.asarray(x, dtype=np.float64)
    h_t = 1e-4 * t if h_t is None else h_t
    if h_x is None:
        h_x = 1e-4 * max(1.0, math.sqrt(process.conditional(t)[1]))
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
    return lhs, grad, lap


def measure_fokker_planck(model, process, t: float, x, *, h_t: float | None = None,
                          h_x: float | None = None):
    """Residual of the Fokker-Planck equation of ``process`` for p_t = model.marginal(process, t).

    Everything comes from ``logpdf`` by central differences (:func:`fokker_planck_terms`).
    Returns ``(lhs, rhs, scale)`` with rhs from
    :meth:`~sftheory.processes.LinearSDE.log_fokker_planck_rhs` and ``scale`` the size of the
    individual terms (for a relative residual).
    """
    x = np.asarray(x, dtype=np.float64)
    lhs, grad, lap = fokker_planck_terms(model, process, t, x, h_t=h_t, h_x=h_x)
    rhs = process.log_fokker_planck_rhs(x, t, grad, lap)
    a = float(process.drift_coef(t))
    g2 = float(process.diffusion(t)) ** 2
    d = x.shape[1]
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
    """Sample mean and covariance agree with exact ones within ``n_sigma`` standard errors.

    Non-finite samples fail (their z-scores are NaN, and NaN is never within n_sigma).
    """
    samples = np.asarray(samples, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: NaN z-scores, which fail
        zm = mean_zscores(samples, np.asarray(mean), np.asarray(cov))
        zc = cov_zscores(samples, np.asarray(cov))
    worst = float(np.max(np.abs(np.concatenate([np.ravel(zm), np.ravel(zc)]))))
    if not worst <= n_sigma:
        bad = int(np.count_nonzero(~np.isfinite(samples)))
        raise AssertionError(f"Monte Carlo moments off by {worst:.2f} standard errors (> {n_sigma})"
                             + (f"; {bad} non-finite sample entries" if bad else "")
                             + f": mean z = {zm}, cov z = {zc}")
    return worst


# ---- backends ----------------------------------------------------------------------------------
def measure_backend_parity(model, x) -> dict:
    """Max relative differences of (logpdf, score) between numba, numpy reference and torch (CPU,
    float64, if installed) at points x. Keys: 'numba_vs_numpy', 'torch_vs_numpy' ("not run:
    torch is not installed" when it is not). A NaN or infinite value in any route gives NaN."""
    x = np.asarray(x, dtype=np.float64)
    lp_nb, s_nb = model.logpdf_and_score(x, impl="numba")
    lp_np, s_np = model.logpdf_and_score(x, impl="numpy")
    out = {"numba_vs_numpy": _rel_pair(lp_nb, s_nb, lp_np, s_np),
           "torch_vs_numpy": "not run: torch is not installed"}
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
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            r = np.abs(a - b) / np.maximum(np.abs(b), 1.0)
        r[~np.isfinite(a) | ~np.isfinite(b)] = np.nan  # NaN or inf on either side fails
        return r.ravel()
    # one NaN-propagating max over both (Python's max(x, nan) would return x); nothing compared
    # is NaN, not a pass
    both = np.concatenate([rel(lp_a, lp_b), rel(s_a, s_b)])
    return float(np.max(both)) if both.size else float("nan")
