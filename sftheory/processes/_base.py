"""Forward processes dX = f(X, t) dt + g(t) dW with linear drift f(x, t) = -kappa g(t)^2 x.

Every process sftheory knows (OU, VP, VE and Song et al.'s geometric VE) has this form with a
*constant* kappa. On the clock theta(t) = int_0^t g(s)^2 ds it becomes the time-homogeneous
Ornstein-Uhlenbeck process dX = -kappa X dtheta + dW_theta ([OS] App. B.2: the diffusion schedule
g is only a time change). So each process supplies g, theta, theta^{-1} and kappa, and every
conditional law comes from the one formula :func:`ou_transition` on that clock.
"""
from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod

import numpy as np

from .._refs import source
from .._validation import _torch_time_to_numpy, check_time, check_times, is_torch


@source("OS", "App. B.2; standard OU transition", "core.processes.moments", "core.processes.time_change")
def ou_transition(kappa: float, dtheta):
    r"""Transition coefficients of dX = -kappa X dtheta + dW over a clock increment dtheta >= 0.

    .. math::
        X_{\theta+\Delta} \mid X_\theta = x \sim \mathcal N(m x, v I),\quad
        m = e^{-\kappa\Delta},\quad v = \frac{1 - e^{-2\kappa\Delta}}{2\kappa}
        \;(\kappa > 0),\qquad v = \Delta \;(\kappa = 0).

    ``v`` uses ``expm1`` so that it keeps full relative precision for Delta -> 0 (t = 1e-8).

    Source: [OS] App. B.2 (time change to the canonical clock); [SF] eq. (2) for the OU case.
    """
    if isinstance(dtheta, float):  # one time: the same formula in scalar arithmetic (no 0-d arrays)
        if kappa == 0.0:
            return 1.0, dtheta
        try:
            return math.exp(-kappa * dtheta), -math.expm1(-2.0 * kappa * dtheta) / (2.0 * kappa)
        except OverflowError:
            return math.inf, math.inf
    dtheta = np.asarray(dtheta, dtype=np.float64)
    if kappa == 0.0:
        return np.ones_like(dtheta), dtheta.copy()
    m = np.exp(-kappa * dtheta)
    v = -np.expm1(-2.0 * kappa * dtheta) / (2.0 * kappa)
    return m, v


_TIME_FUNCTIONS = ("diffusion", "clock", "clock_inverse", "clock_increment", "drift_coef",
                   "time_change", "conditional_many", "beta")
"""Coefficients of time that follow their argument's backend (see :func:`_torch_times`)."""


def _check_time_values(a, name: str) -> None:
    """ValueError unless the times (or clock values) ``a`` are real, finite and >= 0: the
    coefficients of time are defined on [0, inf) (a NaN, inf or negative time would otherwise
    come back as NaN, inf or a value of the formula outside its domain)."""
    if isinstance(a, float):  # the common scalar case, without an array
        if not (a >= 0.0 and a != math.inf):
            raise ValueError(f"{name} must be a finite time >= 0, got {a}")
        return
    arr = np.asarray(a)
    if arr.dtype.kind == "b" or arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be real times, got dtype {arr.dtype}")
    if arr.size and not (arr.min() >= 0 and arr.max() < math.inf):  # NaN fails both
        bad = "NaN or infinite values" if not np.all(np.isfinite(arr)) else \
            f"negative values (min {arr.min()})"
        raise ValueError(f"{name} must be finite times >= 0, got {bad}")


def _torch_times(fn):
    """Let a coefficient of time ``fn(self, *times)`` take torch tensors: torch times in -> torch
    out, on the device of the first tensor argument and in its dtype (float64 for an integer
    tensor). The value is the float64 numpy evaluation rounded once to that dtype (so torch and
    numpy agree to that rounding); times are O(N) scalars, read on the host. A tensor that
    requires grad raises (sftheory does not differentiate in t). numpy and Python inputs are
    passed through untouched."""
    if getattr(fn, "_torch_times", False):
        return fn

    names = fn.__code__.co_varnames[1:fn.__code__.co_argcount]

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        like = next((a for a in (*args, *kwargs.values()) if is_torch(a)), None)
        if like is not None:
            args = [_torch_time_to_numpy(a, n) if is_torch(a) else a for n, a in zip(names, args)]
            kwargs = {k: _torch_time_to_numpy(a, k) if is_torch(a) and k in names else a
                      for k, a in kwargs.items()}
        for name, a in zip(names, args):
            _check_time_values(a, name)
        for name, a in kwargs.items():
            if name in names:  # the times, not a subclass's other options
                _check_time_values(a, name)
        if like is None:
            return fn(self, *args, **kwargs)
        out = fn(self, *args, **kwargs)
        import torch

        dtype = like.dtype if like.is_floating_point() else torch.float64

        def back(a):
            return torch.as_tensor(np.asarray(a, dtype=np.float64)).to(device=like.device,
                                                                      dtype=dtype)

        return tuple(back(a) for a in out) if isinstance(out, tuple) else back(out)

    wrapper._torch_times = True
    return wrapper


