"""The empirical distribution (uniform law on a training set) and its exact diffused marginals."""
from __future__ import annotations

import numpy as np

from .._refs import source
from .._validation import as_float_array, check_count, check_positive, check_seed, frozen
from ..backend import check_impl, kernel_impl
from ._esf_gemm import (EVAL_FAST_PRECISIONS, TORCH_PRECISIONS, EmpiricalStore, check_budget,
                        evaluate_empirical)
from .base import Law, MixtureParams
from .mixture import GaussianMixture


class EmpiricalParams(MixtureParams):
    """:class:`~sftheory.models.base.MixtureParams` of (1/n) sum_j N(s y_j, var0 I) on one stored
    copy of the points (an :class:`~sftheory.models._esf_gemm.EmpiricalStore`).

    ``evaluate`` dispatches to :func:`~sftheory.models._esf_gemm.evaluate_empirical` (GEMM engine
    in bounded memory, numba kernel in low dimension) under the default ``impl``; the reference
    formula (``impl="numpy"`` / ``use_kernels("numpy")``) and torch inputs that require a gradient
    go through :meth:`MixtureParams.evaluate` on the same parameters (the scaled means s y are then
    materialized once, lazily). ``diffused`` returns parameters on the same points (no copy).
    ``precision`` and ``budget_bytes``: the law's evaluation settings (see
    :class:`EmpiricalDistribution`), carried to every diffused copy.
    """

    def __init__(self, store: EmpiricalStore, precision: str = "exact", budget_bytes=None):
        self.store = store
        self.precision, self.budget_bytes = precision, budget_bytes
        self.dim = store.dim
        self.rot = None
        self._cache: dict = {}
        self._ref = None

    @property
    def logw(self):
        return np.full(self.store.n, -np.log(self.store.n))

    @property
    def lam(self):
        return np.full(self.store.n, self.store.var0)

    @property
    def means(self):
        return self._reference().means

    def _reference(self) -> MixtureParams:
        if self._ref is None:
            st = self.store
            means = st.data if st.scale == 1.0 else frozen(st.scale * st.data)
            self._ref = MixtureParams(means, np.full(st.n, -np.log(st.n)), np.full(st.n, st.var0),
                                      None)
        return self._ref

    def diffused(self, m: float, v: float) -> "EmpiricalParams":
        return EmpiricalParams(self.store.rescaled(m, v), self.precision, self.budget_bytes)

    def evaluate(self, x, nx, m, v, posterior: bool, impl: str | None = None,
                 check_finite: bool = True):
        """(log p, score or posterior mean) on the stored points with the law's precision and
        budget; ``check_finite=False`` skips the fast routes' finiteness check (a host sync) for
        callers that check their outputs themselves."""
        impl = kernel_impl() if impl is None else check_impl(impl)
        if impl == "numpy" or (nx.is_torch and x.requires_grad):
            return self._reference().evaluate(x, nx, m, v, posterior, impl=impl)
        precision = self.precision if nx.is_torch else "exact"
        return evaluate_empirical(nx, x, m, v, posterior, self.store, precision=precision,
                                  budget_bytes=self.budget_bytes, check_finite=check_finite)


class _EmpiricalMarginal(GaussianMixture):
    """The marginal (1/n) sum_j N(s y_j, var0 I) of an empirical law at t > 0: a
    :class:`GaussianMixture` whose means s y_j are materialized only when asked for (``means``,
    ``cov``, ``sample``...); densities and scores run on the stored points."""

    def __init__(self, params: EmpiricalParams):
        st = params.store
        self._params = params
        self.n_components, self.dim = st.n, st.dim
        self.kind = "iso"
        self._weights = frozen(np.full(st.n, 1.0 / st.n))
        self._var = frozen(np.full(st.n, st.var0))
        self._cov_k = None
        self._sample_factor = None

    @property
    def _means(self):
        return self._params.means

    @property
    def mean(self) -> np.ndarray:
        return self._params.store.scale * self._params.store.data.mean(axis=0)


