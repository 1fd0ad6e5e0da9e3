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

Opt-in fast route (:func:`lse_average_fast`, ``evaluate_empirical(precision="fp16-fast")``):
points centred (the expansion is invariant to a common shift of x / a and y), one fp16 / bf16 /
TF32 GEMM with float32 output for the logits (norm term folded in as split columns), row max,
exp and rounding of the weights, one GEMM with the values (a ones column sums the rounded
weights); error model in :func:`fast_logit_error`, measured against float64 by the benchmark.

Opt-in float32 accuracy on TF32 tensor cores (``lse_average_torch(precision="fp32-3xtf32")``):
3xTF32 (Ootomo & Yokota 2022, "Recovering single precision accuracy from Tensor Cores while
surpassing the FP32 theoretical peak performance"; CUTLASS's 3xTF32): each float32 operand split
into a TF32 head and its residual (:func:`tf32_split`), three TF32 products per product in one
GEMM of 3x the inner dimension (:func:`split3_mm`), points centred; and an opt-in fused tile step
(``fuse="compile"``: row max, rescale and exp of a tile in one torch.compile'd function).

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
    return fit_tiles(n_q, n_k, per_q, per_k, per_qk, budget_bytes, min(n_k, KEY_BLOCK),
                     f"in d = {d} ({form} form)")


def fit_tiles(n_q: int, n_k: int, per_q: int, per_k: int, per_pair: int, budget_bytes: int,
              bk0: int, where: str, *, round_up: bool = False):
    """(query chunk, point tile) of a tiled log-sum-exp within ``budget_bytes``, given the bytes
    per query, per point and per (query, point) pair: the point tile starts at ``bk0`` and halves
    (rounding up with ``round_up``) until at least min(n_q, QUERY_MIN) queries fit beside it; the
    query chunk takes the rest. ValueError (naming ``where``) when one query against one point
    does not fit. Shared by the numpy/numba, torch and fast routes (their byte counts differ)."""
    need = per_q + per_k + per_pair
    if budget_bytes < need:
        raise ValueError(f"budget_bytes={budget_bytes} is too small for one row: one query against "
                         f"one point needs {need} bytes {where}")

    def bq_for(bk):
        return (budget_bytes - bk * per_k) // (per_q + bk * per_pair)

    bk = max(1, bk0)
    while bk > 1 and bq_for(bk) < min(n_q, QUERY_MIN):
        bk = (bk + 1) // 2 if round_up else max(1, bk // 2)
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


def _tracks_grad(*ts) -> bool:
    """Whether autograd records operations on any of these tensors (then the out-of-place tiler
    of :func:`lse_average` runs; the augmented-GEMM tiler works in place)."""
    import torch

    return torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad
                                           for t in ts)


def _rows(q, lo, hi):
    return q if isinstance(q, float) else q[lo:hi]


@source("SM", "Sec. 2, eq. (14) (softmax over the training points), online log-sum-exp",
        "sm.esf", "core.models.tweedie")
def lse_average(nx, x, keys, a, w, *, form: str, budget_bytes: int = DEFAULT_BUDGET_BYTES,
                sqnorms=None, precision: str = "exact"):
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
    if nx.is_torch and form == "expanded" and not _tracks_grad(x, keys, a, w):
        # torch without autograd: the augmented-GEMM tiler (bias and weight sums inside the GEMMs)
        return lse_average_torch(x, keys, a, w, sqnorms=sqnorms, precision=precision,
                                 budget_bytes=budget_bytes)
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
                       engine: str = "auto", precision: str = "exact", check_finite: bool = True):
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
    ``precision``: "exact" (default) or an opt-in fast GEMM precision of
    :func:`lse_average_torch` ("tf32", "fp32-3xtf32": float32 accuracy from 3 TF32 products,
    "fp16", "bf16"; torch tensors without autograd, every query in the expanded form, float32
    arithmetic, outputs in x's dtype; their error against float64 is measured by
    benchmarks/bench_gpu.py), or the fast route :func:`lse_average_fast`
    ("fp16-fast", "bf16-fast", "tf32-fast": centred points, one half/TF32 GEMM, one float32
    softmax, one GEMM; its prepared keys are cached in the store per device and precision;
    error model in :func:`fast_logit_error`; on CUDA the first call compiles the weight kernel,
    ~13 s, and each call ends with one finiteness check: a host sync, which a caller that checks
    its outputs itself, such as a sampler's device loop, turns off with ``check_finite=False``).

    Host syncs on an accelerator: ``form="auto"`` decides the form per query on the host (one
    (N,) bool copy per call); ``"expanded"`` and the fast precisions decide nothing.
    """
    if engine not in ("auto", "torch"):
        raise ValueError(f"engine must be 'auto' or 'torch', got {engine!r}")
    if precision not in TORCH_PRECISIONS + EVAL_FAST_PRECISIONS:
        raise ValueError(f"precision must be one of {TORCH_PRECISIONS + EVAL_FAST_PRECISIONS}, "
                         f"got {precision!r}")
    if precision != "exact":
        # opt-in fast GEMMs (torch only): every query in the expanded form, float32 arithmetic
        if not nx.is_torch:
            raise ValueError(f"precision={precision!r} needs torch tensors (numpy inputs are "
                             f"always exact)")
        if form == "diff":
            raise ValueError(f"precision={precision!r} runs the expanded (GEMM) form; "
                             f"form='diff' is exact only")
        if x.requires_grad:
            raise ValueError(f"precision={precision!r} has no autograd; use precision='exact'")
        engine, form = "torch", "expanded"
    if nx.is_torch and engine == "auto" and x.device.type == "cpu" and not x.requires_grad:
        from ..backend import get_backend

        xn = x.detach().numpy()
        lp, vec = evaluate_empirical(get_backend(xn), xn, m, v, posterior, store, form=form,
                                     budget_bytes=budget_bytes, tol=tol)
        return nx.torch.from_numpy(lp), nx.torch.from_numpy(vec)
    if form not in ("auto", "expanded", "diff"):
        raise ValueError(f"form must be 'auto', 'expanded' or 'diff', got {form!r}")
    if budget_bytes is None:
        accel = nx.is_torch and x.device.type != "cpu"
        budget = DEFAULT_BUDGET_BYTES_ACCEL if accel else DEFAULT_BUDGET_BYTES
    else:
        budget = check_budget(budget_bytes)
    # |x|^2 = inf far away (|x| ~ 1e155) is handled: such rows take the difference form and the
    # nearest-point limit; 0 * inf of rows that did not overflow is discarded
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _evaluate(nx, x, m, v, posterior, store, form, budget, tol, precision,
                         check_finite)


def _evaluate(nx, x, m, v, posterior, store, form, budget, tol, precision="exact",
              check_finite=True):
    n_q, d = x.shape
    s, var0 = store.scale, store.var0
    per_row = not isinstance(m, float)
    cpu = not nx.is_torch or x.device.type == "cpu"
    cdt = (np.float64 if not nx.is_torch else nx.torch.float64) if cpu else x.dtype
    if precision != "exact":
        cdt = nx.torch.float32
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
    if precision in EVAL_FAST_PRECISIONS:
        prec = precision[:-len("-fast")]
        ck = ("fast", str(xc.device), prec)
        prep = store._shared.get(ck)
        if prep is None:
            prep = store._shared[ck] = prepare_fast_keys(keys, prec)
        lse, ybar = lse_average_fast(xc, keys, a, w, precision=prec, budget_bytes=budget,
                                     prepared=prep, check_finite=check_finite)
        form = "fast"
    elif form == "auto":
        wide = xc.dtype in (np.float64, getattr(nx, "torch", np).float64)
        if tol is None:
            tol = EXPANDED_LOGIT_TOL if wide else EXPANDED_LOGIT_TOL_F32
        eps = float(np.finfo(np.float64 if wide else np.float32).eps)
        err = expanded_logit_error(nx, xc, a, w, store.ymax, eps)
        ok = nx.to_numpy(err <= tol)
    else:
        ok = np.full(n_q, form == "expanded")
    if form != "fast":
        lse = nx.full_like(xc[:, 0], 0.0)
        ybar = nx.full_like(xc, 0.0)
        exp_idx, diff_idx = np.flatnonzero(ok), np.flatnonzero(~ok)
    else:
        exp_idx = diff_idx = np.zeros(0, dtype=np.int64)
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
                             sqnorms=sqn if f == "expanded" else None, precision=precision)
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


# ---- torch at scale: augmented GEMMs, online log-sum-exp, fast (half / SDPA) routes -------------
#: Working-memory bound on an accelerator when the caller gives none: 1 GiB (a B = 4096 query
#: chunk and a 2048-point tile in float64 need ~180 MiB; more room only lengthens the tiles).
DEFAULT_BUDGET_BYTES_ACCEL = 2**30
#: Points per tile on an accelerator: a 4096 x 2048 float64 logit tile is 64 MiB, about the L2
#: cache of an H100/H200, so the elementwise passes between the two GEMMs stay on chip (the
#: benchmark sweeps this).
KEY_BLOCK_ACCEL = 2048
#: Precisions of :func:`lse_average_torch`: "exact" (x's dtype, TF32 off), "tf32" (float32 with
#: TF32 tensor-core GEMMs), "fp32-3xtf32" (float32 accuracy from three TF32 products per
#: product, :func:`tf32_split`), "fp16" / "bf16" (half-precision GEMM inputs, float32 logits and
#: accumulators). The SDPA route is :func:`posterior_average_sdpa`.
TORCH_PRECISIONS = ("exact", "tf32", "fp32-3xtf32", "fp16", "bf16")
#: The fast route's names in :func:`evaluate_empirical` (:func:`lse_average_fast`).
EVAL_FAST_PRECISIONS = ("fp16-fast", "bf16-fast", "tf32-fast")


def _pad8(n: int) -> int:
    return (n + 7) // 8 * 8


class tf32_matmul:
    """Context manager: TF32 tensor-core matmuls on (True) or off (False) inside, the previous
    setting restored after. Uses ``torch.backends.cuda.matmul.fp32_precision`` when the installed
    torch has it (mixing it with the legacy ``allow_tf32`` flag raises in torch >= 2.9), else
    ``allow_tf32``."""

    def __init__(self, enabled: bool):
        self.enabled = bool(enabled)

    def __enter__(self):
        import torch

        mm = torch.backends.cuda.matmul
        if hasattr(mm, "fp32_precision"):
            self._attr, self._old = "fp32_precision", mm.fp32_precision
            mm.fp32_precision = "tf32" if self.enabled else "ieee"
        else:  # pragma: no cover - torch < 2.9
            self._attr, self._old = "allow_tf32", mm.allow_tf32
            mm.allow_tf32 = self.enabled
        return self

    def __exit__(self, *exc):
        import torch

        setattr(torch.backends.cuda.matmul, self._attr, self._old)
        return False


_MM_OUT_DTYPE_OK = {}


def _mm32(a, b):
    """a @ b with half inputs and a float32 result: ``torch.mm(..., out_dtype=float32)`` (fp32
    accumulation, one rounding of the output) where the device has it (CUDA), else the same
    product of the rounded inputs upcast to float32 (CPU: tests)."""
    import torch

    dev = a.device.type
    if _MM_OUT_DTYPE_OK.get(dev, True):
        try:
            return torch.mm(a, b, out_dtype=torch.float32)
        except (TypeError, RuntimeError, NotImplementedError):
            _MM_OUT_DTYPE_OK[dev] = False
    return torch.mm(a.float(), b.float())


def _f64(t):
    """float -> float; tensor -> float64 tensor."""
    return t.to(__import__("torch").float64) if hasattr(t, "to") else float(t)


def _split(val, dt, device):
    """(head, residual) of float64 ``val`` (float or tensor) in dtype ``dt``: head + residual
    carries ~eps_dt^2 relative error (the residual is 0 in float64)."""
    import torch

    if not isinstance(val, torch.Tensor):  # a float: split on the host (no device tensor)
        hi = float(torch.tensor(float(val), dtype=torch.float64).to(dt))
        return hi, float(torch.tensor(float(val) - hi, dtype=torch.float64).to(dt))
    v = val.to(device=device, dtype=torch.float64)
    hi = v.to(dt)
    return hi, (v - hi.to(torch.float64)).to(dt)


# ---- 3xTF32: float32 accuracy from TF32 tensor cores ---------------------------------------------
#: Largest finite TF32 number (10 explicit mantissa bits): (2 - 2^-10) 2^127, bits 0x7F7FE000.
TF32_MAX = (2.0 - 2.0**-10) * 2.0**127
#: The products that the "fp32-3xtf32" precision keeps, a b ~ a_lo b_hi + a_hi b_lo + a_hi b_hi
#: (the dropped a_lo b_lo is ~2^-22 relative), in the order of the reduction dimension: the small
#: products first (CUTLASS's order), so the corrections are summed in an accumulator still small
#: before the head products arrive. Tests remove one to plant an error (2xTF32).
_3XTF32_TERMS = ("lo*hi", "hi*lo", "hi*hi")
#: "fp32-3xtf32" centres the points (and the queries by a c) before the split GEMMs; a switch for
#: the tests and the benchmark (uncentred, the errors are 2-4x (ybar) and up to 9x (lse) larger
#: under a truncating accumulation model, tests/models/test_esf_3xtf32.py).
_3XTF32_CENTER = True
_TF32_HALF_ULP = 0x1000  # half a TF32 ulp in float32 bit units (13 dropped bits)
_TF32_MASK = -0x2000  # ~0x1FFF as an int32: clears the 13 low mantissa bits


def _tf32_round_bits(t):
    """Round-to-nearest (ties away from zero) of float32 ``t`` to TF32 by integer arithmetic on
    the bit pattern: add half a TF32 ulp to the magnitude (the sign bit is untouched, a mantissa
    carry moves into the exponent: correct across binades, subnormals included) and clear the 13
    low bits. No NaN guard: a NaN pattern can become 0 or inf (see :func:`tf32_round`)."""
    import torch

    return ((t.view(torch.int32) + _TF32_HALF_ULP) & _TF32_MASK).view(torch.float32)


def tf32_round(t):
    r"""float32 tensor ``t`` rounded to the nearest TF32 number (10 explicit mantissa bits, 8
    exponent bits), ties away from zero -- the rounding of CUDA's ``cvt.rna.tf32.f32`` and of
    CUTLASS's ``round_half_ulp_truncate`` -- computed on the bit pattern (``view(torch.int32)``:
    add 0x1000, clear the 13 low bits), so the result does not depend on how a device converts
    float32 to TF32 (tensor cores may truncate). Subnormals round on the same absolute grid
    (2^-136) as the smallest normal binade; finite values at or beyond the midpoint of
    :data:`TF32_MAX` and 2^128 round to +-inf (correct rounding); +-inf, +-0 stay; NaN stays NaN
    (any payload; one ``where``)."""
    import torch

    if not isinstance(t, torch.Tensor) or t.dtype != torch.float32:
        raise TypeError(f"t must be a float32 tensor, got "
                        f"{t.dtype if isinstance(t, torch.Tensor) else type(t).__name__}")
    return torch.where(torch.isnan(t), t, _tf32_round_bits(t))


def tf32_split(t):
    r"""(head, residual) of float32 ``t`` for 3xTF32 GEMMs: :math:`t = t_{hi} + t_{lo}` exactly
    for every finite t, :math:`t_{hi}` = :func:`tf32_round` of t clamped to +-:data:`TF32_MAX`
    (so the head stays finite: at the top of the range it is TF32_MAX and the residual takes the
    rest), :math:`t_{lo} = t - t_{hi}` computed exactly in float32 (Sterbenz: the head is within
    half a TF32 ulp of t), with :math:`|t_{lo}| \le 2^{-11}|t|` (2^-137 for subnormals) and at
    most 13 significant bits.
    The residual is not rounded here: the tensor core converts it (round to nearest or
    truncation, a further :math:`\le 2^{-10}|t_{lo}| \le 2^{-21}|t|`). +-inf gives
    (+-TF32_MAX, +-inf) and NaN a NaN residual, so non-finite inputs propagate through the three
    products. Ootomo & Yokota (2022), "Recovering single precision accuracy from Tensor Cores while
    surpassing the FP32 theoretical peak performance", IJHPCA 36(4); CUTLASS's 3xTF32
    (``OpMultiplyAddFastF32``)."""
    import torch

    if not isinstance(t, torch.Tensor) or t.dtype != torch.float32:
        raise TypeError(f"t must be a float32 tensor, got "
                        f"{t.dtype if isinstance(t, torch.Tensor) else type(t).__name__}")
    hi = _tf32_round_bits(t.clamp(-TF32_MAX, TF32_MAX))
    return hi, t - hi


def _cat3(hi, lo, side: str):
    """The split operands concatenated along the reduction dimension (dim 1) so that one GEMM
    computes the kept products of :data:`_3XTF32_TERMS`: left ``[a_lo, a_hi, a_hi]``, right
    ``[b_hi, b_lo, b_hi]`` (``left @ right.T``)."""
    import torch

    k = 0 if side == "left" else 1
    return torch.cat([hi if term.split("*")[k] == "hi" else lo for term in _3XTF32_TERMS], 1)


def _tf32_gemm(a, b, out=None):
    """``a @ b`` (``out`` None) or ``out += a @ b`` in place: the one place where the TF32 routes
    of :func:`lse_average_torch` ("tf32", "fp32-3xtf32") multiply. On CUDA inside
    ``tf32_matmul(True)`` this is a TF32 tensor-core GEMM with float32 accumulation; on CPU it is
    IEEE float32 (the split products are then plain float32 GEMMs). Tests replace it with an
    emulation of TF32 tensor cores (operands converted to TF32, exact products, float32
    result) to measure the routes' rounding on CPU."""
    import torch

    if out is None:
        return torch.mm(a, b)
    return out.addmm_(a, b)


