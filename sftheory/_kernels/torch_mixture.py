r"""Torch kernels for Gaussian-mixture scores at scale: the math of :mod:`sftheory._kernels.mixture`
(the numba ``iso`` / ``full`` kernels, whose reference formula is
:func:`sftheory.models._formulas.mixture_path_eval`) written as (N, K) tensor expressions, so that
``torch.compile`` (inductor; Triton on CUDA, C++ on CPU) fuses one call into a few kernels, and a
device-resident Euler-Maruyama loop that never synchronizes with the host.

Per point x (d,) and one time (m, v), with :math:`s_{ka} = m^2\lambda_{ka} + v` and
:math:`y_k = Q_k^\top(x - m\mu_k)` (``full``; :math:`y_k = x - m\mu_k`, :math:`s_k` scalar for
``iso``) -- [SF] Sec. 2 (mixture scores), [SM] eq. (5)-(6), (14):

.. math::
    \ell_k = \log w_k - \tfrac12\sum_a\log s_{ka} - \tfrac d2\log 2\pi - \tfrac12\sum_a y_{ka}^2/s_{ka},
    \qquad \log p = \max_k\ell_k + \log\sum_k e^{\ell_k - \max\ell},

    \nabla\log p = \sum_k r_k\,Q_k(-y_k/s_k),\qquad
    E[X_0\mid X_t = x] = \sum_k r_k\,(\mu_k + Q_k(m\lambda_k/s_k)\,y_k),

:math:`r_k = e^{\ell_k-\max\ell}/\sum_j e^{\ell_j - \max\ell}` (weights relative to the largest term,
normalized by their own sum, as the numba kernels do). For small d the sums over a, b are unrolled
Python loops over (N, K) tensors (no (N, K, d) temporaries; inductor fuses them); for d >
:data:`UNROLL_MAX_DIM` they are einsums.

Rows whose every term overflows (|x| ~ 1e155) get log p = -inf and the average of the nearest
component(s) by scaled Mahalanobis distance when ``overflow="check"`` (one host sync per call, the
eager API); with ``overflow="ignore"`` (the sampler loop, the compiled kernel) such rows come out
non-finite and the sampler's single end-of-run check raises.

Source: [SF] Sec. 2; [SM] eq. (5)-(6), (14); [OS] eq. (3), (7) (Euler-Maruyama of the reverse SDE).
"""
from __future__ import annotations

import math

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
#: Dimension up to which the sums over coordinates are unrolled (fusable pointwise (N, K) ops).
UNROLL_MAX_DIM = 8


def mixture_tensors(params, like):
    """(means (K, d), logw (K,), lam (K,) or (K, d), rot (K, d, d) = Q_k^T or None) as tensors in
    ``like``'s dtype and device, from a :class:`~sftheory.models.base.MixtureParams`-like object
    (attributes ``means``, ``logw``, ``lam``, ``rot`` as numpy arrays)."""
    import numpy as np
    import torch

    def conv(a):
        if a is None:
            return None
        return torch.from_numpy(np.array(a, dtype=np.float64, order="C", copy=True)).to(
            device=like.device, dtype=like.dtype)
    return tuple(conv(getattr(params, n)) for n in ("means", "logw", "lam", "rot"))


def _col(t):
    """m or v: a 0-d tensor stays 0-d; an (N,) tensor becomes (N, 1) (one time per point)."""
    return t if t.ndim == 0 else t.reshape(-1, 1)


