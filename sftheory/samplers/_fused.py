"""The compiled route of the one-step samplers: the whole step loop in numba when the score is an
exact mixture path times a factor of time and the points are numpy arrays.

Which fields qualify (:func:`exact_form`): ``law.path(process)`` of a Gaussian, a mixture or an
empirical law, ``as_field`` of it, ``scaled(path, c)``, and ``perturbed`` / ``weighted``
combinations of those that share one path object, e.g. ``perturbed(P, scaled(P, c), eps)`` =
(1 + eps c(t)) P, the perturbed scores of [OS] eq. (44). Such a field is c_tot(t) * S_P(x, t), so
the factor folds into the step coefficient beta_k and the score is the path's.

The route is taken unless a ``callback`` needs every step's state in Python, the mixture kernels
are switched off (``use_kernels("numpy")``), or a given Brownian path would need more than
``MAX_NOISE_BYTES`` of increments in memory. Its random numbers come from per-particle streams
(see :mod:`sftheory._kernels.sampler`), not from numpy's generator: the same seed gives the same
result on this route, for any thread count, but not the same numbers as the Python loop. With a
:class:`~sftheory.samplers.BrownianPath` both routes use the same increments and agree to
rounding (tests/samplers/test_fused.py).

On torch points (CPU or CUDA, float32 or float64) the same fields, with no callback and no
``noise``, take the device-resident route (:func:`run_torch`): the whole loop on the device with
no host synchronization inside it, the inputs validated once and the output checked for
non-finite values once at the end.
"""
from __future__ import annotations

import math

import numpy as np

from .._validation import check_seed
from ..backend import kernel_impl
from ..fields import (CallableField, PerturbedField, ScaledField, WeightedField,
                      has_differentiable_weights)

MAX_NOISE_BYTES = 256 * 2**20
#: On CUDA, the torch route compiles its step (torch.compile) from this many particle-steps on.
TORCH_COMPILE_MIN_WORK = 1e8
TARGET_WORK_PER_CHUNK = 2e7  # particle x component x dim evaluations between progress updates


def exact_form(field):
    """(path, factor) with field(x, t) = factor(t) * path.score(x, t), factor a function of a
    1-D array of forward times; or None if the field is not of that form."""
    from ..models.path import MixturePath

    if isinstance(field, MixturePath):
        return field, None
    if isinstance(field, CallableField):
        fn = field.fn
        if getattr(fn, "__func__", None) is MixturePath.score and \
                isinstance(getattr(fn, "__self__", None), MixturePath):
            return fn.__self__, None
        return None
    if isinstance(field, ScaledField):
        inner = exact_form(field.base)
        if inner is None:
            return None
        return inner[0], _product(field.factor_at, inner[1])
    if isinstance(field, PerturbedField):
        parts = [(1.0, exact_form(field.base)), (field.eps, exact_form(field.error))]
    elif isinstance(field, WeightedField):
        parts = [(float(w), exact_form(f)) for w, f in zip(field.weights, field.fields)]
    else:
        return None
    if any(p is None for _, p in parts) or len({id(p[0]) for _, p in parts}) != 1:
        return None
    path = parts[0][1][0]

    def factor(t):
        total = np.zeros_like(t)
        for w, (_, f) in parts:
            if w != 0.0:
                total = total + w * (np.ones_like(t) if f is None else f(t))
        return total

    return path, factor


def _product(outer, inner):
    if inner is None:
        return outer
    return lambda t: outer(t) * inner(t)


def eligible(field, x, nx, noise, callback) -> tuple | None:
    """(path, factor) when the compiled route applies to this call, else None."""
    from .brownian import BrownianPath

    if nx.is_torch or callback is not None or kernel_impl() != "numba":
        return None
    if isinstance(noise, BrownianPath) and (math.prod(noise.shape) * 8 > MAX_NOISE_BYTES):
        return None
    form = exact_form(field)
    if form is None or form[0].dim != x.shape[1]:
        return None
    return form