def split3_mm(a, b):
    r""":math:`a\,b^T` for float32 a (M, K), b (N, K) as ONE TF32 GEMM of inner dimension 3K,
    :math:`[a_{lo}, a_{hi}, a_{hi}]\,[b_{hi}, b_{lo}, b_{hi}]^T = a_{lo}b_{hi}^T + a_{hi}b_{lo}^T
    + a_{hi}b_{hi}^T` (:func:`tf32_split`; run it inside ``tf32_matmul(True)``). Each product is
    exact on the tensor core (11 x 11 significant bits) and accumulated in float32; the dropped
    :math:`a_{lo}b_{lo}` (:math:`\le 2^{-22}`) and the conversion of the two residuals
    (:math:`\le 2^{-22}` each rounding, :math:`2^{-21}` truncating) leave :math:`\le 5\cdot
    2^{-22} = 20u` relative per product, so the error is at float32 SGEMM level,
    :math:`\lesssim (20 + \lambda\sqrt{3K})\,u\,\sum_k |a_{ik} b_{jk}|` (u = 2^-24, the last
    term the accumulation), against :math:`2\cdot 2^{-10}` relative per product for one TF32
    GEMM.
    Ootomo & Yokota (2022) (the 3-term split, residual not scaled: TF32 keeps float32's
    exponent range); CUTLASS 3xTF32 (``OpMultiplyAddFastF32``, example 27/29)."""
    a_hi, a_lo = tf32_split(a)
    b_hi, b_lo = tf32_split(b)
    return _tf32_gemm(_cat3(a_hi, a_lo, "left"), _cat3(b_hi, b_lo, "right").T)


