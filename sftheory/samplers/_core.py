"""Reverse-time generative processes with diffusion h and their integrators ([OS] eq. (3), (7)).

For a forward process dX = f(X, t) dt + g(t) dW with f = -kappa g^2 x (every process of
:mod:`sftheory.processes`) and a score field S(x, t), the generative process run backwards in
forward time t (from T down to 0) is, in the paper's generative time s = T - t,

.. math:: dY_s = \\big[-f(Y_s, T - s) + \\tfrac{g^2 + h^2}{2}\\, S(Y_s, T - s)\\big]\\, ds
          + h\\, d\\bar B_s,

with h = g the usual reverse SDE and h = 0 the probability-flow ODE ([OS] eq. (3), (7)). Both
one-step integrators below take the form

.. math:: x_{k+1} = \\alpha_k x_k + \\beta_k S(x_k, t_k) + \\sigma_k \\xi_k,

with step coefficients that depend on the grid, the process and h only (computed once per run):

* Euler-Maruyama: alpha = 1 + Delta kappa g_k^2, beta = Delta (g_k^2 + h_k^2)/2,
  sigma = h_k sqrt(Delta), Delta = t_k - t_{k+1};
* exponential integrator (the linear part exact, S frozen over the step: [SF] scheme (8)/(11),
  [OS] App. H.4): alpha = exp(kappa Delta theta),
  beta = int exp(kappa (theta(u) - theta(t_{k+1}))) (g(u)^2 + h(u)^2)/2 du,
  sigma^2 = int exp(2 kappa (theta(u) - theta(t_{k+1}))) h(u)^2 du over [t_{k+1}, t_k];
  for h = g in closed form (beta = (e^{kappa Dtheta} - 1)/kappa, sigma^2 = (e^{2 kappa Dtheta}
  - 1)/(2 kappa); Dtheta for kappa = 0), otherwise by 32-point Gauss-Legendre quadrature.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from .._points import prepare_points
from ..backend import get_backend
from .._refs import source
from .._validation import check_seed, is_torch, scalar_of
from ..fields import (CallableField, PerturbedField, ScaledField, ScoreField, WeightedField,
                      as_field, has_differentiable_weights)
from ..processes import LinearSDE
from . import _fused
from .brownian import BrownianPath, IndexedNoise

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(32)


@dataclass
class SampleResult:
    """What a sampler returns: the final points ``x`` (x's backend, shape (N, d)), the snapshots
    at ``save_at`` (``snapshots[i]`` at forward time ``times[i]``), the number of score
    evaluations ``nfe`` (calls of S on the whole batch) and the ``method``."""

    x: object
    snapshots: list = field(default_factory=list)
    times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    nfe: int = 0
    method: str = ""


def check_grid(ts) -> np.ndarray:
    """Strictly decreasing, finite forward times with ts[-1] >= 0 (at least two)."""
    try:
        g = np.array(ts, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("ts must be a 1-D array of forward times") from None
    if g.ndim != 1 or g.shape[0] < 2:
        raise ValueError(f"ts must be a 1-D array of at least two times, got shape {g.shape}")
    if not np.all(np.isfinite(g)):
        raise ValueError("ts contains NaN or infinite values")
    if not np.all(np.diff(g) < 0):
        raise ValueError("ts must be strictly decreasing (forward times, from T down to the end)")
    if g[-1] < 0:
        raise ValueError(f"ts must end at a time >= 0, got {g[-1]}")
    g.flags.writeable = False
    return g


def h_values(h, process: LinearSDE, t: np.ndarray) -> np.ndarray:
    """h at forward times t: None means h = g (the reverse SDE); a number >= 0; or a callable
    h(t) of forward time returning numbers >= 0."""
    t = np.asarray(t, dtype=np.float64)
    h = scalar_of(h, "h")
    if h is None:
        return np.asarray(process.diffusion(t), dtype=np.float64) * np.ones_like(t)
    if callable(h):
        vals = np.array([float(h(float(u))) for u in t.ravel()]).reshape(t.shape)
    elif isinstance(h, numbers.Real) and not isinstance(h, bool):
        vals = np.full(t.shape, float(h))
    else:
        raise ValueError(f"h must be None (h = g), a number >= 0 or a callable h(t), got {h!r}")
    if not np.all(np.isfinite(vals)) or np.any(vals < 0):
        raise ValueError(f"h must be finite and >= 0, got values in [{vals.min()}, {vals.max()}]")
    return vals


@source("OS", "eq. (3), (7): reverse process with diffusion h; Euler-Maruyama")
def euler_maruyama_coefficients(process: LinearSDE, ts: np.ndarray, h):
    """(alpha, beta, sigma) of each Euler-Maruyama step of the generative process."""
    t_k = ts[:-1]
    dt = ts[:-1] - ts[1:]
    g2 = np.asarray(process.diffusion(t_k), dtype=np.float64) ** 2 * np.ones_like(t_k)
    hk = h_values(h, process, t_k)
    return 1.0 + dt * process.kappa * g2, 0.5 * dt * (g2 + hk * hk), hk * np.sqrt(dt)


@source("SF", "scheme (8)/(11); [OS] App. H.4 (exponential integrator)")
def exponential_coefficients(process: LinearSDE, ts: np.ndarray, h):
    """(alpha, beta, sigma) of each exponential-integrator step: the linear drift integrated
    exactly, the score frozen at the step's start, the noise's exact variance."""
    kappa = process.kappa
    lo, hi = ts[1:], ts[:-1]
    dtheta = np.asarray(process.clock_increment(lo, hi), dtype=np.float64)
    alpha = np.exp(kappa * dtheta)
    if h is None:  # h = g: the integrals in closed form
        if kappa == 0.0:
            return alpha, dtheta.copy(), np.sqrt(dtheta)
        return alpha, np.expm1(kappa * dtheta) / kappa, np.sqrt(np.expm1(2 * kappa * dtheta) / (2 * kappa))
    half = 0.5 * (hi - lo)
    u = lo[:, None] + half[:, None] * (_GL_NODES[None, :] + 1.0)  # (K, 32) nodes in [lo, hi]
    w = half[:, None] * _GL_WEIGHTS[None, :]
    g2 = np.asarray(process.diffusion(u), dtype=np.float64) ** 2 * np.ones_like(u)
    hu = h_values(h, process, u)
    growth = np.exp(kappa * np.asarray(process.clock_increment(lo[:, None] + 0 * u, u), dtype=np.float64))
    beta = np.sum(w * growth * 0.5 * (g2 + hu * hu), axis=1)
    var = np.sum(w * growth * growth * hu * hu, axis=1)
    return alpha, beta, np.sqrt(var)


def _prepare(score, x, ts, process, save_at):
    if not isinstance(process, LinearSDE):
        raise ValueError(f"process must be a sftheory.processes process, got {process!r}")
    field_ = as_field(score) if isinstance(score, ScoreField) or hasattr(score, "dim") else None
    if field_ is None:
        raise ValueError("score must be a score field with a dim (sftheory.fields.as_field(fn, dim)"
                         " wraps a plain callable), an exact path, or a ScoreField")
    grid = check_grid(ts)
    x2, nx, kind = prepare_points(x, field_.dim)
    if kind == "0d":
        raise ValueError("x must be an array of points of shape (N, d)")
    save = np.zeros(0) if save_at is None else np.atleast_1d(np.asarray(save_at, dtype=np.float64))
    missing = save[~np.isin(save, grid)]
    if missing.size:
        raise ValueError(f"save_at times must be times of the grid ts; not in ts: {missing[:5]}")
    return field_, grid, x2, nx, kind, set(save.tolist())


def _torch_score(field, x, t):
    """field(x, t) on torch points without host synchronization: the Python loop's evaluator on
    torch. x was validated once at entry, so the fields' per-call checks of x (and of the output's
    finiteness, a sync each) are skipped; outputs are checked for backend, dtype and shape
    (metadata, no sync), and finiteness once at the end of the run. Exact mixture paths are
    evaluated by :func:`sftheory._kernels.torch_mixture.mixture_eval` with overflow "ignore";
    combinators recurse; other fields fall back to their own ``_eval``."""
    from .._kernels.torch_mixture import mixture_eval
    from ..models.path import MixturePath

    if isinstance(field, CallableField):
        fn = field.fn
        if getattr(fn, "__func__", None) is MixturePath.score and \
                isinstance(getattr(fn, "__self__", None), MixturePath):
            return _torch_score(fn.__self__, x, t)
        out = fn(x, t)
        if not is_torch(out) or out.dtype != x.dtype or tuple(out.shape) != tuple(x.shape) \
                or out.device != x.device:
            raise ValueError(f"field {field.name} returned {type(out).__name__} "
                             f"{getattr(out, 'dtype', '')} {tuple(getattr(out, 'shape', ()))} for "
                             f"x {x.dtype} {tuple(x.shape)} on {x.device}: return x's backend, "
                             f"dtype, device and shape")
        return out
    if isinstance(field, MixturePath):
        m, v = field.process.conditional(t)
        if field._needs_positive_t and v <= 0:  # pragma: no cover - ts[:-1] > 0 always
            raise ValueError(f"t must be > 0: {type(field.law).__name__} has no density at t = 0")
        if _fused.is_empirical(field):  # the law's GEMM engine and precision, bounded memory
            # (finiteness is checked by the loop; form "auto" on an accelerator still decides
            # the form per query on the host, one sync a step: see evaluate_empirical)
            return field._params.evaluate(x, get_backend(x), float(m), float(v),
                                          posterior=False, check_finite=False)[1]
        return mixture_eval(x, float(m), float(v), *_fused.torch_tensors(field._params, x),
                            overflow="ignore")[1]
    if isinstance(field, WeightedField):
        out = None
        for w, f in field.terms(x):
            term = w * _torch_score(f, x, t)
            out = term if out is None else out + term
        return out
    if isinstance(field, PerturbedField):
        out = _torch_score(field.base, x, t)
        return out if field.eps == 0.0 else out + field.eps * _torch_score(field.error, x, t)
    if isinstance(field, ScaledField):
        return float(field.factor_at(t)[0]) * _torch_score(field.base, x, t)
    return field._eval(x, t)


def refuse_graphs(x, score, name: str, solver: str) -> None:
    """ValueError when the host-side ODE solvers (scipy's solve_ivp) would silently drop an
    autograd graph: points ``x`` that require grad, or a score field whose weights do."""
    if getattr(x, "requires_grad", False):
        raise ValueError(f"{name} requires grad, but {solver} integrates with scipy's solve_ivp "
                         f"on the host, which cannot carry {name}'s autograd graph: pass "
                         f"{name}.detach(), or use sample_euler_maruyama / sample_exponential "
                         f"(differentiable on torch)")
    if isinstance(score, ScoreField) and has_differentiable_weights(score):
        raise ValueError(f"score has weights that require grad, but {solver} integrates with "
                         f"scipy's solve_ivp on the host, which cannot carry their graph: detach "
                         f"the weights, or use sample_euler_maruyama / sample_exponential")


def _nonfinite(method):
    return FloatingPointError(f"{method}: the final points contain NaN or infinite values "
                              f"(score field or step sizes?)")


def _run(method, coefficients, score, x, ts, process, *, h, seed, noise, callback, save_at,
         disable, particle_offset=None):
    """The one-step loop x <- alpha x + beta S(x, t_k) + sigma xi on one of three routes: the
    compiled numba loop (exact mixture field, numpy points), the device-resident torch loop (exact
    mixture field, torch points, no callback, no Brownian path), or the Python loop. Inputs are
    validated once here; on torch the Python loop does no host synchronization per step and the
    finiteness of every step's score and of the final points is checked once at the end.

    ``noise``: None (the route's own stream from ``seed``), a :class:`BrownianPath`, or an
    :class:`IndexedNoise` (step k's normal of particle i a function of (seed, i, k): every route
    draws the same numbers).

    ``particle_offset``: None for a whole batch; an int when x is a shard of a larger batch
    whose first particle has that global index (:mod:`sftheory.distributed`). A shard's noise is
    keyed by global particle index, so the gathered shards equal the one-process run: the numba
    route draws particle j's noise from its per-particle stream ``particle_offset + j`` (bit for
    bit the unsharded ``seed`` run); the other routes, given no ``noise``, use
    ``IndexedNoise(seed)`` rows ``particle_offset + j`` (the unsharded run with
    ``noise=IndexedNoise(seed)``, to rounding)."""
    from tqdm.auto import tqdm

    field_, grid, x, nx, kind, save = _prepare(score, x, ts, process, save_at)
    alpha, beta, sigma = coefficients(process, grid, h)
    if noise is not None and not isinstance(noise, (BrownianPath, IndexedNoise)):
        raise ValueError(f"noise must be a BrownianPath, an IndexedNoise or None, got "
                         f"{type(noise).__name__}")
    if isinstance(noise, BrownianPath) and noise.shape != tuple(x.shape):
        raise ValueError(f"noise has shape {noise.shape}, x has shape {tuple(x.shape)}")
    sharded = particle_offset is not None
    offset = int(particle_offset) if sharded else 0
    if sharded and isinstance(noise, BrownianPath):
        raise ValueError("a shard cannot use a BrownianPath (its noise is not indexed by "
                         "particle); give an IndexedNoise or None")
    if sharded or isinstance(noise, IndexedNoise):  # counters must not wrap on any route
        from .._kernels.threefry import check_counter_room

        check_counter_room(offset + x.shape[0], grid.shape[0] - 1, x.shape[1])
    form = _fused.eligible(field_, x, nx, noise, callback)
    if form is not None:  # exact mixture score on numpy: the whole loop compiled
        out, shots, times = _fused.run_fused(form, x, grid, alpha, beta, sigma, seed=seed,
                                             noise=noise, save=save, disable=disable,
                                             method=method, particle_offset=offset)
        if not np.all(np.isfinite(out)):
            raise _nonfinite(method)
        out = out[:, 0] if kind == "1d" else out
        return SampleResult(out, shots, np.array(times), grid.shape[0] - 1, method)
    if sharded and noise is None:  # a shard off the numba route: noise by global index
        noise = IndexedNoise(_shard_seed_int(seed))
    form = _fused.torch_eligible(field_, x, nx, noise, callback)
    if form is not None:  # exact mixture score on torch: the whole loop on the device
        try:
            out, shots, times = _fused.run_torch(form, x, grid, alpha, beta, sigma, seed=seed,
                                                 save=save, disable=disable, method=method,
                                                 noise=noise, particle_offset=offset)
        except FloatingPointError:
            raise _nonfinite(method) from None
        out = out[:, 0] if kind == "1d" else out
        return SampleResult(out, shots, np.array(times), grid.shape[0] - 1, method)
    gen = nx.generator(seed, x) if noise is None and np.any(sigma > 0) else None
    x = nx.copy(x)  # never the caller's array
    shots, times = [], []
    if float(grid[0]) in save:
        shots.append(nx.copy(x))
        times.append(float(grid[0]))
    nfe = 0
    finite = None  # torch: a device flag, all steps' scores finite (read once at the end)
    steps = range(grid.shape[0] - 1)
    for k in tqdm(steps, disable=disable, desc=method, unit="step", leave=False):
        t = float(grid[k])
        if nx.is_torch:
            s = _torch_score(field_, x, t)
            ok = nx.torch.isfinite(s).all()
            finite = ok if finite is None else finite & ok
        else:
            s = field_._eval(x, t)
        nfe += 1
        if callback is not None:
            callback({"i": k, "t": t, "x": x, "score": s})
        new = float(alpha[k]) * x + float(beta[k]) * s
        if sigma[k] > 0:
            if isinstance(noise, IndexedNoise):
                xi = noise.normals(offset, k, x)
            elif noise is not None:
                dw = noise.increment(t, float(grid[k + 1])) / math.sqrt(t - float(grid[k + 1]))
                xi = nx.asarray(dw, like=x)
            else:
                xi = nx.randn(gen, x.shape, like=x)
            new = new + float(sigma[k]) * xi
        x = new
        if float(grid[k + 1]) in save:
            shots.append(nx.copy(x))
            times.append(float(grid[k + 1]))
    if finite is not None and not bool(finite):
        raise FloatingPointError(f"{method}: the score field returned NaN or infinite values at "
                                 f"some step (checked once, at the end of the run)")
    if not nx.all_finite(x):
        raise _nonfinite(method)
    out = x[:, 0] if kind == "1d" else x
    return SampleResult(out, shots, np.array(times), nfe, method)


def _shard_seed_int(seed) -> int:
    """A shard's seed must be an integer the ranks agree on (no Generator: its state is not
    shared)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"a sharded run needs an integer seed >= 0 (the same on every rank), "
                         f"got {seed!r}")
    return int(seed)


