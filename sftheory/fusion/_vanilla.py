r"""Vanilla fusion ([SF] Sec. 3, problem (9)): fit the barycenter weights lambda to a target nu,

.. math:: F(\lambda) = \mathrm{KL}(\nu \| p_\lambda)
          = \mathbb{E}_\nu[\log q] - \sum_i \lambda_i \mathbb{E}_\nu[h_i] + \log Z(\lambda),
          \qquad h_i = \log p_i,

solved by Frank-Wolfe on the simplex. Gradient ([SF] Remark 2):
dF/dlambda_i = -E_nu[h_i] + E_{p_lambda}[h_i]; Hessian (the log-MGF in the proof of [SF]
Prop. 1): Cov_{p_lambda}(h_i, h_j), positive semi-definite.

``target`` is an (n, d) array of samples (then nu is the empirical law and F is the cross-entropy
up to the constant E_nu[log q]), the same with ``sigma``: the smoothed empirical density
mu_n^sigma = (1/n) sum_j N(x_j, sigma^2 I) of the [SF] slides (eq. (1) there), or a model with
``logpdf`` (and ``sample`` for Monte Carlo).

Routes for E_{p_lambda}[.] and E_nu[.] (``method``): ``"gaussian"`` closed forms when every
reference is a :class:`~sftheory.models.Gaussian` (and the target a Gaussian, a Gaussian mixture,
samples, or mu_n^sigma); ``"quadrature"`` trapezoid grid in d <= 2; ``"mc"`` fixed importance
draws from the equal mixture (1/k) sum_i p_i (weights prod p_i^lambda_i / mixture <= k by AM-GM),
common to every lambda so F stays smooth in lambda. On the grid and Monte Carlo routes the
per-lambda sums (log Z, E_{p_lambda}[h_i], Cov) run in one fused pass of the numba kernel
:func:`sftheory._kernels.quadrature.lse_moments`; ``sftheory.use_kernels("numpy")`` selects the
numpy reference :meth:`FusionObjective._parts_numpy` instead.

torch: target samples given as a torch tensor (float32 or float64, any device) put the problem on
that device and dtype. The problem is built on the host in float64 (the nodes, log p_i at them,
E_nu[h_i]: lambda-independent, computed once) and moved once; every lambda-dependent sum (log Z,
E_{p_lambda}[h_i], Cov) then runs in torch on the device through the one backend formula
:func:`lse_moments_nx` (the Gaussian route: :func:`~sftheory.fusion._barycenter.
_gaussian_log_normalizer_nx`). ``value``, ``kl``, ``log_normalizer``, ``grad`` and ``hessian``
of a torch ``lam`` return tensors (``value`` differentiable: autograd gives Remark 2's gradient
and Prop. 1's Hessian); of a numpy ``lam`` they return floats/numpy float64, computed on the
device when the problem is torch. :func:`vanilla_fusion` drives Frank-Wolfe on host floats (k is
tiny), each gradient evaluated on the device.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

from .._refs import source
from ..backend import get_backend, kernel_impl
from .._validation import (as_float_array, check_count, check_positive, check_seed, check_simplex,
                           is_torch)
from ..models import Gaussian, GaussianMixture
from . import _grid
from ._barycenter import (_check_references, _check_torch_input, _gaussian_log_normalizer_nx,
                          _gaussian_parts, gaussian_barycenter_params, gaussian_log_normalizer,
                          gaussian_log_normalizer_terms)
from ._frank_wolfe import FrankWolfeResult, frank_wolfe

METHODS = ("gaussian", "quadrature", "mc")
N_MC = 100_000


def gaussian_log_ref_moments(means, covs, mu, S):
    r"""Mean (k,) and covariance (k, k) of h_i(X) = log N(X; m_i, Sigma_i) for X ~ N(mu, S):

    .. math:: \mathbb{E} h_i = -\tfrac12[\mathrm{tr}(P_i S) + (\mu - m_i)^T P_i (\mu - m_i)
              + \log\det(2\pi\Sigma_i)],

    .. math:: \mathrm{Cov}(h_i, h_j) = \tfrac12 \mathrm{tr}(P_i S P_j S)
              + (\mu - m_i)^T P_i S P_j (\mu - m_j),

    P_i = Sigma_i^{-1} (Gaussian moments of quadratic forms). Used for [SF] Remark 2 and the
    Hessian of [SF] Prop. 1 with Gaussian references.
    """
    prec = np.linalg.inv(covs)
    r = mu[None, :] - means                       # (k, d)
    Pr = np.einsum("kab,kb->ka", prec, r)        # P_i (mu - m_i)
    mean = gaussian_log_ref_expectations(means, covs, mu[None], S[None])[0]
    PS = np.einsum("kab,bc->kac", prec, S)       # P_i S
    cov = 0.5 * np.einsum("iab,jba->ij", PS, PS) + Pr @ S @ Pr.T
    return mean, 0.5 * (cov + cov.T)


def gaussian_log_ref_expectations(means, covs, tmeans, tcovs) -> np.ndarray:
    """E[h_i(X_j)] (n, k) for X_j ~ N(tmeans[j], tcovs[j]), h_i = log N(.; m_i, Sigma_i): the
    mean formula of :func:`gaussian_log_ref_moments` (written only here), vectorized over n
    Gaussians (the components of a Gaussian-mixture target, e.g. the smoothed empirical
    mu_n^sigma)."""
    prec = np.linalg.inv(covs)
    d = means.shape[1]
    logdet = np.linalg.slogdet(covs)[1] + d * np.log(2 * np.pi)
    tr = np.einsum("iab,jba->ji", prec, tcovs)
    r = tmeans[:, None, :] - means[None, :, :]           # (n, k, d)
    quad = np.einsum("jia,iab,jib->ji", r, prec, r)
    return -0.5 * (tr + quad + logdet[None, :])


@source("SF", "eq. (9), Remark 2, proof of Prop. 1", "sf.prop1")
def lse_moments_nx(H, logw, lam, order: int = 2):
    r"""log Z(lambda), E_{p_lambda}[h] and Cov_{p_lambda}(h) on nodes x_j with log weights logw_j
    (grid or importance draws), h_ij = log p_i(x_j) (``H`` (n, k)), a_j = sum_i lambda_i h_ij +
    logw_j, in the backend of the inputs (numpy, or torch on any device with autograd in lam):

    .. math:: \log Z(\lambda) = \log \sum_j e^{a_j}\ ([SF]\ (9)), \quad
              \mathbb{E}_{p_\lambda} h_i = \sum_j \pi_j h_{ij}\ ([SF]\ \text{Remark 2}),

    .. math:: \mathrm{Cov}_{p_\lambda}(h_i, h_l) = \sum_j \pi_j (h_{ij} - \mathbb{E} h_i)
              (h_{lj} - \mathbb{E} h_l)\ (\text{proof of [SF] Prop. 1}),

    pi_j = exp(a_j - log Z). The single definition of these formulas (numpy and torch); the numba
    kernel :func:`sftheory._kernels.quadrature.lse_moments` realizes them in one fused pass for
    numpy inputs. ``order`` 0: log Z only (the mean and covariance are None), 1: adds the mean,
    2: the covariance. Returns backend scalars/arrays (a 0-d tensor for log Z on torch).
    """
    nx = get_backend(H, logw, lam)
    a = nx.matmul(H, lam) + logw
    logz = nx.logsumexp(a, 0)
    if order < 1:
        return logz, None, None
    p = nx.exp(a - logz)
    m = nx.matmul(p, H)
    if order < 2:
        return logz, m, None
    Hc = H - m
    return logz, m, nx.matmul((Hc * p[:, None]).T, Hc)


def _is_samples(target) -> bool:
    return isinstance(target, (np.ndarray, list, tuple)) or hasattr(target, "__array__") \
        and not hasattr(target, "logpdf")


class FusionObjective:
    r"""F(lambda) of [SF] (9) with its gradient (Remark 2) and Hessian (Prop. 1).

    ``value(lam)`` = -sum_i lambda_i E_nu[h_i] + log Z(lambda) (the cross-entropy
    -E_nu[log p_lambda]); ``kl(lam)`` adds E_nu[log q] when the target has a density
    (``target_log_density`` not None); ``grad(lam)``, ``hessian(lam)``; ``target_moments`` = the
    vector E_nu[h_i].
    """

    def __init__(self, references, target, *, sigma=None, method: str | None = None,
                 n_mc: int = N_MC, seed=None):
        #: a tensor fixing the torch route's device and dtype (torch target samples), else None
        self._like = None
        if is_torch(target):
            _check_torch_input(target, "target")
            if not bool(target.detach().isfinite().all()):
                raise ValueError("target contains NaN or infinite values")
            self._like = target.detach()[:0].reshape(0)
        self._tcache: dict = {}
        refs, dim = _check_references(references)
        self.references, self.dim, self.k = tuple(refs), dim, len(refs)
        all_gauss = all(isinstance(m, Gaussian) for m in refs)
        if method is None:
            method = "gaussian" if all_gauss else ("quadrature" if dim <= 2 else "mc")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if method == "gaussian" and not all_gauss:
            raise ValueError("method='gaussian' needs every reference to be a Gaussian")
        if method == "quadrature" and dim > 2:
            raise ValueError(f"method='quadrature' needs dimension <= 2, got {dim}")
        self.method = method
        n_mc = check_count(n_mc, "n_mc")
        rng = check_seed(seed)
        self.sigma = None if sigma is None else check_positive(sigma, "sigma")
        self.samples = None
        if _is_samples(target):
            x = as_float_array(target, "target", ndim=(1, 2))
            if x.ndim == 1:
                x = x[:, None] if dim == 1 else x[None, :]
            if x.shape[1] != dim or x.shape[0] < 1:
                raise ValueError(f"target samples must have shape (n, {dim}), got {x.shape}")
            self.samples = x
            if self.sigma is not None:
                n = x.shape[0]
                target = GaussianMixture(np.full(n, 1.0 / n), x, np.full(n, self.sigma ** 2),
                                         covariance_type="spherical")
            else:
                target = None
        else:
            if self.sigma is not None:
                raise ValueError("sigma smooths an empirical target: pass target as (n, d) samples")
            if not callable(getattr(target, "logpdf", None)):
                raise ValueError("target must be (n, d) samples or a model with logpdf")
            if getattr(target, "dim", None) != dim:
                raise ValueError(f"target has dimension {getattr(target, 'dim', None)}, the "
                                 f"references {dim}")
        self.target = target
        t0 = t_mid = time.perf_counter()
        if method == "gaussian":
            self._means, self._covs = _gaussian_parts(refs)
        elif method == "quadrature":
            laws = list(refs) + ([target] if target is not None else [])
            pts, wts = _grid.tensor_grid(laws, dim)
            self._pts, self._logw = pts, np.log(wts)
            t_mid = time.perf_counter()
            self._H = np.ascontiguousarray(self._log_refs(pts))
        else:
            counts = rng.multinomial(n_mc, np.full(self.k, 1.0 / self.k))
            pts = np.concatenate([np.asarray(m.sample(int(c), seed=rng)).reshape(int(c), dim)
                                  for m, c in zip(refs, counts) if c])
            t_mid = time.perf_counter()
            H = self._log_refs(pts)
            self._pts, self._H = pts, np.ascontiguousarray(H)
            # importance weights 1 / (n_mc * mixture density): sum_j w_j e^{lam.h(x_j)} ~ Z
            self._logw = np.ascontiguousarray(
                -logsumexp(H - np.log(self.k), axis=1) - np.log(pts.shape[0]))
        t1 = time.perf_counter()
        self.target_moments, self.target_log_density = self._target_moments(target, n_mc, rng)
        #: seconds spent building the problem: ``nodes_s`` (grid or draws), ``log_refs_s``
        #: (log p_i at the nodes; for "gaussian" the parameters), ``target_s`` (E_nu[h_i])
        self.timings = {"nodes_s": t_mid - t0, "log_refs_s": t1 - t_mid,
                        "target_s": time.perf_counter() - t1}

    def _log_refs(self, x):
        return np.column_stack([np.asarray(m.logpdf(x), dtype=np.float64)
                                for m in self.references])

    def _target_moments(self, target, n_mc, rng):
        """(E_nu[h_i] (k,), E_nu[log q] or None)."""
        if target is None:  # plain empirical law
            return self._log_refs(self.samples).mean(axis=0), None
        if self.method == "gaussian" and isinstance(target, (Gaussian, GaussianMixture)):
            if isinstance(target, Gaussian):
                tm, tc, tw = target.mean[None], target.cov[None], np.ones(1)
            else:
                tm, tc, tw = target.means, target.covs, target.weights
            e = tw @ gaussian_log_ref_expectations(self._means, self._covs, tm, tc)
            ent = None
            if isinstance(target, Gaussian):
                ent = float(gaussian_log_ref_expectations(tm, tc, tm, tc)[0, 0])
            return np.asarray(e), ent
        if self.dim <= 2 and self.method == "quadrature":
            # logpdf may be unnormalized (a KLBarycenter's is sum_i lambda_i log p_i): nu =
            # e^lq / mass, so E_nu[log nu] = E_nu[lq] - log mass (log mass ~ 1e-13 when lq is
            # already normalized)
            lq = np.asarray(target.logpdf(self._pts), dtype=np.float64)
            q = np.exp(lq + self._logw)
            mass = q.sum()
            return (q @ self._H) / mass, float(q @ lq / mass - np.log(mass))
        if not callable(getattr(target, "sample", None)):
            raise ValueError("target needs sample(n, seed) for Monte Carlo moments")
        y = np.asarray(target.sample(n_mc, seed=rng)).reshape(n_mc, self.dim)
        # the entropy term needs the normalized density (log Z estimated where it is unknown)
        logq = getattr(target, "normalized_logpdf", target.logpdf)
        return self._log_refs(y).mean(axis=0), float(np.mean(logq(y)))

    # ---- p_lambda moments ---------------------------------------------------------------------
    @property
    def is_torch(self) -> bool:
        """True when the target samples were a torch tensor (the lambda sums run on its device)."""
        return self._like is not None

    def _check_lam(self, lam):
        lam_t = None
        if is_torch(lam):
            lam_t = _check_torch_input(lam, "lam", like=self._like)
        lam = check_simplex(lam, "lam")
        if lam.shape[0] != self.k:
            raise ValueError(f"lam has {lam.shape[0]} entries, expected {self.k}")
        return lam if lam_t is None else lam_t

    def _on(self, like):
        """The lambda-independent arrays in ``like``'s backend, dtype and device (cached): the
        nodes' (H, logw) or the Gaussian terms, and E_nu[h_i]."""
        key = (str(like.dtype), str(like.device))
        out = self._tcache.get(key)
        if out is None:
            nx = get_backend(like)
            if self.method == "gaussian":
                arrays = gaussian_log_normalizer_terms(self._means, self._covs)
            else:
                arrays = (self._H, self._logw)
            out = tuple(nx.from_numpy(np.asarray(a, dtype=np.float64), like=like)
                        for a in arrays + (self.target_moments,))
            self._tcache[key] = out
        return out

    def _parts_torch(self, lam, order: int):
        """(log Z, E_{p_lambda}[h], Cov) for a torch lam, as tensors on its device: the grid and
        Monte Carlo routes through :func:`lse_moments_nx`, the Gaussian route through the
        differentiable closed form :func:`_gaussian_log_normalizer_nx` for log Z and the float64
        closed-form moments (k and d are tiny: computed on the host, then moved)."""
        arrays = self._on(lam)
        if self.method != "gaussian":
            return lse_moments_nx(arrays[0], arrays[1], lam, order)
        logz = _gaussian_log_normalizer_nx(*arrays[:3], lam)
        if order < 1:
            return logz, None, None
        lam_np = np.asarray(lam.detach().cpu().numpy(), dtype=np.float64)
        mu, S = gaussian_barycenter_params(self._means, self._covs, lam_np)
        m, c = gaussian_log_ref_moments(self._means, self._covs, mu, S)
        nx = get_backend(lam)
        return logz, nx.from_numpy(m, like=lam), (nx.from_numpy(c, like=lam) if order >= 2
                                                   else None)

    def _route(self, lam, order: int):
        """(log Z, mean, cov, torch?) at a checked lam: torch lam -> tensors; numpy lam on a torch
        problem -> computed on the device and returned as float/float64 numpy; else numpy."""
        if is_torch(lam):
            return self._parts_torch(lam, order) + (True,)
        if self._like is not None:
            nx = get_backend(self._like)
            z, m, c = self._parts_torch(nx.asarray(lam, like=self._like), order)
            return (float(z), None if m is None else nx.to_numpy(m).astype(np.float64),
                    None if c is None else nx.to_numpy(c).astype(np.float64), False)
        parts = self._barycenter_parts(lam) if order >= 2 else self._parts(lam, order)
        return tuple(parts) + (False,)

    def _barycenter_parts(self, lam):
        """(log Z, E_{p_lambda}[h] (k,), Cov_{p_lambda}(h) (k, k)) at a checked lam."""
        return self._parts(lam, 2)

    def _parts(self, lam, order: int):
        """(log Z, E_{p_lambda}[h] or None, Cov_{p_lambda}(h) or None): ``order`` 0 computes
        log Z only, 1 adds the mean, 2 the covariance. Grid and Monte Carlo routes go to the fused
        numba kernel :func:`sftheory._kernels.quadrature.lse_moments` (one pass over the nodes)
        unless kernels are switched off (``sftheory.use_kernels("numpy")``): then to the
        reference :meth:`_parts_numpy`."""
        if self.method == "gaussian":
            mu, S = gaussian_barycenter_params(self._means, self._covs, lam)
            m, c = gaussian_log_ref_moments(self._means, self._covs, mu, S)
            return gaussian_log_normalizer(self._means, self._covs, lam), m, c
        if kernel_impl() == "numpy":
            return self._parts_numpy(lam, order)
        from .._kernels.quadrature import lse_moments

        logz, m, c = lse_moments(self._H, np.ascontiguousarray(lam, dtype=np.float64),
                                 self._logw, int(order))
        return float(logz), (m if order >= 1 else None), (c if order >= 2 else None)

    def _parts_numpy(self, lam, order: int = 2):
        r"""Reference (numpy) quadrature of the lambda-dependent parts ([SF] (9), Remark 2, proof
        of Prop. 1): :func:`lse_moments_nx`, the single definition of these sums (numpy and
        torch), on the numpy nodes; the numba kernel
        :func:`sftheory._kernels.quadrature.lse_moments` realizes them in one fused pass."""
        logz, m, c = lse_moments_nx(self._H, self._logw, lam, order)
        return float(logz), m, c

    def log_normalizer(self, lam):
        """log Z(lambda), the second term of [SF] (9) (a 0-d tensor for a torch lam)."""
        return self._route(self._check_lam(lam), 0)[0]

    def _target_moments_like(self, lam):
        return self._on(lam)[-1] if is_torch(lam) else self.target_moments

    @source("SF", "eq. (9), (19)", "sf.prop1")
    def value(self, lam):
        """-sum_i lambda_i E_nu[h_i] + log Z(lambda) (= F(lambda) - E_nu[log q]); for a torch lam
        a 0-d tensor on its device, differentiable in lam ([SF] (9))."""
        lam = self._check_lam(lam)
        logz, _, _, torch_out = self._route(lam, 0)
        if torch_out:
            return -(self._target_moments_like(lam) * lam).sum() + logz
        return float(-self.target_moments @ lam + logz)

    def kl(self, lam):
        """F(lambda) = KL(nu || p_lambda); ValueError when the target has no density."""
        if self.target_log_density is None:
            raise ValueError("the target has no density (plain samples or a route without its "
                             "entropy): use value(lam), the cross-entropy")
        return self.value(lam) + self.target_log_density

    @source("SF", "App. C.1.3, Remark 2", "sf.remark2")
    def grad(self, lam):
        r"""dF/dlambda_i = -E_nu[h_i] + E_{p_lambda}[h_i] ([SF] Remark 2); a tensor for a torch
        lam (the closed form, not autograd)."""
        lam = self._check_lam(lam)
        return -self._target_moments_like(lam) + self._route(lam, 1)[1]

    @source("SF", "App. C.1.3, proof of Prop. 1", "sf.prop1")
    def hessian(self, lam):
        r"""d^2F/dlambda_i dlambda_j = Cov_{p_lambda}(h_i, h_j) (Hessian of the log-MGF in the
        proof of [SF] Prop. 1); a tensor for a torch lam."""
        return self._route(self._check_lam(lam), 2)[2]