_FUSED_TILE = {}


def _tile_weights_eager(logits, mx, split: bool):
    r"""One tile of the online log-sum-exp of the softmax over the points ([SM] eq. (14)), eager
    (in place on ``logits``): new row max
    :math:`M = \max(m, \max_j \ell_j)`, :math:`\alpha = e^{m - M}`, weights
    :math:`E = e^{\ell - M}` (M replaced by 0 where it is not finite). ``split``: E as
    (E_hi, E_lo), E_hi = TF32 rounding of E (a new tensor; E in [0, 1], no clamp needed), E_lo =
    E - E_hi (in place: the logits' storage). Returns (M, alpha, E) or (M, alpha, E_hi, E_lo).
    Memory passes over the tile: max (read), sub (read + write), exp (read + write); split: 3
    more (bits + half ulp, mask, residual)."""
    import torch

    new = torch.maximum(mx, torch.amax(logits, dim=1))
    safe = torch.where(torch.isfinite(new), new, torch.zeros_like(new))
    alpha = torch.exp(mx - safe)
    logits.sub_(safe[:, None])
    logits.exp_()
    if not split:
        return new, alpha, logits
    hi = (logits.view(torch.int32) + _TF32_HALF_ULP).bitwise_and_(_TF32_MASK).view(torch.float32)
    return new, alpha, hi, logits.sub_(hi)


def _tile_weights_fusable(logits, mx):
    """Out-of-place form of :func:`_tile_weights_eager` (no split) for torch.compile: the row
    max, alpha and the weights in one or two generated kernels (read the logits, write the
    weights once) instead of 3 eager passes."""
    import torch

    new = torch.maximum(mx, logits.amax(1))
    safe = torch.where(torch.isfinite(new), new, torch.zeros_like(new))
    alpha = torch.exp(mx - safe)
    return new, alpha, torch.exp(logits - safe[:, None])


def _tile_weights_split_fusable(logits, mx):
    """:func:`_tile_weights_fusable` with the TF32 split of the weights (E_hi, E_lo) in the same
    generated kernel(s) (6 eager passes otherwise). A separate function: torch.compile's cache
    of graphs per function stays small (one graph per tile shape and dtype)."""
    import torch

    new, alpha, e = _tile_weights_fusable(logits, mx)
    hi = ((e.view(torch.int32) + _TF32_HALF_ULP) & _TF32_MASK).view(torch.float32)
    return new, alpha, hi, e - hi


def _tile_weights(logits, mx, fuse: str, split: bool):
    """The per-tile softmax step of :func:`lse_average_torch`. ``fuse="compile"``:
    :func:`_tile_weights_fusable` through torch.compile (static shapes: one compile per tile
    shape and dtype); a failed compile falls back to the eager passes and records the reason in
    ``_FUSED_TILE["reason"]``. ``"eager"``: :func:`_tile_weights_eager`."""
    import torch

    if fuse == "compile" and _FUSED_TILE.get("failed") is None:
        fn = _FUSED_TILE.get(("fn", split))
        if fn is None:
            fn = _FUSED_TILE[("fn", split)] = torch.compile(
                _tile_weights_split_fusable if split else _tile_weights_fusable, dynamic=False)
        try:
            return fn(logits, mx)
        except Exception as exc:  # noqa: BLE001 -- fall back, with the reason kept
            _FUSED_TILE["failed"] = True
            _FUSED_TILE["reason"] = f"{type(exc).__name__}: {exc}"
    return _tile_weights_eager(logits, mx, split)


def _tiles_torch(n_q, n_k, d_aug, itemsize, budget_bytes, key_block, *, q_cols=2, k_cols=2,
                 pair_items=2):
    """(query chunk, point tile) of :func:`lse_average_torch` within ``budget_bytes``: per query
    ``q_cols`` rows of d_aug (the augmented scaled query and the accumulator: 2) plus stats; per
    point ``k_cols`` rows of d_aug (the augmented tile and its half copy: 2) and the float64 copy
    and square of the tile for the norms; per pair ``pair_items`` (the logit tile and one
    temporary: 2). The "fp32-3xtf32" precision: 8 per query (augmented query, its split, the
    concatenation [q_lo, q_hi, q_hi], two accumulators), 8 per point, 2 or 3 per pair (logits /
    E_lo and E_hi; a compiled tile step writes E_hi and E_lo next to the logits)."""
    per_q = (q_cols * d_aug + 8) * itemsize
    per_k = k_cols * d_aug * itemsize + 2 * (d_aug + 8) * 8  # + float64 copy and square for |y|^2
    per_qk = pair_items * itemsize
    return fit_tiles(n_q, n_k, per_q, per_k, per_qk, budget_bytes, min(n_k, key_block),
                     f"(augmented dimension {d_aug})")


