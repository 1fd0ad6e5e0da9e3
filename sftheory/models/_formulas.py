"""The formulas of the exact laws, each defined once, written against a backend ``nx``.

:func:`mixture_path_eval` is the numpy reference implementation *and* the torch implementation
(the same code, called with :class:`~sftheory.backend.TorchBackend`). The numba kernels in
:mod:`sftheory._kernels.mixture` realize it for numpy inputs; parity tests check kernel == this
formula on hypothesis-generated models.
"""
from __future__ import annotations

import numpy as np

from .._refs import source
from ..backend import LOG_2PI

# Points per chunk of the reference formula: keep the (chunk, K, d) intermediates near 4M floats.
_REF_CHUNK_ELEMS = 1 << 22


@source("SF", "Sec. 2 (perturbed Gaussian); [OS] App. F", "core.models.marginal_mc")
def marginal_var(var, m, v):
    r"""Variance after the transition X_t = m X_0 + sqrt(v) Z along any direction:
    :math:`m^2 \sigma^2 + v`.

    The one formula behind every diffused law: applied to the eigenvalues lam of Sigma it gives
    those of m^2 Sigma + v I (same eigenvectors), to isotropic variances those of the diffused
    isotropic components, and with var = 0 the variance v of the atoms of an empirical law.
    """
    return (m * m) * var + v


def gaussian_marginal_params(mean, cov, m: float, v: float):
    r"""X_0 ~ N(mu, Sigma), X_t | X_0 ~ N(m X_0, v I)  =>  X_t ~ N(m mu, m^2 Sigma + v I).

    Batched: ``mean`` (..., d) and ``cov`` (..., d, d). :func:`marginal_var` applied to the matrix
    (the identity supplies v I).
    """
    d = mean.shape[-1]
    return m * mean, marginal_var(cov, m, v * np.eye(d))


def component_terms(nx, x, m, v, means, logw, lam, rot):
    """The per-component pieces of :func:`mixture_path_eval`: rotated residuals y (N, K, d),
    broadcast eigenvalues, inverse variances 1/(m^2 lam + v), the terms
    log w_k + log N(x; m mu_k, m^2 Sigma_k + v I) of the log-sum-exp (N, K), and m broadcast."""
    d = x.shape[1]
    per_point = not isinstance(m, float)
    mm = m[:, None, None] if per_point else m
    vv = v[:, None, None] if per_point else v
    diff = x[:, None, :] - mm * means[None, :, :]  # (N, K, d)
    if rot is not None:
        y = nx.einsum("kab,nkb->nka", rot, diff)
        lam_b = lam[None, :, :]
    else:
        y = diff
        lam_b = lam[None, :, None]
    s = marginal_var(lam_b, mm, vv)  # (N or 1, K, d or 1)
    inv = 1.0 / s
    logdet = nx.sum(nx.log(s), axis=2) if rot is not None else d * nx.log(s[:, :, 0])
    logc = (logw[None, :] - 0.5 * d * LOG_2PI - 0.5 * logdet) - 0.5 * nx.sum(y * y * inv, axis=2)
    return y, lam_b, inv, logc, mm


@source("SF", "Sec. 2 (Gaussian mixture score); log-sum-exp form", "core.kernels.parity",
        "core.models.score_is_gradient", "core.models.tweedie")
