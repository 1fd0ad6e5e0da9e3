r"""ScoreFusion ([SF] Algorithm 1): the barycenter weights lambda from the score-matching
regression (10) on [0, T~], by denoising score matching on target samples.

The regression loss (10) needs grad log p^nu_t, which is unknown. Denoising score matching
replaces it by the conditional score of the forward transition: with X_0 ~ nu (a target sample),
t ~ U(0, T~], Z ~ N(0, I) and X_t = m(t) X_0 + sqrt(v(t)) Z ((m, v) the process's transition,
``process.conditional``), grad log p(X_t | X_0) = -Z / sqrt(v(t)), and

.. math::
    \ell(\lambda) = \mathbb{E}\Big[\gamma(t)\,\Big|\sum_i \lambda_i S_i
        + \tfrac{Z}{\sqrt{v(t)}}\Big|^2\Big], \qquad S_i = s_i(X_t, t),

equals (10) plus a constant that does not depend on lambda (Vincent 2011; [SF] eq. (5), (10)).
It is a quadratic form in lambda,

.. math::
    \ell(\lambda) = \lambda^T G \lambda - 2 b^T \lambda + c,\quad
    G_{ij} = \mathbb{E}[\gamma\, S_i\cdot S_j],\quad
    b_i = -\mathbb{E}[\gamma\, S_i\cdot Z/\sqrt{v}],\quad c = \mathbb{E}[\gamma |Z|^2/v],

so Algorithm 1's training phase is the simplex-constrained quadratic program
min_{lambda in Delta_k} lambda^T G lambda - 2 b^T lambda. :func:`score_fusion` estimates G, b, c by
Monte Carlo (per-draw contributions give their standard errors) and solves the program exactly
(:func:`simplex_qp`), or runs the paper's softmax-parametrized SGD (``method="softmax-sgd"``).

Weighting gamma(t). The default is gamma(t) = v(t), the transition variance (``"variance"``). With
gamma = 1 the DSM target -Z/sqrt(v) has second moment d / v(t), whose integral over t in (0, T~]
diverges (v(t) ~ g(0)^2 t as t -> 0): c is infinite and the Monte Carlo variance of b and of the
loss is infinite, although G and b themselves are finite. With gamma = v every per-draw term
stays bounded as t -> 0 (gamma c-term = |Z|^2, gamma S.Z/sqrt(v) = sqrt(v) S.Z), and the loss is
the usual noise-prediction loss E|sqrt(v) sum_i lambda_i S_i + Z|^2. ``"uniform"`` (gamma = 1)
and ``"g2"`` (gamma = g(t)^2, sigma^2 for the OU process as in the proof of [SF] Thm. 4) are
available, as is any callable gamma(t) >= 0.

Time 0. Times are drawn as t = T~ (1 - u), u ~ U[0, 1), so t lies in (0, T~] and t = 0 (where
v(0) = 0 and the DSM target is undefined) is never evaluated; the law of t is still U[0, T~].

Target draws. X_0 cycles through random permutations of the target samples (epochs), in
mini-batches of ``batch_size``; Monte Carlo standard errors are computed as if the draws were
independent, which is conservative for this stratified scheme. They are errors *given the target
samples*; the error from having only n target samples is what claim ``sf.thm4`` measures.

torch. ``target_samples`` given as a torch tensor (float32/float64, CPU or CUDA) runs the Monte
Carlo on its device and in its dtype: the forward draws x_t, the auxiliaries' scores (exact paths,
torch ``nn.Module`` networks, callables on tensors), the per-draw terms (:func:`dsm_contributions`)
and their means G, b, c stay there; only G, b, c (k x k) come to the host, where the simplex QP is
solved. The random numbers (mini-batch indices, t, z) come, by default
(``draws="generator"``), from the one numpy Generator of ``seed`` on both routes, so a numpy and
a torch run with the same seed use identical draws (they are moved to the device per batch; the
score tensors are never copied back). With ``draws="indexed"`` they are counter-based instead
(:func:`fusion_draws`): draw j's noise z_j, time t_j and target index are pure functions of
(seed, j), computed where the target lives (z and the epoch permutations on its device, t on the
host), so nothing of size (n, d) crosses to the device, the numpy and torch routes still draw the
same numbers, and a Monte Carlo split across processes by global draw index
(:func:`sftheory.distributed.fusion_quadratic`) equals the one-process estimate.
"""
from __future__ import annotations

import itertools
import math
import numbers
import time
from dataclasses import dataclass, field

import numpy as np

from .._refs import source
from .._validation import as_float_array, check_positive, check_seed, is_torch
from ..backend import get_backend
from ..fields import ScoreField, as_field, weighted
from ..models import Law
from ..processes import LinearSDE
from ._barycenter import _check_torch_input

METHODS = ("exact", "softmax-sgd")
WEIGHTINGS = ("variance", "uniform", "g2")
N_MC = 65_536
BATCH_SIZE = 256
MAX_ENUMERATION_K = 12
N_BOOT = 32


# ---- the simplex-constrained quadratic program ---------------------------------------------------
@dataclass(frozen=True)
class SimplexQPResult:
    """``weights`` the minimizer of lam^T G lam - 2 b^T lam over the simplex; ``objective`` its
    value; ``support`` the indices with lam_i > 0; ``kkt_residual`` the largest violation of the
    KKT conditions relative to the problem's scale; ``tangent_min_eig`` / ``tangent_max_eig`` the
    extreme eigenvalues of G on the simplex's tangent space {u : sum u = 0} (the minimizer is
    unique iff the smallest is > 0); ``identifiable`` whether it is, relative to ``rel_tol``;
    ``route`` "kkt-enumeration" or "slsqp+kkt-check"."""

    weights: np.ndarray
    objective: float
    support: tuple
    kkt_residual: float
    tangent_min_eig: float
    tangent_max_eig: float
    identifiable: bool
    route: str


