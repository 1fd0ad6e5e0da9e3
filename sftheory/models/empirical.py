"""The empirical distribution (uniform law on a training set) and its exact diffused marginals."""
from __future__ import annotations

import numpy as np

from .._refs import source
from .._validation import as_float_array, check_count, check_seed
from . import _formulas
from .base import MixtureEvaluator, ScoreModel
from .mixture import GaussianMixture


@source("SM", "Sec. 2; eq. (6), (14), (19)", "sm.esf", "core.models.tweedie")
class EmpiricalDistribution(ScoreModel):
    r"""The uniform law :math:`\frac1n\sum_i \delta_{y_i}` on training points y_1..y_n in R^d.

    It has no density: ``logpdf``/``score`` raise. For t > 0, ``marginal(process, t)`` is the
    isotropic :class:`GaussianMixture` :math:`\frac1n \sum_i \mathcal N(m(t) y_i, v(t) I)`; its
    score is the *empirical score function* (ESF) :math:`\nabla\log p_t^{(n)}` of [SM] Sec. 2
    (the field that drives the denoising ODE (5)), and its ``posterior_mean`` is
    :math:`\hat x_t(x) = \sum_i \operatorname{softmax}_i(-|x - m y_i|^2 / 2v)\, y_i`
    ([SM] eq. (14); eq. (6) for S = {-1, 1}).
    At t = 0 the marginal is the empirical law itself.

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
        self._points = y
        self.n_points, self.dim = y.shape

    @property
    def points(self) -> np.ndarray:
        return self._points.copy()

    @property
    def mean(self) -> np.ndarray:
        return self._points.mean(axis=0)

    @property
    def cov(self) -> np.ndarray:
        """(1/n) sum_i (y_i - ybar)(y_i - ybar)^T: the covariance of the uniform law (biased)."""
        c = self._points - self.mean
        return c.T @ c / self.n_points

    def _evaluator(self) -> MixtureEvaluator:
        raise ValueError("the empirical distribution has no density; evaluate a marginal at t > 0 "
                         "(model.marginal(process, t).score(x))")

    def as_mixture(self, variance: float) -> GaussianMixture:
        """The smoothed law (1/n) sum_i N(y_i, variance I) (e.g. mu_n^sigma of the ScoreFusion slides)."""
        variance = float(variance)
        if not variance > 0:
            raise ValueError(f"variance must be > 0, got {variance}")
        n = self.n_points
        return GaussianMixture._trusted(np.full(n, 1.0 / n), self._points, "iso",
                                        var=np.full(n, variance))

    def _prior_components(self):
        return self._points, np.zeros(self.n_points)

    def _marginal(self, m, v):
        if v == 0.0:
            return EmpiricalDistribution(m * self._points)
        n = self.n_points
        return GaussianMixture._trusted(np.full(n, 1.0 / n), m * self._points, "iso",
                                        var=_formulas.iso_marginal_var(np.zeros(n), m, v))

    def sample(self, n, seed=None):
        n = check_count(n)
        rng = check_seed(seed)
        return self._points[rng.integers(0, self.n_points, size=n)]

    def __repr__(self):
        return f"EmpiricalDistribution(n_points={self.n_points}, dim={self.dim})"
