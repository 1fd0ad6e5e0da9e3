"""The common interface of exact score models and the shared evaluation/dispatch machinery."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from .._validation import check_time
from ..backend import check_impl, get_backend, kernel_impl
from ..processes import LinearSDE
from . import _formulas


@dataclass(frozen=True)
class Provenance:
    """How a marginal was made: p_t = law(X_t) with X_0 ~ base under ``process`` (m, v at t)."""

    base: "ScoreModel"
    process: LinearSDE
    t: float
    m: float
    v: float


def prepare_points(x, dim: int):
    """Validate points; return (x2d, nx, out_shape_kind) with x2d of shape (N, dim).

    Accepts numpy arrays / array-likes (int -> float64; float32 kept) and torch tensors
    (float32/float64, any device). A 1-D array is N points when dim == 1; a scalar is one point
    when dim == 1. ``out_shape_kind`` is "2d", "1d" or "0d" and shapes the outputs like the input.
    """
    nx = get_backend(x)
    if nx.is_torch:
        if x.is_complex() or x.dtype in (nx.torch.float16, nx.torch.bfloat16):
            raise ValueError(f"x must be a float32 or float64 tensor, got {x.dtype}")
        if not x.is_floating_point():  # integers and booleans, as for numpy: float64
            x = x.to(nx.torch.float64)
    else:
        x = np.asarray(x)
        if x.dtype.kind in "iub":
            x = x.astype(np.float64)
        elif x.dtype not in (np.float32, np.float64):
            raise ValueError(f"x must be float32 or float64, got dtype {x.dtype}")
    if x.ndim == 2:
        if x.shape[1] != dim:
            raise ValueError(f"x has shape {tuple(x.shape)}: expected (N, {dim}) points for a "
                             f"model in dimension {dim}")
        kind = "2d"
    elif x.ndim == 1:
        if dim != 1:
            raise ValueError(f"x has shape {tuple(x.shape)}: a 1-D array means N points only for "
                             f"dimension 1; pass shape (N, {dim})")
        x = x[:, None]
        kind = "1d"
    elif x.ndim == 0:
        if dim != 1:
            raise ValueError(f"a scalar x is one point only in dimension 1; pass shape (N, {dim})")
        x = x.reshape(1, 1)
        kind = "0d"
    else:
        raise ValueError(f"x must have shape (N, {dim}), got {tuple(x.shape)}")
    if not nx.all_finite(x):
        raise ValueError("x contains NaN or infinite values")
    return x, nx, kind


def shape_outputs(kind: str, logp, score):
    if kind == "2d":
        return logp, score
    if kind == "1d":
        return logp, score[:, 0]
    return logp[0], score[0, 0]


class MixtureEvaluator:
    """Parameters (means, whitening factors, log-normalizers) of a mixture, with per-backend caches.

    ``kind="full"``: factor (K, d, d) lower-triangular whitening matrices;
    ``kind="iso"``: factor (K,) scalars c_k with Sigma_k = c_k^{-2} I.
    Numpy inputs run the numba kernel (or the reference formula under ``use_kernels("numpy")``);
    torch inputs run the reference formula on the input's dtype and device.
    """

    def __init__(self, means: np.ndarray, factor: np.ndarray, lognorm: np.ndarray, kind: str):
        self.means = np.ascontiguousarray(means, dtype=np.float64)
        self.factor = np.ascontiguousarray(factor, dtype=np.float64)
        self.lognorm = np.ascontiguousarray(lognorm, dtype=np.float64)
        self.kind = kind
        self.score_ops = _formulas.score_operands(self.factor, kind)
        self._cache: dict = {}

    def _convert(self, nx, like, arrays, tag):
        key = (tag, nx.name, str(like.dtype), str(getattr(like, "device", "cpu")))
        p = self._cache.get(key)
        if p is None:
            p = tuple(None if a is None else nx.from_numpy(np.ascontiguousarray(a), like=like)
                      for a in arrays)
            self._cache[key] = p
        return p

    def __call__(self, x, nx, impl: str | None = None, ops=None, ops_tag="score"):
        """(logpdf, sum_k r_k (off_k + mat_k z_k)); ``ops=(off, mat)`` defaults to the score."""
        impl = kernel_impl() if impl is None else check_impl(impl)
        off, mat = self.score_ops if ops is None else ops
        means, factor, lognorm, off, mat = self._convert(
            nx, x, (self.means, self.factor, self.lognorm, off, mat), ops_tag)
        if nx.is_torch or impl == "numpy":
            return _formulas.mixture_logpdf_expect_chunked(nx, x, means, factor, lognorm,
                                                           self.kind, off, mat)
        from .._kernels import mixture as kernels

        key = ("layout", ops_tag, str(x.dtype))
        layout = self._cache.get(key)
        if layout is None:
            layout = kernels.kernel_layout(means, factor, lognorm, self.kind, off, mat)
            self._cache[key] = layout
        return kernels.evaluate(x, layout)


class ScoreModel(ABC):
    """An exact probability law on R^d with closed-form log-density and score.

    Public contract: ``logpdf(x)``, ``pdf(x)``, ``score(x)``, ``sample(n, seed=...)``, ``mean``,
    ``cov``, ``marginal(process, t)`` (an object of the same family) and, on marginals,
    ``posterior_mean(x)`` = E[X_0 | X_t = x]. Points x have shape (N, d); a 1-D array is N points
    when d = 1. numpy in -> numpy out; torch in -> torch out (same dtype and device, autograd).
    """

    dim: int
    provenance: Provenance | None = None

    # ---- subclasses -------------------------------------------------------------------------
    @abstractmethod
    def _evaluator(self) -> MixtureEvaluator:
        """The evaluator behind logpdf/score (models without a density raise here)."""

    @abstractmethod
    def _marginal(self, m: float, v: float) -> "ScoreModel":
        """The law of m X + sqrt(v) Z, X ~ self, Z ~ N(0, I) independent."""

    @abstractmethod
    def sample(self, n: int, seed=None) -> np.ndarray:
        """n independent draws, shape (n, d); ``seed`` is an int or a numpy Generator."""

    @property
    @abstractmethod
    def mean(self) -> np.ndarray:
        """Exact mean, shape (d,)."""

    @property
    @abstractmethod
    def cov(self) -> np.ndarray:
        """Exact covariance, shape (d, d)."""

    # ---- shared -----------------------------------------------------------------------------
    def logpdf_and_score(self, x, *, impl: str | None = None):
        """(log p(x), grad log p(x)) in one pass; ``impl`` forces "numba" or "numpy" for numpy x."""
        x2, nx, kind = prepare_points(x, self.dim)
        logp, score = self._evaluator()(x2, nx, impl)
        return shape_outputs(kind, logp, score)

    def logpdf(self, x):
        """log p(x), shape (N,)."""
        return self.logpdf_and_score(x)[0]

    def pdf(self, x):
        """p(x), shape (N,)."""
        logp = self.logpdf(x)
        return get_backend(logp).exp(logp)

    def score(self, x):
        """grad_x log p(x), shape (N, d) (shape (N,) for a 1-D input in dimension 1)."""
        return self.logpdf_and_score(x)[1]

    def marginal(self, process: LinearSDE, t) -> "ScoreModel":
        """p_t: the law of X_t when X_0 ~ self under ``process``, in closed form.

        Returns an object of the same family whose ``posterior_mean`` gives E[X_0 | X_t = x].
        """
        if not isinstance(process, LinearSDE):
            raise ValueError(f"process must be a sftheory.processes process, got {process!r}")
        t = check_time(t)
        m, v = process.conditional(t)
        out = self._marginal(m, v)
        out.provenance = Provenance(self, process, t, m, v)
        return out

    def _prior_components(self):
        """(means (K, d), covs (K, d, d) or isotropic variances (K,)) of the law whose marginal
        this is, aligned with this object's components."""
        raise NotImplementedError

    def posterior_mean(self, x, *, impl: str | None = None):
        """E[X_0 | X_t = x] (only on objects made by ``marginal``), shape like ``score(x)``.

        Each component's Gaussian conditional mean mu0_k + m Sigma0_k Sigma_k^{-1}(x - m mu0_k),
        averaged with the responsibilities (:func:`~sftheory.models._formulas.mixture_logpdf_expect`).
        It equals Tweedie's (x + v score(x)) / m but has no cancellation when m(t) is small.
        """
        prov = self.provenance
        if prov is None:
            raise ValueError("posterior_mean is defined for marginals: call "
                             "model.marginal(process, t).posterior_mean(x)")
        x2, nx, kind = prepare_points(x, self.dim)
        if prov.v == 0.0:  # t = 0: X_0 = X_t
            post = x2 * 1.0  # a new array/tensor, never the caller's
            return shape_outputs(kind, post[:, 0], post)[1]
        ev = self._evaluator()
        key = ("posterior", prov.m)
        ops = getattr(self, "_post_ops", None)
        if ops is None or ops[0] != key:
            means0, covs0 = prov.base._prior_components()
            ops = (key, _formulas.posterior_operands(ev.factor, ev.kind, means0, covs0, prov.m))
            self._post_ops = ops
        _, post = ev(x2, nx, impl, ops=ops[1], ops_tag="posterior")
        return shape_outputs(kind, post[:, 0], post)[1]

    def __repr__(self):
        return f"{type(self).__name__}(dim={self.dim})"

