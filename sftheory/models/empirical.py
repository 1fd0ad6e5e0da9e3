"""The empirical distribution (uniform law on a training set) and its exact diffused marginals."""
from __future__ import annotations

import numpy as np

from .._refs import source
from .._validation import as_float_array, check_count, check_positive, check_seed, frozen
from . import _formulas
from .base import Law, MixtureParams
from .mixture import GaussianMixture


@source("SM", "Sec. 2; eq. (6), (14), (19)", "sm.esf", "core.models.tweedie")
class EmpiricalDistribution(Law):
    r"""The uniform law :math:`\frac1n\sum_i \delta_{y_i}` on training points y_1..y_n in R^d.

    A law without a density. Its path ``path(process)`` has one at every t > 0: the isotropic
    mixture :math:`\frac1n \sum_i \mathcal N(m(t) y_i, v(t) I)`, whose score is the *empirical
    score function* (ESF) of [SM] Sec. 2 (the field that drives the denoising ODE (5)), and whose
    ``posterior_mean(x, t)`` is
    :math:`\hat x_t(x) = \sum_i \operatorname{softmax}_i(-|x - m y_i|^2 / 2v)\, y_i`
    ([SM] eq. (14); eq. (6) for S = {-1, 1}). ``marginal(process, t)`` is that mixture for
    t > 0 and the empirical law itself at t = 0. The points are copied once and read-only.

    Parameters
    ----------
    points : array-like, shape (n, d), or (n,) for d = 1
    """

    def __init__(self, points):
        y = as_float_array(points, "points", ndim=(1, 2))
        if y.ndim == 1:
            y = y[:, None]
        if y.shape[0] == 0 or y.shape[1] == 0:
            raise ValueError(f"points must be a non-empty (n, d) array, got shape {y.shape}")
        self._points = frozen(y)
        self.n_points, self.dim = y.shape
        self._params = None

    @property
    def points(self) -> np.ndarray:
        """The training points (n, d), read-only (no copy)."""
        return self._points

    @property
    def mean(self) -> np.ndarray:
        return self._points.mean(axis=0)

    @property
    def cov(self) -> np.ndarray:
        """(1/n) sum_i (y_i - ybar)(y_i - ybar)^T: the covariance of the uniform law (biased)."""
        c = self._points - self.mean
        return c.T @ c / self.n_points

    def _mixture_params(self) -> MixtureParams:
        if self._params is None:
            n = self.n_points
            self._params = MixtureParams(self._points, np.full(n, -np.log(n)), np.zeros(n), None)
        return self._params

    def as_mixture(self, variance: float) -> GaussianMixture:
        """The smoothed law (1/n) sum_i N(y_i, variance I) (e.g. mu_n^sigma of the ScoreFusion slides)."""
        variance = check_positive(variance, "variance")
        n = self.n_points
        return GaussianMixture(np.full(n, 1.0 / n), self._points, np.full(n, variance))

    def _diffused(self, m, v):
        if v == 0.0:
            return self if m == 1.0 else EmpiricalDistribution(m * self._points)
        n = self.n_points
        var = _formulas.marginal_var(np.zeros(n), m, v)
        params = self._mixture_params().diffused(m, v)
        return GaussianMixture._from_params(np.full(n, 1.0 / n), params.means, params, var=var)

    def sample(self, n, seed=None):
        n = check_count(n)
        rng = check_seed(seed)
        return self._points[rng.integers(0, self.n_points, size=n)]

    def __repr__(self):
        return f"EmpiricalDistribution(n_points={self.n_points}, dim={self.dim})"