def mixture_eval_core(x, m, v, means, logw, lam, rot, posterior: bool):
    """(log p (N,), score or posterior mean (N, d), max term (N,)) -- the formula of the module
    docstring, no overflow handling (a row whose every term overflows comes out -inf / NaN).

    ``x`` (N, d); ``m``, ``v`` 0-d or (N,) tensors of x's dtype and device; ``means`` (K, d),
    ``logw`` (K,), ``lam`` (K,) with ``rot`` None (iso) or ``lam`` (K, d) with ``rot`` (K, d, d).
    Pure tensor code: the eager function and the body of the compiled one."""
    import torch

    d = x.shape[1]
    mm = _col(m)
    vv = _col(v)
    m2 = mm * mm
    if rot is None:  # isotropic: s_k (.., K)
        s = m2 * lam + vv
        inv = 1.0 / s
        lnorm = logw - d * (0.5 * torch.log(s) + HALF_LOG_2PI)
        if d <= UNROLL_MAX_DIM:
            r = [x[:, b:b + 1] - mm * means[:, b] for b in range(d)]  # (N, K) each
            q = r[0] * r[0]
            for b in range(1, d):
                q = q + r[b] * r[b]
        else:
            rr = x[:, None, :] - (mm[..., None] if mm.ndim else mm) * means[None]
            q = (rr * rr).sum(-1)
        ell = lnorm - 0.5 * q * inv
        coef = (mm * lam) * inv if posterior else -inv
    else:  # full: s (.., K, d)
        s = (m2[..., None] if m2.ndim else m2) * lam + (vv[..., None] if vv.ndim else vv)
        inv = 1.0 / s
        lnorm = logw - 0.5 * torch.log(s).sum(-1) - d * HALF_LOG_2PI
        coef = ((mm[..., None] if mm.ndim else mm) * lam) * inv if posterior else -inv
        if d <= UNROLL_MAX_DIM:
            r = [x[:, b:b + 1] - mm * means[:, b] for b in range(d)]
            y = []
            for a in range(d):
                ya = rot[:, a, 0] * r[0]
                for b in range(1, d):
                    ya = ya + rot[:, a, b] * r[b]
                y.append(ya)
            inv_a = [inv[..., a] for a in range(d)]
            q = y[0] * y[0] * inv_a[0]
            for a in range(1, d):
                q = q + y[a] * y[a] * inv_a[a]
        else:
            rr = x[:, None, :] - (mm[..., None] if mm.ndim else mm) * means[None]
            yy = torch.einsum("kab,nkb->nka", rot, rr)
            q = (yy * yy * inv).sum(-1)
        ell = lnorm - 0.5 * q
    mx = torch.amax(ell, dim=1)
    w = torch.exp(ell - mx[:, None])
    tot = w.sum(1)
    logp = mx + torch.log(tot)
    outs = []
    if rot is None:
        if d <= UNROLL_MAX_DIM:
            for b in range(d):
                g = coef * r[b]
                if posterior:
                    g = g + means[:, b]
                outs.append(torch.where(w > 0, w * g, torch.zeros_like(g)).sum(1))
            vec = torch.stack(outs, 1)
        else:
            g = coef[..., None] * rr
            if posterior:
                g = g + means[None]
            vec = torch.einsum("nk,nkd->nd", w, torch.where((w > 0)[..., None], g,
                                                            torch.zeros_like(g)))
    else:
        if d <= UNROLL_MAX_DIM:
            u = [coef[..., a] * y[a] for a in range(d)]
            for b in range(d):
                g = rot[:, 0, b] * u[0]
                for a in range(1, d):
                    g = g + rot[:, a, b] * u[a]
                if posterior:
                    g = g + means[:, b]
                outs.append(torch.where(w > 0, w * g, torch.zeros_like(g)).sum(1))
            vec = torch.stack(outs, 1)
        else:
            g = torch.einsum("kab,nka->nkb", rot, coef * yy)
            if posterior:
                g = g + means[None]
            vec = torch.einsum("nk,nkd->nd", w, torch.where((w > 0)[..., None], g,
                                                            torch.zeros_like(g)))
    return logp, vec / tot[:, None], mx