@dataclass(frozen=True)
class VanillaFusionResult:
    """``weights`` the fitted lambda; ``objective`` F at it (cross-entropy form, ``value``);
    ``trace`` the :class:`FrankWolfeResult`; ``problem`` the :class:`FusionObjective`;
    ``timings`` where the time went: ``setup_s`` (building the problem: nodes, log p_i on them,
    target moments; split in ``problem.timings``), ``iterations_s`` (Frank-Wolfe), ``n_grad`` and
    ``n_objective`` (evaluations of the gradient and of F)."""

    weights: np.ndarray
    objective: float
    trace: FrankWolfeResult
    problem: FusionObjective
    timings: dict = field(default_factory=dict)


@source("SF", "Sec. 3, problem (9); Alg. 2", "sf.thm3")
def vanilla_fusion(references, target, *, sigma=None, gap_tol: float = 1e-8, seed=None,
                   step: str = "away", max_iter: int = 1000, x0=None, method: str | None = None,
                   n_mc: int = N_MC) -> VanillaFusionResult:
    """Vanilla fusion ([SF] (9)): lambda* = argmin over the simplex of KL(nu || p_lambda), by
    Frank-Wolfe (``step`` as in :func:`~sftheory.fusion.frank_wolfe`, away steps by default),
    from ``x0`` (uniform by default) until the Frank-Wolfe gap is <= ``gap_tol``.

    Torch ``target`` samples (any device, float32/float64): every gradient and objective value
    (the sums over the nodes) is computed in torch on the target's device, while the Frank-Wolfe
    driver itself stays on host float64 numbers (lambda has k entries); ``weights`` come back as
    numpy float64. In float32 the gradient is accurate to ~1e-6 relative: use gap_tol >= 1e-5."""
    t0 = time.perf_counter()
    prob = FusionObjective(references, target, sigma=sigma, method=method, n_mc=n_mc, seed=seed)
    t1 = time.perf_counter()
    x0 = np.full(prob.k, 1.0 / prob.k) if x0 is None else x0
    calls = {"grad": 0, "objective": 0}

    def grad(lam):
        calls["grad"] += 1
        return prob.grad(lam)

    def value(lam):
        calls["objective"] += 1
        return prob.value(lam)

    tr = frank_wolfe(grad, x0, objective=value, step=step, max_iter=max_iter, gap_tol=gap_tol)
    t2 = time.perf_counter()
    timings = {"setup_s": t1 - t0, "iterations_s": t2 - t1, "n_grad": calls["grad"],
               "n_objective": calls["objective"]}
    return VanillaFusionResult(weights=tr.x, objective=float(prob.value(tr.x)), trace=tr,
                               problem=prob, timings=timings)
