"""Roles of the exact models (scipy.stats style: public methods validate and shape, one private
hook computes) and the evaluation machinery they share.

* :class:`Law` — a probability law you can draw from: ``sample``, ``mean``, ``cov``,
  ``marginal(process, t)``, ``path(process)``.
* :class:`Density` — a log-density with its score: ``logpdf``, ``pdf``, ``score``,
  ``logpdf_and_score`` and ``log_normalizer`` (exact 0 for the closed-form laws, or an estimate
  with a standard error and its method for unnormalized densities such as KL barycenters).
* Score fields with no density at all live in :mod:`sftheory.fields`; a diffusion path
  (:class:`~sftheory.models.path.MixturePath`) is a law pushed through a forward process.

A class takes the roles it can honour: the empirical law is a Law without a density.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from .._validation import check_time
from .._points import prepare_points, shape_scalar, shape_vector  # noqa: F401 (re-exported)
from ..backend import check_impl, get_backend, kernel_impl
from ..processes import LinearSDE
from . import _formulas


@dataclass(frozen=True)
class LogNormalizer:
    """log Z of a density p = exp(logpdf) / Z ... reported as ``value`` with standard error
    ``stderr`` (0 when exact) and the ``method`` that produced it."""

    value: float
    stderr: float
    method: str


EXACT = LogNormalizer(0.0, 0.0, "exact: closed-form normalized density")


class MixtureParams:
    """Time-independent parameters of a (diffusable) Gaussian mixture, factorized once.

    ``means`` (K, d), ``logw`` (K,) (zero-weight components already dropped), and either
    ``lam`` (K, d) eigenvalues with ``rot`` (K, d, d) = Q_k^T (full covariances) or ``lam`` (K,)
    isotropic variances with ``rot`` None. Every density, score and posterior mean of the law, of
    its marginals and of its diffusion path is :func:`~sftheory.models._formulas.mixture_path_eval`
    on these arrays with the (m, v) of a time: numpy inputs run the numba kernel (or the reference
    formula under ``use_kernels("numpy")``), torch inputs the formula on x's dtype and device.
    Conversions and kernel layouts are cached per backend, dtype and device.
    """

    def __init__(self, means, logw, lam, rot):
        keep = np.isfinite(logw)
        if not np.all(keep):  # zero weights: the component is not part of the law
            means, logw, lam = means[keep], logw[keep], lam[keep]
            rot = None if rot is None else rot[keep]
        self.means, self.logw, self.lam, self.rot = means, logw, lam, rot
        self.dim = means.shape[1]
        self._cache: dict = {}

    @property
    def kind(self) -> str:
        return "iso" if self.rot is None else "full"

    def diffused(self, m: float, v: float) -> "MixtureParams":
        """Parameters of law(m X + sqrt(v) Z): means m mu, eigenvalues m^2 lam + v, same Q."""
        return MixtureParams(m * self.means, self.logw, _formulas.marginal_var(self.lam, m, v),
                             self.rot)

    def arrays(self, nx, x) -> tuple:
        """(means, logw, lam, rot) in x's backend, dtype and device (rot None when isotropic),
        converted once per backend, dtype and device and cached."""
        key = (nx.name, str(x.dtype), str(getattr(x, "device", "cpu")))
        p = self._cache.get(key)
        if p is None:
            p = tuple(None if a is None else nx.from_numpy(np.ascontiguousarray(a), like=x)
                      for a in (self.means, self.logw, self.lam, self.rot))
            self._cache[key] = p
        return p

    def evaluate(self, x, nx, m, v, posterior: bool, impl: str | None = None):
        """(logpdf (N,), score or posterior mean (N, d)) at validated points x (N, d)."""
        impl = kernel_impl() if impl is None else check_impl(impl)
        if nx.is_torch or impl == "numpy":
            p = self.arrays(nx, x)
            if not isinstance(m, float):
                m, v = nx.asarray(m, like=x), nx.asarray(v, like=x)
            # |y|^2 = inf is handled (overflow rows); 0/0 of rows that did not overflow is discarded
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                return _formulas.mixture_path_eval_chunked(nx, x, m, v, *p, posterior)
        from .._kernels import mixture as kernels

        layout = self._cache.get("layout")
        if layout is None:
            layout = kernels.kernel_layout(self.means, self.logw, self.lam, self.rot)
            self._cache["layout"] = layout
        return kernels.evaluate(x, m, v, layout, posterior)


class Density(ABC):
    """A log-density on R^d with its score (the gradient of the log-density).

    Public contract: ``logpdf(x)`` (N,), ``pdf(x)``, ``score(x)`` (N, d), ``logpdf_and_score(x)``,
    ``log_normalizer``. Points x have shape (N, d) (or (N,) when d = 1); numpy in -> numpy out,
    torch in -> torch out (same dtype and device, autograd in x).
    """

    dim: int

    @abstractmethod
    def _logpdf_and_score(self, x, nx, impl):
        """The computation, on validated points x (N, d) of backend nx."""

    @property
    def log_normalizer(self) -> LogNormalizer:
        """log Z with its error bar: exactly 0 for a normalized closed-form density."""
        return EXACT

    def logpdf_and_score(self, x, *, impl: str | None = None):
        """(log p(x), grad log p(x)) in one pass; ``impl`` forces "numba" or "numpy" for numpy x."""
        x2, nx, kind = prepare_points(x, self.dim)
        logp, score = self._logpdf_and_score(x2, nx, impl)
        return shape_scalar(kind, logp), shape_vector(kind, score)

    def logpdf(self, x):
        """log p(x), shape (N,)."""
        return self.logpdf_and_score(x)[0]

    def pdf(self, x):
        """p(x), shape (N,)."""
        logp = self.logpdf(x)
        return get_backend(logp).exp(logp)

    def score(self, x):
        """grad_x log p(x), shape (N, d) (shape (N,) for a 1-D input in dimension 1)."""
        return self.logpdf_and_score(x)[1]


class Law(ABC):
    """A probability law on R^d: ``sample``, ``mean``, ``cov``, and its diffusion under a forward
    process, as a path (``path(process)``, all times) or one marginal (``marginal(process, t)``)."""

    dim: int

    @abstractmethod
    def sample(self, n: int, seed=None) -> np.ndarray:
        """n independent draws, shape (n, d); ``seed`` is an int or a numpy Generator."""

    @property
    @abstractmethod
    def mean(self) -> np.ndarray:
        """Exact mean, shape (d,)."""

    @property
    @abstractmethod
    def cov(self) -> np.ndarray:
        """Exact covariance, shape (d, d)."""

    @abstractmethod
    def _diffused(self, m: float, v: float):
        """The law of m X + sqrt(v) Z, X ~ self, Z ~ N(0, I) independent (closed form)."""

    @abstractmethod
    def _mixture_params(self) -> MixtureParams:
        """Time-independent factorization of the law (for its path)."""

    def path(self, process: LinearSDE):
        """The law diffused by ``process``: a :class:`~sftheory.models.path.MixturePath` with
        ``score(x, t)``, ``logpdf(x, t)``, ``posterior_mean(x, t)`` and ``marginal(t)``, t a
        scalar or one time per point."""
        from .path import MixturePath

        return MixturePath(self, process)

    def marginal(self, process: LinearSDE, t):
        """p_t: the law of X_t when X_0 ~ self under ``process``, in closed form (an object of
        the same family); shorthand of ``self.path(process).marginal(t)``."""
        if not isinstance(process, LinearSDE):
            raise ValueError(f"process must be a sftheory.processes process, got {process!r}")
        t = check_time(t)
        m, v = process.conditional(t)
        return self._diffused(m, v)


def stationary_law(process: LinearSDE, dim: int):
    """The stationary law N(0, I / (2 kappa)) of ``process`` in dimension ``dim`` as a
    :class:`~sftheory.models.Gaussian`; ValueError for processes without one (VE)."""
    from .gaussian import Gaussian

    if not isinstance(process, LinearSDE):
        raise ValueError(f"process must be a sftheory.processes process, got {process!r}")
    var = process.stationary_variance()
    if var is None:
        raise ValueError(f"{process!r} has no stationary distribution (kappa = 0)")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
    return Gaussian(np.zeros(int(dim)), var)