def _tangent_eigs(G: np.ndarray) -> tuple[float, float]:
    k = G.shape[0]
    if k == 1:
        return math.inf, math.inf
    # orthonormal basis of {u : 1^T u = 0}: the last k - 1 columns of a Householder-like QR
    q, _ = np.linalg.qr(np.column_stack([np.ones(k), np.eye(k)[:, : k - 1]]))
    U = q[:, 1:]
    ev = np.linalg.eigvalsh(U.T @ G @ U)
    return float(ev[0]), float(ev[-1])


def _kkt_residual(G, b, lam, scale) -> float:
    """Largest KKT violation / scale for min lam^T G lam - 2 b^T lam on the simplex: with
    r = G lam - b, r_i equal (= nu) on the support and r_i >= nu off it."""
    r = G @ lam - b
    on = lam > 0
    nu = float(np.mean(r[on]))
    stat = float(np.max(np.abs(r[on] - nu)))
    dual = float(max(0.0, -(np.min(r[~on]) - nu))) if np.any(~on) else 0.0
    return max(stat, dual) / scale


def _check_qp(G, b, psd_rel_tol=1e-8):
    G = as_float_array(G, "G", ndim=2)
    b = as_float_array(b, "b", ndim=1)
    k = b.shape[0]
    if G.shape != (k, k) or k < 1:
        raise ValueError(f"G must have shape ({k}, {k}) for b of shape ({k},), got {G.shape}")
    asym = float(np.max(np.abs(G - G.T)))
    if asym > 1e-8 * max(float(np.max(np.abs(G))), 1e-300):
        raise ValueError(f"G must be symmetric (max |G - G^T| = {asym:.3g})")
    G = 0.5 * (G + G.T)
    lo = float(np.linalg.eigvalsh(G)[0])
    if lo < -psd_rel_tol * max(float(np.max(np.abs(G))), 1e-300):
        raise ValueError(f"G must be positive semi-definite (smallest eigenvalue {lo:.3g}, "
                         f"tolerance {psd_rel_tol:.3g} x max|G|)")
    return G, b, k


def gram_psd_tolerance(k: int, d: int, n: int, eps: float) -> float:
    r"""Relative tolerance for the smallest eigenvalue of a Monte Carlo Gram matrix
    :math:`G_{ij} = \frac1n\sum_r \gamma_r S_i^{(r)}\cdot S_j^{(r)}` computed in a format of unit
    roundoff ``eps``: each d-term dot product errs by <= (d + 1) eps relative and a reduction of n
    terms by <= ~log2(n) eps (pairwise/cascade sums), relative to the mean of
    :math:`|\gamma S_i \cdot S_j| \le \sqrt{G_{ii}G_{jj}} \le \max|G|` (Cauchy-Schwarz); the
    eigenvalues move by <= ||dG||_2 <= k max|dG_ij|. So
    :math:`k\,(d + 2 + \log_2 n)\,\varepsilon`, and never below simplex_qp's default 1e-8."""
    return max(1e-8, k * (d + 2 + math.log2(max(n, 2))) * eps)


