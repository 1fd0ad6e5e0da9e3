"""The formulas of the exact score models, each defined once, written against a backend ``nx``.

These functions are the numpy reference implementation *and* the torch implementation (the same
code, called with :class:`~sftheory.backend.TorchBackend`). The numba kernels in
:mod:`sftheory._kernels.mixture` realize :func:`mixture_logpdf_score` for numpy inputs; parity tests
check kernel == this formula on hypothesis-generated models.
"""
from __future__ import annotations

import math

import numpy as np

from .._refs import source
from ..backend import LOG_2PI

# Points per chunk of the reference formula: keep the (chunk, K, d) intermediates near 4M floats.
_REF_CHUNK_ELEMS = 1 << 22


def whitening_from_cholesky(chol: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """U = L^{-1} (lower triangular, U^T U = Sigma^{-1}) and log|det U| for Cholesky factors L.

    ``chol`` has shape (K, d, d). Uses triangular solves, not an explicit inverse of Sigma.
    """
    from scipy.linalg import solve_triangular

    k, d, _ = chol.shape
    eye = np.eye(d)
    whiten = np.empty_like(chol)
    for i in range(k):
        whiten[i] = solve_triangular(chol[i], eye, lower=True)
    logdet_u = -np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    return whiten, logdet_u


def component_lognorm(log_weights: np.ndarray, logdet_u: np.ndarray, dim: int) -> np.ndarray:
    """log w_k + log|det U_k| - d/2 log(2 pi): the constant part of each component's log-density."""
    return log_weights + logdet_u - 0.5 * dim * LOG_2PI


@source("SF", "Sec. 2 (Gaussian mixture score); log-sum-exp form", "core.kernels.parity",
        "core.models.score_is_gradient", "core.models.tweedie")
def mixture_logpdf_expect(nx, x, means, factor, lognorm, kind: str, off, mat):
    r"""Log-density of a Gaussian mixture at points ``x`` (N, d) and the responsibility-weighted
    average of per-component affine functions of the whitened residual.

    .. math::
        \log p(x) = \operatorname{logsumexp}_k \big(\ell_k - \tfrac12 |z_k|^2\big),\quad
        z_k = U_k (x - \mu_k),\qquad
        E(x) = \sum_k r_k(x)\,\big(o_k + M_k z_k\big),

    with :math:`\ell_k = \log w_k + \log|\det U_k| - \tfrac d2 \log 2\pi`,
    :math:`U_k^\top U_k = \Sigma_k^{-1}` and responsibilities
    :math:`r_k = \operatorname{softmax}_k(\ell_k - \tfrac12|z_k|^2)`.

    * score :math:`\nabla\log p`: :math:`o_k = 0,\ M_k = -U_k^\top` (:func:`score_operands`);
    * posterior mean :math:`E[X_0\mid X_t = x]` for :math:`X_0 \sim \sum_k w_k
      \mathcal N(\mu^0_k, \Sigma^0_k)`: :math:`o_k = \mu^0_k,\ M_k = m\,\Sigma^0_k U_k^\top`
      (:func:`posterior_operands`), the Gaussian conditional mean of each component
      :math:`\mu^0_k + m\Sigma^0_k \Sigma_k^{-1}(x - m\mu^0_k)` — no cancellation at large t,
      unlike Tweedie's :math:`(x + v\nabla\log p)/m`.

    ``kind="full"``: ``factor`` (K, d, d) lower-triangular U_k, ``mat`` (K, d, d);
    ``kind="iso"``: ``factor`` (K,) with U_k = c_k I, ``mat`` (K,) scalars. ``off`` (K, d) or None.
    A Gaussian is the case K = 1; the empirical law's marginals are iso with equal weights.

    Source: [SF] Sec. 2 (mixture scores); [SM] eq. (5)-(6), (14) (posterior mean of the empirical
    law); Tweedie's formula for the posterior mean.
    """
    diff = x[:, None, :] - means[None, :, :]  # (N, K, d)
    if kind == "full":
        z = nx.einsum("kab,nkb->nka", factor, diff)
    else:
        z = factor[None, :, None] * diff
    logc = lognorm[None, :] - 0.5 * nx.sum(z * z, axis=2)  # (N, K)
    # weights relative to the largest term, normalized by their own sum: exp(logc - logsumexp)
    # would carry an absolute rounding error eps |log p| into every responsibility
    mx = nx.max(logc, axis=1)
    w = nx.exp(logc - mx[:, None])
    tot = nx.sum(w, axis=1)
    logp = mx + nx.log(tot)
    if kind == "full":
        vals = nx.einsum("kab,nkb->nka", mat, z)
    else:
        vals = mat[None, :, None] * z
    if off is not None:
        vals = vals + off[None]
    return logp, nx.einsum("nk,nkd->nd", w, vals) / tot[:, None]


def score_operands(factor: np.ndarray, kind: str):
    """(off, mat) that make :func:`mixture_logpdf_expect` return the score: 0 and -U_k^T."""
    return None, (-np.swapaxes(factor, 1, 2) if kind == "full" else -factor)


def posterior_operands(factor: np.ndarray, kind: str, prior_means: np.ndarray, prior_covs,
                       m: float):
    """(off, mat) for the posterior mean: mu0_k and m Sigma0_k U_k^T.

    ``prior_covs``: (K, d, d) (full marginal) or (K,) isotropic variances (iso marginal; zero for
    the empirical law, whose posterior mean is then sum_k r_k y_k exactly).
    """
    if kind == "full":
        return prior_means, m * np.einsum("kab,kcb->kac", prior_covs, factor)
    return prior_means, m * prior_covs * factor


def mixture_logpdf_expect_chunked(nx, x, means, factor, lognorm, kind: str, off, mat):
    """:func:`mixture_logpdf_expect` over chunks of points, so memory stays bounded for large N*K."""
    n, d = x.shape
    k = means.shape[0]
    chunk = max(1, _REF_CHUNK_ELEMS // max(1, k * d))
    if n <= chunk:
        return mixture_logpdf_expect(nx, x, means, factor, lognorm, kind, off, mat)
    parts = [mixture_logpdf_expect(nx, x[i:i + chunk], means, factor, lognorm, kind, off, mat)
             for i in range(0, n, chunk)]
    return nx.concat([p[0] for p in parts]), nx.concat([p[1] for p in parts])


@source("SF", "Sec. 2 (perturbed Gaussian); [OS] App. F", "core.models.marginal_mc")
def gaussian_marginal_params(mean, cov, m: float, v: float):
    r"""X_0 ~ N(mu, Sigma), X_t | X_0 ~ N(m X_0, v I)  =>  X_t ~ N(m mu, m^2 Sigma + v I).

    Batched: ``mean`` (..., d) and ``cov`` (..., d, d) (one Gaussian or K mixture components).
    """
    d = mean.shape[-1]
    return m * mean, (m * m) * cov + v * np.eye(d)


def iso_marginal_var(var, m: float, v: float):
    """Isotropic component variance after the transition: m^2 s + v (s = 0 for the atoms of an
    empirical law). Same law as :func:`gaussian_marginal_params` with Sigma = s I."""
    return (m * m) * var + v


LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
