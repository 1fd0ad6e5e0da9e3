r"""Log-likelihood of points under the probability-flow ODE (instantaneous change of variables).

For a forward process dX = f(X, t) dt + g(t) dW with f = -kappa g^2 x and a score field
s(x, t) (forward time), the probability-flow ODE ([OS] eq. (7) with h = 0) run *forward* in time,

.. math:: \frac{dx}{dt} = F(x, t) = f(x, t) - \tfrac{g(t)^2}{2}\, s(x, t),

carries p_{t_min} to p_T when s is the exact score, and along a trajectory the density obeys
the instantaneous change of variables

.. math:: \frac{d}{dt} \log p_t(x_t) = -\nabla\cdot F = \kappa g^2 d + \tfrac{g^2}{2}\,
          \nabla\cdot s(x_t, t),

so :math:`\log p_{t_min}(x_0) = \log p_T(x_T) - \int_{t_min}^T (\kappa g^2 d +
\tfrac{g^2}{2} \nabla\cdot s)\, dt`, with p_T replaced by a ``prior``. The state (x, the
integral) is solved by scipy's ``solve_ivp`` (DOP853) on the flattened batch.

Divergence of the score:

* ``"exact"``: central finite differences in each coordinate, 2 d extra points per point per
  right-hand side (fine for small d);
* ``"hutchinson"``: Rademacher probes v (``n_probes`` of them, drawn once from ``seed`` and fixed
  over the integration), div s ~ v . (s(x + delta v) - s(x - delta v)) / (2 delta); each probe
  gives its own log-likelihood, ``logp`` is their mean and ``stderr`` their standard error;
* ``"autograd"`` (torch ``x0`` only): the divergence by reverse-mode differentiation of the field
  on tensors -- the exact trace (d vector-Jacobian products, no finite-difference error), or with
  ``n_probes`` the Hutchinson estimate v^T (J v) from one vector-Jacobian product per probe (the
  FFJORD estimator, Grathwohl et al. 2019), for torch networks in high d.

Each right-hand side evaluates the field in **one** batched call (x and all perturbed points
stacked); ``nfe`` counts those calls.

Backends: numpy ``x0`` -> the field sees float64 numpy arrays. torch ``x0`` (any device, float32
or float64) -> the field sees tensors in x0's dtype on its device (a torch network runs there);
the ODE state is integrated in float64 by ``solve_ivp`` on the host, and the result's arrays are
float64 tensors on x0's device.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from .._points import prepare_points
from .._validation import check_seed, is_torch
from ..fields import ScoreField, as_field
from ..processes import LinearSDE
from ._core import refuse_graphs

#: relative finite-difference step: delta = FD_STEP * (1 + max_j |x_j|) per point. The central
#: difference errs by O(delta^2 |s'''|) + O(eps_machine |s| / delta), ~1e-9 for O(1) scores.
FD_STEP = 1e-4
DEFAULT_N_PROBES = 16


@dataclass
class LikelihoodResult:
    """``logp`` (N,) log-density at forward time t_min of each point; ``stderr`` (N,) the
    Hutchinson estimator's standard error across probes (zeros for the exact divergence);
    ``nfe`` the number of (batched) score-field calls; ``x_T`` (N, d) the points carried to T.
    Arrays are numpy for numpy input, float64 tensors on x0's device for torch input."""

    logp: object
    stderr: object
    nfe: int
    x_T: object


