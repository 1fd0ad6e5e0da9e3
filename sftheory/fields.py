"""Score fields: any callable ``s(x, t)`` with a dimension, and the combinators the theory needs.

Wherever sftheory takes a score it takes a **score field**: a callable ``s(x, t)`` returning an
array of x's shape (N, d), with x of shape (N, d) and t a scalar (one time for every point) or an
array of shape (N,) (one time per point, as denoising score matching and the ScoreFusion loss
draw them), plus its dimension ``dim``. Times are forward-diffusion times. Plain functions,
exact paths (``law.path(process)``, whose ``score`` this is) and torch ``nn.Module`` networks all
qualify through :func:`as_field`.

What a field receives: x as given (numpy or torch, shape (N, d)), and t as a Python float or,
for per-point times, an array of shape (N,) in x's backend, dtype and device.

>>> import numpy as np
>>> from sftheory.fields import as_field, weighted, perturbed
>>> s1 = as_field(lambda x, t: -x, dim=2)            # the score of N(0, I) at every t
>>> s2 = as_field(lambda x, t: -(x - 1.0), dim=2)
>>> s = weighted([s1, s2], [0.25, 0.75])            # [SF] Thm. 2: sum_i lambda_i s_i
>>> s(np.zeros((1, 2)), 0.5)
array([[0.75, 0.75]])
"""
from __future__ import annotations

import numbers

import numpy as np

from ._refs import source
from ._validation import check_real, check_simplex, check_times, is_torch
from ._points import prepare_points
from .backend import get_backend


class ScoreField:
    """Base of the fields sftheory builds: validates x and t once, then calls ``_eval``.

    ``field(x, t)``: x (N, d) (or (N,) when d = 1), t scalar or shape (N,); returns (N, d) in
    x's backend (or (N,) for a 1-D input). Subclasses implement ``_eval(x, t)`` on validated
    x (N, d) and t (float or (N,) array of x's backend).
    """

    dim: int

    def __call__(self, x, t):
        x2, nx, kind = _prepare_points(x, self.dim)
        tt = check_times(t, x2.shape[0])
        if not isinstance(tt, float):
            tt = nx.asarray(tt, like=x2)
        out = self._eval(x2, tt)
        return out[:, 0] if kind == "1d" else out

    def _eval(self, x, t):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(dim={self.dim})"


def _prepare_points(x, dim):
    x2, nx, kind = prepare_points(x, dim)
    if kind == "0d":
        raise ValueError("x must be an array of points of shape (N, d), got a scalar")
    return x2, nx, kind


def _check_dim(dim, what) -> int:
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {dim!r}")
    return int(dim)


class CallableField(ScoreField):
    """A user's callable ``fn(x, t)`` (a function, a path's ``score``, an ``nn.Module``) as a field.

    The output is checked: same backend as x, shape (N, d), finite (a NaN from a network is an
    error here, not a silent NaN further down).
    """

    def __init__(self, fn, dim: int, name: str | None = None):
        if not callable(fn):
            raise ValueError(f"fn must be callable as fn(x, t), got {fn!r}")
        self.fn = fn
        self.dim = _check_dim(dim, "dim")
        self.name = name or getattr(fn, "__qualname__", type(fn).__name__)

    def _eval(self, x, t):
        out = self.fn(x, t)
        if is_torch(out) != is_torch(x) or not hasattr(out, "shape"):
            raise ValueError(f"field {self.name} returned a {type(out).__name__} for a "
                             f"{type(x).__name__} input; return x's backend")
        if out.dtype != x.dtype:
            raise ValueError(f"field {self.name} returned dtype {out.dtype} for x of dtype "
                             f"{x.dtype}; return x's dtype")
        if tuple(out.shape) != tuple(x.shape):
            raise ValueError(f"field {self.name} returned shape {tuple(out.shape)} for x of shape "
                             f"{tuple(x.shape)}")
        if not get_backend(out).all_finite(out):
            raise ValueError(f"field {self.name} returned NaN or infinite values")
        return out

    def __repr__(self):
        return f"CallableField({self.name}, dim={self.dim})"