@source("SM", "Sec. 2; eq. (6), (14), (19)", "sm.esf", "core.models.tweedie")
class EmpiricalDistribution(Law):
    r"""The uniform law :math:`\frac1n\sum_i \delta_{y_i}` on training points y_1..y_n in R^d.

    A law without a density. Its path ``path(process)`` has one at every t > 0: the isotropic
    mixture :math:`\frac1n \sum_i \mathcal N(m(t) y_i, v(t) I)`, whose score is the *empirical
    score function* (ESF) of [SM] Sec. 2 (the field that drives the denoising ODE (5)), and whose
    ``posterior_mean(x, t)`` is
    :math:`\hat x_t(x) = \sum_i \operatorname{softmax}_i(-|x - m y_i|^2 / 2v)\, y_i`
    ([SM] eq. (14); eq. (6) for S = {-1, 1}). ``marginal(process, t)`` is that mixture for
    t > 0 and the empirical law itself at t = 0. The points are copied once and read-only; the
    path and every marginal evaluate on that one copy (no scaled copies m y).

    Evaluation (:mod:`sftheory.models._esf_gemm`): in low dimension the numba kernel; above it,
    the softmax over the points as matrix products, tiled over queries and points with an online
    log-sum-exp, so the working memory stays within a budget (128 MiB by default) for any n and
    any number of queries; queries where the expanded form |x|^2 - 2 x.y + |y|^2 would lose
    accuracy (small v, far from the data) take the difference form. ``use_kernels("numpy")``
    selects the reference formula.

    Parameters
    ----------
    points : array-like, shape (n, d), or (n,) for d = 1
    precision : str, default "exact"
        How torch tensors are evaluated (numpy inputs, and tensors that require a gradient, are
        always exact): "exact" (the tensors' own dtype), or an opt-in fast GEMM precision of
        :func:`~sftheory.models._esf_gemm.evaluate_empirical` -- "fp32-3xtf32" (float32
        accuracy from three TF32 tensor-core products), "tf32", "fp16", "bf16", or the fused
        fast route "fp16-fast" / "bf16-fast" / "tf32-fast" (one half-precision GEMM, one float32
        softmax, one GEMM). Their error against float64 is measured by benchmarks/bench_gpu.py
        and bounded in tests/models/test_empirical_precision.py.
    budget_bytes : int, optional
        Working-memory bound of the tiled evaluation (default 128 MiB on CPU, larger on
        accelerators); ValueError when it cannot hold one query against one point.
    """

    def __init__(self, points, *, precision: str = "exact", budget_bytes=None):
        allowed = TORCH_PRECISIONS + EVAL_FAST_PRECISIONS
        if precision not in allowed:
            raise ValueError(f"precision must be one of {allowed}, got {precision!r}")
        if budget_bytes is not None:
            budget_bytes = check_budget(budget_bytes)
        self.precision, self.budget_bytes = precision, budget_bytes
        y = as_float_array(points, "points", ndim=(1, 2))
        if y.ndim == 1:
            y = y[:, None]
        if y.shape[0] == 0 or y.shape[1] == 0:
            raise ValueError(f"points must be a non-empty (n, d) array, got shape {y.shape}")
        # one copy of the points: ``y`` stays writeable for the kernels (numba, torch.from_numpy,
        # no layout copy); users see a read-only view of it
        y = np.ascontiguousarray(y)  # the kernels' layout (a copy only for Fortran-ordered input)
        self._store = EmpiricalStore(y)
        self._points = frozen(y.view())
        self.n_points, self.dim = y.shape
        self._params = None

    @property
    def points(self) -> np.ndarray:
        """The training points (n, d), read-only (no copy)."""
        return self._points

    @property
    def mean(self) -> np.ndarray:
        return self._points.mean(axis=0)

    @property
    def cov(self) -> np.ndarray:
        """(1/n) sum_i (y_i - ybar)(y_i - ybar)^T: the covariance of the uniform law (biased)."""
        c = self._points - self.mean
        return c.T @ c / self.n_points

    def _mixture_params(self) -> MixtureParams:
        if self._params is None:
            self._params = EmpiricalParams(self._store, self.precision, self.budget_bytes)
        return self._params

    def as_mixture(self, variance: float) -> GaussianMixture:
        """The smoothed law (1/n) sum_i N(y_i, variance I) (e.g. mu_n^sigma of the ScoreFusion slides)."""
        variance = check_positive(variance, "variance")
        n = self.n_points
        return GaussianMixture(np.full(n, 1.0 / n), self._points, np.full(n, variance))

    def _diffused(self, m, v):
        if v == 0.0:
            return self if m == 1.0 else EmpiricalDistribution(
                m * self._points, precision=self.precision, budget_bytes=self.budget_bytes)
        # marginal_var(0, m, v) = v: the variance of the atoms (in EmpiricalStore.rescaled)
        return _EmpiricalMarginal(self._mixture_params().diffused(m, v))

    def sample(self, n, seed=None):
        n = check_count(n)
        rng = check_seed(seed)
        return self._points[rng.integers(0, self.n_points, size=n)]

    def __repr__(self):
        extra = "" if self.precision == "exact" else f", precision={self.precision!r}"
        return f"EmpiricalDistribution(n_points={self.n_points}, dim={self.dim}{extra})"