@source("SF", "eq. (10) as a quadratic program on the simplex (Alg. 1, training phase)", "sf.alg1")
def simplex_qp(G, b, *, rel_tol: float = 1e-9, psd_rel_tol: float = 1e-8) -> SimplexQPResult:
    r"""Exact minimizer of :math:`q(\lambda) = \lambda^T G \lambda - 2 b^T \lambda` over the
    probability simplex, G symmetric positive semi-definite (possibly singular).

    For k <= 12 every support S is tried: the KKT system
    :math:`\begin{pmatrix} G_{SS} & \mathbf 1\\ \mathbf 1^T & 0\end{pmatrix}
    \begin{pmatrix}\lambda_S\\ -\nu\end{pmatrix} = \begin{pmatrix} b_S\\ 1\end{pmatrix}`
    is solved by least squares (singular G_SS included); a solution that is consistent, has
    lambda_S >= 0 and satisfies (G lambda - b)_i >= nu off S is a KKT point, hence a global
    minimizer (the problem is convex). Among KKT points (several when G is singular on the
    simplex) the one of lowest objective, then smallest support, is returned. For k > 12, scipy's
    SLSQP followed by the same KKT check (RuntimeError when it fails).

    ``rel_tol`` scales the feasibility and KKT tolerances by max(|G|, |b|). ``psd_rel_tol``: how
    negative the smallest eigenvalue of G may be, relative to max|G|, before G is refused as not
    positive semi-definite (rounding of a Gram matrix computed in float32 needs more than the
    default: see :func:`gram_psd_tolerance`).
    """
    for name, v in (("rel_tol", rel_tol), ("psd_rel_tol", psd_rel_tol)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real) \
                or not math.isfinite(float(v)) or float(v) < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    G, b, k = _check_qp(G, b, float(psd_rel_tol))
    scale = max(float(np.max(np.abs(G))), float(np.max(np.abs(b))), 1e-300)
    tol = rel_tol * scale * k
    tmin, tmax = _tangent_eigs(G)
    ident = bool(k == 1 or tmin > 1e-10 * max(tmax, 1e-300) * k)

    def objective(lam):
        return float(lam @ G @ lam - 2.0 * b @ lam)

    if k <= MAX_ENUMERATION_K:
        best = None
        for size in range(1, k + 1):
            for S in itertools.combinations(range(k), size):
                S = list(S)
                A = np.zeros((size + 1, size + 1))
                A[:size, :size] = G[np.ix_(S, S)]
                A[:size, size] = 1.0
                A[size, :size] = 1.0
                rhs = np.concatenate([b[S], [1.0]])
                sol = np.linalg.lstsq(A, rhs, rcond=None)[0]
                if np.max(np.abs(A @ sol - rhs)) > tol * 10 + 1e-12:
                    continue  # inconsistent (singular) system: no stationary point on this face
                lam_S = sol[:size]
                if np.min(lam_S) < -tol:
                    continue
                lam = np.zeros(k)
                lam[S] = np.clip(lam_S, 0.0, None)
                lam /= lam.sum()
                if _kkt_residual(G, b, lam, scale) > rel_tol * 100 * k:
                    continue
                val = objective(lam)
                if best is None or val < best[0] - tol:
                    best = (val, lam)
        if best is None:  # pragma: no cover - rounding on a degenerate problem
            raise RuntimeError("simplex_qp: no KKT point found by enumeration (degenerate G?)")
        lam = best[1]
        route = "kkt-enumeration"
    else:
        from scipy.optimize import minimize

        res = minimize(objective, np.full(k, 1.0 / k), jac=lambda x: 2.0 * (G @ x - b),
                       method="SLSQP", bounds=[(0.0, 1.0)] * k,
                       constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1.0,
                                     "jac": lambda x: np.ones_like(x)}],
                       options={"ftol": 1e-15, "maxiter": 1000})
        lam = np.clip(res.x, 0.0, None)
        lam[lam < 1e-12] = 0.0
        lam /= lam.sum()
        route = "slsqp+kkt-check"
        if _kkt_residual(G, b, lam, scale) > 1e-6:
            raise RuntimeError(f"simplex_qp: SLSQP did not reach a KKT point (residual "
                               f"{_kkt_residual(G, b, lam, scale):.3g}); {res.message}")
    return SimplexQPResult(weights=lam, objective=objective(lam),
                           support=tuple(int(i) for i in np.flatnonzero(lam > 0)),
                           kkt_residual=_kkt_residual(G, b, lam, scale),
                           tangent_min_eig=tmin, tangent_max_eig=tmax, identifiable=ident,
                           route=route)


# ---- inputs -------------------------------------------------------------------------------------
def _as_fields(scores, process, dim):
    if isinstance(scores, (str, bytes)) or not hasattr(scores, "__len__"):
        raise ValueError(f"scores must be a list of laws or score fields, got "
                         f"{type(scores).__name__}")
    scores = list(scores)
    if not scores:
        raise ValueError("scores must contain at least one auxiliary score")
    fields, dims = [], []
    for i, s in enumerate(scores):
        try:
            if isinstance(s, Law):
                f = as_field(s.path(process))
            elif isinstance(s, ScoreField):
                f = s
            elif callable(getattr(s, "as_field", None)):  # a ScoreMLP: numpy in, numpy out
                f = s.as_field()
            elif _is_torch_module(s):
                f = _torch_module_field(s, int(getattr(s, "dim", None) or dim))
            else:
                f = as_field(s, None if getattr(s, "dim", None) is not None else dim)
        except ValueError as exc:
            raise ValueError(f"scores[{i}]: {exc}") from None
        fields.append(f)
        dims.append(int(f.dim))
    if len(set(dims)) != 1:
        raise ValueError(f"scores (the auxiliaries) have different dimensions {dims}")
    if dims[0] != dim:
        raise ValueError(f"the auxiliaries have dimension {dims[0]} but target_samples has "
                         f"dimension {dim}")
    return fields


def _is_torch_module(obj) -> bool:
    return callable(getattr(obj, "forward", None)) and callable(getattr(obj, "parameters", None))


def _torch_module_field(module, dim):
    """A torch ``nn.Module`` ``module(x, t)`` as a score field: a torch x (N, d) is passed as is
    (t a tensor (N,) of x's dtype and device; the module must accept them) and evaluated without
    autograd unless x requires grad; a numpy x is evaluated as a float64 CPU tensor and returned
    as numpy. The output must be a tensor of x's shape (checked by the field)."""
    import torch

    from ..fields import CallableField

    def score(x, t):
        if is_torch(x):
            tt = t if is_torch(t) else torch.as_tensor(np.broadcast_to(t, (x.shape[0],)),
                                                       dtype=x.dtype, device=x.device)
            if x.requires_grad:
                return module(x, tt)
            with torch.no_grad():
                return module(x, tt)
        xt = torch.as_tensor(np.array(x, dtype=np.float64))
        tt = torch.as_tensor(np.array(t, dtype=np.float64))
        with torch.no_grad():
            out = module(xt, tt)
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"the module returned {type(out).__name__}, not a tensor")
        return out.detach().cpu().to(torch.float64).numpy()

    name = f"{type(module).__name__}(torch module)"
    score.__qualname__ = name
    return CallableField(score, dim, name=name)


def _check_device(device, X):
    """The torch route's device: X's; ``device`` None or naming the same device."""
    import torch

    if device is None:
        return X.device
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be None or a torch device, got {device!r} ({exc})") from None
    if dev.type != X.device.type or (dev.index is not None and dev != X.device):
        raise ValueError(f"device = {device!r} but target_samples is on {X.device}: the torch "
                         f"route runs on the target's device (pass device=None)")
    return X.device


