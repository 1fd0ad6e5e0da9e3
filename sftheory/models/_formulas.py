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
        "core.models.score_is_gradient")
def mixture_logpdf_score(nx, x, means, factor, lognorm, kind: str):
    r"""Log-density and score of a Gaussian mixture at points ``x`` (N, d).

    .. math::
        \log p(x) = \operatorname{logsumexp}_k \Big(\ell_k - \tfrac12 |U_k (x - \mu_k)|^2\Big),
        \qquad
        \nabla \log p(x) = -\sum_k r_k(x)\, U_k^\top U_k (x - \mu_k),

    with :math:`\ell_k = \log w_k + \log|\det U_k| - \tfrac d2 \log 2\pi`,
    :math:`U_k^\top U_k = \Sigma_k^{-1}` and responsibilities
    :math:`r_k = \operatorname{softmax}_k(\ell_k - \tfrac12|U_k(x-\mu_k)|^2)`.
    ``kind="full"``: ``factor`` is (K, d, d) lower-triangular U_k; ``kind="iso"``: ``factor`` is
    (K,) with U_k = c_k I. A Gaussian is the case K = 1.

    Source: [SF] Sec. 2 / [SM] eq. (5)-(6) (the empirical law is the iso case with equal weights).
    """
    diff = x[:, None, :] - means[None, :, :]  # (N, K, d)
    if kind == "full":
        z = nx.einsum("kab,nkb->nka", factor, diff)
    else:
        z = factor[None, :, None] * diff
    logc = lognorm[None, :] - 0.5 * nx.sum(z * z, axis=2)  # (N, K)
    logp = nx.logsumexp(logc, axis=1)
    resp = nx.exp(logc - logp[:, None])
    if kind == "full":
        comp_score = -nx.einsum("kab,nka->nkb", factor, z)
    else:
        comp_score = -(factor[None, :, None] * z)
    score = nx.einsum("nk,nkd->nd", resp, comp_score)
    return logp, score


def mixture_logpdf_score_chunked(nx, x, means, factor, lognorm, kind: str):
    """:func:`mixture_logpdf_score` over chunks of points, so memory stays bounded for large N*K."""
    n, d = x.shape
    k = means.shape[0]
    chunk = max(1, _REF_CHUNK_ELEMS // max(1, k * d))
    if n <= chunk:
        return mixture_logpdf_score(nx, x, means, factor, lognorm, kind)
    parts = [mixture_logpdf_score(nx, x[i:i + chunk], means, factor, lognorm, kind)
             for i in range(0, n, chunk)]
    return nx.concat([p[0] for p in parts]), nx.concat([p[1] for p in parts])


@source("SF", "Tweedie's formula, Sec. 2; [SM] eq. (6), (14)", "core.models.tweedie", "sm.esf")
def tweedie_posterior_mean(x, score, m: float, v: float):
    r"""Posterior mean E[X_0 | X_t = x] = (x + v(t) \nabla\log p_t(x)) / m(t) (Tweedie).

    For the empirical law under dX = dW (m = 1, v = t) this is [SM] eq. (6):
    :math:`\hat x_t(x) = x + t\,\nabla \log p_t^{(n)}(x)`, i.e. ESF = (xhat - x)/t.
    """
    return (x + v * score) / m


@source("SF", "Sec. 2 (perturbed Gaussian); [OS] App. F", "core.models.marginal_mc")
def gaussian_marginal_params(mean, cov, m: float, v: float):
    r"""X_0 ~ N(mu, Sigma), X_t | X_0 ~ N(m X_0, v I)  =>  X_t ~ N(m mu, m^2 Sigma + v I)."""
    d = mean.shape[-1]
    return m * mean, (m * m) * cov + v * np.eye(d)


def iso_marginal_var(var, m: float, v: float):
    """Isotropic component variance after the transition: m^2 s + v."""
    return (m * m) * var + v


LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