def _check_query_key_pair(x, keys) -> None:
    """The torch routes' shared input contract: x (N, d) and keys (n, d) torch tensors on one
    device, x float32 or float64 (clear TypeError / ValueError naming what is wrong)."""
    import torch

    if not isinstance(x, torch.Tensor) or not isinstance(keys, torch.Tensor):
        raise TypeError("x and keys must be torch tensors")
    if x.ndim != 2 or keys.ndim != 2 or keys.shape[1] != x.shape[1]:
        raise ValueError(f"x must be (N, d) and keys (n, d) with the same d, got "
                         f"{tuple(x.shape)}, {tuple(keys.shape)}")
    if keys.device != x.device:
        raise ValueError(f"keys are on {keys.device} but x is on {x.device}")
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"x must be float32 or float64, got {x.dtype}")


@source("SM", "Sec. 2, eq. (14) (softmax over the training points), online log-sum-exp",
        "sm.esf", "core.models.tweedie")
def lse_average_torch(x, keys, a, w, *, sqnorms=None, precision: str = "exact",
                      budget_bytes: int | None = None, key_block: int | None = None,
                      fuse: str = "eager"):
    r"""The expanded-form :func:`lse_average` for torch tensors on any device, as two GEMMs per
    tile with the bias folded in: augmented queries :math:`[(a_i/w_i) x_i,\ h_i,\ h_i,\ l_i,\ 0]`
    and points :math:`[y_j,\ H_j,\ L_j,\ H_j,\ 1]` (zero-padded to a multiple of 8 columns), where
    :math:`-a_i^2/2w_i = h_i + l_i` and :math:`|y_j|^2 = H_j + L_j` are split (in float64) into a
    head in the GEMM dtype and its rounding residual (0 in float64; in float32 / half precision
    the norm term keeps ~eps^2 relative error instead of eps). One product gives the logits
    :math:`\ell_{ij} + |x_i|^2/2w_i`, and the second, :math:`E` times the augmented points, the
    weighted sum of the points and (column d + 3) the sum of the weights: per tile one GEMM, a
    row max, one in-place ``sub``/``exp``, one GEMM with
    accumulation ([SM] eq. (14); online log-sum-exp as in flash attention).

    Returns (logsumexp of the expanded logits (N,), :math:`\bar y` (N, d)) as :func:`lse_average`
    (the caller subtracts |x|^2/2w). Memory: queries in chunks and points in tiles so that the
    working set stays under ``budget_bytes`` (:data:`DEFAULT_BUDGET_BYTES_ACCEL` on accelerators,
    :data:`DEFAULT_BUDGET_BYTES` on CPU); nothing of size N x n is formed.

    ``precision``: "exact" (arithmetic in x's dtype, TF32 forced off and restored), "tf32"
    (float32 x; TF32 GEMMs), "fp32-3xtf32" (float32 x; float32 accuracy from TF32 tensor cores,
    below), "fp16" / "bf16" (inputs rounded to half precision, float32 logits, sums and outputs;
    rounding of every logit ~ eps_half sqrt(d) (|x| + a ymax)^2 / 2w). The fast precisions return
    float32; callers measure their error against float64.

    "fp32-3xtf32" (Ootomo & Yokota 2022, "Recovering single precision accuracy from Tensor Cores
    while surpassing the FP32 theoretical peak performance"; CUTLASS's 3xTF32): every float32
    operand is split by :func:`tf32_split` into a TF32 head and its exact float32 residual,
    :math:`a = a_{hi} + a_{lo}`, and :math:`ab \approx a_{hi}b_{hi} + a_{hi}b_{lo} + a_{lo}b_{hi}`
    (each product exact on the tensor core, float32 accumulation; the dropped
    :math:`a_{lo}b_{lo}` and the residuals' conversion are :math:`\le 5\cdot 2^{-22}`
    relative per product), TF32 forced on inside and restored. The logits GEMM is ONE GEMM of
    inner dimension 3 d_aug, :math:`[Q_{lo}, Q_{hi}, Q_{hi}]\,[K_{hi}, K_{lo}, K_{hi}]^T`
    (:func:`split3_mm`); the weights :math:`E = e^{\ell - M} \in [0, 1]` are split too and the
    second product is :math:`E_{hi}[K_{hi}, K_{lo}]` (one GEMM, the concatenation along the
    output columns: no copy of the N x n tile) plus :math:`E_{lo}K_{hi}`, the head and the
    correction terms in two float32 accumulators (summed at the end). The small products come
    first along the reduction dimension (:data:`_3XTF32_TERMS`), and the points are centred,
    :math:`y' = y - c`, :math:`x' = x - a c` (c their mean; the expansion is invariant to the
    shift, lse is moved back by :math:`(|x|^2 - |x'|^2)/2w` in float64 and :math:`c` added to
    :math:`\bar y`; ``sqnorms`` is not used): smaller partial sums, smaller accumulation errors
    -- tensor cores may accumulate with truncation (Fasi et al. 2021, "Numerical behavior of
    NVIDIA tensor cores"), and under that model the uncentred errors are 2-9x the exact float32
    route's, the centred ones 0.6-2.3x. The error is then that of "exact" float32 up to a small
    factor (tests/models/test_esf_3xtf32.py emulates TF32 on CPU; benchmarks/bench_gpu.py
    measures it against float64) at the cost of 3 TF32 GEMMs (3x fewer effective FLOP/s than
    TF32, ~2.5x more than the plain float32 SGEMM peak on an H100/H200). On CPU the split
    products are IEEE float32 GEMMs.

    ``fuse``: "eager" (default: in-place row max / sub / exp passes per tile) or "compile" (opt-in:
    the row max, the rescale factor and the weights, with their TF32 split for "fp32-3xtf32", in
    one torch.compile'd function per tile, :func:`_tile_weights`: fewer memory passes over the
    N x n tile; the first call compiles, seconds; a failed compile falls back to eager with the
    reason in ``_FUSED_TILE``). Same arithmetic up to the last bit of exp.
    """
    import torch

    if precision not in TORCH_PRECISIONS:
        raise ValueError(f"precision must be one of {TORCH_PRECISIONS}, got {precision!r}")
    _check_query_key_pair(x, keys)
    if precision in ("tf32", "fp32-3xtf32") and x.dtype != torch.float32:
        raise TypeError(f"precision={precision!r} needs float32 x, got {x.dtype}")
    if fuse not in ("eager", "compile"):
        raise ValueError(f"fuse must be 'eager' or 'compile', got {fuse!r}")
    split3 = precision == "fp32-3xtf32"
    tf32 = precision in ("tf32", "fp32-3xtf32")
    n_q, d = x.shape
    n_k = keys.shape[0]
    accel = x.device.type != "cpu"
    if budget_bytes is None:
        budget_bytes = DEFAULT_BUDGET_BYTES_ACCEL if accel else DEFAULT_BUDGET_BYTES
    budget = check_budget(budget_bytes)
    if key_block is None:
        key_block = KEY_BLOCK_ACCEL if accel else KEY_BLOCK
    half = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    cdt = torch.float32 if half is not None else x.dtype  # logits / sums / outputs
    gdt = half if half is not None else x.dtype  # GEMM inputs
    d_aug = _pad8(d + 4)
    if split3:
        cols = {"q_cols": 8, "k_cols": 8, "pair_items": 3 if fuse == "compile" else 2}
    else:
        cols = {}
    bq, bk = _tiles_torch(n_q, n_k, d_aug, x.element_size(), budget, int(key_block), **cols)
    per_row = any(isinstance(t, torch.Tensor) and t.ndim == 1 for t in (a, w))
    if per_row:  # one (a, w) per query: both as (N,) tensors on x's device
        a, w = (t.to(device=x.device, dtype=torch.float64).expand(n_q)
                if isinstance(t, torch.Tensor) else
                torch.full((n_q,), float(t), dtype=torch.float64, device=x.device)
                for t in (a, w))
    center = None
    if split3 and _3XTF32_CENTER:
        # centre c = mean of the points (float64 sum, no float64 copy on CUDA): the expansion is
        # invariant to a common shift of x / a and y, and smaller partial sums mean smaller
        # accumulation errors (the tensor cores may accumulate with truncation)
        c64 = keys.sum(0, dtype=torch.float64) / n_k
        center = c64.to(torch.float32)
    lse_parts, avg_parts = [], []
    with tf32_matmul(tf32):
        for q0 in range(0, n_q, bq):
            q1 = min(n_q, q0 + bq)
            xq = x[q0:q1].to(cdt)
            aq = a[q0:q1].to(cdt) if per_row else a
            wq = w[q0:q1].to(cdt) if per_row else w
            if center is not None:  # x' = x - a c (float32), the points y' = y - c per tile
                x_raw = xq
                xq = xq - (aq[:, None] if per_row else aq) * center
            coef = aq / wq
            qa = torch.zeros((q1 - q0, d_aug), dtype=gdt, device=x.device)
            qa[:, :d] = xq * (coef[:, None] if per_row else coef)
            hq, lq = _split(-0.5 * _f64(aq) * _f64(aq) / _f64(wq), gdt, x.device)
            qa[:, d], qa[:, d + 1], qa[:, d + 2] = hq, hq, lq
            if split3:  # [q_lo, q_hi, q_hi]: one GEMM computes the three products
                q_hi, q_lo = tf32_split(qa)
                qg = _cat3(q_hi, q_lo, "left")
                del qa, q_hi, q_lo
            else:
                qg = qa
            mx = torch.full((q1 - q0,), -math.inf, dtype=cdt, device=x.device)
            # 3xTF32: [head products | correction products], summed at the end
            acc = torch.zeros((q1 - q0, 2 * d_aug if split3 else d_aug), dtype=cdt,
                              device=x.device)
            for k0 in range(0, n_k, bk):
                k1 = min(n_k, k0 + bk)
                yc = keys[k0:k1]
                kg = torch.zeros((k1 - k0, d_aug), dtype=gdt, device=x.device)
                kg[:, :d] = yc
                if center is not None:  # y' = y - c and |y'|^2 of the float32 y' used
                    kg[:, :d] -= center
                    y64 = kg[:, :d].to(torch.float64)
                    nrm = (y64 * y64).sum(1)
                elif sqnorms is not None and sqnorms.dtype == torch.float64:
                    nrm = sqnorms[k0:k1]
                else:
                    y64 = yc.to(torch.float64)
                    nrm = (y64 * y64).sum(1)
                hk, lk = _split(nrm, gdt, x.device)
                kg[:, d], kg[:, d + 1], kg[:, d + 2] = hk, lk, hk
                kg[:, d + 3] = 1.0
                if split3:
                    k_hi, k_lo = tf32_split(kg)
                    logits = _tf32_gemm(qg, _cat3(k_hi, k_lo, "right").T)
                    # E_hi [K_hi, K_lo] (head and one correction) + E_lo K_hi (the other)
                    k2 = torch.cat([k_hi, k_lo if "hi*lo" in _3XTF32_TERMS
                                    else torch.zeros_like(k_lo)], 1)
                elif half is not None:
                    logits = _mm32(qg, kg.T)
                elif tf32:
                    logits = _tf32_gemm(qg, kg.T)
                else:
                    logits = torch.mm(qg, kg.T)
                new, alpha, *wts = _tile_weights(logits, mx, fuse, split3)
                acc.mul_(alpha[:, None])
                if split3:
                    e_hi, e_lo = wts
                    _tf32_gemm(e_hi, k2, out=acc)
                    if "lo*hi" in _3XTF32_TERMS:
                        _tf32_gemm(e_lo, k_hi, out=acc[:, d_aug:])
                    del e_hi, e_lo, k2, k_hi, k_lo
                elif half is not None:
                    acc.add_(_mm32(wts[0].to(gdt), kg))
                elif tf32:
                    _tf32_gemm(wts[0], kg, out=acc)
                else:
                    acc.addmm_(wts[0], kg)
                mx = new
                del logits, wts
            if split3:
                acc = acc[:, :d_aug] + acc[:, d_aug:]
            sm = acc[:, d + 3]
            lse_c = mx + torch.log(sm)
            avg = acc[:, :d] / sm[:, None]
            if center is not None:  # back to the uncentred expansion: + (|x|^2 - |x'|^2) / 2w
                x64, xc64 = x_raw.to(torch.float64), xq.to(torch.float64)
                shift = ((x64 * x64).sum(1) - (xc64 * xc64).sum(1)) * (0.5 / w[q0:q1]
                                                                        if per_row else 0.5 / w)
                lse_c = (lse_c.to(torch.float64) + shift).to(cdt)
                avg = avg + center
            lse_parts.append(lse_c)
            avg_parts.append(avg)
    if len(lse_parts) == 1:
        return lse_parts[0], avg_parts[0]
    return torch.cat(lse_parts), torch.cat(avg_parts)