def torch_eligible(field, x, nx, noise, callback) -> tuple | None:
    """(path, factor) when the device-resident torch route applies: an exact mixture field (the
    fields :func:`exact_form` accepts) on torch points, no ``callback``, and ``noise`` None or an
    :class:`~sftheory.samplers.IndexedNoise` (a Brownian path is queried on the host); not for
    empirical laws (:func:`is_empirical`: the Python loop evaluates them with their engine)."""
    from .brownian import IndexedNoise

    if not nx.is_torch or callback is not None or not (noise is None or
                                                         isinstance(noise, IndexedNoise)):
        return None
    if has_differentiable_weights(field):  # the Python loop keeps the weights' graph
        return None
    form = exact_form(field)
    if form is None or form[0].dim != x.shape[1] or is_empirical(form[0]):
        return None
    return form


def is_empirical(path) -> bool:
    """True for the path of an empirical law: its torch score runs on the law's own GEMM engine
    (:func:`sftheory.models._esf_gemm.evaluate_empirical`: bounded memory, the law's
    ``precision``), not on the dense mixture kernel, which would form (N, n) terms for n
    training points."""
    from ..models.empirical import EmpiricalParams

    return isinstance(getattr(path, "_params", None), EmpiricalParams)


def _path_coefficients(form, grid, beta):
    """(beta * factor, m_s, v_s) at the step start times grid[:-1], float64 numpy arrays."""
    path, factor = form
    t_k = np.asarray(grid[:-1], dtype=np.float64)
    if factor is not None:
        beta = beta * factor(t_k)
    m_s, v_s = path.process.conditional_many(t_k)
    m_s = np.asarray(m_s, dtype=np.float64) * np.ones_like(t_k)
    v_s = np.asarray(v_s, dtype=np.float64) * np.ones_like(t_k)
    if path._needs_positive_t and np.any(v_s <= 0):  # pragma: no cover - ts[:-1] > 0 always
        raise ValueError(f"t must be > 0: {type(path.law).__name__} has no density at t = 0 "
                         f"(v(t) = 0); end the grid before the score is needed at t = 0")
    return beta, m_s, v_s


def _cuts(grid, save, n_steps, chunk):
    """Chunk boundaries of range(n_steps), with one at every save time (snapshots are taken
    between kernel calls)."""
    return sorted({0, n_steps, *range(0, n_steps, chunk),
                   *(k for k in range(1, n_steps) if float(grid[k]) in save)})


