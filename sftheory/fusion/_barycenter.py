r"""The distribution-level KL barycenter of reference densities ([SF] Theorem 1).

.. math:: \mu_\lambda = \arg\min_\mu \sum_i \lambda_i \mathrm{KL}(\mu \| p_i), \qquad
          p_\lambda(x) = \frac{\prod_i p_i(x)^{\lambda_i}}{Z(\lambda)},\quad
          Z(\lambda) = \int \prod_i p_i^{\lambda_i}.

Gaussian references give a Gaussian (precision-weighted closed form,
:func:`gaussian_barycenter_params`); any other references (mixtures, any
:class:`~sftheory.models.Density`) give a :class:`KLBarycenter`, whose normalizing constant is
estimated by the exact rejection sampler below (any dimension) or by quadrature (d <= 2).

Rejection from the mixture: by weighted AM-GM, prod_i p_i^{lambda_i} <= sum_i lambda_i p_i, so
accepting x ~ sum_i lambda_i p_i with probability r(x) = prod_i p_i^{lambda_i} / sum_i lambda_i
p_i <= 1 gives exact draws of p_lambda, and the acceptance rate is E[r] = Z(lambda).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

from .._refs import source
from .._validation import check_count, check_seed, check_simplex, is_torch
from ..backend import LOG_2PI, get_backend
from ..models import Density, Gaussian, LogNormalizer
from . import _grid

# mixture draws behind the Monte Carlo log Z (standard error <= 1/(2 sqrt(n)) on Z, as r in [0, 1])
N_LOGZ_MC = 200_000


def _check_references(models) -> tuple[list, int]:
    """The references as a list, each with a callable ``logpdf`` and one common ``dim``."""
    if isinstance(models, (str, bytes)) or not hasattr(models, "__len__"):
        raise ValueError(f"models must be a sequence of densities, got {type(models).__name__}")
    models = list(models)
    if not models:
        raise ValueError("models must contain at least one reference density")
    dims = []
    for i, m in enumerate(models):
        if not callable(getattr(m, "logpdf", None)):
            raise ValueError(f"models[{i}] ({type(m).__name__}) has no logpdf: a KL barycenter "
                             "needs reference densities")
        d = getattr(m, "dim", None)
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
            raise ValueError(f"models[{i}] has no integer dimension attribute dim")
        dims.append(int(d))
    if len(set(dims)) != 1:
        raise ValueError(f"models must share one dimension, got dimensions {dims}")
    return models, dims[0]


def _check_torch_input(a, name: str, like=None):
    """A torch tensor argument: float32 or float64 (TypeError otherwise, naming ``name``) and, when
    ``like`` (a tensor) is given, on ``like``'s device with ``like``'s dtype (ValueError
    otherwise): the torch inputs of one call share one device and one dtype."""
    import torch

    if a.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be a float32 or float64 tensor, got {a.dtype}")
    if like is not None:
        if a.device != like.device:
            raise ValueError(f"{name} is on device {a.device} but the other tensors of this call "
                             f"are on {like.device}: move {name} there (.to({str(like.device)!r}))")
        if a.dtype != like.dtype:
            raise ValueError(f"{name} has dtype {a.dtype} but the other tensors of this call have "
                             f"{like.dtype}: cast {name} (.to({like.dtype}))")
    return a


def _check_weights(weights, k: int) -> np.ndarray:
    w = check_simplex(weights, "weights")
    if w.shape[0] != k:
        raise ValueError(f"weights has {w.shape[0]} entries but there are {k} models")
    return w


@source("SF", "Theorem 1 (Gaussian references)", "sf.thm1")
def gaussian_barycenter_params(means, covs, weights) -> tuple[np.ndarray, np.ndarray]:
    r"""Mean and covariance of the KL barycenter of N(m_i, Sigma_i) with weights lambda:

    .. math:: \Sigma_\lambda^{-1} = \sum_i \lambda_i \Sigma_i^{-1}, \qquad
              m_\lambda = \Sigma_\lambda \sum_i \lambda_i \Sigma_i^{-1} m_i,

    since sum_i lambda_i log N(x; m_i, Sigma_i) is a quadratic in x with that Hessian and
    stationary point. Source: [SF] Theorem 1 (Gaussian case). Checked by ``sf.thm1``.
    ``means`` (k, d), ``covs`` (k, d, d), ``weights`` (k,) on the simplex.
    """
    means = np.asarray(means, dtype=np.float64)
    covs = np.asarray(covs, dtype=np.float64)
    prec = np.linalg.inv(covs)
    P = np.einsum("k,kab->ab", weights, prec)
    b = np.einsum("k,kab,kb->a", weights, prec, means)
    cov = np.linalg.inv(P)
    cov = 0.5 * (cov + cov.T)
    return cov @ b, cov


@source("SF", "eq. (9), (19) (log of the normalizer, Gaussian references)", "sf.remark2")
def gaussian_log_normalizer(means, covs, weights) -> float:
    r"""log Z(lambda) = log int prod_i N(x; m_i, Sigma_i)^{lambda_i} dx in closed form:
    with P = sum_i lambda_i Sigma_i^{-1}, b = sum_i lambda_i Sigma_i^{-1} m_i,

    .. math:: \log Z = \tfrac12 b^T P^{-1} b - \tfrac12 \log\det P
              - \tfrac12 \sum_i \lambda_i (m_i^T \Sigma_i^{-1} m_i + \log\det\Sigma_i),

    (the (2 pi)^{d/2} factors cancel because sum_i lambda_i = 1). The second term of [SF] (9)/(19).
    """
    return float(_gaussian_log_normalizer_nx(*gaussian_log_normalizer_terms(means, covs),
                                             np.asarray(weights, dtype=np.float64)))


def gaussian_log_normalizer_terms(means, covs):
    """The lambda-independent float64 terms of :func:`gaussian_log_normalizer`: precisions
    P_i (k, d, d), P_i m_i (k, d) and c_i = m_i^T P_i m_i + log det(2 pi Sigma_i) (k,)."""
    means = np.asarray(means, dtype=np.float64)
    covs = np.asarray(covs, dtype=np.float64)
    prec = np.linalg.inv(covs)
    pm = np.einsum("kab,kb->ka", prec, means)
    d = means.shape[1]
    const = np.einsum("ka,ka->k", means, pm) + np.linalg.slogdet(covs)[1] + d * LOG_2PI
    return prec, pm, const


@source("SF", "eq. (9), (19) (log of the normalizer, Gaussian references)", "sf.remark2")
def _gaussian_log_normalizer_nx(prec, pm, const, lam):
    r"""The formula of :func:`gaussian_log_normalizer`, written once against the backend of
    ``lam`` (numpy, or torch with autograd in lambda: its gradient is [SF] Remark 2's
    E_{p_lambda}[h_i], its Hessian the covariance of [SF] Prop. 1):

    .. math:: \log Z = \tfrac12 b^T P^{-1} b - \tfrac12 \log\det P - \tfrac12 \lambda\cdot c
              + \tfrac d2 \log(2\pi),
              \quad P = \sum_i \lambda_i P_i,\ b = \sum_i \lambda_i P_i m_i,

    with (P_i, P_i m_i, c_i) from :func:`gaussian_log_normalizer_terms` (arrays of lam's backend).
    The (2 pi) factors cancel on the simplex but are kept, so that the formula is
    log int prod_i N_i^{lambda_i} for every lambda > 0 and its gradient in R^k is exactly
    E_{p_lambda}[log N_i] (Remark 2), not that plus a multiple of (1, ..., 1).
    """
    nx = get_backend(lam, prec)
    P = nx.einsum("k,kab->ab", lam, prec)
    b = nx.einsum("k,ka->a", lam, pm)
    return (0.5 * nx.sum(b * nx.solve(P, b)) - 0.5 * nx.logabsdet(P)
            - 0.5 * nx.sum(lam * const) + 0.5 * pm.shape[1] * LOG_2PI)


def _gaussian_parts(models):
    return (np.stack([m.mean for m in models]), np.stack([m.cov for m in models]))


class KLBarycenter(Density):
    r"""The KL barycenter p_lambda = prod_i p_i^{lambda_i} / Z of arbitrary reference densities
    ([SF] Theorem 1).

    ``logpdf(x)`` is the *unnormalized* sum_i lambda_i log p_i(x) (the :class:`Density`
    convention for unnormalized laws); ``normalized_logpdf(x)`` subtracts the estimate of log Z
    in ``log_normalizer`` (a :class:`~sftheory.models.LogNormalizer` with its standard error).
    ``score(x)`` = sum_i lambda_i grad log p_i(x) (exact). ``sample(n, seed)`` is exact
    rejection sampling from sum_i lambda_i p_i (needs each reference with positive weight to have
    ``sample``). Zero-weight references drop out (p^0 = 1).

    torch: ``logpdf``, ``score``, ``logpdf_and_score`` and ``normalized_logpdf`` of a float32 or
    float64 tensor x return tensors of x's dtype on x's device (the references evaluate on torch).
    ``weights`` given as a torch tensor (on x's device, with x's dtype; ValueError otherwise) enter
    the torch evaluation as that tensor, so autograd differentiates in the weights:
    d logpdf(x) / d lambda_i = log p_i(x). ``log_normalizer`` is a float estimate (no graph):
    ``normalized_logpdf`` has the same gradient in the weights as ``logpdf``.
    """

    def __init__(self, models, weights, *, n_logz: int = N_LOGZ_MC, logz_seed=12345):
        models, dim = _check_references(models)
        self._weights_t = _check_torch_input(weights, "weights") if is_torch(weights) else None
        w = _check_weights(weights, len(models))
        self.dim = dim
        self.references = tuple(models)
        self.weights = w
        self._active = [i for i in range(len(models)) if w[i] > 0]
        self._n_logz = check_count(n_logz, "n_logz")
        self._logz_seed = logz_seed
        self._logz = None

    # ---- density -----------------------------------------------------------------------------
    def _log_refs(self, x) -> np.ndarray:
        """log p_i(x) for the active references, shape (N, k_active)."""
        return np.column_stack([np.asarray(self.references[i].logpdf(x), dtype=np.float64)
                                for i in self._active])

    def _logpdf_and_score(self, x, nx, impl):
        if nx.is_torch:
            # the weights as given (a tensor keeps its graph), else as Python floats
            lam = (self.weights.tolist() if self._weights_t is None
                   else _check_torch_input(self._weights_t, "weights", like=x))
            logp = nx.full_like(x[:, 0], 0.0)
            score = nx.full_like(x, 0.0)
            for i in self._active:
                lp, sc = self.references[i].logpdf_and_score(x)
                logp = logp + lam[i] * lp
                score = score + lam[i] * sc
            return logp, score
        logp = np.zeros(x.shape[0])
        score = np.zeros_like(x, dtype=np.float64)
        for i in self._active:
            ref = self.references[i]
            lp = np.asarray(ref.logpdf(x), dtype=np.float64)
            sc = np.asarray(ref.score(x), dtype=np.float64).reshape(x.shape)
            logp += self.weights[i] * lp
            score += self.weights[i] * sc
        return logp, score

    def normalized_logpdf(self, x):
        """log p_lambda(x) = sum_i lambda_i log p_i(x) - log Z ([SF] Theorem 1, with the estimated
        log Z, a float: numpy in -> numpy out, torch in -> torch out)."""
        return self.logpdf(x) - float(self.log_normalizer.value)

    # ---- rejection sampling from the mixture -------------------------------------------------
    def _mixture_draws(self, n: int, rng):
        """n draws of sum_i lambda_i p_i and the log acceptance ratio log r(x) <= 0."""
        lam = self.weights[self._active]
        counts = rng.multinomial(n, lam)
        parts = []
        for i, c in zip(self._active, counts):
            ref = self.references[i]
            if not callable(getattr(ref, "sample", None)):
                raise ValueError(f"reference {i} has no sample(n, seed): rejection sampling of "
                                 "the barycenter needs every reference with positive weight to "
                                 "be samplable")
            if c:
                parts.append(np.asarray(ref.sample(int(c), seed=rng), dtype=np.float64)
                             .reshape(int(c), self.dim))
        # shuffled: the draws are grouped by reference, and sample() keeps the first n accepted
        x = np.concatenate(parts, axis=0)[rng.permutation(n)]
        logr = self.acceptance_log_ratio(x)
        return x, logr

    def acceptance_log_ratio(self, x) -> np.ndarray:
        r"""log r(x) = sum_i lambda_i log p_i(x) - log sum_i lambda_i p_i(x) <= 0 (weighted
        AM-GM); E_{x ~ sum lambda_i p_i}[r(x)] = Z(lambda)."""
        lp = self._log_refs(x)
        lam = self.weights[self._active]
        with np.errstate(divide="ignore"):
            out = lp @ lam - logsumexp(lp + np.log(lam), axis=1)
        return np.minimum(out, 0.0)  # rounding can put it a few ulps above 0

    def sample(self, n, seed=None, *, max_draws: int = 50_000_000) -> np.ndarray:
        """n exact draws of p_lambda by rejection from sum_i lambda_i p_i (acceptance rate Z)."""
        n = check_count(n)
        rng = check_seed(seed)
        out, total, drawn = [], 0, 0
        while total < n:
            batch = int(min(max(2 * (n - total), 1024), 2_000_000))
            x, logr = self._mixture_draws(batch, rng)
            drawn += batch
            keep = np.log(rng.random(batch)) < logr
            out.append(x[keep])
            total += int(keep.sum())
            if drawn > max_draws and total < n:
                raise RuntimeError(f"rejection sampling accepted {total} of {drawn} draws "
                                   f"(Z ~ {total / drawn:.2g}); raise max_draws")
        return np.concatenate(out, axis=0)[:n]

    # ---- normalizing constant ----------------------------------------------------------------
    def log_normalizer_mc(self, n: int = N_LOGZ_MC, seed=0) -> LogNormalizer:
        r"""log Z from n mixture draws: Z = E[r(x)] (the Rao-Blackwellised acceptance rate),
        r in [0, 1], standard error std(r)/sqrt(n) on Z, delta method on log Z."""
        n = check_count(n)
        if n < 2:
            raise ValueError(f"n must be >= 2, got {n}")
        _, logr = self._mixture_draws(n, check_seed(seed))
        r = np.exp(logr)
        z = float(r.mean())
        se = float(r.std(ddof=1) / math.sqrt(n))
        if not z > 0:
            return LogNormalizer(-math.inf, math.inf, f"rejection acceptance rate, {n} draws: none")
        return LogNormalizer(math.log(z), se / z, f"acceptance rate of rejection from the "
                                                  f"lambda-mixture, {n} draws")

    def log_normalizer_quadrature(self) -> LogNormalizer:
        """log Z by the trapezoid rule on a uniform grid covering every reference (d <= 2);
        the error estimate is the difference with the rule of twice the spacing."""
        pts, wts, coarse = _grid.tensor_grid([self.references[i] for i in self._active],
                                             self.dim, with_coarse=True)
        lp = self._log_refs(pts) @ self.weights[self._active]
        fine = float(logsumexp(lp, b=wts))
        err = abs(fine - float(logsumexp(lp, b=coarse)))
        return LogNormalizer(fine, err, f"trapezoid rule on {len(wts)} points (d = {self.dim}); "
                                        "error: difference with twice the spacing")

    @property
    def log_normalizer(self) -> LogNormalizer:
        """log Z(lambda) (cached): quadrature in d <= 2, Monte Carlo rejection otherwise."""
        if self._logz is None:
            if len(self._active) == 1:
                self._logz = LogNormalizer(0.0, 0.0, "exact: a single reference")
            elif self.dim <= 2:
                self._logz = self.log_normalizer_quadrature()
            else:
                self._logz = self.log_normalizer_mc(self._n_logz, self._logz_seed)
        return self._logz

    def __repr__(self):
        return f"KLBarycenter(k={len(self.references)}, dim={self.dim}, weights={self.weights!r})"


@source("SF", "Theorem 1", "sf.thm1")
def barycenter(models, weights, **kwargs):
    r"""The KL barycenter argmin_mu sum_i lambda_i KL(mu || p_i) = prod_i p_i^{lambda_i} / Z
    ([SF] Theorem 1).

    Parameters
    ----------
    models : sequence of densities (each with ``logpdf`` and ``dim``; ``score`` and ``sample``
        for the score and for sampling)
    weights : array-like (k,) on the simplex

    Returns a :class:`~sftheory.models.Gaussian` when every reference is Gaussian
    (:func:`gaussian_barycenter_params`), else a :class:`KLBarycenter` (``kwargs`` go to it).
    Both evaluate torch tensors (dtype and device of x kept). ``weights`` may be a torch tensor:
    a :class:`KLBarycenter` then differentiates in it (d logpdf / d lambda_i = log p_i); the
    Gaussian closed form has float64 parameters and no graph, so Gaussian references with
    weights that require grad raise ValueError (use ``KLBarycenter(models, weights)``).
    """
    models, _ = _check_references(models)
    if is_torch(weights):
        _check_torch_input(weights, "weights")
    w = _check_weights(weights, len(models))
    if all(isinstance(m, Gaussian) for m in models):
        if is_torch(weights) and weights.requires_grad:
            raise ValueError("weights requires grad, but Gaussian references give the closed-form "
                             "Gaussian barycenter, whose float64 parameters carry no graph: use "
                             "KLBarycenter(models, weights) to differentiate in the weights")
        means, covs = _gaussian_parts(models)
        mean, cov = gaussian_barycenter_params(means, covs, w)
        return Gaussian(mean, cov)
    return KLBarycenter(models, weights if is_torch(weights) else w, **kwargs)
