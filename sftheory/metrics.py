r"""Distances between distributions: histogram KL / JS, W1, and TV / KL by quadrature.

Estimators from samples (:func:`histogram_kl`, :func:`histogram_js`, :func:`wasserstein1`) return
a value with a bootstrap standard error; quadratures of two known 1D densities
(:func:`tv_quadrature`, :func:`kl_quadrature`) return a value with the integrator's own error
estimate and refuse to answer when that estimate is above a ceiling.

Conventions (all divergences in nats):

- **Histograms** use equal-width bins on a stated range: ``bins`` bins on ``range = (lo, hi)`` in
  1D, ``bins`` (or ``(bx, by)``) bins per axis on ``range = (lo, hi)`` (both axes) or
  ``((lo0, hi0), (lo1, hi1))`` in 2D. Bins are closed on the left, the last bin also on the right
  (numpy's convention).
- **Samples outside the range** are not binned. The fraction of each sample set that falls
  outside is counted and reported in the result's ``outside`` field; the bin probabilities are
  the in-range counts divided by the in-range total, i.e. the divergence is that of the two laws
  *conditioned on the range*.
- **Empty bins** (keyword ``alpha``, default ``1e-10``): additive smoothing of the bin
  probabilities, :math:`\hat p_i = (c_i / n + \alpha) / (1 + K\alpha)` for K bins, so that a bin
  where Q is empty but P is not gives a large finite term instead of an infinite one. With
  ``alpha = 0`` the exact rule is used: bins with :math:`\hat p_i = 0` contribute 0, and a bin with
  :math:`\hat q_i = 0 < \hat p_i` makes the KL ``+inf``.
- **Bootstrap standard errors** resample both sample sets with replacement (``n_boot`` times,
  generator from ``seed``). For the histogram estimators this is done exactly and cheaply by
  drawing the (bins + outside) counts of each resample from the multinomial law of the observed
  counts, which is the law of the counts of a with-replacement resample.
"""
from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass

import numpy as np

from ._validation import check_seed

__all__ = [
    "HistogramDivergence",
    "Wasserstein1",
    "QuadratureResult",
    "histogram_kl",
    "histogram_js",
    "wasserstein1",
    "tv_quadrature",
    "kl_quadrature",
    "QUAD_MAX_ERROR",
    "DEFAULT_ALPHA",
    "DEFAULT_N_BOOT",
]

DEFAULT_ALPHA = 1e-10
"""Default additive smoothing of histogram bin probabilities (see the module docstring)."""
DEFAULT_N_BOOT = 200
"""Default number of bootstrap resamples for the standard errors."""
QUAD_MAX_ERROR = 1e-8
"""Default ceiling on quad's absolute error estimate; above it the quadratures raise ValueError."""


# ---------------------------------------------------------------- results ------------------------
@dataclass(frozen=True)
class HistogramDivergence:
    """A divergence of two histograms.

    Attributes
    ----------
    value : float
        The divergence in nats (may be ``+inf`` for KL with ``alpha = 0``).
    stderr : float
        Bootstrap standard error of ``value`` (``nan`` when ``n_boot = 0``, ``inf`` when some
        resample gives an infinite divergence).
    outside : tuple of float
        Fractions of ``p_samples`` and ``q_samples`` outside the range (not binned).
    bins : tuple of int
        Bins per axis.
    range : tuple of (float, float)
        The range per axis.
    alpha : float
        The smoothing used for empty bins.
    n_boot : int
        Number of bootstrap resamples.
    """

    value: float
    stderr: float
    outside: tuple
    bins: tuple
    range: tuple
    alpha: float
    n_boot: int


@dataclass(frozen=True)
class Wasserstein1:
    """The 1D Wasserstein-1 distance of two sample sets and its bootstrap standard error."""

    value: float
    stderr: float
    n_boot: int


@dataclass(frozen=True)
class QuadratureResult:
    """A value by ``scipy.integrate.quad`` and the sum of quad's absolute error estimates."""

    value: float
    abserr: float


