"""Gaussian N(mean, cov) in d dimensions."""
from __future__ import annotations

import numpy as np

from .._refs import source
from .._validation import as_float_array, check_count, check_seed, check_spd, frozen
from . import _formulas
from .base import Density, Law, MixtureParams


def _cov_parts(cov, dim: int):
    """(cov matrix (d, d), eigenvalues, Q^T or None) from a scalar (isotropic), a (d,) diagonal or
    a (d, d) SPD matrix."""
    c = as_float_array(cov, "cov", ndim=(0, 1, 2))
    if c.ndim == 0:
        if not c > 0:
            raise ValueError(f"isotropic variance cov must be > 0, got {float(c)}")
        return float(c) * np.eye(dim), np.array([float(c)]), None
    if c.ndim == 1:
        if c.shape[0] != dim:
            raise ValueError(f"diagonal cov has length {c.shape[0]}, expected {dim}")
        if np.any(c <= 0):
            raise ValueError("diagonal cov entries must be > 0")
        return np.diag(c), c[None].copy(), np.eye(dim)[None]
    if c.shape != (dim, dim):
        raise ValueError(f"cov has shape {c.shape}, expected ({dim}, {dim})")
    lam, q = check_spd(c, "cov")
    return c, lam[None], np.swapaxes(q, -1, -2)[None]


@source("SF", "Sec. 2; [OS] App. F (Gaussian case)", "core.models.score_is_gradient")
class Gaussian(Law, Density):
    r"""The Gaussian law N(mean, cov) on R^d.

    ``cov`` may be a scalar (isotropic, sigma^2 I), a (d,) diagonal, or a (d, d) SPD matrix.
    Parameters are copied on the way in and read-only afterwards.
    ``score(x) = -cov^{-1}(x - mean)``; ``marginal(process, t)`` is
    N(m mean, m^2 cov + v I) (:func:`~sftheory.models._formulas.gaussian_marginal_params`).

    >>> import numpy as np
    >>> from sftheory.models import Gaussian
    >>> Gaussian([0.0], 1.0).logpdf(np.array([0.0])).round(6)
    array([-0.918939])
    """

    def __init__(self, mean, cov):
        mean = np.atleast_1d(as_float_array(mean, "mean", ndim=(0, 1)))
        if mean.shape[0] == 0:
            raise ValueError("mean must have at least one coordinate")
        cov_m, lam, rot = _cov_parts(cov, mean.shape[0])
        self._set(mean, cov_m, MixtureParams(mean[None], np.zeros(1), lam, rot))

    def _set(self, mean, cov, params: MixtureParams):
        self._mean = frozen(mean)
        self._cov = frozen(cov)
        self.dim = mean.shape[0]
        self._params = params

    @classmethod
    def _trusted(cls, mean, cov, params):
        obj = cls.__new__(cls)
        obj._set(mean, cov, params)
        return obj

    @property
    def mean(self) -> np.ndarray:
        return self._mean.copy()

    @property
    def cov(self) -> np.ndarray:
        return self._cov.copy()

    @property
    def cholesky(self) -> np.ndarray:
        """Lower Cholesky factor L of cov (cov = L L^T)."""
        return np.linalg.cholesky(self._cov)

    def _mixture_params(self) -> MixtureParams:
        return self._params

    def _logpdf_and_score(self, x, nx, impl):
        return self._params.evaluate(x, nx, 1.0, 0.0, posterior=False, impl=impl)

    def _diffused(self, m, v):
        mean, cov = _formulas.gaussian_marginal_params(self._mean, self._cov, m, v)
        return Gaussian._trusted(mean, cov, self._params.diffused(m, v))

    def sample(self, n, seed=None):
        n = check_count(n)
        rng = check_seed(seed)
        z = rng.standard_normal((n, self.dim))
        p = self._params
        if p.rot is None:
            return self._mean + np.sqrt(p.lam[0]) * z
        # x = mu + Q diag(sqrt(lam)) z, with rot = Q^T
        return self._mean + (z * np.sqrt(p.lam[0])) @ p.rot[0]

    def __repr__(self):
        return f"Gaussian(mean={self._mean!r}, cov={self._cov!r})"