def _check_int(v, name, lo):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def _weighting(weighting, process):
    """(name, gamma(t, v) -> array) for the weighting argument."""
    if weighting is None or weighting == "variance":
        return "variance", lambda t, v: v
    if weighting == "uniform":
        return "uniform", lambda t, v: np.ones_like(v)
    if weighting == "g2":
        return "g2", lambda t, v: np.asarray(process.diffusion(t), dtype=np.float64) ** 2
    if isinstance(weighting, str) or not callable(weighting):
        raise ValueError(f"weighting must be None, one of {WEIGHTINGS} or a callable gamma(t), "
                         f"got {weighting!r}")

    def gamma(t, v):
        out = np.asarray(weighting(t), dtype=np.float64)
        out = np.broadcast_to(out, t.shape) if out.ndim == 0 else out
        if out.shape != t.shape:
            raise ValueError(f"weighting(t) must return shape {t.shape} for t of shape {t.shape}, "
                             f"got {out.shape}")
        if not np.all(np.isfinite(out)) or np.any(out < 0):
            raise ValueError("weighting(t) must be finite and >= 0")
        return out
    return getattr(weighting, "__qualname__", "callable"), gamma


class _DrawSource:
    """The stream of (t, z, x_t, gamma) of Algorithm 1, line 6: mini-batches of target samples
    (epochs of random permutations) pushed through the exact forward transition. Subclasses give
    each batch's target indices, uniforms u (t = T~ (1 - u), host) and normals z; on the torch
    route (v, z, x_t, gamma) are tensors of X's dtype and device (t stays a host array: fields
    move it to x's device themselves)."""

    def __init__(self, X, process, T_tilde, batch_size, gamma):
        self.X, self.process, self.T_tilde = X, process, T_tilde
        self.batch_size, self.gamma = batch_size, gamma

    def _forward(self, idx, u, z):
        t = self.T_tilde * (1.0 - u)  # in (0, T~]: never t = 0
        m, v = self.process.conditional_many(t)
        gam = self.gamma(t, v)
        nx = get_backend(self.X)
        if nx.is_torch:
            m, v, gam = (nx.asarray(np.asarray(a, dtype=np.float64), like=self.X)
                         for a in (m, v, gam))
            z = z.to(self.X.dtype) if is_torch(z) else \
                nx.asarray(np.asarray(z, dtype=np.float64), like=self.X)
            if not is_torch(idx):
                idx = nx.torch.as_tensor(idx, device=self.X.device)
        xt = m[:, None] * self.X[idx] + nx.sqrt(v)[:, None] * z
        return t, v, z, xt, gam


class _Draws(_DrawSource):
    """Draws from the numpy Generator ``rng`` on the host (identical streams on both routes;
    moved to the device per batch)."""

    def __init__(self, X, process, T_tilde, batch_size, gamma, rng):
        super().__init__(X, process, T_tilde, batch_size, gamma)
        self.rng = rng
        self._perm, self._pos = rng.permutation(X.shape[0]), 0

    def _indices(self, n):
        out = []
        while n > 0:
            if self._pos == self._perm.shape[0]:
                self._perm, self._pos = self.rng.permutation(self.X.shape[0]), 0
            take = min(n, self._perm.shape[0] - self._pos)
            out.append(self._perm[self._pos:self._pos + take])
            self._pos += take
            n -= take
        return np.concatenate(out)

    name = "generator"

    def bootstrap_indices(self, r: int, n_mc: int, like):
        """A resample of n_mc draws with replacement from the Generator, on ``like``'s
        device."""
        idx = self.rng.integers(0, n_mc, n_mc)
        return get_backend(like).torch.as_tensor(idx, device=like.device) if is_torch(like) \
            else idx

    def batch(self, n):
        idx = self._indices(n)
        u = self.rng.random(n)
        z = self.rng.standard_normal((n, self.X.shape[1]))
        return self._forward(idx, u, z)


#: global draw indices of the counter-based draws stay below this (Threefry's 32-bit counter word)
MAX_INDEXED_DRAWS = 2**32