# ---------------------------------------------------------------- validation ---------------------
def _samples(x, name: str) -> np.ndarray:
    """(N,) or (N, 1) -> (N, 1); (N, 2) -> (N, 2); finite, N >= 1."""
    try:
        a = np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name} must be an array of samples: {exc}") from None
    if a.dtype.kind not in "fiu" or a.dtype.kind == "b":
        raise ValueError(f"{name} must be real samples, got dtype {a.dtype}")
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] not in (1, 2):
        raise ValueError(f"{name} must have shape (N,), (N, 1) or (N, 2), got {np.shape(x)}")
    if a.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _pair(p_samples, q_samples, *, dim1_only: bool = False):
    p = _samples(p_samples, "p_samples")
    q = _samples(q_samples, "q_samples")
    if p.shape[1] != q.shape[1]:
        raise ValueError(f"p_samples and q_samples must have the same dimension, got {p.shape[1]} "
                         f"and {q.shape[1]}")
    if dim1_only and p.shape[1] != 1:
        raise ValueError(f"p_samples must be 1D, shape (N,) or (N, 1), got {np.shape(p_samples)}")
    return p, q


def _interval(lo, hi, name: str, *, allow_inf: bool = False) -> tuple[float, float]:
    vals = []
    for v in (lo, hi):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise ValueError(f"{name} must be real numbers (lo, hi), got {lo!r}, {hi!r}")
        v = float(v)
        if math.isnan(v) or (not allow_inf and math.isinf(v)):
            raise ValueError(f"{name} must be finite, got ({lo!r}, {hi!r})")
        vals.append(v)
    if not vals[0] < vals[1]:
        raise ValueError(f"{name} needs lo < hi, got lo={vals[0]} >= hi={vals[1]}")
    return vals[0], vals[1]


def _bins_range(bins, range_, d: int):
    if isinstance(bins, (bool, np.bool_)):
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    if isinstance(bins, numbers.Integral):
        bins = (bins,) * d
    try:
        bins = tuple(bins)
    except TypeError:
        raise ValueError(f"bins must be a positive integer or one per axis, got {bins!r}") from None
    if len(bins) != d or any(isinstance(b, (bool, np.bool_)) or not isinstance(b, numbers.Integral)
                             or b <= 0 for b in bins):
        raise ValueError(f"bins must be a positive integer or {d} positive integers (one per "
                         f"axis), got {bins!r}")
    bins = tuple(int(b) for b in bins)
    if range_ is None:
        raise ValueError("range must be given: (lo, hi), or one (lo, hi) per axis in 2D")
    try:
        r = tuple(range_)
    except TypeError:
        raise ValueError(f"range must be (lo, hi) or one (lo, hi) per axis, "
                         f"got {range_!r}") from None
    if len(r) == 2 and all(isinstance(v, numbers.Real) for v in r):
        r = (r,) * d
    if len(r) != d or any(np.ndim(ax) != 1 or len(ax) != 2 for ax in r):
        raise ValueError(f"range must be (lo, hi) or {d} pairs (lo, hi), got {range_!r}")
    r = tuple(_interval(ax[0], ax[1], "range") for ax in r)
    return bins, r


def _check_alpha(alpha) -> float:
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, numbers.Real) \
            or not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    return float(alpha)


def _check_n_boot(n_boot) -> int:
    if isinstance(n_boot, (bool, np.bool_)) or not isinstance(n_boot, numbers.Integral) \
            or n_boot < 0 or n_boot == 1:
        raise ValueError(f"n_boot must be 0 (no standard error) or an integer >= 2, got {n_boot!r}")
    return int(n_boot)


# ---------------------------------------------------------------- histograms ---------------------
def _counts(x: np.ndarray, bins, range_) -> np.ndarray:
    """Flattened in-range bin counts followed by the outside count (length K + 1)."""
    if x.shape[1] == 1:
        c, _ = np.histogram(x[:, 0], bins=bins[0], range=range_[0])
    else:
        c, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=bins, range=range_)
    c = c.ravel().astype(np.int64)
    return np.append(c, x.shape[0] - c.sum())