#: Precisions of :func:`posterior_average_sdpa`.
SDPA_PRECISIONS = ("fp16", "bf16", "fp32")


def _sdpa_dtype(precision: str):
    import torch

    if precision not in SDPA_PRECISIONS:
        raise ValueError(f"precision must be one of {SDPA_PRECISIONS}, got {precision!r}")
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[precision]


def prepare_sdpa_keys(keys, precision: str, *, center=None) -> dict:
    """The key and value matrices of :func:`posterior_average_sdpa` for points ``keys`` (n, d):
    k_j = [y'_j, H_j, L_j, H_j], v_j = [y'_j, 0, 0, 0] (zero-padded to a multiple of 8 columns),
    y' = y - c with c the mean of the points (or ``center``), |y'|^2 = H + L split in float64."""
    import torch

    dt = _sdpa_dtype(precision)
    n, d = keys.shape
    d_aug = _pad8(d + 3)
    k64 = keys.to(torch.float64)
    c = k64.mean(0) if center is None else center.to(device=keys.device, dtype=torch.float64)
    yc = k64 - c
    hi, lo = _split((yc * yc).sum(1), dt, keys.device)
    kk = torch.zeros((n, d_aug), dtype=dt, device=keys.device)
    kk[:, :d] = yc.to(dt)
    kk[:, d], kk[:, d + 1], kk[:, d + 2] = hi, lo, hi
    vv = torch.zeros_like(kk)
    vv[:, :d] = kk[:, :d]
    return {"k": kk, "v": vv, "center": c, "precision": precision, "n": n}


@source("SM", "Sec. 2, eq. (14): the posterior mean as attention softmax(q k^T) V",
        "sm.esf", "core.models.tweedie")