def run_shard(sampler, score, x, ts, process, *, particle_offset: int, h=None, seed=None,
              noise=None, save_at=None, disable=None) -> SampleResult:
    """``sampler`` (:data:`sample_euler_maruyama` or :data:`sample_exponential`) on a shard x of
    a larger batch whose first particle has global index ``particle_offset`` (see :func:`_run`):
    noise by global particle index, so the gathered shards equal the one-process run. No
    callback and no Brownian path (their noise is not indexed by particle); ``noise`` may be an
    :class:`IndexedNoise` (default on the non-numba routes: ``IndexedNoise(seed)``)."""
    table = {"sample_euler_maruyama": ("euler_maruyama", euler_maruyama_coefficients),
             "sample_exponential": ("exponential", exponential_coefficients)}
    if not isinstance(sampler, _Integrator) or sampler.__name__ not in table:
        raise ValueError(f"sampler must be sample_euler_maruyama or sample_exponential, got "
                         f"{sampler!r}")
    if isinstance(particle_offset, (bool, np.bool_)) or \
            not isinstance(particle_offset, numbers.Integral) or particle_offset < 0:
        raise ValueError(f"particle_offset must be an integer >= 0, got {particle_offset!r}")
    method, coefficients = table[sampler.__name__]
    if noise is not None and not isinstance(noise, IndexedNoise):
        raise ValueError(f"a shard's noise must be an IndexedNoise or None, got "
                         f"{type(noise).__name__}")
    return _run(method, coefficients, score, x, ts, process, h=h, seed=seed, noise=noise,
                callback=None, save_at=save_at, disable=disable,
                particle_offset=int(particle_offset))


