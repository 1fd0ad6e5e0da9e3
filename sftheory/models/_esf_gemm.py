r"""The empirical score / posterior mean through matrix products, in bounded memory.

For training points y_1..y_n and one time (a = m s, w = m^2 var0 + v; s, var0 the scale and
variance already applied to the points, s = 1 and var0 = 0 for the path of the empirical law),
every output of the isotropic mixture :math:`\frac1n\sum_j \mathcal N(a y_j, w I)` is an
attention over the points with logits :math:`\ell_j = -|x - a y_j|^2 / 2w` ([SM] eq. (14)):

.. math::
    \log p(x) = \operatorname{logsumexp}_j \ell_j - \log n - \tfrac d2 \log(2\pi w),\qquad
    \bar y(x) = \sum_j \operatorname{softmax}_j(\ell)\, y_j,

and the score is :math:`(a\bar y - x)/w`, the posterior mean :math:`s\bar y + (m\,var0/w)(x -
a\bar y)` (:math:`\bar y` itself for the path). :func:`lse_average` computes
(logsumexp, :math:`\bar y`) over tiles of (queries x points) with an online log-sum-exp (running
max, running sum, rescaled accumulator; the flash-attention recursion), so the working memory is
bounded by ``budget_bytes`` whatever n and the number of queries.

Two forms of the logits, chosen per query:

* ``"expanded"``: :math:`\ell_j + |x|^2/2w = (a/w)\, x\cdot y_j - (a^2/2w)|y_j|^2` -- one GEMM per
  tile (BLAS through ``@``). Its rounding error is a cancellation, about
  :math:`\varepsilon\sqrt d\,(|x| + a\max_j|y_j|)^2 / 2w` absolute on every logit
  (:func:`expanded_logit_error`), i.e. that relative error on every responsibility.
* ``"diff"``: :math:`-|x - a y_j|^2 / 2w` from the differences (error relative to the logit, as
  the reference formula and the numba kernel).

``form="auto"`` takes the expanded form for queries whose estimate is at most the tolerance
(:data:`EXPANDED_LOGIT_TOL`, float64 compute; :data:`EXPANDED_LOGIT_TOL_F32` on accelerators in
float32) and the difference form for the others (small v, points far from the data). Rows whose
every difference-form logit overflows (|x| ~ 1e155) get log p = -inf and the average of the
nearest points (ties shared), the limit of the exact value, as the reference formula does.

:func:`evaluate_empirical` is the dispatcher used by :class:`~sftheory.models.EmpiricalDistribution`:
numpy inputs run the numba kernel in low dimension (d <= :data:`NUMBA_MAX_DIM`, measured
crossover) and for the difference-form queries, this engine (BLAS) otherwise; torch inputs
without autograd run this engine in torch ops. Arithmetic on CPU is float64 (float32 inputs are
widened and their outputs rounded once, as the numba kernel does); on other devices it is x's
dtype.

Source: [SM] Sec. 2, eq. (6), (14) (empirical score and its softmax posterior mean).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .._refs import source
from ..backend import LOG_2PI
from ._formulas import marginal_var

#: Working-memory bound of one call (bytes) when the caller gives none: 128 MiB.
DEFAULT_BUDGET_BYTES = 128 * 2**20
#: The expanded (GEMM) form is used for a query when :func:`expanded_logit_error` <= this (float64
#: compute): every responsibility then carries a relative error <= ~2e-9 from the cancellation,
#: far below the Monte Carlo error of any check, and the score / posterior mean an error <= 2e-9
#: times the spread of the points. Larger estimates (v below ~1e-6 for data of norm ~10, or
#: queries ~1e4 away from the data) take the difference form.
EXPANDED_LOGIT_TOL = 1e-9
#: The same for float32 arithmetic (accelerators only; CPU arithmetic is float64).
EXPANDED_LOGIT_TOL_F32 = 1e-3
#: Dimension up to which the numba kernel (difference form, one pass per pair, no BLAS) beats the
#: GEMM engine on numpy inputs; measured on 2 shared cores (n = 2e4 points, 2000 queries, best of
#: 3): numba 0.58 / 0.64 s vs GEMM 1.32 / 2.08 s at d = 2 / 4; GEMM 0.47 vs numba 0.68 s at d = 6,
#: 0.49 vs 0.80 s at d = 12, 0.55 vs 1.37 s at d = 24 (BLAS is inefficient for inner dimension <= 4).
NUMBA_MAX_DIM = 4
#: Points per tile when the budget allows it.
KEY_BLOCK = 4096
#: Smallest query chunk the tiler tries to keep before it shrinks the point tile.
QUERY_MIN = 64


def expanded_logit_error(nx, x, a, w, ymax: float, eps: float):
    r"""Estimated absolute rounding error of the expanded logits of each query (N,):
    :math:`\varepsilon\sqrt d\,(|x| + |a|\, y_{max})^2 / 2w` -- the size of the terms that cancel
    (|x|^2/2w, a x.y/w, a^2|y|^2/2w), times the sqrt(d) growth of a d-term dot product's
    rounding. ``a``, ``w`` floats or (N,) arrays."""
    d = x.shape[1]
    xn = nx.sqrt(nx.sum(x * x, axis=1))
    return (eps * math.sqrt(d)) * (xn + abs(a) * ymax) ** 2 / (2.0 * w)


def _tiles(n_q: int, n_k: int, d: int, itemsize: int, budget_bytes: int, form: str,
           per_row: bool):
    """(query chunk, point tile) within ``budget_bytes`` of working memory: per query
    (x copy, scaled x, accumulator, stats), per point (converted tile, norms) and per pair
    (logits, exponentials, one temporary; d more per pair for the difference form)."""
    per_q = (3 * d + 8) * itemsize
    per_k = (d + 2) * itemsize
    per_qk = 3 * itemsize if form == "expanded" else ((2 if per_row else 1) * d + 3) * itemsize
    need = per_q + per_k + per_qk
    if budget_bytes < need:
        raise ValueError(f"budget_bytes={budget_bytes} is too small for one row: one query against "
                         f"one point needs {need} bytes in d = {d} ({form} form)")

    def bq_for(bk):
        return (budget_bytes - bk * per_k) // (per_q + bk * per_qk)

    bk = max(1, min(n_k, KEY_BLOCK))
    while bk > 1 and bq_for(bk) < min(n_q, QUERY_MIN):
        bk = max(1, bk // 2)
    return max(1, min(n_q, int(bq_for(bk)))), bk


def _exp_(nx, a):
    """exp in place (no new tile)."""
    if nx.is_torch:
        return a.exp_()
    return np.exp(a, out=a)


@njit(parallel=True, cache=True, error_model="numpy")
def _fused_update(logits, yn, half, mx, sm, alpha):  # pragma: no cover
    """One tile of the online log-sum-exp, in place, row-parallel: logits_ij -= half_i yn_j; new
    max M_i = max(mx_i, max_j logits_ij); logits_ij <- exp(logits_ij - M_i);
    alpha_i = exp(mx_i - M_i); sm_i <- sm_i alpha_i + sum_j logits_ij; mx_i <- M_i."""
    nq, nk = logits.shape
    for i in prange(nq):
        h = half[i]
        m0 = mx[i]
        cm = -np.inf
        for j in range(nk):
            val = logits[i, j] - h * yn[j]
            logits[i, j] = val
            if val > cm:
                cm = val
        new = cm if cm > m0 else m0
        if new == -np.inf:  # nothing finite yet (not reached by finite expanded logits)
            alpha[i] = 1.0
            for j in range(nk):
                logits[i, j] = 0.0
            continue
        s = 0.0
        for j in range(nk):
            e = math.exp(logits[i, j] - new)
            logits[i, j] = e
            s += e
        a = math.exp(m0 - new)
        alpha[i] = a
        sm[i] = sm[i] * a + s
        mx[i] = new


def _rows(q, lo, hi):
    return q if isinstance(q, float) else q[lo:hi]


@source("SM", "Sec. 2, eq. (14) (softmax over the training points), online log-sum-exp",
        "sm.esf", "core.models.tweedie")
def lse_average(nx, x, keys, a, w, *, form: str, budget_bytes: int = DEFAULT_BUDGET_BYTES,
                sqnorms=None):
    r"""(:math:`\operatorname{logsumexp}_j -|x_i - a_i y_j|^2 / 2w_i` (N,),
    :math:`\bar y_i = \sum_j \operatorname{softmax}_j(\cdot)\, y_j` (N, d)) for queries ``x`` (N, d)
    and points ``keys`` (n, d), tile by tile with an online log-sum-exp.

    ``x`` is in the compute dtype; ``keys`` of the same backend and device (any float dtype: each
    tile is converted, so no converted copy of the points is kept). ``a``, ``w`` floats or (N,)
    arrays of x's backend; w > 0. ``form`` "expanded" (GEMM, |y_j|^2 from ``sqnorms`` (n,) in the
    compute dtype) or "diff". Rows whose every logit is -inf (difference form, |x - a y|^2
    overflowed) get -inf and the average of their nearest points.
    """
    if form not in ("expanded", "diff"):
        raise ValueError(f"form must be 'expanded' or 'diff', got {form!r}")
    n_q, d = x.shape
    n_k = keys.shape[0]
    per_row = not isinstance(a, float)
    bq, bk = _tiles(n_q, n_k, d, x.element_size() if nx.is_torch else x.itemsize,
                    check_budget(budget_bytes), form, per_row)
    if form == "expanded" and sqnorms is None:
        raise ValueError("sqnorms is required for form='expanded'")
    lse_parts, avg_parts = [], []
    for q0 in range(0, n_q, bq):
        q1 = min(n_q, q0 + bq)
        xq = x[q0:q1]
        aq, wq = _rows(a, q0, q1), _rows(w, q0, q1)
        if form == "expanded":
            coef = aq / wq
            xs = xq * (coef[:, None] if per_row else coef)
            half = 0.5 * aq * coef  # a^2 / 2w
        else:
            inv2w = 0.5 / wq
        mx = nx.full_like(xq[:, 0], -np.inf)
        sm = nx.full_like(mx, 0.0)
        acc = nx.full_like(xq, 0.0)
        if form == "expanded" and not nx.is_torch:
            half_v = np.ascontiguousarray(np.broadcast_to(half, mx.shape), dtype=x.dtype)
            alpha_buf = np.empty_like(mx)
        for k0 in range(0, n_k, bk):
            yc = keys[k0:k0 + bk]
            if yc.dtype != x.dtype:
                yc = yc.to(x.dtype) if nx.is_torch else yc.astype(x.dtype)
            if form == "expanded" and not nx.is_torch:
                # numpy: BLAS for the two products, one fused numba pass (2 threads) for
                # logits - a^2|y|^2/2w, the running max, exp and the running sum
                logits = xs @ yc.T
                _fused_update(logits, sqnorms[k0:k0 + bk], half_v, mx, sm, alpha_buf)
                acc *= alpha_buf[:, None]
                # (Y^T E^T)^T: the same product, in the operand order OpenBLAS runs fastest
                # (measured 1.2-2.5x faster than E @ Y in d = 784)
                acc += (yc.T @ logits.T).T
                del logits
                continue
            if form == "expanded":
                logits = xs @ yc.T
                yn = sqnorms[k0:k0 + bk]
                if per_row:
                    logits -= half[:, None] * yn[None, :]
                else:
                    logits -= half * yn
            else:
                diff = xq[:, None, :] - (aq[:, None, None] if per_row else aq) * yc[None, :, :]
                diff *= diff
                logits = nx.sum(diff, axis=2)
                del diff
                logits *= -(inv2w[:, None] if per_row else inv2w)
            cm = nx.max(logits, axis=1)
            new = nx.where(cm > mx, cm, mx)
            safe = nx.where(nx.isfinite(new), new, nx.full_like(new, 0.0))
            alpha = nx.exp(mx - safe)
            logits -= safe[:, None]
            e = _exp_(nx, logits)
            sm = sm * alpha + nx.sum(e, axis=1)
            acc *= alpha[:, None]
            acc += e @ yc
            mx = new
            del logits, e
        lse = mx + nx.log(sm)
        avg = acc / sm[:, None]
        if not nx.all_finite(mx):  # overflow rows (difference form only): the nearest points
            bad = ~nx.isfinite(mx)
            idx = np.flatnonzero(nx.to_numpy(bad))
            near = _nearest_average(nx, xq[idx], keys, _rows(a, q0, q1)[idx] if per_row else a,
                                    bk)
            avg[idx] = near
            lse = nx.where(bad, nx.full_like(lse, -np.inf), lse)
        lse_parts.append(lse)
        avg_parts.append(avg)
    if len(lse_parts) == 1:
        return lse_parts[0], avg_parts[0]
    return nx.concat(lse_parts), nx.concat(avg_parts)


def _nearest_average(nx, x, keys, a, bk):
    """Average of the points y_j minimizing |x_i - a y_j| (ties shared), one row at a time,
    distances computed on x and a y scaled by max|x_i| so that nothing overflows."""
    out = []
    for i in range(x.shape[0]):
        xi = x[i]
        c = nx.max(nx.abs(xi), axis=0)
        ai = a if isinstance(a, float) else a[i]
        xs, as_ = xi / c, ai / c
        best, acc, cnt = math.inf, None, 0.0
        for k0 in range(0, keys.shape[0], bk):
            yc = keys[k0:k0 + bk]
            if yc.dtype != x.dtype:
                yc = yc.to(x.dtype) if nx.is_torch else yc.astype(x.dtype)
            diff = xs[None, :] - as_ * yc
            dist = nx.sum(diff * diff, axis=1)
            cmin = float(nx.amin(dist, axis=0))
            if cmin > best:
                continue
            tie = dist == cmin
            part = nx.sum(nx.where(tie[:, None], yc, nx.full_like(yc, 0.0)), axis=0)
            ties = float(nx.sum(tie * 1.0, axis=0))
            if cmin < best:
                best, acc, cnt = cmin, part, ties
            else:
                acc, cnt = acc + part, cnt + ties
        out.append(acc / cnt)
    return nx.concat([o[None] for o in out])


# ---- dispatch ------------------------------------------------------------------------------------
def check_budget(budget_bytes):
    if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, (int, np.integer)) \
            or budget_bytes <= 0:
        raise ValueError(f"budget_bytes must be a positive integer number of bytes, got "
                         f"{budget_bytes!r}")
    return int(budget_bytes)


@source("SM", "Sec. 2; eq. (6), (14), (19)", "sm.esf", "core.models.tweedie")
def evaluate_empirical(nx, x, m, v, posterior: bool, store, *, form: str = "auto",
                       budget_bytes: int | None = None, tol: float | None = None,
                       engine: str = "auto"):
    r"""(log p (N,), score or posterior mean (N, d)) of the isotropic mixture
    :math:`\frac1n\sum_j \mathcal N(m s\, y_j, (m^2 var0 + v) I)` at points x (N, d) (validated,
    backend ``nx``), (m, v) floats or (N,) numpy arrays with m^2 var0 + v > 0.

    ``store`` is the :class:`EmpiricalStore` of the points (one copy, scale s, variance var0).
    ``form``: "auto" (per query, expanded when :func:`expanded_logit_error` <= ``tol``), or
    "expanded" / "diff" for every query (tests, benchmarks). ``budget_bytes``: working-memory
    bound (:data:`DEFAULT_BUDGET_BYTES`); ValueError when it cannot hold one query and one point.
    On numpy inputs the difference form and the low-dimensional case (d <= :data:`NUMBA_MAX_DIM`)
    run the numba kernel unless ``form`` is forced. ``engine``: "auto" runs CPU torch tensors
    (no autograd) through the numpy route on zero-copy views (BLAS + the fused numba pass, same
    results as numpy inputs) and other devices through torch ops; "torch" forces torch ops.
    """
    if engine not in ("auto", "torch"):
        raise ValueError(f"engine must be 'auto' or 'torch', got {engine!r}")
    if nx.is_torch and engine == "auto" and x.device.type == "cpu" and not x.requires_grad:
        from ..backend import get_backend

        xn = x.detach().numpy()
        lp, vec = evaluate_empirical(get_backend(xn), xn, m, v, posterior, store, form=form,
                                     budget_bytes=budget_bytes, tol=tol)
        return nx.torch.from_numpy(lp), nx.torch.from_numpy(vec)
    if form not in ("auto", "expanded", "diff"):
        raise ValueError(f"form must be 'auto', 'expanded' or 'diff', got {form!r}")
    budget = DEFAULT_BUDGET_BYTES if budget_bytes is None else check_budget(budget_bytes)
    # |x|^2 = inf far away (|x| ~ 1e155) is handled: such rows take the difference form and the
    # nearest-point limit; 0 * inf of rows that did not overflow is discarded
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _evaluate(nx, x, m, v, posterior, store, form, budget, tol)


def _evaluate(nx, x, m, v, posterior, store, form, budget, tol):
    n_q, d = x.shape
    s, var0 = store.scale, store.var0
    per_row = not isinstance(m, float)
    cpu = not nx.is_torch or x.device.type == "cpu"
    cdt = (np.float64 if not nx.is_torch else nx.torch.float64) if cpu else x.dtype
    xc = x if x.dtype == cdt else (x.to(cdt) if nx.is_torch else x.astype(cdt))
    if per_row:
        m_np = np.asarray(m, dtype=np.float64)
        a_np, w_np = m_np * s, marginal_var(var0, m_np, np.asarray(v, dtype=np.float64))
        a, w = nx.asarray(a_np, like=xc), nx.asarray(w_np, like=xc)
    else:
        a, w = float(m) * s, marginal_var(var0, float(m), float(v))
    if n_q == 0:
        return nx.full_like(x[:, 0], 0.0), nx.full_like(x, 0.0)
    use_numba = not nx.is_torch and form == "auto"
    if use_numba and d <= NUMBA_MAX_DIM:
        return store.numba_eval(x, m, v, posterior)
    keys, sqn = store.keys(nx, xc)
    if form == "auto":
        wide = xc.dtype in (np.float64, getattr(nx, "torch", np).float64)
        if tol is None:
            tol = EXPANDED_LOGIT_TOL if wide else EXPANDED_LOGIT_TOL_F32
        eps = float(np.finfo(np.float64 if wide else np.float32).eps)
        err = expanded_logit_error(nx, xc, a, w, store.ymax, eps)
        ok = nx.to_numpy(err <= tol)
    else:
        ok = np.full(n_q, form == "expanded")
    lse = nx.full_like(xc[:, 0], 0.0)
    ybar = nx.full_like(xc, 0.0)
    exp_idx, diff_idx = np.flatnonzero(ok), np.flatnonzero(~ok)
    numba_rows = None
    for idx, f in ((exp_idx, "expanded"), (diff_idx, "diff")):
        if idx.size == 0:
            continue
        if f == "diff" and use_numba:
            numba_rows = idx
            continue
        whole = idx.size == n_q
        xi = xc if whole else xc[idx]
        ai = a if not per_row or whole else a[idx]
        wi = w if not per_row or whole else w[idx]
        l_, y_ = lse_average(nx, xi, keys, ai, wi, form=f, budget_bytes=budget,
                             sqnorms=sqn if f == "expanded" else None)
        if f == "expanded":  # back to the logits of the difference form
            l_ = l_ - nx.sum(xi * xi, axis=1) * (0.5 / wi)
        if whole:
            lse, ybar = l_, y_
        else:
            lse[idx], ybar[idx] = l_, y_
    logn = math.log(store.n)
    logw_term = d * nx.log(w) if per_row else d * math.log(w)
    logp = lse - (logn + 0.5 * d * LOG_2PI) - 0.5 * logw_term
    aa = a[:, None] if per_row else a
    ww = w[:, None] if per_row else w
    if posterior:
        vec = ybar * s if s != 1.0 else ybar
        if var0 != 0.0:
            mm = nx.asarray(m_np, like=xc)[:, None] if per_row else float(m)
            vec = vec + (mm * var0 / ww) * (xc - aa * ybar)
    else:
        vec = (aa * ybar - xc) / ww
    if numba_rows is not None:
        xr = x[numba_rows]
        lp_r, v_r = store.numba_eval(xr, m[numba_rows] if per_row else m,
                                     v[numba_rows] if per_row else v, posterior)
        logp[numba_rows] = lp_r
        vec[numba_rows] = v_r
    if x.dtype != cdt:
        logp = logp.to(x.dtype) if nx.is_torch else logp.astype(x.dtype)
        vec = vec.to(x.dtype) if nx.is_torch else vec.astype(x.dtype)
    return logp, vec


class EmpiricalStore:
    """The training points, kept once: ``data`` (n, d) float64 (the law's own array), the scale s
    and variance var0 of a marginal (the mixture (1/n) sum_j N(s y_j, var0 I)), |y_j|^2 and
    max |y_j|, and per-backend views (zero-copy on CPU; one copy per accelerator device)."""

    def __init__(self, data: np.ndarray, scale: float = 1.0, var0: float = 0.0, *, _shared=None):
        self.data = data
        self.n, self.dim = data.shape
        self.scale, self.var0 = float(scale), float(var0)
        # time-independent pieces are shared by every marginal of one law
        self._shared = _shared if _shared is not None else {}

    def rescaled(self, m: float, v: float) -> "EmpiricalStore":
        """The store of law(m X + sqrt(v) Z): scale m s, variance m^2 var0 + v; same points."""
        return EmpiricalStore(self.data, m * self.scale, marginal_var(self.var0, m, v),
                              _shared=self._shared)

    @property
    def sqnorms(self) -> np.ndarray:
        sq = self._shared.get("sqnorms")
        if sq is None:
            sq = np.einsum("ij,ij->i", self.data, self.data)
            self._shared["sqnorms"] = sq
        return sq

    @property
    def ymax(self) -> float:
        return float(np.sqrt(self.sqnorms.max()))

    def keys(self, nx, like):
        """(points, |y|^2) in ``like``'s backend: the float64 array itself for numpy and CPU
        torch (no copy), a cached copy in like's dtype on an accelerator."""
        if not nx.is_torch:
            return self.data, self.sqnorms
        key = ("torch", str(like.device), str(like.dtype))
        got = self._shared.get(key)
        if got is None:
            torch = nx.torch
            keys = torch.from_numpy(self.data)  # the array is writeable: no copy
            sq = torch.from_numpy(self.sqnorms)
            if like.device.type != "cpu":
                keys, sq = keys.to(like.device, like.dtype), sq.to(like.device, like.dtype)
            got = (keys, sq.to(like.dtype))
            self._shared[key] = got
        return got

    def numba_eval(self, x, m, v, posterior):
        """The numba kernel on the points themselves (no layout copy: ``data`` is writeable
        float64, C-contiguous): kernel scale m s and kernel variances var0 / s^2 reproduce the
        mixture; its posterior output is in units of y and is multiplied by s."""
        from .._kernels import mixture as kernels

        lam = self._shared.get(("lam", self.var0, self.scale))
        if lam is None:
            lam = np.full(self.n, self.var0 / (self.scale * self.scale))
            self._shared[("lam", self.var0, self.scale)] = lam
        logw = self._shared.get("logw")
        if logw is None:
            logw = np.full(self.n, -math.log(self.n))
            self._shared["logw"] = logw
        layout = ("iso", self.data, lam, logw, True)
        ms = m * self.scale if isinstance(m, float) else np.asarray(m) * self.scale
        lp, vec = kernels.evaluate(x, ms, v, layout, posterior)
        if posterior and self.scale != 1.0:
            vec = vec * np.asarray(self.scale, dtype=vec.dtype)
        return lp, vec