def _scalar(a):
    a = np.asarray(a)
    return a.item() if a.ndim == 0 else a


class LinearSDE(ABC):
    r"""A forward process dX_t = -kappa g(t)^2 X_t dt + g(t) dW_t in R^d (any d).

    Subclasses define :meth:`diffusion` g(t), :meth:`clock` theta(t) = \int_0^t g^2,
    :meth:`clock_inverse` and the constant :attr:`kappa`.

    Time ``t`` is forward-diffusion time throughout sftheory. The coefficients of time
    (``diffusion``, ``clock``, ``clock_inverse``, ``clock_increment``, ``drift_coef``,
    ``time_change``, ``conditional_many``, VP's ``beta``) take Python/numpy times (numpy out) or
    torch tensors (torch out, on the tensor's device and in its floating dtype: the float64 value
    rounded once); ``conditional``/``transition`` return floats for any scalar time; ``drift``
    and ``sample_transition`` return x's backend, dtype and device.
    """

    kappa: float

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in _TIME_FUNCTIONS:  # torch times in -> torch out, for every process
            fn = cls.__dict__.get(name)
            if callable(fn) and not getattr(fn, "__isabstractmethod__", False):
                setattr(cls, name, _torch_times(fn))

    # ---- what a subclass defines ------------------------------------------------------------
    @abstractmethod
    def diffusion(self, t):
        """Diffusion coefficient g(t) (scalar or array of times)."""

    @abstractmethod
    def clock(self, t):
        r"""Intrinsic clock theta(t) = \int_0^t g(s)^2 ds ([OS] App. B.2)."""

    @abstractmethod
    def clock_inverse(self, theta):
        """The time t with clock(t) = theta."""

    def clock_increment(self, s, t):
        """theta(t) - theta(s); subclasses override with a cancellation-free form."""
        return np.asarray(self.clock(t)) - np.asarray(self.clock(s))

    # ---- derived, shared by every process ---------------------------------------------------
    def drift_coef(self, t):
        """a(t) with f(x, t) = -a(t) x; a(t) = kappa g(t)^2."""
        return self.kappa * np.asarray(self.diffusion(t)) ** 2

    def drift(self, x, t):
        """f(x, t) = -kappa g(t)^2 x for points x of shape (N, d) (numpy or torch); t a scalar or
        one time per point, shape (N,)."""
        from ..backend import get_backend

        nx = get_backend(x)
        if not nx.is_torch:
            x = np.asarray(x)
            if x.dtype not in (np.float32, np.float64):
                x = x.astype(np.float64)
        if x.ndim != 2:
            raise ValueError(f"x must have shape (N, d), got {tuple(x.shape)}")
        if not nx.all_finite(x):
            raise ValueError("x contains NaN or infinite values")
        t = check_times(t, x.shape[0])
        a = self.drift_coef(t)
        if isinstance(t, float):
            return -float(a) * x
        return -nx.asarray(a, like=x)[:, None] * x

    def conditional(self, t):
        """(m(t), v(t)) with X_t | X_0 = x0 ~ N(m(t) x0, v(t) I), for a scalar time t."""
        t = check_time(t)
        with np.errstate(over="ignore"):
            m, v = ou_transition(self.kappa, float(self.clock(t)))
        return self._finite_law(float(m), float(v), t)

    def conditional_many(self, t: np.ndarray):
        """(m, v) arrays for an array of times t >= 0 (one call, no Python loop): what a path
        evaluates for one time per point."""
        t = check_times(t, np.shape(t)[0] if np.ndim(t) == 1 else -1)
        with np.errstate(over="ignore"):
            m, v = ou_transition(self.kappa, self.clock(t))
        ok = np.isfinite(m) & np.isfinite(v)
        if not np.all(ok):
            self._finite_law(math.nan, math.nan, float(t[~ok][0]))
        return m, v

    def _finite_law(self, m: float, v: float, t: float):
        if not (math.isfinite(m) and math.isfinite(v)):
            raise ValueError(f"{self!r}: the conditional variance overflows float64 at t = {t} "
                             f"(m = {m}, v = {v}); use a smaller t")
        return m, v

    def mean_coef(self, t) -> float:
        """m(t) = exp(-kappa theta(t))."""
        return self.conditional(t)[0]

    def var(self, t) -> float:
        """v(t), the conditional variance per coordinate."""
        return self.conditional(t)[1]

    def transition(self, s, t):
        """(m, v) with X_t | X_s = x ~ N(m x, v I) for 0 <= s <= t."""
        s = check_time(s, "s")
        t = check_time(t)
        if s > t:
            raise ValueError(f"need s <= t, got s={s}, t={t}")
        with np.errstate(over="ignore"):
            m, v = ou_transition(self.kappa, self.clock_increment(s, t))
        return self._finite_law(float(m), float(v), t)

    def sample_transition(self, x, t, *, s: float = 0.0, seed=None):
        """Exact draw of X_t given X_s = x (rows of x are independent particles), in x's backend,
        dtype and device; ``seed`` an int, None or a numpy Generator."""
        from ..backend import get_backend

        nx = get_backend(x)
        if not nx.is_torch:
            x = np.asarray(x)
            if x.dtype not in (np.float32, np.float64):
                x = x.astype(np.float64)
        if not nx.all_finite(x):
            raise ValueError("x contains NaN or infinite values")
        m, v = self.transition(s, t)
        return m * x + math.sqrt(v) * nx.standard_normal(x.shape, seed, like=x)

    @source("OS", "App. B.1 (Fokker-Planck equation of (1))", "core.models.fokker_planck")
    def log_fokker_planck_rhs(self, x, t, grad_logp, lap_logp):
        r"""The Fokker-Planck equation of this process written for log p_t at points x (N, d).

        .. math::
            \partial_t p = -\nabla\cdot(f p) + \tfrac{g^2}{2}\Delta p,\ f = -a(t)x
            \;\Longrightarrow\;
            \partial_t \log p = a(t)\,(d + x\cdot\nabla\log p)
            + \tfrac{g(t)^2}{2}\big(\Delta\log p + |\nabla\log p|^2\big).

        Returns the right-hand side, shape (N,). Source: [OS] App. B.1, first display.
        """
        t = check_time(t)
        a = float(self.drift_coef(t))
        g2 = float(self.diffusion(t)) ** 2
        d = x.shape[1]
        return (a * (d + (x * grad_logp).sum(axis=1))
                + 0.5 * g2 * (lap_logp + (grad_logp * grad_logp).sum(axis=1)))

    def stationary_variance(self) -> float | None:
        """Per-coordinate variance 1/(2 kappa) of the invariant law N(0, I/(2 kappa)); None if none.

        The invariant law is reached as t -> oo only if theta(t) -> oo, true for every
        process here. The law itself is ``sftheory.models.stationary_law(process, dim)``.
        """
        return None if self.kappa == 0 else 1.0 / (2.0 * self.kappa)

    @abstractmethod
    def canonical(self) -> "LinearSDE":
        """The same process on its clock theta: dX = -kappa X dtheta + dW ([OS] App. B.2).

        ``self.conditional(t) == self.canonical().conditional(self.clock(t))``.
        """

    def time_change(self, t):
        """Map forward time t to the canonical process's time theta(t); alias of :meth:`clock`."""
        return _scalar(self.clock(t))

    def __eq__(self, other):
        return type(self) is type(other) and self._params() == other._params()

    def __hash__(self):
        return hash((type(self).__name__, self._params()))

    def _params(self) -> tuple:
        return ()

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._named_params().items())
        return f"{type(self).__name__}({args})"

    def _named_params(self) -> dict:
        return {}


for _name in _TIME_FUNCTIONS:  # the base class's own coefficient functions (subclasses: above)
    _fn = LinearSDE.__dict__.get(_name)
    if callable(_fn) and not getattr(_fn, "__isabstractmethod__", False):
        setattr(LinearSDE, _name, _torch_times(_fn))
del _name, _fn
