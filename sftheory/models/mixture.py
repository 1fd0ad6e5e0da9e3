"""Gaussian mixtures sum_k w_k N(mu_k, Sigma_k)."""
from __future__ import annotations

import numpy as np

from .._refs import source
from .._validation import as_float_array, check_count, check_seed, check_simplex, check_spd
from . import _formulas
from .base import MixtureEvaluator, ScoreModel


def _log_weights(w: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(w)


@source("SF", "Sec. 2, Sec. 5 (mixture targets)", "core.models.score_is_gradient",
        "core.kernels.parity")
class GaussianMixture(ScoreModel):
    r"""The mixture :math:`\sum_k w_k \mathcal N(\mu_k, \Sigma_k)` on R^d.

    Parameters
    ----------
    weights : array-like, shape (K,)
        On the simplex: non-negative, summing to one (within 1e-9; renormalized exactly).
        Zero weights are allowed (the component is ignored).
    means : array-like, shape (K, d), or (K,) for d = 1
    covs : array-like, shape (K, d, d) (full), (K, d) (diagonal) or (K,) (isotropic variances)

    ``marginal(process, t)`` is the mixture of the components' marginals with the same weights;
    isotropic mixtures (e.g. the marginals of an :class:`EmpiricalDistribution`) stay isotropic
    and use the cheaper isotropic kernel.
    """

    def __init__(self, weights, means, covs):
        w = check_simplex(weights, "weights")
        mu = as_float_array(means, "means", ndim=(1, 2))
        if mu.ndim == 1:
            mu = mu[:, None]
        k, d = mu.shape
        if w.shape[0] != k:
            raise ValueError(f"weights has {w.shape[0]} entries but means has {k} components")
        c = as_float_array(covs, "covs", ndim=(1, 2, 3))
        if c.shape[0] != k:
            raise ValueError(f"covs has {c.shape[0]} components, means has {k}")
        if c.ndim == 1:
            if np.any(c <= 0):
                raise ValueError("isotropic variances (covs of shape (K,)) must be > 0")
            self._set(w, mu, "iso", var=c)
        elif c.ndim == 2:
            if c.shape[1] != d:
                raise ValueError(f"diagonal covs have shape {c.shape}, expected ({k}, {d})")
            if np.any(c <= 0):
                raise ValueError("diagonal covariance entries must be > 0")
            full = np.zeros((k, d, d))
            idx = np.arange(d)
            full[:, idx, idx] = c
            self._set(w, mu, "full", cov=full, chol=np.sqrt(full))
        else:
            if c.shape[1:] != (d, d):
                raise ValueError(f"covs have shape {c.shape}, expected ({k}, {d}, {d})")
            self._set(w, mu, "full", cov=c, chol=check_spd(c, "covs"))

    def _set(self, w, mu, kind, *, var=None, cov=None, chol=None):
        self._weights = w
        self._means = mu
        self.n_components, self.dim = mu.shape
        self.kind = kind
        self._var = var
        self._cov_k = cov
        self._chol = chol
        self._eval = None

    @classmethod
    def _trusted(cls, w, mu, kind, **kw):
        obj = cls.__new__(cls)
        obj._set(w, mu, kind, **kw)
        return obj

    @classmethod
    def isotropic(cls, weights, means, variances):
        """Mixture with Sigma_k = variances[k] I (same as passing covs of shape (K,))."""
        return cls(weights, means, variances)

    # ---- parameters and moments -------------------------------------------------------------
    @property
    def weights(self) -> np.ndarray:
        return self._weights.copy()

    @property
    def means(self) -> np.ndarray:
        return self._means.copy()

    @property
    def covs(self) -> np.ndarray:
        """Component covariances, shape (K, d, d) (materialized for isotropic mixtures)."""
        if self.kind == "iso":
            return self._var[:, None, None] * np.eye(self.dim)[None]
        return self._cov_k.copy()

    @property
    def variances(self) -> np.ndarray:
        """Isotropic component variances (K,); only for isotropic mixtures."""
        if self.kind != "iso":
            raise ValueError("variances is defined for isotropic mixtures; use covs")
        return self._var.copy()

    @property
    def mean(self) -> np.ndarray:
        return self._weights @ self._means

    @property
    def cov(self) -> np.ndarray:
        """sum_k w_k Sigma_k + sum_k w_k (mu_k - mu)(mu_k - mu)^T (law of total covariance)."""
        centered = self._means - self.mean
        between = np.einsum("k,ka,kb->ab", self._weights, centered, centered)
        if self.kind == "iso":
            within = (self._weights @ self._var) * np.eye(self.dim)
        else:
            within = np.einsum("k,kab->ab", self._weights, self._cov_k)
        return within + between

    def component(self, k: int):
        """Component k as a :class:`Gaussian`."""
        from .gaussian import Gaussian

        if self.kind == "iso":
            return Gaussian(self._means[k], self._var[k])
        return Gaussian(self._means[k], self._cov_k[k])

    # ---- evaluation -------------------------------------------------------------------------
    def _evaluator(self) -> MixtureEvaluator:
        if self._eval is None:
            logw = _log_weights(self._weights)
            if self.kind == "iso":
                factor = 1.0 / np.sqrt(self._var)
                logdet_u = self.dim * np.log(factor)
            else:
                factor, logdet_u = _formulas.whitening_from_cholesky(self._chol)
            lognorm = _formulas.component_lognorm(logw, logdet_u, self.dim)
            self._eval = MixtureEvaluator(self._means, factor, lognorm, self.kind)
        return self._eval

    def responsibilities(self, x):
        """Posterior component probabilities r_k(x), shape (N, K) (numpy only)."""
        from .base import prepare_points

        x2, nx, _ = prepare_points(x, self.dim)
        if nx.is_torch:
            raise ValueError("responsibilities takes numpy points")
        ev = self._evaluator()
        diff = x2[:, None, :] - ev.means[None]
        if self.kind == "full":
            z = np.einsum("kab,nkb->nka", ev.factor, diff)
        else:
            z = ev.factor[None, :, None] * diff
        logc = ev.lognorm[None] - 0.5 * np.sum(z * z, axis=2)
        from scipy.special import softmax

        return softmax(logc, axis=1)

    def _prior_components(self):
        return self._means, (self._var if self.kind == "iso" else self._cov_k)

    def _marginal(self, m, v):
        if self.kind == "iso":
            return GaussianMixture._trusted(self._weights, m * self._means, "iso",
                                            var=_formulas.iso_marginal_var(self._var, m, v))
        mu, cov = _formulas.gaussian_marginal_params(self._means, self._cov_k, m, v)
        return GaussianMixture._trusted(self._weights, mu, "full", cov=cov,
                                        chol=check_spd(cov, "covs"))

    def sample(self, n, seed=None, *, return_labels: bool = False):
        """n draws, shape (n, d); with ``return_labels`` also the component index of each."""
        n = check_count(n)
        rng = check_seed(seed)
        labels = rng.choice(self.n_components, size=n, p=self._weights)
        z = rng.standard_normal((n, self.dim))
        if self.kind == "iso":
            x = self._means[labels] + np.sqrt(self._var[labels])[:, None] * z
        else:
            x = self._means[labels] + np.einsum("nab,nb->na", self._chol[labels], z)
        return (x, labels) if return_labels else x

    def __repr__(self):
        return f"GaussianMixture(n_components={self.n_components}, dim={self.dim}, kind={self.kind!r})"