class _IndexedDraws(_DrawSource):
    """Draws as pure functions of (seed, global draw index j), from counter-based streams
    (:mod:`sftheory._kernels.threefry`) of four independent substreams of ``seed``: 1 the normals
    z_j (IndexedNoise's layout, row j, step 0; on X's device), 2 the uniforms u_j of
    t_j = T~ (1 - u_j) (host), 3 the epoch permutations (epoch e = j // n sorts the n targets by
    the 53-bit keys of counters (i, e), on X's device; draw j takes position j mod n), 4 the
    bootstrap resamples. ``start``: the global index of the first draw (a shard's offset)."""

    name = "indexed"

    def __init__(self, X, process, T_tilde, batch_size, gamma, seed: int, start: int = 0):
        from .._kernels.threefry import substream_seed

        super().__init__(X, process, T_tilde, batch_size, gamma)
        self.seed = int(seed)
        self._next = int(start)
        self._sub = {s: substream_seed(self.seed, s) for s in (1, 2, 3, 4)}
        self._cached = (-1, None)  # (epoch, its permutation): mini-batches reuse it

    def _permutations(self, e0: int, e1: int):
        """The permutations of epochs e0..e1 concatenated (one vectorized call for all of them:
        counters (i, e) broadcast, one argsort per row)."""
        from .._kernels.threefry import indexed_bits53, particle_rows

        nx = get_backend(self.X)
        n_t = self.X.shape[0]
        parts = []
        if self._cached[0] == e0:
            parts.append(self._cached[1])
            e0 += 1
        if e0 <= e1:
            rows = particle_rows(0, n_t, self.X).reshape(1, n_t)
            epochs = particle_rows(e0, e1 - e0 + 1, self.X).reshape(-1, 1)
            keys = indexed_bits53(self._sub[3], rows, epochs)               # (E, n_t)
            perms = nx.torch.argsort(keys, dim=1, stable=True) if nx.is_torch else \
                np.argsort(keys, axis=1, kind="stable")
            self._cached = (e1, perms[-1])
            parts.append(perms.reshape(-1))
        return parts[0] if len(parts) == 1 else nx.concat(parts)

    def _indices_at(self, j0: int, n: int):
        n_t = self.X.shape[0]
        e0, e1 = j0 // n_t, (j0 + n - 1) // n_t
        lo = j0 - e0 * n_t
        return self._permutations(e0, e1)[lo:lo + n]

    def batch(self, n):
        from .._kernels.threefry import indexed_normals, indexed_uniforms, particle_rows

        j0 = self._next
        if j0 + n > MAX_INDEXED_DRAWS:
            raise ValueError(f"indexed fusion draws have global indices below 2^32; draws "
                             f"{j0} .. {j0 + n - 1} exceed it (start + n too large)")
        self._next += n
        idx = self._indices_at(j0, n)
        u = indexed_uniforms(self._sub[2], particle_rows(j0, n, None), 0)
        z = indexed_normals(self._sub[1], particle_rows(j0, n, self.X), 0, self.X.shape[1])
        return self._forward(idx, u, z)

    def bootstrap_indices(self, r: int, n_mc: int, like):
        """Replicate r's resample of n_mc draws with replacement: floor(u n_mc) of substream 4,
        rows 0 .. n_mc - 1 at step r, in ``like``'s backend and device."""
        from .._kernels.threefry import indexed_uniforms, particle_rows

        u = indexed_uniforms(self._sub[4], particle_rows(0, n_mc, like), r)
        if is_torch(like):  # u < 1, but u n_mc can round up to n_mc
            return (u * n_mc).floor().long().clamp(max=n_mc - 1)
        return np.minimum(np.floor(u * n_mc).astype(np.int64), n_mc - 1)


def _check_target(target_samples, device=None):
    """(X (n, d), device): the target samples validated on their backend (a torch tensor stays on
    its device, never copied back) and the device of the torch computations."""
    if is_torch(target_samples):
        X = _check_torch_input(target_samples, "target_samples").detach()
        if X.ndim not in (1, 2):
            raise ValueError(f"target_samples must have 1 or 2 dimension(s), got shape "
                             f"{tuple(X.shape)}")
        if not bool(X.isfinite().all()):
            raise ValueError("target_samples contains NaN or infinite values")
        device = _check_device(device, X)
    else:
        X = as_float_array(target_samples, "target_samples", ndim=(1, 2))
        device = "cpu" if device is None else device
    if X.ndim == 1:
        X = X[:, None]
    if X.shape[0] < 1:
        raise ValueError("target_samples must contain at least one sample")
    return X, device


def _check_horizon(process, T_tilde, T=None) -> float:
    """T~ as a float: finite, > 0, below T when given, and inside the process's time domain."""
    if not isinstance(process, LinearSDE):
        raise ValueError(f"process must be a sftheory.processes process, got {process!r}")
    T_tilde = check_positive(T_tilde, "T_tilde")
    if T is not None:
        T = check_positive(T, "T")
        if not T_tilde < T:
            raise ValueError(f"T_tilde must lie in (0, T): got T_tilde = {T_tilde} >= T = {T}")
    try:
        process.conditional(T_tilde)
    except ValueError as exc:
        raise ValueError(f"T_tilde = {T_tilde}: {exc}") from None
    return T_tilde


@dataclass(frozen=True)
class FusionDraws:
    """Monte Carlo draws of the ScoreFusion regression ([SF] Alg. 1, line 6): times ``t`` (n,)
    (numpy, on the host), forward variances ``v`` (n,), noises ``z`` (n, d), noised targets
    ``x_t = m(t) X_0 + sqrt(v) z`` (n, d) and weights ``gamma`` (n,), the last four in the
    target's backend, dtype and device. ``start``: the global index of the first draw."""
    t: object
    v: object
    z: object
    x_t: object
    gamma: object
    start: int


def fusion_draws(target_samples, process, T_tilde, n: int, *, seed: int, start: int = 0,
                 weighting=None) -> FusionDraws:
    """Draws ``start`` .. ``start + n - 1`` of the counter-based stream of
    ``score_fusion(..., draws="indexed", seed=seed)``: each draw a pure function of (seed, global
    draw index), computed on the target's device, so ranks that each draw their own index range
    (``start = shard(n_mc).start``) and merge with :func:`sftheory.distributed.fusion_quadratic`
    reproduce the one-process estimate. With the auxiliaries' scores S at (x_t, t),
    :func:`dsm_contributions` (S, z, v, gamma) are the per-draw terms of G, b, c.

    ``seed``: an integer in [0, 2^64); ``weighting``: as in :func:`score_fusion`."""
    X, _ = _check_target(target_samples)
    T_tilde = _check_horizon(process, T_tilde)
    n = _check_int(n, "n", 1)
    start = _check_int(start, "start", 0)
    if seed is None:
        raise ValueError("fusion_draws needs an integer seed (the ranks must agree on it)")
    _, gamma = _weighting(weighting, process)
    src = _IndexedDraws(X, process, T_tilde, n, gamma, _indexed_seed(seed), start=start)
    t, v, z, xt, gam = src.batch(n)
    return FusionDraws(t=t, v=v, z=z, x_t=xt, gamma=gam, start=start)


