"""A law diffused by a forward process, at every time: the path t -> p_t."""
from __future__ import annotations

import numpy as np

from .._validation import check_times
from ..processes import LinearSDE
from .base import Law, prepare_points, shape_scalar, shape_vector


class MixturePath:
    r"""The path t -> p_t = law(X_t), X_0 ~ ``law``, X_t | X_0 ~ N(m(t) X_0, v(t) I) under
    ``process``.

    ``score(x, t)``, ``logpdf(x, t)``, ``posterior_mean(x, t)`` (E[X_0 | X_t = x]) and
    ``logpdf_and_score(x, t)`` take points x of shape (N, d) (or (N,) when d = 1) and t a scalar
    (float, 0-d array or tensor) or an array of shape (N,) with one time per point (as denoising
    score matching draws them). Results are in x's backend, dtype and device (autograd in x for
    torch). ``marginal(t)`` is the closed-form p_t for one time.

    The law is factorized once (eigendecomposition of each component covariance), so a call at
    a new time costs O(K d) scalar work and no factorization: a sampler may call it at 80,000
    different times. The path is itself a score field: ``path(x, t)`` is ``path.score(x, t)``
    and ``path.dim`` its dimension.

    A law without a density at t = 0 (the empirical law) needs t > 0 for densities and scores.
    """

    def __init__(self, law: Law, process: LinearSDE):
        if not isinstance(law, Law):
            raise ValueError(f"law must be a sftheory law (Gaussian, GaussianMixture, "
                             f"EmpiricalDistribution), got {law!r}")
        if not isinstance(process, LinearSDE):
            raise ValueError(f"process must be a sftheory.processes process, got {process!r}")
        self.law = law
        self.process = process
        self.dim = law.dim
        self._params = law._mixture_params()
        # an atom (variance 0 along some direction) has no density until v(t) > 0
        self._needs_positive_t = bool(np.any(self._params.lam == 0.0))

    def __repr__(self):
        return f"MixturePath({self.law!r}, {self.process!r})"

    def _prepare(self, x, t, *, allow_zero: bool = False):
        """Validated points, their shape kind, and (m, v): floats for one time, arrays for one
        time per point. With ``allow_zero`` (posterior means), t = 0 is accepted for laws without
        a density and marked by v = 0 (the caller returns x there)."""
        x2, nx, kind = prepare_points(x, self.dim)
        t = check_times(t, x2.shape[0])
        if isinstance(t, float):
            m, v = self.process.conditional(t)
        elif t.shape[0] == 0:
            m, v = 1.0, 1.0  # no point to evaluate
        else:
            m, v = self.process.conditional_many(t)
        if self._needs_positive_t and not allow_zero and np.any(np.asarray(v) <= 0):
            raise ValueError(f"t must be > 0: {type(self.law).__name__} has no density at t = 0 "
                             f"(v(t) = 0)")
        return x2, nx, kind, m, v

    def logpdf_and_score(self, x, t, *, impl: str | None = None):
        """(log p_t(x), grad_x log p_t(x)) in one pass."""
        x2, nx, kind, m, v = self._prepare(x, t)
        logp, score = self._params.evaluate(x2, nx, m, v, posterior=False, impl=impl)
        return shape_scalar(kind, logp), shape_vector(kind, score)

    def logpdf(self, x, t, *, impl: str | None = None):
        """log p_t(x), shape (N,)."""
        return self.logpdf_and_score(x, t, impl=impl)[0]

    def score(self, x, t, *, impl: str | None = None):
        """grad_x log p_t(x), shape (N, d)."""
        return self.logpdf_and_score(x, t, impl=impl)[1]

    __call__ = score

    def posterior_mean(self, x, t, *, impl: str | None = None):
        """E[X_0 | X_t = x]: each component's Gaussian conditional mean averaged with the
        responsibilities (:func:`~sftheory.models._formulas.mixture_path_eval`). It equals
        Tweedie's (x + v score)/m but has no cancellation when m(t) is small. At a scalar t = 0
        it is x (X_0 = X_t), for every law."""
        x2, nx, kind, m, v = self._prepare(x, t, allow_zero=True)
        if isinstance(m, float):
            if v == 0.0:
                return shape_vector(kind, nx.copy(x2))  # X_0 = X_t; a new array, never the caller's
            _, post = self._params.evaluate(x2, nx, m, v, posterior=True, impl=impl)
            return shape_vector(kind, post)
        at_zero = v == 0.0
        if self._needs_positive_t and np.any(at_zero):
            # points at t = 0 keep x (X_0 = X_t); the formula runs on the others
            _, post = self._params.evaluate(x2, nx, m, np.where(at_zero, 1.0, v), posterior=True,
                                            impl=impl)
            mask = nx.asarray(at_zero, like=x2) > 0
            return shape_vector(kind, nx.where(mask[:, None], x2, post))
        _, post = self._params.evaluate(x2, nx, m, v, posterior=True, impl=impl)
        return shape_vector(kind, post)

    def marginal(self, t):
        """The closed-form p_t at one time t (an object of the law's family)."""
        return self.law.marginal(self.process, t)