def _overflow_rows(x, m, v, means, lam, rot, posterior, rows):
    """The nearest component(s) by scaled Mahalanobis distance (ties shared) for rows whose every
    term overflowed -- the limit of the exact value, as the numba kernels' fallback."""
    import torch

    xr = x[rows]
    mr = m if m.ndim == 0 else m[rows]
    vr = v if v.ndim == 0 else v[rows]
    mm = mr if mr.ndim == 0 else mr[:, None, None]
    vv = vr if vr.ndim == 0 else vr[:, None, None]
    diff = xr[:, None, :] - mm * means[None]  # (R, K, d)
    if rot is None:
        s = mm * mm * lam[None, :, None] + vv  # (R or 1, K, 1)
        y = diff
    else:
        s = mm * mm * lam[None] + vv
        y = torch.einsum("kab,rkb->rka", rot, diff)
    inv = 1.0 / s
    ymax = torch.amax(torch.abs(y), dim=2, keepdim=True)
    ys = y / ymax
    lq = 2.0 * torch.log(ymax[..., 0]) + torch.log((ys * ys * inv).sum(-1))
    best = (lq == torch.amin(lq, dim=1, keepdim=True)).to(x.dtype)
    lamb = lam[None, :, None] if rot is None else lam[None]
    coef = (mm * lamb) * inv if posterior else -inv
    u = coef * y
    g = torch.einsum("kab,rka->rkb", rot, u) if rot is not None else u
    if posterior:
        g = g + means[None]
    g = torch.where(best[..., None] > 0, g, torch.zeros_like(g))
    return (best[..., None] * g).sum(1) / best.sum(1, keepdim=True)


def _as_time(t, x, name):
    import torch

    if isinstance(t, torch.Tensor):
        if t.device != x.device or t.dtype != x.dtype:
            raise ValueError(f"{name} must be on x's device and dtype ({x.device}, {x.dtype}), got "
                             f"{t.device}, {t.dtype}")
        if t.ndim not in (0, 1) or (t.ndim == 1 and t.shape[0] != x.shape[0]):
            raise ValueError(f"{name} must be a float, a 0-d tensor or an (N,) tensor, got shape "
                             f"{tuple(t.shape)}")
        return t
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
        raise ValueError(f"{name} must be a finite float or a tensor, got {t!r}")
    return torch.tensor(float(t), dtype=x.dtype, device=x.device)


def check_mixture_inputs(x, means, logw, lam, rot):
    """Shapes, dtypes and devices of a call (clear errors at the boundary, no host sync)."""
    import torch

    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        raise ValueError(f"x must be a torch tensor of shape (N, d), got {type(x).__name__} "
                         f"{tuple(getattr(x, 'shape', ()))}")
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"x must be float32 or float64, got {x.dtype}")
    d = x.shape[1]
    for name, t in (("means", means), ("logw", logw), ("lam", lam), ("rot", rot)):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch tensor, got {type(t).__name__}")
        if t.device != x.device or t.dtype != x.dtype:
            raise ValueError(f"{name} is on {t.device} / {t.dtype} but x is on {x.device} / "
                             f"{x.dtype}: pass the mixture tensors on x's device and dtype "
                             f"(mixture_tensors(params, like=x))")
    k = means.shape[0]
    if means.shape != (k, d) or logw.shape != (k,):
        raise ValueError(f"means must be (K, {d}) and logw (K,), got {tuple(means.shape)}, "
                         f"{tuple(logw.shape)}")
    if rot is None and lam.shape != (k,):
        raise ValueError(f"lam must be (K,) = ({k},) for isotropic components, got "
                         f"{tuple(lam.shape)}")
    if rot is not None and (lam.shape != (k, d) or rot.shape != (k, d, d)):
        raise ValueError(f"full components need lam ({k}, {d}) and rot ({k}, {d}, {d}), got "
                         f"{tuple(lam.shape)}, {tuple(rot.shape)}")


def mixture_eval(x, m, v, means, logw, lam, rot, posterior: bool = False, *,
                 overflow: str = "check", compiled=None):
    """(log p (N,), score or posterior mean (N, d)) of the diffused mixture at torch points ``x``
    (N, d), any device, float32 or float64 (arithmetic in x's dtype). ``m``, ``v``: floats, 0-d or
    (N,) tensors. ``compiled``: a :class:`CompiledMixture` to run instead of the eager core.
    ``overflow``: "check" (rows whose every term overflows get the nearest-component limit; one
    host sync) or "ignore" (no sync; such rows are non-finite)."""
    if overflow not in ("check", "ignore"):
        raise ValueError(f"overflow must be 'check' or 'ignore', got {overflow!r}")
    check_mixture_inputs(x, means, logw, lam, rot)
    m = _as_time(m, x, "m")
    v = _as_time(v, x, "v")
    core = mixture_eval_core if compiled is None else compiled
    logp, vec, mx = core(x, m, v, means, logw, lam, rot, posterior)
    if overflow == "check":
        import torch

        bad = ~torch.isfinite(mx)
        if bool(bad.any()):
            rows = torch.nonzero(bad)[:, 0]
            vec = vec.clone()
            vec[rows] = _overflow_rows(x, m, v, means, lam, rot, posterior, rows)
            logp = torch.where(bad, torch.full_like(logp, -math.inf), logp)
    return logp, vec