def _indexed_seed(seed) -> int:
    """An integer seed in [0, 2^64) for the counter-based draws (None: a fresh one)."""
    from ..samplers import IndexedNoise

    if isinstance(seed, np.random.Generator):
        raise ValueError("draws='indexed' needs an integer seed (or None), not a numpy Generator: "
                         "the counter-based streams are keyed by an integer")
    return IndexedNoise(seed).seed


def _eval_scores(fields, xt, t):
    """S (n, k, d): every auxiliary at (x_t, t), checked (shape and finiteness by the field), in
    x_t's backend (a torch x_t gives a tensor on its device: the field must return x_t's backend
    and dtype)."""
    nx = get_backend(xt)
    out = []
    for i, f in enumerate(fields):
        try:
            s = f(xt, t)
        except ValueError as exc:
            raise ValueError(f"scores[{i}] at the draws of the forward process: {exc}") from None
        if nx.is_torch:
            if not is_torch(s) or s.dtype != xt.dtype or s.device != xt.device:
                raise ValueError(f"scores[{i}] returned {type(s).__name__} "
                                 f"{getattr(s, 'dtype', '')} for a {xt.dtype} tensor on "
                                 f"{xt.device}: on the torch route auxiliaries must return "
                                 f"tensors of x's dtype and device")
        else:
            s = np.asarray(s, dtype=np.float64)
        if tuple(s.shape) != tuple(xt.shape):
            raise ValueError(f"scores[{i}] returned shape {tuple(s.shape)} for points of shape "
                             f"{tuple(xt.shape)}")
        out.append(s)
    return nx.stack(out, axis=1)


@source("SF", "eq. (10) with the DSM target (eq. (5)); Alg. 1, lines 6-7", "sf.alg1")
def dsm_contributions(S, z, v, gamma):
    r"""Per-draw terms of the quadratic DSM loss: G_j (n, k, k), b_j (n, k), c_j (n,),

    .. math:: G_j = \gamma_j S_j S_j^T,\quad b_j = -\gamma_j S_j z_j/\sqrt{v_j},\quad
              c_j = \gamma_j |z_j|^2 / v_j,

    so that gamma_j |sum_i lambda_i S_ij + z_j/sqrt(v_j)|^2 = lambda^T G_j lambda - 2 b_j^T lambda
    + c_j. ``S`` (n, k, d) the auxiliary scores at the draws, ``z`` (n, d), ``v``, ``gamma`` (n,).
    Source: [SF] eq. (10) (the regression loss) with the denoising target of eq. (5).
    Written once for numpy and torch (the backend of ``S``; tensors stay on their device).
    """
    nx = get_backend(S, z, v, gamma)
    Gj = gamma[:, None, None] * nx.einsum("nid,njd->nij", S, S)
    rs = gamma / nx.sqrt(v)
    bj = -rs[:, None] * nx.einsum("nid,nd->ni", S, z)
    cj = gamma / v * nx.einsum("nd,nd->n", z, z)
    return Gj, bj, cj


@source("SF", "eq. (10) with the DSM target (eq. (5)); Alg. 1, line 7", "sf.alg1")
def dsm_loss(lam, S, z, v, gamma):
    r"""The Monte Carlo DSM loss of [SF] (10) on a batch of draws, evaluated directly:

    .. math:: \hat\ell(\lambda) = \frac1n \sum_j \gamma_j \Big|\sum_i \lambda_i S_{ij}
              + z_j/\sqrt{v_j}\Big|^2,

    in the backend of the inputs (torch: differentiable in ``lam``, the paper's softmax-SGD
    objective; its gradient is 2 (G lam - b) with G, b the means of :func:`dsm_contributions`).
    ``lam`` (k,), ``S`` (n, k, d), ``z`` (n, d), ``v``, ``gamma`` (n,).
    """
    nx = get_backend(lam, S, z, v, gamma)
    r = nx.einsum("k,nkd->nd", lam, S) + z / nx.sqrt(v)[:, None]
    return nx.sum(gamma * nx.sum(r * r, axis=1)) / S.shape[0]


def _mean_se(a):
    """(mean, standard error) along axis 0, in a's backend."""
    return get_backend(a).mean_se(a)


def _host(a) -> np.ndarray:
    """A (small) backend array as a float64 numpy array on the host."""
    return np.asarray(get_backend(a).to_numpy(a), dtype=np.float64)


# ---- the result ---------------------------------------------------------------------------------
@dataclass
class ScoreFusionResult:
    """What :func:`score_fusion` returns.

    ``weights`` (k,) the fitted lambda (on the simplex); ``loss`` the Monte Carlo DSM loss
    l(weights) = (10) + const and ``loss_se`` its standard error; ``gram`` G (k, k), ``linear`` b
    (k,) and ``const`` c with their standard errors ``gram_se``, ``linear_se``, ``const_se``
    (``loss(lam)`` = lam^T G lam - 2 b^T lam + c); ``method``; ``fields`` the auxiliary score
    fields (``field()`` is the fused score sum_i lambda_i s_i for phase II); ``diagnostics`` a
    dict: the exact QP solution of the Monte Carlo quadratic (``exact_weights``, ``qp``), its
    bootstrap standard errors (``weights_se``), identifiability (``tangent_min_eig``,
    ``identifiable``), the SGD trace for ``"softmax-sgd"`` (``sgd_losses``, ``sgd_weights``),
    sizes and timings.
    """

    weights: np.ndarray
    loss: float
    loss_se: float
    gram: np.ndarray
    gram_se: np.ndarray
    linear: np.ndarray
    linear_se: np.ndarray
    const: float
    const_se: float
    method: str
    T_tilde: float
    weighting: str
    fields: list = field(repr=False, default_factory=list)
    diagnostics: dict = field(default_factory=dict)

    def objective(self, lam):
        """lam^T G lam - 2 b^T lam + c: the estimated DSM loss at any lam (k,) ([SF] (10)); a
        torch lam gives a 0-d tensor on its device, differentiable in lam (gradient
        2 (G lam - b))."""
        if is_torch(lam):
            _check_torch_input(lam, "lam")
            nx = get_backend(lam)
            G, b = nx.from_numpy(self.gram, like=lam), nx.from_numpy(self.linear, like=lam)
            return (lam * nx.matmul(G, lam)).sum() - 2.0 * (b * lam).sum() + self.const
        lam = np.asarray(lam, dtype=np.float64)
        return float(lam @ self.gram @ lam - 2.0 * self.linear @ lam + self.const)

    def field(self):
        """The fused score sum_i weights_i s_i ([SF] Alg. 1, line 11) as a score field, for the
        samplers of :mod:`sftheory.samplers` (phase II)."""
        return weighted(self.fields, self.weights)