def run_fused(form, x, grid, alpha, beta, sigma, *, seed, noise, save, disable, method,
              particle_offset: int = 0):
    """The step loop of ``_core._run`` on the compiled route; returns (x, snapshots, times).

    ``particle_offset``: the global index of x's first particle when x is a shard of a larger
    batch (:mod:`sftheory.distributed`): particle j draws from the stream of particle
    ``particle_offset + j``, so a sharded run reproduces the unsharded one bit for bit."""
    from tqdm.auto import tqdm

    from .._kernels.mixture import kernel_layout
    from .._kernels.sampler import StepLoop
    from .brownian import IndexedNoise

    path = form[0]
    beta, m_s, v_s = _path_coefficients(form, grid, beta)
    params = path._params
    layout = params._cache.get("layout")
    if layout is None:
        layout = kernel_layout(params.means, params.logw, params.lam, params.rot)
        params._cache["layout"] = layout
    key = 0
    if noise is None and np.any(sigma > 0):
        key = int(check_seed(seed).integers(0, 2**63 - 1))
    loop = StepLoop(layout, x, key, start=particle_offset)
    n, d = loop.x.shape
    n_steps = grid.shape[0] - 1
    k_count = params.means.shape[0]
    chunk = int(max(1, min(n_steps, TARGET_WORK_PER_CHUNK // max(1, n * k_count * d))))
    cuts = _cuts(grid, save, n_steps, chunk)
    shots, times = [], []
    if float(grid[0]) in save:
        shots.append(loop.x.copy())
        times.append(float(grid[0]))
    with tqdm(total=n_steps, disable=disable, desc=method, unit="step", leave=False) as bar:
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            z = None
            if isinstance(noise, IndexedNoise) and np.any(sigma[lo:hi] > 0):
                z = noise.normals_steps(particle_offset, lo, hi - lo, loop.x)
            elif noise is not None and np.any(sigma[lo:hi] > 0):
                z = np.stack([np.asarray(noise.increment(float(grid[k]), float(grid[k + 1])))
                              / math.sqrt(float(grid[k] - grid[k + 1])) for k in range(lo, hi)])
            loop.run(alpha[lo:hi], beta[lo:hi], sigma[lo:hi], m_s[lo:hi], v_s[lo:hi], z)
            bar.update(hi - lo)
            if float(grid[hi]) in save:
                shots.append(loop.x.copy())
                times.append(float(grid[hi]))
    out = loop.x.astype(x.dtype, copy=False)
    shots = [s.astype(x.dtype, copy=False) for s in shots]
    return out, shots, times


def torch_tensors(params, x):
    """The mixture's (means, logw, lam, rot) on x's device and dtype, cached on the parameters
    (one host-to-device copy per device and dtype, not one per call)."""
    from .._kernels.torch_mixture import mixture_tensors

    key = ("torch", str(x.device), str(x.dtype))
    cached = params._cache.get(key)
    if cached is None:
        cached = mixture_tensors(params, x)
        params._cache[key] = cached
    return cached


def run_torch(form, x, grid, alpha, beta, sigma, *, seed, save, disable, method, noise=None,
              particle_offset: int = 0):
    """The step loop of ``_core._run`` on torch, device-resident: the whole chain
    x <- alpha_k x + beta_k c(t_k) S_P(x, t_k) + sigma_k xi_k (Euler-Maruyama or the exponential
    integrator, whose steps share that form) through
    :func:`sftheory._kernels.torch_mixture._em_sample_mixture`, which validates once, draws the
    noise on the device and checks finiteness once at the end (FloatingPointError). Save times
    split the run into segments (one entry/exit check each). ``torch.compile`` is used on CUDA
    when particles x steps >= :data:`TORCH_COMPILE_MIN_WORK` (its compile time then pays off).
    The noise comes from one ``torch.Generator`` on x's device seeded from ``seed``: reproducible
    for a seed and device, not the numbers of the numpy or numba routes (same law); or, with
    ``noise`` an :class:`~sftheory.samplers.IndexedNoise`, its counter-based normals of global
    particles ``particle_offset + j`` (the numbers of every other route, on any device)."""
    from .._kernels.torch_mixture import _em_sample_mixture
    from ..backend import get_backend

    nx = get_backend(x)
    path = form[0]
    beta, m_s, v_s = _path_coefficients(form, grid, beta)
    tensors = torch_tensors(path._params, x)
    # a generator even when sigma = 0 (its draws are multiplied by 0): never the global stream
    gen = None if noise is not None else nx.generator(seed if np.any(sigma > 0) else 0, x)
    n_steps = grid.shape[0] - 1
    compile_ = x.device.type == "cuda" and x.shape[0] * n_steps >= TORCH_COMPILE_MIN_WORK
    cuts = _cuts(grid, save, n_steps, n_steps)
    shots, times = [], []
    if float(grid[0]) in save:
        shots.append(x.clone())
        times.append(float(grid[0]))
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        x = _em_sample_mixture(x, alpha[lo:hi], beta[lo:hi], sigma[lo:hi], m_s[lo:hi],
                               v_s[lo:hi], *tensors, generator=gen, compile=compile_,
                               indexed_noise=None if noise is None else
                               (noise.seed, particle_offset, lo))
        if float(grid[hi]) in save:
            shots.append(x.clone())
            times.append(float(grid[hi]))
    return x, shots, times