class _Integrator:
    """A sampler with declared convergence orders (diffrax/torchsde style)."""

    def __init__(self, fn, name, weak_order, strong_order):
        self.fn, self.__name__, self.weak_order, self.strong_order = fn, name, weak_order, strong_order
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def __repr__(self):
        return f"<sampler {self.__name__}: weak order {self.weak_order}, strong order {self.strong_order}>"


def _euler_maruyama(score, x, ts, process, *, h=None, seed=None, noise=None, callback=None,
                    save_at=None, disable=None) -> SampleResult:
    """Euler-Maruyama for the generative process with diffusion h ([OS] eq. (3), (7)).

    ``score`` a score field s(x, t) (forward time), ``x`` (N, d) points at forward time ts[0] (not
    modified), ``ts`` strictly decreasing forward times ending >= 0, ``process`` the forward
    process, ``h`` None (h = g), a number or a callable h(t) of forward time; ``seed`` an int or
    numpy Generator, or ``noise`` a :class:`BrownianPath` (shared between runs at different step
    sizes) or an :class:`IndexedNoise` (the same normals on every route: numba, torch CPU/CUDA,
    Python loop; and under sharding); ``callback`` gets {"i", "t", "x", "score"} at each step; ``save_at`` times of ``ts``
    to keep; ``disable`` turns the progress bar off. Noise is additive, so the strong order is 1.
    """
    return _run("euler_maruyama", euler_maruyama_coefficients, score, x, ts, process, h=h,
                seed=seed, noise=noise, callback=callback, save_at=save_at, disable=disable)