def _check_tol(v, name):
    if isinstance(v, bool) or not (isinstance(v, numbers.Real) and math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    return float(v)


#: solve_ivp tolerances by the dtype the field is evaluated in: float32 evaluations carry ~1e-7
#: relative noise, below which an adaptive solver cannot converge (it only shrinks its steps)
DEFAULT_TOLS = {"float64": (1e-8, 1e-10), "float32": (1e-5, 1e-7)}


def log_likelihood(score, x0, process, T, *, prior=None, divergence: str = "exact",
                   n_probes: int | None = None, seed=None, rtol: float | None = None,
                   atol: float | None = None, t_min: float = 0.0) -> LikelihoodResult:
    """log p_{t_min}(x0) under the probability-flow ODE of ``score`` (see the module docstring).

    ``score`` a score field s(x, t) (an exact path, a ScoreField, or anything with ``dim``);
    ``x0`` (N, d) points at forward time ``t_min`` (or (N,) when d = 1); ``process`` the forward
    process; ``T`` > ``t_min`` >= 0 the end time; ``prior`` anything with ``logpdf(x)`` for
    x (N, d) (default the stationary Gaussian N(0, I / (2 kappa)); required for VE, kappa = 0);
    ``divergence`` "exact" (finite differences), "hutchinson" with ``n_probes`` >= 2
    Rademacher probes (default 16) drawn from ``seed``, or "autograd" (torch x0; exact trace, or
    Hutchinson with ``n_probes``); ``rtol``/``atol`` for ``solve_ivp`` (default
    :data:`DEFAULT_TOLS` by the dtype of the field's evaluations: 1e-8/1e-10 in float64,
    1e-5/1e-7 for float32 tensors). Finite differences cannot resolve float32 evaluations (noise
    ~ eps32 / delta ~ 1e-3), so a float32 torch x0 needs ``divergence="autograd"``.
    """
    from scipy.integrate import solve_ivp

    if not isinstance(process, LinearSDE):
        raise ValueError(f"process must be a sftheory.processes process, got {process!r}")
    if not (isinstance(score, ScoreField) or hasattr(score, "dim")):
        raise ValueError("score must be a score field with a dim (sftheory.fields.as_field(fn, dim)"
                         " wraps a plain callable), an exact path, or a ScoreField")
    field_ = as_field(score)
    d = field_.dim
    x, nx, kind = prepare_points(x0, d)
    if kind == "0d":
        raise ValueError("x0 must be an array of points of shape (N, d)")
    like = x if nx.is_torch else None  # the field's backend, dtype and device
    x = np.array(nx.to_numpy(x), dtype=np.float64)
    n = x.shape[0]
    if n == 0:
        raise ValueError("x0 must contain at least one point")
    for name, v in (("T", T), ("t_min", t_min)):
        if isinstance(v, bool) or not (isinstance(v, numbers.Real) and math.isfinite(v)):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    T, t_min = float(T), float(t_min)
    if t_min < 0:
        raise ValueError(f"t_min must be >= 0, got {t_min}")
    if not T > t_min:
        raise ValueError(f"T must be > t_min = {t_min}, got {T}")
    single = like is not None and str(like.dtype) == "torch.float32"
    d_rtol, d_atol = DEFAULT_TOLS["float32" if single else "float64"]
    rtol = d_rtol if rtol is None else _check_tol(rtol, "rtol")
    atol = d_atol if atol is None else _check_tol(atol, "atol")
    if divergence not in ("exact", "hutchinson", "autograd"):
        raise ValueError(f"divergence must be 'exact', 'hutchinson' or 'autograd', got "
                         f"{divergence!r}")
    refuse_graphs(x0, field_, "x0", "log_likelihood")
    if divergence == "autograd" and like is None:
        raise ValueError("divergence='autograd' differentiates the field on torch tensors: pass "
                         "x0 as a torch tensor (or use 'exact' / 'hutchinson')")
    if single and divergence != "autograd":
        raise ValueError(f"divergence={divergence!r} takes finite differences, which float32 "
                         f"evaluations cannot resolve (noise ~ eps32 / delta ~ 1e-3): use "
                         f"divergence='autograd' or float64 points")
    if divergence == "autograd":
        p = 0 if n_probes is None else n_probes
        if p != 0 and (isinstance(p, bool) or not isinstance(p, numbers.Integral) or p < 2):
            raise ValueError(f"n_probes must be None (exact trace) or an integer >= 2, got "
                             f"{n_probes!r}")
        p = int(p)
    elif divergence == "exact":
        if n_probes is not None:
            raise ValueError("n_probes applies only to divergence='hutchinson'; leave it None")
        p = 0
    else:
        p = DEFAULT_N_PROBES if n_probes is None else n_probes
        if isinstance(p, bool) or not isinstance(p, numbers.Integral) or p < 2:
            raise ValueError(f"n_probes must be an integer >= 2 (a standard error needs two "
                             f"probes), got {n_probes!r}")
        p = int(p)
    if prior is None:
        if process.stationary_variance() is None:
            raise ValueError(f"prior is required for {process!r}: it has no stationary law "
                             f"(kappa = 0); pass e.g. law.marginal(process, T)")
        from ..models import stationary_law

        prior = stationary_law(process, d)
    elif not callable(getattr(prior, "logpdf", None)):
        raise ValueError(f"prior must have a logpdf(x) method, got {prior!r}")

    kappa = float(process.kappa)
    count = [0]
    if p == 0:
        # directions: the unit vectors, shape (d, 1, d), broadcast over points
        dirs = np.eye(d)[:, None, :]
        if divergence == "autograd":
            dirs = np.zeros((0, n, d))
    else:
        rng = check_seed(seed)
        dirs = rng.choice(np.array([-1.0, 1.0]), size=(p, n, d))
    m = dirs.shape[0]  # number of directions (d for exact, p for hutchinson)

    def evaluate(points, t):
        """The field at (M, d) float64 numpy points, in the field's backend, back as numpy."""
        if like is None:
            return np.asarray(field_._eval(points, t), dtype=np.float64)
        return np.asarray(nx.to_numpy(field_._eval(nx.asarray(points, like=like), t)),
                          dtype=np.float64)

    def div_and_score_autograd(z, t):
        """(s, div) by reverse mode on tensors: exact trace, or v^T J v per probe."""
        torch = nx.torch
        zt = nx.asarray(z, like=like).requires_grad_(True)
        with torch.enable_grad():
            s = field_._eval(zt, t)
            count[0] += 1
            if not (is_torch(s) and s.requires_grad):
                raise ValueError("divergence='autograd' needs a field that is differentiable "
                                 "in x on tensors (its output carries no autograd graph)")
            if p == 0:
                cols = [torch.autograd.grad(s[:, i].sum(), zt, retain_graph=True)[0][:, i]
                        for i in range(d)]
                div = torch.stack(cols, 0).sum(0)[None, :]          # (1, n)
            else:
                v = nx.asarray(dirs, like=like)                      # (p, n, d)
                div = torch.stack([(torch.autograd.grad((s * v[j]).sum(), zt,
                                                        retain_graph=j < p - 1)[0] * v[j]).sum(1)
                                   for j in range(p)], 0)           # (p, n)
        return (np.asarray(nx.to_numpy(s.detach()), dtype=np.float64),
                np.asarray(nx.to_numpy(div.detach()), dtype=np.float64))

    def div_and_score(z, t):
        if divergence == "autograd":
            return div_and_score_autograd(z, t)
        delta = FD_STEP * (1.0 + np.max(np.abs(z), axis=1))  # (n,)
        step = dirs * delta[None, :, None]  # (m, n, d)
        stacked = np.concatenate([z[None], z[None] + step, z[None] - step], axis=0)
        out = evaluate(stacked.reshape(-1, d), t)
        count[0] += 1
        out = out.reshape(2 * m + 1, n, d)
        s = out[0]
        # directional derivative of s along each direction, projected on that direction
        proj = np.sum(dirs * (out[1:m + 1] - out[m + 1:]), axis=2) / (2.0 * delta[None, :])
        if p == 0:
            return s, proj.sum(axis=0)[None, :]  # (1, n): the trace
        return s, proj  # (p, n): one estimate per probe

    q = max(p, 1)

    def rhs(t, y):
        z = y[:n * d].reshape(n, d)
        g2 = float(process.diffusion(t)) ** 2
        s, div = div_and_score(z, float(t))
        dx = -kappa * g2 * z - 0.5 * g2 * s
        dl = kappa * g2 * d + 0.5 * g2 * div  # d/dt log p_t(x_t), (q, n)
        return np.concatenate([dx.reshape(-1), dl.reshape(-1)])

    y0 = np.concatenate([x.reshape(-1), np.zeros(q * n)])
    sol = solve_ivp(rhs, (t_min, T), y0, method="DOP853", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"solve_ivp failed: {sol.message}")
    yT = sol.y[:, -1]
    x_T = yT[:n * d].reshape(n, d)
    change = yT[n * d:].reshape(q, n)  # log p_T(x_T) - log p_{t_min}(x0), per probe
    if not (np.all(np.isfinite(x_T)) and np.all(np.isfinite(change))):
        raise FloatingPointError("log_likelihood: the ODE solution contains NaN or infinite values")
    lp = prior.logpdf(x_T if like is None else nx.asarray(x_T, like=like))
    log_prior = np.asarray(nx.to_numpy(lp) if is_torch(lp) else lp, dtype=np.float64).reshape(-1)
    if log_prior.shape != (n,):
        raise ValueError(f"prior.logpdf returned shape {log_prior.shape} for {n} points")
    per_probe = log_prior[None, :] - change
    logp = per_probe.mean(axis=0)
    if p == 0:
        stderr = np.zeros(n)
    else:
        stderr = per_probe.std(axis=0, ddof=1) / math.sqrt(p)
    if like is not None:
        torch = nx.torch
        logp, stderr, x_T = (torch.as_tensor(a, dtype=torch.float64, device=like.device)
                             for a in (logp, stderr, x_T))
    return LikelihoodResult(logp, stderr, count[0], x_T)


__all__ = ["LikelihoodResult", "log_likelihood"]