def mixture_path_eval(nx, x, m, v, means, logw, lam, rot, posterior: bool):
    r"""Log-density of the diffused mixture p_t = law(m X_0 + sqrt(v) Z), X_0 ~ sum_k w_k
    N(mu_k, Sigma_k), at points ``x`` (N, d), and the responsibility-weighted average of one
    affine function per component: the score or the posterior mean E[X_0 | X_t = x].

    With :math:`\Sigma_k = Q_k \operatorname{diag}(\lambda_k) Q_k^\top` (factorized once, never
    again for a new time), :math:`s_{ka} = m^2\lambda_{ka} + v` (:func:`marginal_var`) and
    :math:`y_k = Q_k^\top(x - m\mu_k)`:

    .. math::
        \log p_t(x) = \operatorname{logsumexp}_k \Big(\log w_k - \tfrac12\sum_a \log s_{ka}
          - \tfrac d2\log 2\pi - \tfrac12 \sum_a y_{ka}^2 / s_{ka}\Big),

        \nabla\log p_t(x) = \sum_k r_k(x)\, Q_k\big(-y_k / s_k\big),\qquad
        E[X_0 \mid X_t = x] = \sum_k r_k(x)\,\big(\mu_k + Q_k (m\lambda_k / s_k)\, y_k\big),

    :math:`r_k` the softmax of the terms of the log-sum-exp (responsibilities). The posterior
    mean is each component's Gaussian conditional mean :math:`\mu_k + m\Sigma_k(m^2\Sigma_k +
    vI)^{-1}(x - m\mu_k)`, averaged: no cancellation at large t, unlike Tweedie's
    :math:`(x + v\nabla\log p_t)/m`. For an empirical law lam = 0 and it is
    :math:`\sum_k r_k y_k` exactly ([SM] eq. (14)).

    ``m``, ``v``: floats (one time) or arrays of shape (N,) in x's backend (one time per point).
    ``lam`` (K, d) with ``rot`` (K, d, d) = Q_k^T, or ``lam`` (K,) with ``rot`` None (isotropic).
    The density of the law itself is the case m = 1, v = 0. Rows whose every term overflows
    (|x| ~ 1e155) get log p = -inf and the average of the nearest component (smallest scaled
    Mahalanobis distance), which is the limit of the exact value.

    Source: [SF] Sec. 2 (mixture scores); [SM] eq. (5)-(6), (14) (posterior mean of the empirical
    law); Tweedie's formula for the posterior mean.
    """
    y, lam_b, inv, logc, mm = component_terms(nx, x, m, v, means, logw, lam, rot)
    w, tot, logp = unnormalized_responsibilities(nx, y, inv, logc)
    coef = (mm * lam_b) * inv if posterior else -inv
    u = coef * y
    vals = nx.einsum("kab,nka->nkb", rot, u) if rot is not None else u
    if posterior:
        vals = vals + means[None]
    # a zero weight times an overflowed affine value is 0, not NaN
    vals = nx.where((w > 0)[:, :, None], vals, nx.full_like(vals, 0.0))
    return logp, nx.einsum("nk,nkd->nd", w, vals) / tot[:, None]


def unnormalized_responsibilities(nx, y, inv, logc):
    """Weights w (N, K) proportional to the responsibilities, their sums tot (N,) and log p (N,)
    from the terms ``logc`` of :func:`component_terms`.

    Weights are taken relative to the largest term and normalized by their own sum:
    exp(logc - logsumexp) would carry an absolute rounding error eps |log p| into every
    responsibility. Rows whose every term is -inf (|y|^2 overflowed, |x| ~ 1e155) give the
    responsibility to the nearest component by scaled Mahalanobis distance (ties shared) and
    log p = -inf: the limit of the exact values.
    """
    mx = nx.max(logc, axis=1)
    overflow = None
    if not nx.all_finite(mx):
        ymax = nx.amax(nx.abs(y), axis=2, keepdims=True)
        ys = y / ymax
        lq = 2.0 * nx.log(ymax[:, :, 0]) + nx.log(nx.sum(ys * ys * inv, axis=2))
        best = lq == nx.amin(lq, axis=1, keepdims=True)
        overflow = ~nx.isfinite(mx)
        logc = nx.where(overflow[:, None] & best, nx.full_like(logc, 0.0),
                        nx.where(overflow[:, None], nx.full_like(logc, -np.inf), logc))
        mx = nx.max(logc, axis=1)
    w = nx.exp(logc - mx[:, None])
    tot = nx.sum(w, axis=1)
    logp = mx + nx.log(tot)
    if overflow is not None:
        logp = nx.where(overflow, nx.full_like(logp, -np.inf), logp)
    return w, tot, logp


def mixture_path_eval_chunked(nx, x, m, v, means, logw, lam, rot, posterior: bool):
    """:func:`mixture_path_eval` over chunks of points, so memory stays bounded for large N*K."""
    n, d = x.shape
    k = means.shape[0]
    chunk = max(1, _REF_CHUNK_ELEMS // max(1, k * d))
    if n <= chunk:
        return mixture_path_eval(nx, x, m, v, means, logw, lam, rot, posterior)
    per_point = not isinstance(m, float)
    parts = [mixture_path_eval(nx, x[i:i + chunk], m[i:i + chunk] if per_point else m,
                               v[i:i + chunk] if per_point else v, means, logw, lam, rot, posterior)
             for i in range(0, n, chunk)]
    return nx.concat([p[0] for p in parts]), nx.concat([p[1] for p in parts])