def as_field(fn, dim: int | None = None) -> ScoreField:
    """A score field from ``fn``: a :class:`ScoreField` (returned as is), anything with ``score``
    and ``dim`` (an exact path: its ``score``), or a callable ``fn(x, t)`` (a function, a torch
    ``nn.Module``), whose ``dim`` must be given unless ``fn.dim`` exists."""
    if isinstance(fn, ScoreField):
        if dim is not None and _check_dim(dim, "dim") != fn.dim:
            raise ValueError(f"dim={dim} but the field has dim {fn.dim}")
        return fn
    fdim = getattr(fn, "dim", None)
    if dim is None:
        if fdim is None:
            raise ValueError(f"dim is required for {fn!r} (it has no .dim attribute)")
        dim = fdim
    elif fdim is not None and isinstance(fdim, numbers.Integral) and int(fdim) != dim:
        raise ValueError(f"dim={dim} but {fn!r} has dim {fdim}")
    score = getattr(fn, "score", None)
    if callable(score) and not callable(getattr(fn, "forward", None)):
        if _positional_arity(score) < 2:
            raise ValueError(f"{fn!r}.score takes no time argument: a density at one time is not "
                             f"a score field; use law.path(process) for s(x, t), or wrap "
                             f"lambda x, t: density.score(x) if the score does not depend on t")
        return CallableField(score, dim, name=f"{fn!r}.score")
    if _positional_arity(fn) < 2:
        raise ValueError(f"{fn!r} must be callable as fn(x, t) (two positional arguments)")
    return CallableField(fn, dim)


def _positional_arity(fn) -> int:
    """How many positional arguments ``fn`` accepts (a large number for *args; 2 if unknown)."""
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 2
    n = 0
    for p in sig.parameters.values():
        if p.kind == p.VAR_POSITIONAL:
            return 1 << 30
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return n


@source("SF", "Thm. 2 (process-level barycenter: lambda-weighted scores), eq. (16)")
class WeightedField(ScoreField):
    r"""The lambda-weighted sum :math:`\sum_i \lambda_i s_i(x, t)`: the score of the
    process-level KL barycenter ([SF] Thm. 2; the drift of the backward SDE (16)).

    ``weights`` on the probability simplex (non-negative, summing to one), one per field; all
    fields share one dimension.

    Differentiable weights: a torch tensor with ``requires_grad`` (a leaf, or e.g.
    ``softmax(logits)``) stays in the graph. Evaluations on torch points use the tensor as it is
    at that moment (cast to x's dtype; on x's device or ValueError), so gradients reach it and
    in-place updates (an optimizer step) take effect; keep it on the simplex (it is checked at
    construction and whenever :attr:`weights` is read, not at every evaluation, which would
    synchronize with the device). Every term is evaluated then, zero weights included (their
    gradient is the term). A non-leaf tensor carries its graph: one backward per forward, and
    ``copy.deepcopy`` of the field fails as for any non-leaf tensor. Other weights are stored as
    floats. The host-side solvers (``sample_ode``, ``log_likelihood``) refuse such fields.
    """

    def __init__(self, fields, weights):
        fields = list(fields)
        if not fields:
            raise ValueError("fields must not be empty")
        self.fields = [as_field(f) if not isinstance(f, ScoreField) else f for f in fields]
        self._weights_t = weights if is_torch(weights) and weights.requires_grad else None
        self._weights = self._float_weights(weights)
        if self._weights.shape[0] != len(self.fields):
            raise ValueError(f"weights has {self._weights.shape[0]} entries for "
                             f"{len(self.fields)} fields")
        dims = {f.dim for f in self.fields}
        if len(dims) != 1:
            raise ValueError(f"fields have different dimensions {sorted(dims)}")
        self.dim = dims.pop()

    @staticmethod
    def _float_weights(weights) -> np.ndarray:
        w = check_simplex(weights.detach() if is_torch(weights) else weights, "weights")
        w.flags.writeable = False
        return w

    @property
    def weights(self) -> np.ndarray:
        """The weights as read-only floats (of the differentiable tensor as it is now, checked to
        lie on the simplex)."""
        if self._weights_t is not None:
            return self._float_weights(self._weights_t)
        return self._weights

    @property
    def differentiable(self) -> bool:
        """True when the weights are a tensor that requires grad."""
        return self._weights_t is not None

    def terms(self, x):
        """The (weight, field) pairs of an evaluation at points x: 0-d tensors of the
        differentiable weights (x's dtype) when x is a tensor and the weights require grad,
        else the non-zero weights as floats."""
        w = self._weights_t
        if w is not None and is_torch(x):
            if w.device != x.device:
                raise ValueError(f"weights are on device {w.device} but x is on {x.device}: move "
                                 f"the weights there (.to({str(x.device)!r}))")
            return list(zip(w.to(x.dtype).unbind(0), self.fields))
        return [(float(w), f) for w, f in zip(self.weights, self.fields) if w != 0.0]

    def _eval(self, x, t):
        out = None
        for w, f in self.terms(x):
            term = w * f._eval(x, t)
            out = term if out is None else out + term
        return out