def _probs(counts: np.ndarray, alpha: float) -> np.ndarray:
    """Smoothed bin probabilities from (..., K + 1) counts (last entry: outside, dropped)."""
    c = counts[..., :-1].astype(np.float64)
    n = c.sum(axis=-1, keepdims=True)
    k = c.shape[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (c / n + alpha) / (1.0 + k * alpha)


def _xlogy_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum a log(a / b) along the last axis, with 0 log(0 / b) = 0 and a log(a / 0) = +inf."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(a > 0, a * (np.log(a) - np.log(b)), 0.0)
    return t.sum(axis=-1)


def _kl_probs(p, q):
    return _xlogy_ratio(p, q)


def _js_probs(p, q):
    m = 0.5 * (p + q)
    return np.clip(0.5 * _xlogy_ratio(p, m) + 0.5 * _xlogy_ratio(q, m), 0.0, math.log(2.0))


def _histogram_divergence(fn, p_samples, q_samples, bins, range_, alpha, n_boot, seed):
    p, q = _pair(p_samples, q_samples)
    bins, range_ = _bins_range(bins, range_, p.shape[1])
    alpha = _check_alpha(alpha)
    n_boot = _check_n_boot(n_boot)
    rng = check_seed(seed)
    cp, cq = _counts(p, bins, range_), _counts(q, bins, range_)
    for c, name in ((cp, "p_samples"), (cq, "q_samples")):
        if c[:-1].sum() == 0:
            raise ValueError(f"no sample of {name} falls in range {range_}")
    value = float(fn(_probs(cp, alpha), _probs(cq, alpha)))
    stderr = math.nan
    if n_boot:
        bp = rng.multinomial(int(cp.sum()), cp / cp.sum(), size=n_boot)
        bq = rng.multinomial(int(cq.sum()), cq / cq.sum(), size=n_boot)
        vals = fn(_probs(bp, alpha), _probs(bq, alpha))
        vals = vals[~np.isnan(vals)]  # resamples with no in-range sample (practically never)
        if vals.size < 2:
            stderr = math.nan
        elif not np.all(np.isfinite(vals)):
            stderr = math.inf
        else:
            stderr = float(np.std(vals, ddof=1))
    outside = (float(cp[-1] / cp.sum()), float(cq[-1] / cq.sum()))
    return HistogramDivergence(value=value, stderr=stderr, outside=outside, bins=bins,
                               range=range_, alpha=alpha, n_boot=n_boot)


def histogram_kl(p_samples, q_samples, *, bins, range, alpha=DEFAULT_ALPHA,
                 n_boot=DEFAULT_N_BOOT, seed=None) -> HistogramDivergence:
    r"""KL(P || Q) of the histograms of two sample sets, in nats, with a bootstrap standard error.

    .. math:: \widehat{\mathrm{KL}} = \sum_{i=1}^{K} \hat p_i \log\frac{\hat p_i}{\hat q_i},
              \qquad \hat p_i = \frac{c_i/n + \alpha}{1 + K\alpha},

    where :math:`c_i` counts the samples of P in bin i, n those in the range, K the number of bins
    (all axes together); likewise :math:`\hat q_i`.

    Parameters
    ----------
    p_samples, q_samples : array-like, shape (N,), (N, 1) or (N, 2)
        Samples of P and Q (sizes may differ, dimensions may not). Finite values only.
    bins : int or (int, int)
        Bins per axis (equal width), > 0.
    range : (lo, hi) or ((lo0, hi0), (lo1, hi1))
        Binned range per axis, lo < hi. Samples outside it are not binned; their fractions are
        reported in ``outside`` and the probabilities are conditioned on the range.
    alpha : float, default 1e-10
        Empty-bin rule: additive smoothing of the bin probabilities (formula above). ``alpha=0``:
        bins with :math:`\hat p_i = 0` contribute 0 and :math:`\hat q_i = 0 < \hat p_i` gives
        ``+inf``.
    n_boot : int, default 200
        Bootstrap resamples of both sets for ``stderr`` (0: no standard error, ``nan``).
    seed : int, numpy Generator or None
        Seeds the bootstrap.

    Returns
    -------
    HistogramDivergence
        ``value``, ``stderr``, ``outside``, ``bins``, ``range``, ``alpha``, ``n_boot``.

    Notes
    -----
    The histogram estimate is biased: binning can only lower the divergence (data processing),
    by about :math:`w^2/24\, \mathbb{E}_P[(\partial_x \log(p/q))^2]` for bin width w, and the
    plug-in estimate is biased upward by :math:`O(K/N)` and by sparsely populated Q-bins in the
    tails.
    The bootstrap standard error measures sampling noise only, not these biases.
    """
    return _histogram_divergence(_kl_probs, p_samples, q_samples, bins, range, alpha, n_boot,
                                 seed)


def histogram_js(p_samples, q_samples, *, bins, range, alpha=DEFAULT_ALPHA,
                 n_boot=DEFAULT_N_BOOT, seed=None) -> HistogramDivergence:
    r"""Jensen–Shannon divergence of the histograms of two sample sets, in nats (<= log 2).

    .. math:: \widehat{\mathrm{JS}} = \tfrac12 \sum_i \hat p_i \log\frac{\hat p_i}{\hat m_i}
              + \tfrac12 \sum_i \hat q_i \log\frac{\hat q_i}{\hat m_i},
              \qquad \hat m_i = \tfrac12(\hat p_i + \hat q_i),

    with the bin probabilities, range, outside-range and empty-bin rules of :func:`histogram_kl`
    (JS is finite even with ``alpha = 0``: terms with :math:`\hat p_i = 0` are 0). Symmetric in
    P and Q, 0 for identical histograms, and bounded by :math:`\log 2` (the value is clipped to
    :math:`[0, \log 2]` against rounding).

    Parameters and return value as in :func:`histogram_kl`.
    """
    return _histogram_divergence(_js_probs, p_samples, q_samples, bins, range, alpha, n_boot, seed)


# ---------------------------------------------------------------- Wasserstein-1 ------------------
def wasserstein1(p_samples, q_samples, *, n_boot=DEFAULT_N_BOOT, seed=None) -> Wasserstein1:
    r"""Wasserstein-1 distance of two 1D sample sets, with a bootstrap standard error.

    .. math:: W_1(\hat P, \hat Q) = \int_{\mathbb{R}} |\hat F_P(x) - \hat F_Q(x)|\, dx,

    computed by ``scipy.stats.wasserstein_distance`` (exact for the empirical laws).

    Parameters
    ----------
    p_samples, q_samples : array-like, shape (N,) or (N, 1)
        Finite samples (sizes may differ).
    n_boot : int, default 200
        Bootstrap resamples (with replacement, of both sets) for ``stderr``; 0: ``nan``.
    seed : int, numpy Generator or None
        Seeds the bootstrap.

    Returns
    -------
    Wasserstein1
        ``value``, ``stderr``, ``n_boot``.
    """
    from scipy.stats import wasserstein_distance

    p, q = _pair(p_samples, q_samples, dim1_only=True)
    n_boot = _check_n_boot(n_boot)
    rng = check_seed(seed)
    p, q = p[:, 0], q[:, 0]
    value = float(wasserstein_distance(p, q))
    stderr = math.nan
    if n_boot:
        vals = np.empty(n_boot)
        for b in np.arange(n_boot):
            vals[b] = wasserstein_distance(rng.choice(p, p.size), rng.choice(q, q.size))
        stderr = float(np.std(vals, ddof=1))
    return Wasserstein1(value=value, stderr=stderr, n_boot=n_boot)


# ---------------------------------------------------------------- quadrature ---------------------
def _density(f, name: str):
    """(pdf, logpdf or None) from a callable or an object with ``.pdf`` (and maybe ``.logpdf``)."""
    if hasattr(f, "pdf") and callable(f.pdf):
        logpdf = getattr(f, "logpdf", None)
        return f.pdf, (logpdf if callable(logpdf) else None)
    if callable(f):
        return f, None
    raise ValueError(f"{name} must be a callable pdf(x) or an object with a .pdf method, "
                     f"got {type(f).__name__}")


def _scalar(v, name: str, x: float, *, log: bool = False) -> float:
    v = np.asarray(v, dtype=np.float64)
    if v.size != 1:
        raise ValueError(f"{name} must return one value per scalar x, got shape {v.shape}")
    v = float(v.reshape(()))
    if math.isnan(v) or (not log and (v < 0 or math.isinf(v))) or (log and v == math.inf):
        kind = "log-density" if log else "density"
        raise ValueError(f"{name} returned an invalid {kind} {v} at x={x}")
    return v


def _quad(integrand, lo, hi, breakpoints, max_error, limit, epsabs, epsrel):
    from scipy.integrate import IntegrationWarning, quad

    lo, hi = _interval(lo, hi, "lo/hi", allow_inf=True)
    if isinstance(max_error, (bool, np.bool_)) or not isinstance(max_error, numbers.Real) \
            or not max_error > 0:
        raise ValueError(f"max_error must be a number > 0, got {max_error!r}")
    pts = []
    if breakpoints is not None:
        try:
            pts = sorted(float(b) for b in np.ravel(np.asarray(breakpoints, dtype=np.float64)))
        except (TypeError, ValueError):
            raise ValueError(f"breakpoints must be real numbers, got {breakpoints!r}") from None
        if any(not math.isfinite(b) for b in pts):
            raise ValueError(f"breakpoints must be finite, got {breakpoints!r}")
        pts = [b for b in pts if lo < b < hi]
    edges = [lo, *sorted(set(pts)), hi]
    total, err, notes = 0.0, 0.0, []
    for a, b in zip(edges[:-1], edges[1:]):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", IntegrationWarning)
            v, e = quad(integrand, a, b, limit=limit, epsabs=epsabs, epsrel=epsrel)
        notes += [str(w.message).strip().splitlines()[0] for w in caught]
        total += v
        err += e
    if not err <= max_error:
        hint = f" (quad: {notes[0]})" if notes else ""
        raise ValueError(f"quadrature error estimate {err:.3g} exceeds max_error={max_error:.3g}"
                         f"{hint}; add breakpoints near sharp features or narrow lo/hi")
    return total, err


def tv_quadrature(p, q, *, lo, hi, breakpoints=None, max_error=QUAD_MAX_ERROR, limit=200,
                  epsabs=1e-13, epsrel=1e-11) -> QuadratureResult:
    r"""Total variation distance of two 1D densities by adaptive quadrature.

    .. math:: \mathrm{TV}(P, Q) = \tfrac12 \int_{lo}^{hi} |p(x) - q(x)|\, dx,

    by ``scipy.integrate.quad`` on each piece of ``[lo, hi]`` cut at ``breakpoints``.

    Parameters
    ----------
    p, q : callable or object with ``.pdf``
        Densities, called with a scalar float x, returning a finite value >= 0.
    lo, hi : float
        Integration range, lo < hi (may be ``-inf`` / ``inf``). Mass outside it is ignored.
    breakpoints : sequence of float, optional
        Points where the integrand has kinks or sharp features (e.g. where p = q, or narrow
        modes); the range is split there.
    max_error : float, default QUAD_MAX_ERROR (1e-8)
        Ceiling on the summed quad error estimates; above it ValueError is raised.
    limit, epsabs, epsrel
        Passed to ``quad`` for each piece.

    Returns
    -------
    QuadratureResult
        ``value`` and ``abserr`` (the summed quad error estimates).
    """
    pp, _ = _density(p, "p")
    qq, _ = _density(q, "q")

    def integrand(x):
        return 0.5 * abs(_scalar(pp(x), "p", x) - _scalar(qq(x), "q", x))

    value, abserr = _quad(integrand, lo, hi, breakpoints, max_error, limit, epsabs, epsrel)
    return QuadratureResult(value=value, abserr=abserr)


def kl_quadrature(p, q, *, lo, hi, breakpoints=None, max_error=QUAD_MAX_ERROR, limit=200,
                  epsabs=1e-13, epsrel=1e-11) -> QuadratureResult:
    r"""KL(P || Q) of two 1D densities by adaptive quadrature, in nats.

    .. math:: \mathrm{KL}(P \,\|\, Q) = \int_{lo}^{hi} p(x) \log\frac{p(x)}{q(x)}\, dx,

    by ``scipy.integrate.quad`` on each piece of ``[lo, hi]`` cut at ``breakpoints``. Points with
    p(x) = 0 contribute 0. When both objects have ``.logpdf`` the log-ratio is taken from it
    (accurate in the tails, where the pdfs underflow); otherwise from the pdfs, and a point with
    q(x) = 0 < p(x) raises ValueError (the KL is infinite). The densities are used as given (not
    renormalised on [lo, hi]).

    Parameters and return value as in :func:`tv_quadrature`.
    """
    pp, plog = _density(p, "p")
    qq, qlog = _density(q, "q")
    use_log = plog is not None and qlog is not None

    def integrand(x):
        px = _scalar(pp(x), "p", x)
        if px == 0.0:
            return 0.0
        if use_log:
            lp = _scalar(plog(x), "p.logpdf", x, log=True)
            lq = _scalar(qlog(x), "q.logpdf", x, log=True)
        else:
            qx = _scalar(qq(x), "q", x)
            lp, lq = math.log(px), (math.log(qx) if qx > 0 else -math.inf)
        if lq == -math.inf:
            raise ValueError(f"q(x) = 0 < p(x) at x={x}: KL(P || Q) is infinite")
        return px * (lp - lq)

    value, abserr = _quad(integrand, lo, hi, breakpoints, max_error, limit, epsabs, epsrel)
    return QuadratureResult(value=value, abserr=abserr)