# ---- softmax SGD --------------------------------------------------------------------------------
def _softmax_sgd(fields, draws, k, steps, lr, batch_size, init, device):
    """The paper's training phase ([SF] Alg. 1, lines 5-8): lambda = softmax(theta), Adam on theta
    minimizing :func:`dsm_loss`, a fresh mini-batch and fresh (t, z) at every step; the returned
    weights average the iterates of the last half (Polyak-Ruppert), the learning rate decays as
    lr / sqrt(1 + step / 100). On the torch route the draws and scores are already tensors on
    ``device`` (theta takes their dtype); on the numpy route they are moved there as float64."""
    import torch

    dtype = draws.X.dtype if is_torch(draws.X) else torch.float64
    theta = torch.tensor(np.log(init), dtype=dtype, device=device, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / math.sqrt(1.0 + s / 100.0))
    losses, lams = np.empty(steps), np.empty((steps, k))
    for step in range(steps):
        t, v, z, xt, gam = draws.batch(batch_size)
        S, z, v, g = (torch.as_tensor(a, dtype=dtype, device=device)
                      for a in (_eval_scores(fields, xt, t), z, v, gam))
        lam = torch.softmax(theta, 0)
        loss = dsm_loss(lam, S, z, v, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses[step] = float(loss.detach())
        lams[step] = torch.softmax(theta.detach(), 0).cpu().numpy()
    avg = lams[steps // 2:].mean(axis=0)
    return avg / avg.sum(), losses, lams


# ---- the algorithm ------------------------------------------------------------------------------
@source("SF", "Algorithm 1 (training phase), regression (10)", "sf.alg1", "sf.thm4", "sf.dimfree")
def score_fusion(scores, target_samples, process, T_tilde, *, T=None, method: str = "exact",
                 weighting=None, batch_size: int | None = None, n_mc: int = N_MC, seed=None,
                 steps: int = 2000, lr: float = 0.05, init=None, n_boot: int = N_BOOT,
                 device=None, draws: str = "generator") -> ScoreFusionResult:
    r"""ScoreFusion ([SF] Algorithm 1, phase I): fit the weights lambda of the auxiliary scores to
    target samples by the regression (10) over t ~ U[0, T~], with denoising score matching.

    Parameters
    ----------
    scores : list of k auxiliaries
        Laws of :mod:`sftheory.models` (their exact path score ``law.path(process).score`` is
        used), score fields, paths, trained networks (:class:`~sftheory.training.ScoreMLP`, via
        ``as_field``) or callables ``s(x, t)`` (numpy x (N, d), t (N,)) returning (N, d).
    target_samples : array (n, d) or torch tensor (n, d)
        Samples of the target nu (the data set D of Algorithm 1). A float32/float64 tensor (CPU or
        CUDA) runs the Monte Carlo in torch on its device and dtype (module docstring); the
        auxiliaries must then accept and return tensors there (exact paths and ``nn.Module``
        networks do). float16 and other dtypes raise TypeError.
    process : a :mod:`sftheory.processes` process
        The forward process of the target's noising (the auxiliaries' process).
    T_tilde : float
        The regression horizon T~ > 0 (t ~ U[0, T~]); T~ < T when ``T`` is given.
    T : float or None
        The horizon of the generative process; T~ must lie in (0, T).
    method : {"exact", "softmax-sgd"}
        ``"exact"``: estimate G, b, c from ``n_mc`` draws and solve the simplex QP exactly
        (:func:`simplex_qp`). ``"softmax-sgd"``: the paper's lambda = softmax(theta) trained by
        Adam for ``steps`` steps of ``batch_size`` fresh draws (learning rate ``lr``, start
        ``init``, uniform by default); the exact solution of the Monte Carlo quadratic is in
        ``diagnostics["exact_weights"]`` for comparison.
    weighting : None / "variance" (gamma = v(t), the default), "uniform", "g2" or callable gamma(t)
        See the module docstring for why gamma = v is the default.
    batch_size : int or None
        Mini-batch size of target samples (default min(256, n)); ValueError if > n.
    n_mc : int
        Monte Carlo draws for G, b, c and the loss (both methods).
    seed : int, numpy Generator or None
        With ``draws="indexed"``: an integer in [0, 2^64) or None (a fresh one, kept in
        ``diagnostics["seed"]``).
    draws : {"generator", "indexed"}
        Where the random numbers come from: ``"generator"`` the numpy Generator of ``seed`` on the
        host (the records' numbers); ``"indexed"`` the counter-based streams of
        :func:`fusion_draws` (computed on the target's device; the same numbers on every
        backend and under any split of the draws by global index). The two are different
        Monte Carlo samples of the same estimator.
    n_boot : int
        Bootstrap resamples of the per-draw terms for ``diagnostics["weights_se"]`` (0: off).
    device : None or a torch device
        Where ``"softmax-sgd"`` trains theta: None means the target tensor's device (``"cpu"``
        for numpy targets); a device other than a torch target's raises ValueError.

    Returns
    -------
    ScoreFusionResult
        ``.weights``, ``.loss`` +- ``.loss_se``, ``.gram``, ``.linear``, ``.const`` with standard
        errors, ``.diagnostics``; ``.field()`` is the fused score for the samplers (phase II).
    """
    t0 = time.perf_counter()
    X, device = _check_target(target_samples, device)
    n, d = X.shape
    T_tilde = _check_horizon(process, T_tilde, T)
    fields = _as_fields(scores, process, d)
    k = len(fields)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if batch_size is None:
        batch_size = min(BATCH_SIZE, n)
    batch_size = _check_int(batch_size, "batch_size", 1)
    if batch_size > n:
        raise ValueError(f"batch_size = {batch_size} exceeds the {n} target samples: a mini-batch "
                         f"cannot hold more target samples than there are")
    n_mc = _check_int(n_mc, "n_mc", 2)
    n_boot = _check_int(n_boot, "n_boot", 0)
    wname, gamma = _weighting(weighting, process)
    if draws == "generator":
        draws = _Draws(X, process, T_tilde, batch_size, gamma, check_seed(seed))
    elif draws == "indexed":
        draws = _IndexedDraws(X, process, T_tilde, batch_size, gamma, _indexed_seed(seed))
    else:
        raise ValueError(f"draws must be 'generator' or 'indexed', got {draws!r}")

    # Monte Carlo estimate of the quadratic (both methods)
    Gs, bs, cs = [], [], []
    left = n_mc
    chunk = max(batch_size, 4096)
    while left > 0:
        m_ = min(chunk, left)
        t, v, z, xt, gam = draws.batch(m_)
        S = _eval_scores(fields, xt, t)
        Gj, bj, cj = dsm_contributions(S, z, v, gam)
        Gs.append(Gj), bs.append(bj), cs.append(cj)
        left -= m_
    nx = get_backend(X)
    Gj, bj, cj = nx.concat(Gs), nx.concat(bs), nx.concat(cs)
    # the means and standard errors on the device; only these k x k numbers come to the host
    G, G_se = (_host(a) for a in _mean_se(Gj))
    b, b_se = (_host(a) for a in _mean_se(bj))
    c, c_se = (float(_host(a)) for a in _mean_se(cj))
    G = 0.5 * (G + G.T)
    for name, a in (("gram", G), ("linear", b), ("const", c)):
        if not np.all(np.isfinite(a)):
            raise FloatingPointError(f"the Monte Carlo {name} term is not finite: an auxiliary "
                                     f"score or the weighting blows up on (0, T~]")
    t_fit = time.perf_counter()
    eps = float(np.finfo(np.float32 if nx.is_torch and X.dtype == nx.torch.float32
                         else np.float64).eps) / 2
    psd_tol = gram_psd_tolerance(k, d, n_mc, eps)
    qp = simplex_qp(G, b, psd_rel_tol=psd_tol)
    diag = {"n_target": n, "n_mc": n_mc, "batch_size": batch_size, "k": k, "dim": d,
            "exact_weights": qp.weights, "qp": qp, "tangent_min_eig": qp.tangent_min_eig,
            "identifiable": qp.identifiable, "seconds_estimate": t_fit - t0,
            "draws": draws.name}
    if draws.name == "indexed":
        diag["seed"] = draws.seed
    if n_boot:
        reps = np.empty((n_boot, k))
        for r in range(n_boot):
            idx = draws.bootstrap_indices(r, n_mc, Gj)
            Gr, br = _host(Gj[idx].mean(0)), _host(bj[idx].mean(0))
            reps[r] = simplex_qp(0.5 * (Gr + Gr.T), br, psd_rel_tol=psd_tol).weights
        diag["weights_se"] = reps.std(axis=0, ddof=1)
    if method == "exact":
        lam = qp.weights
    else:
        steps = _check_int(steps, "steps", 1)
        if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, numbers.Real) \
                or not math.isfinite(float(lr)) or float(lr) <= 0:
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        if init is None:
            init = np.full(k, 1.0 / k)
        else:
            init = as_float_array(init, "init", ndim=1)
            if init.shape != (k,) or np.any(init <= 0) or abs(init.sum() - 1) > 1e-9:
                raise ValueError(f"init must be {k} positive weights summing to one (softmax "
                                 f"cannot start on the boundary), got {init}")
        lam, losses, lams = _softmax_sgd(fields, draws, k, steps, float(lr), batch_size, init,
                                         device)
        diag["sgd_losses"], diag["sgd_weights"] = losses, lams
    lam_b = nx.asarray(lam, like=cj)
    per = nx.einsum("i,nij,j->n", lam_b, Gj, lam_b) - 2.0 * nx.matmul(bj, lam_b) + cj
    loss, loss_se = (float(_host(a)) for a in _mean_se(per))
    diag["seconds_fit"] = time.perf_counter() - t_fit
    return ScoreFusionResult(weights=lam, loss=float(loss), loss_se=float(loss_se), gram=G,
                             gram_se=G_se, linear=b, linear_se=b_se, const=float(c),
                             const_se=float(c_se), method=method, T_tilde=T_tilde,
                             weighting=wname, fields=fields, diagnostics=diag)
