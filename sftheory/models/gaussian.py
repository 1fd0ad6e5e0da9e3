"""Gaussian N(mean, cov) in d dimensions."""
from __future__ import annotations

import numpy as np

from .._refs import source
from .._validation import as_float_array, check_count, check_seed, check_spd
from . import _formulas
from .base import MixtureEvaluator, ScoreModel


def _cov_matrix(cov, dim: int) -> np.ndarray:
    """A full (d, d) covariance from a scalar (isotropic), a (d,) diagonal or a (d, d) matrix."""
    c = as_float_array(cov, "cov", ndim=(0, 1, 2))
    if c.ndim == 0:
        if c <= 0:
            raise ValueError(f"isotropic variance must be > 0, got {float(c)}")
        return float(c) * np.eye(dim)
    if c.ndim == 1:
        if c.shape[0] != dim:
            raise ValueError(f"diagonal cov has length {c.shape[0]}, expected {dim}")
        if np.any(c <= 0):
            raise ValueError("diagonal cov entries must be > 0")
        return np.diag(c)
    if c.shape != (dim, dim):
        raise ValueError(f"cov has shape {c.shape}, expected ({dim}, {dim})")
    return c


@source("SF", "Sec. 2; [OS] App. F (Gaussian case)", "core.models.score_is_gradient")
class Gaussian(ScoreModel):
    r"""The Gaussian law N(mean, cov) on R^d.

    ``cov`` may be a scalar (isotropic, sigma^2 I), a (d,) diagonal, or a (d, d) SPD matrix.
    ``score(x) = -cov^{-1}(x - mean)``; ``marginal(process, t)`` is
    N(m mean, m^2 cov + v I) (:func:`~sftheory.models._formulas.gaussian_marginal_params`).

    >>> import numpy as np
    >>> from sftheory.models import Gaussian
    >>> Gaussian([0.0], 1.0).logpdf(np.array([0.0])).round(6)
    array([-0.918939])
    """

    def __init__(self, mean, cov):
        mean = as_float_array(mean, "mean", ndim=(0, 1))
        self._mean = np.atleast_1d(mean)
        self.dim = self._mean.shape[0]
        if self.dim == 0:
            raise ValueError("mean must have at least one coordinate")
        self._cov = _cov_matrix(cov, self.dim)
        self._chol = check_spd(self._cov, "cov")
        self._eval = None

    @classmethod
    def _trusted(cls, mean, cov, chol=None):
        obj = cls.__new__(cls)
        obj._mean, obj._cov, obj.dim = mean, cov, mean.shape[0]
        obj._chol = check_spd(cov, "cov") if chol is None else chol
        obj._eval = None
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
        return self._chol.copy()

    def _evaluator(self) -> MixtureEvaluator:
        if self._eval is None:
            whiten, logdet_u = _formulas.whitening_from_cholesky(self._chol[None])
            lognorm = _formulas.component_lognorm(np.zeros(1), logdet_u, self.dim)
            self._eval = MixtureEvaluator(self._mean[None], whiten, lognorm, "full")
        return self._eval

    def _prior_components(self):
        return self._mean[None], self._cov[None]

    def _marginal(self, m, v):
        mean, cov = _formulas.gaussian_marginal_params(self._mean, self._cov, m, v)
        return Gaussian._trusted(mean, cov)

    def sample(self, n, seed=None):
        n = check_count(n)
        rng = check_seed(seed)
        z = rng.standard_normal((n, self.dim))
        return self._mean + z @ self._chol.T

    def __repr__(self):
        return f"Gaussian(mean={self._mean!r}, cov={self._cov!r})"