def _exponential(score, x, ts, process, *, h=None, seed=None, noise=None, callback=None,
                 save_at=None, disable=None) -> SampleResult:
    """Exponential integrator ([SF] scheme (8)/(11), [OS] App. H.4): the linear part exactly, the
    score frozen over each step, the noise with its exact variance (with ``noise`` given, the
    step's Brownian increment rescaled to that variance). Same signature as Euler-Maruyama."""
    return _run("exponential", exponential_coefficients, score, x, ts, process, h=h, seed=seed,
                noise=noise, callback=callback, save_at=save_at, disable=disable)


sample_euler_maruyama = _Integrator(_euler_maruyama, "sample_euler_maruyama", 1.0, 1.0)
sample_exponential = _Integrator(_exponential, "sample_exponential", 1.0, 1.0)


def _ode(score, x, ts, process, *, h=0.0, seed=None, noise=None, callback=None, save_at=None,
         disable=None, rtol: float = 1e-8, atol: float = 1e-10, method: str = "DOP853"):
    """The probability-flow ODE (h = 0) by scipy's adaptive ``solve_ivp`` (DOP853 by default)
    on the flattened batch, reported at the times of ``ts``. torch inputs are solved in float64
    numpy and returned in x's backend. ``seed``/``noise`` are accepted for the common signature
    and unused (the ODE is deterministic); ``callback`` gets each reported time."""
    from scipy.integrate import solve_ivp

    if not (isinstance(h, numbers.Real) and not isinstance(h, bool) and float(h) == 0.0):
        raise ValueError(f"sample_ode integrates the probability-flow ODE: h must be 0, got {h!r}")
    if noise is not None:
        raise ValueError("sample_ode is deterministic: noise must be None")
    refuse_graphs(x, score, "x", "sample_ode")
    field_, grid, x, nx, kind, save = _prepare(score, x, ts, process, save_at)
    for name, v in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(v, numbers.Real) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    n, d = x.shape
    like = x
    kappa = process.kappa
    count = [0]

    def rhs(t, y):
        z = nx.asarray(y.reshape(n, d), like=like)
        s = np.asarray(nx.to_numpy(field_._eval(z, float(t))), dtype=np.float64).reshape(-1)
        count[0] += 1
        g2 = float(process.diffusion(t)) ** 2
        # d/dt (forward time) of the ODE dY/ds = kappa g^2 Y + g^2/2 S, s = T - t
        return -(kappa * g2 * y + 0.5 * g2 * s)

    y0 = np.asarray(nx.to_numpy(x), dtype=np.float64).reshape(-1)
    sol = solve_ivp(rhs, (float(grid[0]), float(grid[-1])), y0, method=method, rtol=rtol,
                    atol=atol, t_eval=grid, dense_output=False)
    if not sol.success:
        raise RuntimeError(f"solve_ivp failed: {sol.message}")
    shots, times = [], []
    for i, t in enumerate(grid):
        xi = nx.asarray(sol.y[:, i].reshape(n, d), like=like)
        if callback is not None:
            callback({"i": i, "t": float(t), "x": xi, "score": None})
        if float(t) in save:
            shots.append(xi)
            times.append(float(t))
    out = nx.asarray(sol.y[:, -1].reshape(n, d), like=like)
    if not nx.all_finite(out):
        raise FloatingPointError("sample_ode: the final points contain NaN or infinite values")
    out = out[:, 0] if kind == "1d" else out
    return SampleResult(out, shots, np.array(times), count[0], f"ode ({method})")