def posterior_average_sdpa(x, keys, a: float, w: float, *, precision: str = "fp16",
                           center=None, query_block: int = 16384, prepared=None):
    r"""Opt-in fast route: :math:`\bar y = \operatorname{softmax}_j(\ell)\,Y` as one
    ``torch.nn.functional.scaled_dot_product_attention`` call per query block (fused attention:
    nothing of size N x n is formed, memory O((N + n) d)).

    With the points centred, :math:`y'_j = y_j - c`, :math:`x' = x - a c` (c the mean of the
    points; the logits are unchanged: :math:`|x - a y_j| = |x' - a y'_j|`), the per-query
    constant dropped and SDPA's ``scale`` = 1/w:

    .. math::
        \ell_j = \tfrac1w\Big(a\,x'\cdot y'_j - \tfrac{a^2}2 |y'_j|^2\Big)
        = \tfrac1w\, q\cdot k_j,\quad q = [a x',\ h,\ h,\ l],\ k_j = [y'_j,\ H_j,\ L_j,\ H_j],

    where :math:`-a^2/2 = h + l` and :math:`|y'_j|^2 = H_j + L_j` are split into a half-precision
    head and its rounding residual, so the norm term keeps ~eps_half^2 relative error; columns
    zero-padded to a multiple of 8 (alignment of the fused kernels). V = y' (padded); the output
    is :math:`\bar y' + c`. ``precision``: "fp16", "bf16" or "fp32" (the fp32 SDPA kernels; TF32
    where the kernel uses it). Returns :math:`\bar y` (N, d) in x's dtype; the error of every
    logit is about eps_p sqrt(d) a |x'| |y'| / w (measured against float64 by the benchmark).
    ``a``, ``w``: floats (one time for all queries). ``prepared``: the output of
    :func:`prepare_sdpa_keys` for these keys and precision (the key side does not depend on the
    time, so one preparation serves every (a, w)).
    """
    import torch
    import torch.nn.functional as F

    dt = _sdpa_dtype(precision)
    if keys.device != x.device:
        raise ValueError(f"keys are on {keys.device} but x is on {x.device}")
    if not (isinstance(w, float) and w > 0 and math.isfinite(w)) or not isinstance(a, float):
        raise ValueError(f"a and w must be floats with w > 0, got a={a!r}, w={w!r}")
    if prepared is None:
        prepared = prepare_sdpa_keys(keys, precision, center=center)
    elif prepared["precision"] != precision or prepared["n"] != keys.shape[0]:
        raise ValueError("prepared keys were made for another precision or point set")
    kk, vv, c = prepared["k"], prepared["v"], prepared["center"]
    n_q, d = x.shape
    d_aug = kk.shape[1]
    # -a^2/2 = qh + ql, split on the host (Python floats: no device tensors, no sync)
    qh = float(torch.tensor(-0.5 * a * a, dtype=torch.float64).to(dt))
    ql = float(torch.tensor(-0.5 * a * a - qh, dtype=torch.float64).to(dt))
    outs = []
    for q0 in range(0, n_q, query_block):
        xq = x[q0:q0 + query_block].to(torch.float64) - a * c
        qq = torch.zeros((xq.shape[0], d_aug), dtype=dt, device=x.device)
        qq[:, :d] = (a * xq).to(dt)
        qq[:, d], qq[:, d + 1], qq[:, d + 2] = qh, qh, ql
        o = F.scaled_dot_product_attention(qq[None, None], kk[None, None], vv[None, None],
                                           scale=1.0 / w)[0, 0, :, :d]
        outs.append(o.to(torch.float64) + c)
    out = outs[0] if len(outs) == 1 else torch.cat(outs)
    return out.to(x.dtype)


# ---- the fast route: one half-precision GEMM, exp of the row-shifted logits, one GEMM per chunk --
#: Precisions of :func:`lse_average_fast` (opt-in; ``evaluate_empirical(precision="fp16-fast")``
#: etc.): "fp16" / "bf16" (GEMM inputs in half precision, float32 accumulation and logits,
#: softmax in float32, weights rounded to half for the second GEMM), "tf32" (float32 inputs,
#: TF32 tensor-core GEMMs, float32 softmax weights).
FAST_PRECISIONS = ("fp16", "bf16", "tf32")
#: Unit roundoff of the GEMM inputs of each fast precision (TF32 keeps 10 mantissa bits; its input
#: conversion may truncate, hence 2^-10 rather than 2^-11).
FAST_UNIT_ROUNDOFF = {"fp16": 2.0**-11, "bf16": 2.0**-8, "tf32": 2.0**-10}
#: The softmax weights are multiplied by 2^15 before they are rounded to fp16 (max weight 1 ->
#: 32768 < 65504), so that weights down to ~2e-9 stay normal numbers (unscaled, every weight
#: below 6e-5 would be subnormal, with an absolute error up to 3e-8 each, n times); the ones
#: column of the value matrix divides the scale out again.
WEIGHT_SCALE = 2.0**15
#: Bytes per (query, point) pair of one fast-route tile: the float32 logits and the weights in
#: the GEMM dtype alive together (half: 4 + 2; tf32: 4 + 4, a compiled kernel writes a copy).
FAST_BYTES_PER_PAIR = {"fp16": 6, "bf16": 6, "tf32": 8}


def fast_logit_error(x, a, w, ymax_c: float, eps: float):
    r"""Documented rounding estimate of the logits of :func:`lse_average_fast` (absolute, per
    query, numpy/torch (N,); ``x`` the centred queries x - a c):
    :math:`\delta = 2u\,|a\,(x - a c)|\, y'_{max} / w` with u the unit
    roundoff of the GEMM inputs (:data:`FAST_UNIT_ROUNDOFF`), c the centre of the points and
    :math:`y'_{max} = \max_j |y_j - c|`: each of the d products :math:`q_k y'_{jk}` of the logit
    GEMM carries two input roundings (relative u each), and :math:`\sum_k |q_k y'_{jk}| \le |q|\,
    |y'_j|` (Cauchy-Schwarz) with :math:`q = (a/w)(x - ac)`. The norm term
    :math:`-a^2|y'_j|^2/2w` is split into a head and its residual and carries ~u^2; the float32
    accumulation adds ~d eps32 |q||y'| (negligible). A responsibility then has relative error
    <= 2 delta, and :math:`\bar y` an error <= 2(\delta + u_w) \max_j |y_j - \bar y| + u_w y'_max`
    (u_w: rounding of the weights and of the values, 2^-11 for fp16, 2^-8 for bf16, 0 for tf32).
    A worst-case bound (all roundings aligned): measured errors are ~1e2-1e3 times smaller
    (random roundings cancel as sqrt(d)); benchmarks/bench_gpu.py reports them."""
    xn = (x * x).sum(1) ** 0.5
    return 2.0 * eps * abs(a) * xn * ymax_c / w


def _gemm_dtype(precision: str):
    import torch

    if precision not in FAST_PRECISIONS:
        raise ValueError(f"precision must be one of {FAST_PRECISIONS}, got {precision!r}")
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "tf32": torch.float32}[precision]


def _split_lowp(v, precision: str):
    """(head, residual) of a float32 tensor in the GEMM input format: head + residual = v to
    ~u^2 relative. fp16 / bf16: the rounded head and the rounded residual; tf32: the head keeps
    the top 10 mantissa bits (bit mask, exact in TF32 whether the hardware rounds or truncates),
    the residual is exact in float32 and carries <= 13 significant bits."""
    import torch

    if precision == "tf32":
        hi = (v.contiguous().view(torch.int32) & ~0x1FFF).view(torch.float32)
        return hi, v - hi
    dt = _gemm_dtype(precision)
    hi = v.to(dt)
    return hi, (v - hi.float()).to(dt)


def _round_scalar(v32: np.float32, precision: str) -> np.float32:
    """One float32 rounded to the GEMM format of ``precision`` as torch's ``.to()`` does it
    (round to nearest even; fp16 overflows to inf) or, for tf32, truncated as
    :func:`_split_lowp` does; numpy only, so a host scalar never becomes a tensor."""
    if precision == "fp16":
        with np.errstate(over="ignore"):
            return np.float32(np.float16(v32))
    bits = np.array(v32, dtype=np.float32).view(np.uint32).astype(np.uint64)
    if precision == "tf32":
        return np.array(bits & 0xFFFFE000, dtype=np.uint32).view(np.float32)[()]
    if not np.isfinite(v32):
        return np.float32(v32)
    # bf16: keep the top 16 bits, rounding to nearest even (carries into the exponent as needed)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return np.array(bits, dtype=np.uint32).view(np.float32)[()]


def _split_scalar(val: float, precision: str):
    """:func:`_split_lowp` of one Python float, on the host in numpy (no tensor at all, so no
    conversion that could synchronize): (hi, lo) as Python floats."""
    v = np.float32(val)
    hi = _round_scalar(v, precision)
    with np.errstate(invalid="ignore"):  # inf - inf = nan, as torch
        lo = np.float32(v - hi)
    lo = lo if precision == "tf32" else _round_scalar(lo, precision)
    return float(hi), float(lo)