@source("OS", "eq. (6) (perturbed score S + eps E)")
class PerturbedField(ScoreField):
    r"""The perturbed score :math:`S(x, t) + \varepsilon E(x, t)` of [OS] eq. (6): an exact
    score ``base`` plus ``eps`` times an error field ``error`` (same dimension)."""

    def __init__(self, base, error, eps):
        self.base = base if isinstance(base, ScoreField) else as_field(base)
        self.error = error if isinstance(error, ScoreField) else as_field(error)
        if self.base.dim != self.error.dim:
            raise ValueError(f"base has dim {self.base.dim} but error has dim {self.error.dim}")
        self.eps = check_real(eps, "eps")
        self.dim = self.base.dim

    def _eval(self, x, t):
        out = self.base._eval(x, t)
        if self.eps == 0.0:
            return out
        return out + self.eps * self.error._eval(x, t)


class ScaledField(ScoreField):
    r"""A field times a factor of time, :math:`c(t)\, s(x, t)`: the score errors of [OS] eq. (44)
    (E_t = c(t) grad log p_t) and of the authors' experiments are of this form.

    ``factor``: a finite real number, or a callable ``c(t)`` of forward time returning a finite
    real number (called once per distinct time of a call).
    """

    def __init__(self, base, factor):
        self.base = base if isinstance(base, ScoreField) else as_field(base)
        if callable(factor):
            self.factor = factor
        else:
            self.factor = check_real(factor, "factor")
        self.dim = self.base.dim

    def factor_at(self, t) -> np.ndarray:
        """c at forward times t (a float or a 1-D array), as a float64 array; non-finite values
        raise."""
        tt = np.atleast_1d(np.asarray(t, dtype=np.float64))
        if callable(self.factor):
            vals = np.array([float(self.factor(float(u))) for u in tt])
        else:
            vals = np.full(tt.shape, float(self.factor))
        if not np.all(np.isfinite(vals)):
            raise ValueError(f"factor(t) is not finite at t = {tt[~np.isfinite(vals)][:3]}")
        return vals

    def _eval(self, x, t):
        out = self.base._eval(x, t)
        if isinstance(t, float):
            return float(self.factor_at(t)[0]) * out
        nx = get_backend(x)
        tt = t.detach().cpu().numpy() if is_torch(t) else np.asarray(t)
        c = nx.asarray(self.factor_at(tt), like=x)
        return c[:, None] * out


def has_differentiable_weights(field) -> bool:
    """True when ``field`` (or a field it combines) is a :class:`WeightedField` whose weights
    require grad."""
    if isinstance(field, WeightedField):
        return field.differentiable or any(has_differentiable_weights(f) for f in field.fields)
    if isinstance(field, PerturbedField):
        return has_differentiable_weights(field.base) or has_differentiable_weights(field.error)
    if isinstance(field, ScaledField):
        return has_differentiable_weights(field.base)
    return False


def weighted(fields, weights) -> WeightedField:
    """``sum_i weights[i] * fields[i](x, t)``: the process-level barycenter score ([SF] Thm. 2).

    ``fields``: score fields, paths or callables with ``dim``; ``weights`` on the simplex."""
    return WeightedField(fields, weights)


def perturbed(base, error, eps) -> PerturbedField:
    """``base(x, t) + eps * error(x, t)`` ([OS] eq. (6))."""
    return PerturbedField(base, error, eps)


def scaled(base, factor) -> ScaledField:
    """``factor(t) * base(x, t)`` (``factor`` a number or a callable of forward time)."""
    return ScaledField(base, factor)


__all__ = ["ScoreField", "CallableField", "WeightedField", "PerturbedField", "ScaledField",
           "as_field", "weighted", "perturbed", "scaled"]