sample_ode = _Integrator(_ode, "sample_ode", 5.0, 5.0)  # DOP853 is order 8; the default is 5 or better


def initial_points(n: int, process: LinearSDE, T: float, *, law=None, dim: int | None = None,
                   prior=None, seed=None, device=None, dtype=None):
    """Start points at forward time T: draws of the exact p_T of ``law`` (``law.marginal(process,
    T)``), of a given ``prior`` (anything with ``sample(n, seed=)``), or of the stationary Gaussian
    N(0, I / (2 kappa)) in dimension ``dim`` (the usual practical choice).

    numpy float64 (n, d) by default; with ``device`` and/or ``dtype`` (torch.float32 or
    torch.float64) a torch tensor there: the same draws (made on the host from ``seed``, then
    one copy), so a numpy and a torch run start from the same points."""
    from ..models import stationary_law

    rng = check_seed(seed)
    if sum(a is not None for a in (law, prior, dim)) != 1:
        raise ValueError("give exactly one of law (exact p_T), prior, or dim (stationary Gaussian)")
    want_torch = device is not None or dtype is not None
    if want_torch:
        import torch

        dtype = torch.float64 if dtype is None else dtype
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
        try:
            device = torch.device("cpu" if device is None else device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"device must be a torch device, got {device!r} ({exc})") from None
    if law is not None:
        x = law.marginal(process, T).sample(n, seed=rng)
    elif prior is not None:
        x = prior.sample(n, seed=rng)
    else:
        x = stationary_law(process, dim).sample(n, seed=rng)
    if want_torch:
        return torch.as_tensor(np.asarray(x, dtype=np.float64)).to(device=device, dtype=dtype)
    return x