class CompiledMixture:
    """:func:`mixture_eval_core` through ``torch.compile`` (inductor), falling back to the eager
    core when compilation fails: ``reason`` then records why (None while compiled works)."""

    def __init__(self, **compile_kwargs):
        import torch

        self.reason = None
        self._eager = False
        try:
            self._fn = torch.compile(mixture_eval_core, **compile_kwargs)
        except Exception as exc:  # noqa: BLE001 -- any compile failure falls back, recorded
            self._fn, self._eager = mixture_eval_core, True
            self.reason = f"torch.compile failed: {type(exc).__name__}: {exc}"

    @property
    def is_compiled(self) -> bool:
        return not self._eager

    def __call__(self, *args):
        if self._eager:
            return mixture_eval_core(*args)
        try:
            return self._fn(*args)
        except Exception as exc:  # noqa: BLE001 -- inductor/Triton failure at first call
            self._fn, self._eager = mixture_eval_core, True
            self.reason = f"compiled call failed: {type(exc).__name__}: {str(exc)[:500]}"
            return mixture_eval_core(*args)


# ---- device-resident Euler-Maruyama -------------------------------------------------------------
def _em_step(x, z, row, means, logw, lam, rot):
    """One Euler-Maruyama step of the generative SDE with the exact mixture score ([OS] eq. (3),
    (7); coefficients of :func:`sftheory.samplers._core.euler_maruyama_coefficients`):
    x <- alpha x + beta score(x; m, v) + sigma z, with ``row`` = [alpha, beta, sigma, m, v] a
    (5,) tensor on x's device (a fresh tensor each step: a compiled step sees the same input
    layout every time and never recompiles)."""
    alpha, beta, sigma, m, v = row[0], row[1], row[2], row[3], row[4]
    _, score, _ = mixture_eval_core(x, m, v, means, logw, lam, rot, False)
    return alpha * x + beta * score + sigma * z


class _Stepper:
    def __init__(self, compile_: bool, **kw):
        import torch

        self.reason = None
        self.fn = _em_step
        self.compiled = False
        if compile_:
            try:
                self.fn = torch.compile(_em_step, **kw)
                self.compiled = True
            except Exception as exc:  # noqa: BLE001
                self.reason = f"torch.compile failed: {type(exc).__name__}: {exc}"

    def __call__(self, *args):
        if not self.compiled:
            return _em_step(*args)
        try:
            return self.fn(*args)
        except Exception as exc:  # noqa: BLE001
            self.fn, self.compiled = _em_step, False
            self.reason = f"compiled step failed: {type(exc).__name__}: {str(exc)[:500]}"
            return _em_step(*args)


def _indexed_noise_fn(seed: int, row0: int, step0: int, n_steps: int, x, compile_: bool):
    """k -> the (N, d) counter-based normals of :func:`sftheory._kernels.threefry.indexed_normals`
    for global particles row0 .. row0 + N - 1 at global step step0 + k, in x's dtype and device
    (compiled with ``torch.compile`` when ``compile_``, falling back to eager)."""
    import torch

    from .threefry import indexed_normals, particle_rows

    rows = particle_rows(row0, x.shape[0], x)
    d, dt = x.shape[1], x.dtype
    # the step index as a 0-d device tensor: a compiled draw sees one input layout every step
    # (a Python int would specialize and recompile), and nothing is copied from the host
    steps = torch.arange(step0, step0 + n_steps, dtype=torch.int64, device=x.device)

    def draw(step_t):
        return indexed_normals(seed, rows, step_t, d).to(dt)

    fn = draw
    if compile_:
        try:
            fn = torch.compile(draw)
        except Exception:  # noqa: BLE001 - eager is always correct
            fn = draw

    def at(k):
        nonlocal fn
        try:
            return fn(steps[k])
        except Exception:  # noqa: BLE001
            if fn is draw:
                raise
            fn = draw
            return fn(steps[k])
    return at