def prepare_fast_keys(keys, precision: str, *, center=None) -> dict:
    r"""The point side of :func:`lse_average_fast` (time-independent: one preparation serves every
    (a, w) and every query): centre :math:`c` (float32 mean of the points unless ``center``),
    :math:`y' = y - c`, and the augmented matrix :math:`K = [y',\ H/2^e,\ L/2^e,\ H/2^e,\ 1,\ 0
    \dots]` in the GEMM dtype (columns zero-padded to a multiple of 8), with :math:`|y'|^2 = H + L`
    split by :func:`_split_lowp` and :math:`2^e` the power of two at or above max |y'|^2 (the
    norm columns stay in [0, 1]: no fp16 overflow). K serves both GEMMs: as keys (the query has
    0 in the ones column) and as values (the ones column sums the weights). All arithmetic in
    float32 on the points' device."""
    import torch

    gdt = _gemm_dtype(precision)
    if not isinstance(keys, torch.Tensor) or keys.ndim != 2:
        raise TypeError("keys must be a torch tensor of shape (n, d)")
    if not keys.is_floating_point():
        raise TypeError(f"keys must be a floating tensor, got {keys.dtype}")
    n, d = keys.shape
    if n == 0:
        raise ValueError("keys is empty")
    y = keys.to(torch.float32)
    if center is None:
        c = y.mean(0)
    else:
        c = torch.as_tensor(center).to(device=keys.device, dtype=torch.float32)
        if c.shape != (d,):
            raise ValueError(f"center must have shape ({d},), got {tuple(c.shape)}")
    yc = y - c
    nrm = (yc * yc).sum(1)
    # 2^e >= max |y'|^2 (one host sync, at preparation only)
    e = math.ceil(math.log2(max(float(nrm.max()), 2.0**-60)))
    hi, lo = _split_lowp(nrm * 2.0**-e, precision)
    kk = torch.zeros((n, _pad8(d + 4)), dtype=gdt, device=keys.device)
    kk[:, :d] = yc
    kk[:, d], kk[:, d + 1], kk[:, d + 2] = hi, lo, hi
    kk[:, d + 3] = 1.0
    ymax_c = float(nrm.max()) ** 0.5
    return {"k": kk, "center": c, "norm_scale": 2.0**e, "precision": precision, "n": n, "d": d,
            "device": keys.device, "ymax_c": ymax_c}


