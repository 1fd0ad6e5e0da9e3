"""Gaussian mixtures sum_k w_k N(mu_k, Sigma_k)."""
from __future__ import annotations

import numpy as np

from .._refs import source
from .._validation import as_float_array, check_count, check_seed, check_simplex, check_spd, frozen
from . import _formulas
from .base import Density, Law, MixtureParams, prepare_points

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def _log_weights(w: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(w)


def _infer_covariance_type(c: np.ndarray, k: int, d: int) -> str:
    if c.ndim == 3:
        return "full"
    if c.ndim == 1:
        return "spherical"
    if c.ndim == 2 and c.shape == (k, d) and (k != d or d == 1):
        return "diag"
    if c.ndim == 2 and c.shape == (k, d):
        raise ValueError(f"covs of shape {c.shape} is ambiguous with K = d = {d}: K diagonals, or "
                         f"one (d, d) matrix shared by all components? Pass covariance_type='diag' "
                         f"or covariance_type='tied'")
    if c.ndim == 2 and c.shape == (d, d):
        raise ValueError(f"covs of shape {c.shape} looks like one shared (d, d) matrix: pass "
                         f"covariance_type='tied' (or K matrices of shape ({k}, {d}, {d}))")
    raise ValueError(f"covs must have shape ({k}, {d}, {d}) (full), ({k}, {d}) (diagonal) or "
                     f"({k},) (isotropic variances), got {c.shape}")


@source("SF", "Sec. 2, Sec. 5 (mixture targets)", "core.models.score_is_gradient",
        "core.kernels.parity")
class GaussianMixture(Law, Density):
    r"""The mixture :math:`\sum_k w_k \mathcal N(\mu_k, \Sigma_k)` on R^d.

    Parameters
    ----------
    weights : array-like, shape (K,)
        On the simplex: non-negative, summing to one (within 1e-9; renormalized exactly).
        Zero weights are allowed (the component is ignored).
    means : array-like, shape (K, d), or (K,) for d = 1
    covs : array-like
        Shape by ``covariance_type`` (scikit-learn's names): ``"full"`` (K, d, d), ``"tied"``
        (d, d) shared by every component, ``"diag"`` (K, d), ``"spherical"`` (K,) isotropic
        variances. With ``covariance_type=None`` it is inferred from the shape; a (K, d) array
        with K = d is ambiguous and raises.

    Parameters are copied on the way in and read-only afterwards. The component covariances are
    eigendecomposed once (one batched LAPACK call); every density, score, marginal and path
    evaluation reuses that factorization. ``marginal(process, t)`` is the mixture of the
    components' marginals with the same weights.
    """

    def __init__(self, weights, means, covs, *, covariance_type: str | None = None):
        w = check_simplex(weights, "weights")
        mu = as_float_array(means, "means", ndim=(1, 2))
        if mu.ndim == 1:
            mu = mu[:, None]
        k, d = mu.shape
        if d == 0:
            raise ValueError("means must have at least one coordinate (shape (K, d), d >= 1)")
        if w.shape[0] != k:
            raise ValueError(f"weights has {w.shape[0]} entries but means has {k} components")
        c = as_float_array(covs, "covs", ndim=(1, 2, 3))
        if covariance_type is None:
            covariance_type = _infer_covariance_type(c, k, d)
        if covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got "
                             f"{covariance_type!r}")
        expected = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[covariance_type]
        if c.shape != expected:
            raise ValueError(f"covs for covariance_type={covariance_type!r} must have shape "
                             f"{expected}, got {c.shape}")
        if covariance_type == "spherical":
            if np.any(c <= 0):
                raise ValueError("isotropic variances (covs of shape (K,)) must be > 0")
            params = MixtureParams(mu, _log_weights(w), c, None)
            self._set(w, mu, params, var=c)
            return
        if covariance_type == "diag":
            if np.any(c <= 0):
                raise ValueError("diagonal covariance entries must be > 0")
            full = np.zeros((k, d, d))
            idx = np.arange(d)
            full[:, idx, idx] = c
            lam, rot = c, np.broadcast_to(np.eye(d), (k, d, d))
        else:
            full = np.broadcast_to(c, (k, d, d)).copy() if covariance_type == "tied" else c
            lam, q = check_spd(c, "covs")
            if covariance_type == "tied":
                lam, q = np.broadcast_to(lam, (k, d)), np.broadcast_to(q, (k, d, d))
            rot = np.swapaxes(q, -1, -2)
        params = MixtureParams(mu, _log_weights(w), np.ascontiguousarray(lam),
                               np.ascontiguousarray(rot))
        self._set(w, mu, params, cov=full)

    def _set(self, w, mu, params, *, var=None, cov=None):
        self._weights = frozen(w)
        self._means = frozen(mu)
        self.n_components, self.dim = mu.shape
        self.kind = "iso" if var is not None else "full"
        self._var = None if var is None else frozen(var)
        self._cov_k = None if cov is None else frozen(cov)
        self._params = params
        self._sample_factor = None

    @classmethod
    def _from_params(cls, w, means, params: MixtureParams, *, var=None, cov=None):
        """A mixture from already-validated parts (marginals)."""
        obj = cls.__new__(cls)
        obj._set(w, means, params, var=var, cov=cov)
        return obj

    @classmethod
    def isotropic(cls, weights, means, variances):
        """Mixture with Sigma_k = variances[k] I (same as passing covs of shape (K,))."""
        return cls(weights, means, variances, covariance_type="spherical")

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
    def _mixture_params(self) -> MixtureParams:
        return self._params

    def _logpdf_and_score(self, x, nx, impl):
        return self._params.evaluate(x, nx, 1.0, 0.0, posterior=False, impl=impl)

    def responsibilities(self, x):
        """Posterior component probabilities r_k(x), shape (N, K); zero-weight components get 0.
        numpy points give float64; torch points a tensor in x's floating dtype and device
        (autograd in x)."""
        x2, nx, _ = prepare_points(x, self.dim)
        p = self._params
        arrays = p.arrays(nx, x2) if nx.is_torch else (p.means, p.logw, p.lam, p.rot)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            y, _, inv, logc, _ = _formulas.component_terms(nx, x2, 1.0, 0.0, *arrays)
            w, tot, _ = _formulas.unnormalized_responsibilities(nx, y, inv, logc)
        r = w / tot[:, None]
        keep = self._weights > 0
        if nx.is_torch:
            if keep.all():
                return r
            out = x2.new_zeros((x2.shape[0], self.n_components))
            out[:, nx.torch.as_tensor(np.flatnonzero(keep), device=x2.device)] = r
            return out
        out = np.zeros((x2.shape[0], self.n_components))
        out[:, keep] = r
        return out

    def _diffused(self, m, v):
        params = self._params.diffused(m, v)
        if self.kind == "iso":
            return GaussianMixture._from_params(self._weights, m * self._means, params,
                                                var=_formulas.marginal_var(self._var, m, v))
        mu, cov = _formulas.gaussian_marginal_params(self._means, self._cov_k, m, v)
        return GaussianMixture._from_params(self._weights, mu, params, cov=cov)

    def sample(self, n, seed=None, *, return_labels: bool = False):
        """n draws, shape (n, d); with ``return_labels`` also the component index of each."""
        n = check_count(n)
        rng = check_seed(seed)
        labels = rng.choice(self.n_components, size=n, p=self._weights)
        z = rng.standard_normal((n, self.dim))
        if self.kind == "iso":
            x = self._means[labels] + np.sqrt(self._var[labels])[:, None] * z
        else:
            # Sigma_k = Q diag(lam) Q^T: x = mu + Q diag(sqrt(lam)) z (factor cached, every component)
            if self._sample_factor is None:
                lam, q = check_spd(self._cov_k, "covs")
                self._sample_factor = q * np.sqrt(lam)[:, None, :]
            x = self._means[labels] + np.einsum("nab,nb->na", self._sample_factor[labels], z)
        return (x, labels) if return_labels else x

    def __repr__(self):
        return f"GaussianMixture(n_components={self.n_components}, dim={self.dim}, kind={self.kind!r})"