def _em_sample_mixture(x0, alpha, beta, sigma, m, v, means, logw, lam, rot, *, generator=None,
                       indexed_noise=None, compile: bool = False, compile_kwargs=None,
                       info=None):
    r"""Euler-Maruyama of the generative SDE with the exact score of a diffused Gaussian mixture,
    kept on x0's device: per step k, x <- alpha_k x + beta_k \nabla\log p_{t_k}(x) + sigma_k z_k,
    z_k ~ N(0, I) drawn on the device from ``generator`` (a torch.Generator on x0's device, or
    None for the default stream), or, with ``indexed_noise`` = (seed, row0, step0), the
    counter-based normals of global particle row0 + i at global step step0 + k
    (:mod:`sftheory._kernels.threefry`: the same numbers on any device and under any sharding).
    ``alpha, beta, sigma, m, v``: (steps,) float64 numpy arrays
    (the step coefficients and the (m, v) of each step's start time), validated here once and
    moved to the device once. No host synchronization inside the loop; the output is checked for
    non-finite values once at the end (FloatingPointError). Returns a new tensor.

    ``compile``: run each step through ``torch.compile`` (falls back to eager with the reason in
    ``info["compile_reason"]`` when ``info`` is a dict)."""
    import numpy as np
    import torch

    check_mixture_inputs(x0, means, logw, lam, rot)
    coefs = []
    steps = None
    for name, a in (("alpha", alpha), ("beta", beta), ("sigma", sigma), ("m", m), ("v", v)):
        arr = np.asarray(a, dtype=np.float64)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be a 1-d array of per-step values, got shape "
                             f"{arr.shape}")
        if steps is None:
            steps = arr.shape[0]
        if arr.shape[0] != steps:
            raise ValueError(f"{name} has {arr.shape[0]} steps, alpha has {steps}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains non-finite values")
        coefs.append(torch.as_tensor(arr).to(device=x0.device, dtype=x0.dtype))
    if np.any(np.asarray(sigma) < 0) or np.any(np.asarray(v) < 0):
        raise ValueError("sigma and v must be >= 0")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if generator.device.type != x0.device.type:
            raise ValueError(f"generator is on {generator.device}, x0 on {x0.device}")
    if indexed_noise is not None:
        if generator is not None:
            raise ValueError("give generator or indexed_noise, not both")
        seed_i, row0, step0 = (int(v_) for v_ in indexed_noise)
        if min(seed_i, row0, step0) < 0:
            raise ValueError(f"indexed_noise = (seed, row0, step0) must be >= 0, got "
                             f"{indexed_noise}")
    if not bool(torch.isfinite(x0).all()):  # the one entry check (one sync, before the loop)
        raise ValueError("x0 contains NaN or infinite values")
    table = torch.stack(coefs, 1)  # (steps, 5) on the device, moved once
    step = _Stepper(compile, **(compile_kwargs or {}))
    draw = None if indexed_noise is None else _indexed_noise_fn(seed_i, row0, step0, steps, x0,
                                                               compile)
    x = x0.clone()
    z = torch.empty_like(x)
    for k in range(steps):
        if draw is None:
            z.normal_(generator=generator)
        else:
            z = draw(k)
        x = step(x, z, table[k].clone(), means, logw, lam, rot)
    if info is not None:
        info["compiled"] = step.compiled
        info["compile_reason"] = step.reason
    if not bool(torch.isfinite(x).all()):  # the one exit check
        raise FloatingPointError("Euler-Maruyama (torch): the final points contain NaN or "
                                 "infinite values (score, step sizes or overflow?)")
    return x