def _fast_tiles(n_q: int, n_k: int, d: int, gsize: int, budget_bytes: int, prepared: bool,
                per_pair: int = 6):
    """(query chunk, point tile) of :func:`lse_average_fast` within ``budget_bytes``: per pair
    ``per_pair`` (:data:`FAST_BYTES_PER_PAIR`); per query the centred float32 query, its
    augmented GEMM copy, the float32 GEMM output and accumulator, stats; per point (when the
    keys are not prepared) the float32 centred tile, its norms and the augmented GEMM copy. The
    whole point set in one tile when it fits with at least min(N, QUERY_MIN) queries; otherwise
    the point tile halves. Query chunks balanced (equal sizes within one)."""
    d_aug = _pad8(d + 4)
    per_q = 4 * d + gsize * d_aug + 2 * 4 * d_aug + 64
    per_k = 0 if prepared else 4 * d + 8 + gsize * d_aug
    bq, bk = fit_tiles(n_q, n_k, per_q, per_k, per_pair, budget_bytes, n_k,
                       f"in d = {d} (fast route)", round_up=True)
    chunks = -(-n_q // bq)  # balanced query chunks
    return -(-n_q // chunks), bk


_FUSED = {}


def _exp_weights_eager(s, m, scale: float, out_dtype):
    r""":math:`\mathrm{scale}\cdot\exp(S - m)` (m the row max: every weight in (0, scale]) in
    ``out_dtype``; in place on the float32 logits, then one pass into the half tensor."""
    import torch

    s.sub_(m[:, None]).exp_()
    if out_dtype == torch.float32:
        return s.mul_(scale) if scale != 1.0 else s
    out = torch.empty(s.shape, dtype=out_dtype, device=s.device)
    return torch.mul(s, scale, out=out)


def _exp_weights_fusable(s, m, scale: float, out_dtype):
    """Out-of-place form of :func:`_exp_weights_eager` for torch.compile (one pointwise kernel)."""
    return ((s - m[:, None]).exp() * scale).to(out_dtype)


def _exp_weights(s, m, scale: float, out_dtype, fuse: str):
    """The unnormalised weights of :func:`lse_average_fast`. ``fuse="compile"``: one compiled
    pointwise kernel (read the float32 logits once, write the half weights once; torch.compile,
    static shapes: one compile per tile shape); a failed compile falls back to the eager passes
    and records the reason in ``_FUSED["reason"]``. ``"auto"``: compile on CUDA half
    precisions, eager otherwise."""
    import torch

    if fuse == "auto":
        fuse = "compile" if s.device.type == "cuda" and out_dtype != torch.float32 else "eager"
    if fuse == "compile" and _FUSED.get("failed") is None:
        fn = _FUSED.get("fn")
        if fn is None:
            # static shapes (a vectorised kernel, cheap guards); balanced query chunks keep the
            # number of shapes small
            fn = _FUSED["fn"] = torch.compile(_exp_weights_fusable, dynamic=False)
        try:
            return fn(s, m, scale, out_dtype)
        except Exception as exc:  # noqa: BLE001 -- fall back, with the reason kept
            _FUSED["failed"] = True
            _FUSED["reason"] = f"{type(exc).__name__}: {exc}"
    return _exp_weights_eager(s, m, scale, out_dtype)


@source("SM", "Sec. 2, eq. (14): the posterior mean as softmax(q k^T) V over the training points",
        "sm.esf", "core.models.tweedie")
def lse_average_fast(x, keys, a, w, *, precision: str = "fp16", budget_bytes: int | None = None,
                     prepared: dict | None = None, center=None, want_lse: bool = True,
                     fuse: str = "auto", check_finite: bool = True):
    r"""Opt-in fast route for (:math:`\operatorname{logsumexp}_j -|x_i - a_i y_j|^2/2w_i` (N,),
    :math:`\bar y_i = \sum_j\operatorname{softmax}_j(\cdot)\,y_j` (N, d)), shaped for tensor cores:
    per query chunk (and point tile only when the points do not fit ``budget_bytes``)

    1. one GEMM :math:`S = Q K^T` with inputs in the GEMM dtype and float32 accumulation and
       output, :math:`Q = [(a/w)(x - ac),\ 2^e h,\ 2^e h,\ 2^e l,\ 0]`, K from
       :func:`prepare_fast_keys` (centred points and their split norms), so
       :math:`S_{ij} = \ell_{ij} + |x_i - a c|^2/2w` with :math:`-a^2/2w = h + l` split too
       (the expansion of [SM] eq. (14) is invariant to the shift c of x and y);
    2. the row max :math:`m_i` of S (one reduction) and the unnormalised weights
       :math:`P = 2^{15}\exp(S - m)` (fp16; 1 for bf16) computed in float32 and rounded once to the
       GEMM dtype (float32 for tf32) -- one pointwise kernel when compiled (``fuse``);
    3. one GEMM :math:`P K` (float32 output): columns :math:`:d` are the weighted sums of
       :math:`y'`, column d + 3 the sum :math:`\sigma` of the rounded weights (so the rounding of
       P does not bias the normalisation); :math:`\bar y = (PK)_{:d} / \sigma + c`.

    logsumexp is :math:`m + \log(\sigma / 2^{15}) - |x_i - ac|^2/2w` (no extra pass; relative
    error of sigma <= the weights' rounding u). Point tiles, if any, merge by their log-sum-exp
    (exact rescaling, as flash-decoding). No float64 arithmetic on the device.

    Error model (:func:`fast_logit_error`): every logit carries an absolute error
    :math:`\delta \lesssim 2u\,|a(x - ac)|\,|y - c|/w` (u: :data:`FAST_UNIT_ROUNDOFF`), so the
    centring matters: it replaces |x|, |y| by the spread around the data. The benchmark measures
    the error against float64 for each precision.

    ``x`` (N, d) float32 or float64 (converted to float32), ``keys`` (n, d) on x's device;
    ``a``, ``w`` floats or (N,) tensors, w > 0. ``prepared``: :func:`prepare_fast_keys` output
    for these keys and precision (else made here, counted in the budget unless the tiler must
    split the points, when each tile is prepared in turn). ``fuse``: "eager", "compile"
    (exp, scale and rounding as one torch.compile'd kernel; the first call compiles, seconds) or
    "auto" (compile on CUDA for fp16 / bf16, eager otherwise). ``check_finite``: one host sync
    at the end; ValueError naming the cause when an output is not finite (fp16 overflow of the
    inputs: |a x / w| or the logits beyond 65504). Returns float32 tensors ((N,) or None, (N, d)).

    Measured on an NVIDIA H200 (torch 2.11+cu130; benchmarks/bench_gpu.py, B = 4096, n = 60000,
    d = 784, keys prepared, budget 1 GiB): fp16 compiled 2.50 ms per isolated call (naive TF32
    4.52 ms: x1.81) and 1.97 ms per call back to back without the finiteness sync (x2.3 of a
    4.5 ms baseline); max |ybar - ybar_float64| 4.4e-4 (fp16), 4.8e-3 (bf16), 4.5e-4 (tf32,
    4.53 ms); naive TF32 1.0e-3. Kernel time per 2048-query chunk: GEMM 0.34 ms, row max 0.13,
    compiled exp/round 0.26, GEMM 0.27.
    """
    import torch

    gdt = _gemm_dtype(precision)
    if fuse not in ("auto", "eager", "compile"):
        raise ValueError(f"fuse must be 'auto', 'eager' or 'compile', got {fuse!r}")
    _check_query_key_pair(x, keys)
    if keys.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"keys must be float32 or float64, got {keys.dtype}")
    n_q, d = x.shape
    n_k = keys.shape[0]
    if prepared is not None:
        if prepared["precision"] != precision or prepared["n"] != n_k or prepared["d"] != d:
            raise ValueError("prepared keys were made for another precision or point set")
        if prepared["device"] != x.device:
            raise ValueError(f"prepared keys are on {prepared['device']} but x is on {x.device}")
    per_row = any(isinstance(t, torch.Tensor) for t in (a, w))
    if per_row:
        a, w = (t.to(device=x.device, dtype=torch.float32).reshape(-1).expand(n_q)
                if isinstance(t, torch.Tensor) else
                torch.full((n_q,), float(t), dtype=torch.float32, device=x.device)
                for t in (a, w))
    else:
        a, w = float(a), float(w)
        if not (w > 0 and math.isfinite(w) and math.isfinite(a)):
            raise ValueError(f"a must be finite and w > 0, got a={a!r}, w={w!r}")
    accel = x.device.type != "cpu"
    if budget_bytes is None:
        budget_bytes = DEFAULT_BUDGET_BYTES_ACCEL if accel else DEFAULT_BUDGET_BYTES
    budget = check_budget(budget_bytes)
    gsize = torch.empty((), dtype=gdt).element_size()
    d_aug = _pad8(d + 4)
    # keys prepared once when they fit next to one tile row, else tile by tile
    if prepared is None:
        bq, bk = _fast_tiles(n_q, n_k, d, gsize, budget, False, FAST_BYTES_PER_PAIR[precision])
        if bk == n_k:
            prepared = prepare_fast_keys(keys, precision, center=center)
            whole = prepared
        else:
            c32 = (keys.to(torch.float32).mean(0) if center is None else
                   torch.as_tensor(center).to(device=x.device, dtype=torch.float32))
            whole = None
    else:
        bq, bk = _fast_tiles(n_q, n_k, d, gsize, budget, True, FAST_BYTES_PER_PAIR[precision])
        whole = prepared
    c = whole["center"] if whole is not None else c32
    tiles = []
    for k0 in range(0, n_k, bk):
        k1 = min(n_k, k0 + bk)
        tiles.append((k0, k1))
    wdt = gdt if precision != "tf32" else torch.float32
    scale = WEIGHT_SCALE if precision == "fp16" else 1.0
    def augmented_queries(xc, aq, wq, ns):
        """[(a/w)(x - ac), 2^e h, 2^e h, 2^e l, 0...] in the GEMM dtype, -a^2/2w = h + l."""
        coef = aq / wq
        qa = torch.zeros((xc.shape[0], d_aug), dtype=gdt, device=x.device)
        qa[:, :d] = xc * (coef[:, None] if per_row else coef)
        if per_row:
            hq, lq = _split_lowp(-0.5 * aq * coef * ns, precision)
        else:
            hq, lq = _split_scalar(-0.5 * aq * coef * ns, precision)
        qa[:, d], qa[:, d + 1], qa[:, d + 2] = hq, hq, lq
        return qa

    # all queries at once (few kernel launches: the host must keep ahead of the GPU)
    xc_all = x.to(torch.float32) - (a[:, None] if per_row else a) * c
    half_x2 = (xc_all * xc_all).sum(1) * (0.5 / w)  # |x - ac|^2 / 2w
    qa_all = augmented_queries(xc_all, a, w, whole["norm_scale"]) if whole is not None else None
    lse_parts, avg_parts = [], []
    with tf32_matmul(precision == "tf32"):
        for q0 in range(0, n_q, bq):
            q1 = min(n_q, q0 + bq)
            mx = acc = tot = None
            for k0, k1 in tiles:
                if whole is not None:
                    kk, qa = whole["k"], qa_all[q0:q1]
                else:
                    kp = prepare_fast_keys(keys[k0:k1], precision, center=c)
                    kk = kp["k"]
                    qa = augmented_queries(xc_all[q0:q1], a[q0:q1] if per_row else a,
                                           w[q0:q1] if per_row else w, kp["norm_scale"])
                s = _mm32(qa, kk.T) if precision != "tf32" else torch.mm(qa, kk.T)
                del qa
                smax = s.amax(1)
                p = _exp_weights(s, smax, scale, wdt, fuse)
                del s
                out = _mm32(p, kk) if precision != "tf32" else torch.mm(p, kk)
                del p
                ssum = out[:, d + 3]  # scale * sum_j exp(s_j - max s) (rounded weights)
                part = out[:, :d] / ssum[:, None]  # normalised mean of this tile
                lse_t = smax + torch.log(ssum * (1.0 / scale))
                if len(tiles) == 1:
                    mx, acc = lse_t, part
                    continue
                if mx is None:
                    mx, acc, tot = lse_t, part, torch.ones_like(lse_t)
                    continue
                new = torch.maximum(mx, lse_t)
                al, be = torch.exp(mx - new), torch.exp(lse_t - new)
                acc = acc * al[:, None] + part * be[:, None]
                tot = tot * al + be
                mx = new
            if tot is not None:
                acc = acc / tot[:, None]
                mx = mx + torch.log(tot)
            avg_parts.append(acc)
            lse_parts.append(mx)
    ybar = (avg_parts[0] if len(avg_parts) == 1 else torch.cat(avg_parts)).add_(c)
    lse = None
    if want_lse:
        lse = (lse_parts[0] if len(lse_parts) == 1 else torch.cat(lse_parts)) - half_x2
    if check_finite:
        ok = torch.isfinite(ybar).all() if lse is None else (
            torch.isfinite(ybar).all() & ~torch.isnan(lse).any())
        if not bool(ok):
            raise ValueError(
                f"the fast route (precision={precision!r}) produced non-finite values: the "
                f"inputs overflow its GEMM format (fp16 holds |a x / w|, |logits| <= 65504) or "
                f"x is not finite; use precision 'bf16' / 'tf32' or the exact route")
    return lse, ybar
