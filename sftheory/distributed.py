r"""Work sharded across processes with ``torch.distributed`` (gloo on CPU, nccl on GPUs).

Every function takes ``group`` (a process group; None: the default group when
``torch.distributed`` is initialized, else a world of one process, so the same code runs
unsharded) and must be called by every rank of the group (they are collectives). Inputs that the
ranks must agree on (shapes, dtypes, device types, seeds) are exchanged first, so a mismatch
raises the same ValueError on every rank instead of hanging a collective.

* :func:`shard` -- the contiguous slice of n items a rank owns (sizes differ by at most one).
* :func:`sample` -- particles sharded across ranks, their noise drawn by global particle index so
  that the split does not change the random numbers. On the compiled numba route (an exact
  mixture field on numpy points) particle i's noise comes from the per-particle stream i
  (:mod:`sftheory._kernels.sampler`): the gathered result is bit-for-bit the one-process
  ``sampler(..., seed=seed)``. On the torch (CPU or CUDA) and Python-loop routes it comes from
  :class:`~sftheory.samplers.IndexedNoise` (seed) (counter-based Threefry normals of (seed, i,
  step)): the gathered result is the one-process ``sampler(..., noise=IndexedNoise(seed))`` to
  rounding (bit for bit on one device in practice: each row's arithmetic does not depend on
  the other rows).
* :func:`empirical_score` -- the empirical score / posterior mean with the training points
  sharded across ranks ([SM] eq. (14)): each rank computes the log-sum-exp L_r and the softmax
  average ybar_r over its points, and the partials merge exactly,

  .. math:: M = \max_r L_r,\quad S = \sum_r e^{L_r - M},\quad
            \operatorname{LSE} = M + \log S,\quad \bar y = \sum_r e^{L_r - M}\,\bar y_r / S

  (one all_reduce MAX, one all_reduce SUM of the (B, d + 1) rescaled partials).
* :func:`mc_mean` -- a Monte Carlo mean and its standard error over draws held by all ranks
  (per-rank count, mean and sum of squared deviations, merged by Chan et al.'s pairwise update in
  rank order: no cancellation).
* :func:`fusion_quadratic` -- the ScoreFusion quadratic ([SF] eq. (10), Alg. 1) from per-draw
  contributions (:func:`sftheory.fusion.dsm_contributions`) held by all ranks: G, b, c with their
  standard errors and the simplex QP solution, identical on every rank. Draw them with
  :func:`sftheory.fusion.fusion_draws` (seed, start = ``shard(n_mc).start``): counter-based draws
  keyed by global draw index, so the merged estimate equals the one-process
  ``score_fusion(..., draws="indexed", seed=seed)`` to rounding.

Launch with ``torchrun --nproc-per-node=N script.py`` (the script calls
``torch.distributed.init_process_group("gloo" or "nccl")``); see the README.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ._validation import is_torch

_DTYPES = ("float32", "float64")


# ---- ranks and shards ---------------------------------------------------------------------------
def _dist():
    import torch.distributed as dist

    return dist


def rank_world(group=None) -> tuple[int, int]:
    """(rank, world size) in ``group``; (0, 1) when torch.distributed is not initialized."""
    dist = _dist()
    if not (dist.is_available() and dist.is_initialized()):
        if group is not None:
            raise ValueError("group was given but torch.distributed is not initialized")
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def _check_int(v, name, lo):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def shard(n: int, rank: int | None = None, world: int | None = None) -> slice:
    """The contiguous slice of ``n`` items that ``rank`` owns among ``world`` ranks (default: this
    process's rank and world size): the first n % world ranks get one item more. Raises
    ValueError when world > n (some rank would own nothing: use fewer processes) or when rank is
    not in [0, world)."""
    n = _check_int(n, "n", 0)
    if rank is None or world is None:
        r, w = rank_world()
        rank = r if rank is None else rank
        world = w if world is None else world
    world = _check_int(world, "world", 1)
    rank = _check_int(rank, "rank", 0)
    if rank >= world:
        raise ValueError(f"rank must lie in [0, world) = [0, {world}), got {rank}")
    if world > n:
        raise ValueError(f"world size {world} exceeds the {n} items to share: rank(s) "
                         f"{n}..{world - 1} would own nothing; run at most {n} processes")
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


# ---- communication helpers ----------------------------------------------------------------------
def _comm_device(group):
    """Where collectives run: the current CUDA device under nccl, the CPU otherwise."""
    import torch

    dist = _dist()
    if dist.is_initialized() and dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _agree(values, names, group, what, error=None):
    """Exchange every rank's integer ``values`` (and whether its local validation failed:
    ``error``, an exception or None) in one all_gather; then, on every rank alike, re-raise the
    local error, or raise ValueError if another rank failed or if any entry differs across ranks.
    So a bad input on one rank stops all ranks instead of hanging the next collective."""
    import torch

    rank, world = rank_world(group)
    if world == 1:
        if error is not None:
            raise error
        return
    dist = _dist()
    vals = [0] * len(names) if error is not None else [int(v) for v in values]
    mine = torch.tensor([int(error is not None), *vals], dtype=torch.int64,
                        device=_comm_device(group))
    parts = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(parts, mine, group=group)
    table = torch.stack(parts).cpu().numpy()
    if error is not None:
        raise error
    failed = np.flatnonzero(table[:, 0])
    if failed.size:
        raise ValueError(f"{what}: rank(s) {failed.tolist()} rejected their input (see their "
                         f"error); rank {rank} stops too")
    for j, name in enumerate(names):
        col = table[:, j + 1]
        if np.any(col != col[0]):
            raise ValueError(f"{what}: {name} differs across ranks (rank -> value: "
                             f"{dict(enumerate(col.tolist()))}); every rank must pass the same")


def _meta(a):
    """(dtype code, device-type code) of a numpy array or tensor."""
    if is_torch(a):
        dt = str(a.dtype).replace("torch.", "")
        dev = 0 if a.device.type == "cpu" else 1
    else:
        dt, dev = str(a.dtype), 0
    return (_DTYPES.index(dt) if dt in _DTYPES else 9), dev


def _to_comm(a, group):
    import torch

    t = torch.from_numpy(np.ascontiguousarray(a)) if not is_torch(a) else a.detach()
    return t.to(_comm_device(group)).contiguous()


def _all_gather_rows(a, sizes, group):
    """Concatenate every rank's rows (rank order); ``sizes`` the row count of each rank."""
    import torch

    rank, world = rank_world(group)
    if world == 1:
        return a
    dist = _dist()
    t = _to_comm(a, group)
    big = max(sizes)
    pad = torch.zeros((big,) + tuple(t.shape[1:]), dtype=t.dtype, device=t.device)
    pad[:t.shape[0]] = t
    parts = [torch.empty_like(pad) for _ in range(world)]
    dist.all_gather(parts, pad, group=group)
    out = torch.cat([p[:s] for p, s in zip(parts, sizes)])
    if is_torch(a):
        return out.to(a.device)
    return out.cpu().numpy()


# ---- sampling sharded by particles --------------------------------------------------------------
def _common_seed(seed, group):
    """An int seed shared by all ranks: ``seed`` itself, or (None) one drawn on rank 0 and
    broadcast."""
    import torch

    rank, world = rank_world(group)
    if seed is None:
        val = int(np.random.default_rng().integers(0, 2**62))
        if world > 1:
            t = torch.tensor([val], dtype=torch.int64, device=_comm_device(group))
            _dist().broadcast(t, src=_dist().get_global_rank(group, 0) if group is not None
                              else 0, group=group)
            val = int(t.item())
        return val
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) \
            or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be None or an integer in [0, 2^63) (the same on every rank); "
                         f"a numpy Generator cannot be shared across processes, got {seed!r}")
    return int(seed)


def sample(sampler, score, x, ts, process, *, seed=None, h=None, noise=None, save_at=None,
           gather: bool = True, group=None, disable=None):
    """Run ``sampler`` (:data:`~sftheory.samplers.sample_euler_maruyama` or
    :data:`~sftheory.samplers.sample_exponential`) with the particles of ``x`` (N, d), the same
    array on every rank, sharded across the ranks of ``group``: rank r advances
    ``x[shard(N)]`` only. ``seed`` an int (the same on every rank) or None (drawn on rank 0 and
    broadcast).

    Returns a :class:`~sftheory.samplers.SampleResult`: with ``gather`` (default) its ``x`` and
    snapshots hold all N particles in order on every rank (all_gather); otherwise this rank's
    shard ``x[shard(N)]`` only. On the numba route (exact mixture field, numpy x) the gathered
    result is bit-for-bit the one-process ``sampler(score, x, ts, process, seed=seed)``; on the
    other routes (torch tensors, other fields) it is the one-process
    ``sampler(score, x, ts, process, noise=IndexedNoise(seed))`` to rounding (see the module
    docstring). ``noise``: None, or an :class:`~sftheory.samplers.IndexedNoise` (the same on every
    rank; its seed is then the one used on every route)."""
    from .samplers import IndexedNoise
    from .samplers._core import run_shard

    rank, world = rank_world(group)
    error, meta = None, ()
    try:
        if not hasattr(x, "shape") or len(x.shape) not in (1, 2):
            raise ValueError(f"x must be an array or tensor of shape (N, d) (or (N,) for d = 1), "
                             f"got {type(x).__name__}")
        seed = _common_seed(seed, group) if seed is not None else None
        if noise is not None and not isinstance(noise, IndexedNoise):
            raise ValueError(f"noise must be None or an IndexedNoise (noise indexed by particle), "
                             f"got {type(noise).__name__}")
        n = int(x.shape[0])
        shard(n, rank, world)
        nseed = -1 if noise is None else noise.seed
        meta = (n, int(x.shape[1]) if len(x.shape) == 2 else 0, *_meta(x),
                -1 if seed is None else seed, nseed >> 32, nseed & 0xFFFFFFFF)
    except (ValueError, TypeError) as exc:
        error = exc
    _agree(meta, ("N", "d", "dtype", "device type", "seed", "noise seed (high word)",
                  "noise seed (low word)"), group, "distributed.sample", error)
    if seed is None:
        seed = _common_seed(None, group)
    sl = shard(n, rank, world)
    res = run_shard(sampler, score, x[sl], ts, process, particle_offset=sl.start, h=h, seed=seed,
                    noise=noise, save_at=save_at, disable=disable)
    if not gather or world == 1:
        return res
    sizes = [shard(n, r, world).stop - shard(n, r, world).start for r in range(world)]
    res.x = _all_gather_rows(res.x, sizes, group)
    res.snapshots = [_all_gather_rows(s, sizes, group) for s in res.snapshots]
    return res


# ---- the empirical score sharded over training points ------------------------------------------
def _check_empirical(nx, x, data, t, process):
    """Validated (x, data, a = m(t), w = v(t)) of one rank (clear errors naming the argument)."""
    import torch

    if not hasattr(x, "ndim") or x.ndim != 2:
        raise ValueError(f"x must be (B, d) queries, got {type(x).__name__} "
                         f"{tuple(getattr(x, 'shape', ()))}")
    if not hasattr(data, "ndim") or data.ndim != 2 or data.shape[1] != x.shape[1]:
        raise ValueError(f"data must be this rank's (n_r, d) training points with x's d = "
                         f"{x.shape[1]}, got {tuple(getattr(data, 'shape', ()))}")
    if _meta(x)[0] == 9:
        raise TypeError(f"x must be float32 or float64, got {x.dtype}")
    if data.shape[0] == 0:
        raise ValueError("data holds no training points on this rank (shard a set of at least "
                         "world-size points)")
    if nx.is_torch:
        if not is_torch(data):
            data = torch.from_numpy(np.asarray(data, dtype=np.float64)).to(x.device, x.dtype)
        elif data.device != x.device or data.dtype != x.dtype:
            raise ValueError(f"data is on {data.device} / {data.dtype} but x is on {x.device} / "
                             f"{x.dtype}: pass both on one device and dtype")
    elif is_torch(data):
        raise ValueError("data is a torch tensor but x is a numpy array: pass both in one backend")
    else:
        data = np.asarray(data, dtype=np.float64)
        x = np.asarray(x, dtype=np.float64)
    if isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Real) \
            or not math.isfinite(float(t)) or float(t) <= 0:
        raise ValueError(f"t must be a finite number > 0 (the empirical law has no density at "
                         f"t = 0), got {t!r}")
    m, v = process.conditional(float(t))
    return x, data, float(m), float(v)


def empirical_score(x, data, t: float, process, *, posterior: bool = False, group=None,
                    budget_bytes: int | None = None):
    r"""(log p_t(x) (B,), grad log p_t(x) or E[X_0 | X_t = x] (B, d)) of the diffused empirical
    law (1/n) sum_j N(m y_j, v I) ([SM] eq. (6), (14)), with the n training points sharded across
    the ranks: ``data`` is this rank's shard (n_r, d) (e.g. ``Y[shard(len(Y))]``), ``x`` the same
    (B, d) queries on every rank, ``t`` > 0 one forward time of ``process``.

    Per rank: (log-sum-exp, softmax average) of its points by the tiled engine
    (:func:`~sftheory.models._esf_gemm.lse_average_torch` on torch x, bounded by
    ``budget_bytes``; the difference form of :func:`~sftheory.models._esf_gemm.lse_average` on
    numpy x); the partials merge exactly (module docstring). Every rank gets the result, in x's
    backend, dtype and device (no autograd: x is detached). Non-finite results raise
    FloatingPointError (one check at the end).
    """
    import torch

    from .backend import get_backend
    from .models._esf_gemm import DEFAULT_BUDGET_BYTES, lse_average, lse_average_torch

    rank, world = rank_world(group)
    nx = get_backend(x)
    error, meta = None, ()
    try:
        x, data, a, w = _check_empirical(nx, x, data, t, process)
        meta = (int(x.shape[0]), int(x.shape[1]), *_meta(x))
    except (ValueError, TypeError) as exc:
        error = exc
    _agree(meta, ("B (queries)", "d", "dtype", "device type"), group,
           "distributed.empirical_score", error)
    d = int(x.shape[1])
    n_local = int(data.shape[0])
    # local partials: lse over this rank's points of the (expanded or difference) logits
    if nx.is_torch:
        sq = (data.to(torch.float64) ** 2).sum(1).to(x.dtype)
        lse, ybar = lse_average_torch(x.detach(), data, a, w, sqnorms=sq,
                                      budget_bytes=budget_bytes)
        lse = lse - (x.detach() * x.detach()).sum(1) * (0.5 / w)  # the difference-form logits
    else:
        lse, ybar = lse_average(nx, x, data, a, w, form="diff",
                                budget_bytes=budget_bytes or DEFAULT_BUDGET_BYTES)
    n_total = n_local
    if world > 1:
        dist = _dist()
        cnt = torch.tensor([n_local], dtype=torch.int64, device=_comm_device(group))
        dist.all_reduce(cnt, op=dist.ReduceOp.SUM, group=group)
        n_total = int(cnt.item())
        lse_c = _to_comm(lse, group)
        mx = lse_c.clone()
        dist.all_reduce(mx, op=dist.ReduceOp.MAX, group=group)
        scale = torch.exp(lse_c - mx)  # 0 where this rank's lse is -inf
        packed = torch.cat([scale[:, None], scale[:, None] * _to_comm(ybar, group)], 1)
        dist.all_reduce(packed, op=dist.ReduceOp.SUM, group=group)
        lse_c = mx + torch.log(packed[:, 0])
        ybar_c = packed[:, 1:] / packed[:, :1]
        if nx.is_torch:
            lse, ybar = lse_c.to(x.device), ybar_c.to(x.device)
        else:
            lse, ybar = lse_c.cpu().numpy(), ybar_c.cpu().numpy()
    logp = lse - (math.log(n_total) + 0.5 * d * math.log(2.0 * math.pi * w))
    vec = ybar if posterior else (a * ybar - x) / w
    if not (nx.all_finite(logp) and nx.all_finite(vec)):
        raise FloatingPointError("distributed.empirical_score: non-finite values (queries "
                                 "astronomically far from every training point?)")
    return logp, vec


# ---- Monte Carlo means and the ScoreFusion quadratic -------------------------------------------
def mc_mean(values, *, group=None):
    """(mean, standard error, n) of Monte Carlo draws spread over the ranks: ``values`` this
    rank's draws (n_r,) or (n_r, ...) (numpy or torch; reduced in float64). Per rank (n_r, mean_r,
    M2_r = sum of squared deviations) are gathered and merged in rank order by the pairwise update
    (Chan, Golub & LeVeque 1979): M2 = M2_a + M2_b + delta^2 n_a n_b / n; se = sqrt(M2 / (n - 1)
    / n). Every rank gets the same numpy float64 results."""
    import torch

    arr = values.detach().to("cpu", torch.float64).numpy() if is_torch(values) else \
        np.asarray(values, dtype=np.float64)
    if arr.ndim < 1:
        raise ValueError("values must have a leading axis of draws")
    rank, world = rank_world(group)
    _agree((arr.ndim, int(np.prod(arr.shape[1:]))), ("ndim", "size of one draw"), group,
           "distributed.mc_mean")
    n_r = arr.shape[0]
    mean_r = arr.mean(0) if n_r else np.zeros(arr.shape[1:])
    m2_r = ((arr - mean_r) ** 2).sum(0)
    mine = np.concatenate([[float(n_r)], np.ravel(mean_r), np.ravel(m2_r)])
    if world > 1:
        dist = _dist()
        t = torch.from_numpy(mine).to(_comm_device(group))
        parts = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(parts, t, group=group)
        rows = [p.cpu().numpy() for p in parts]
    else:
        rows = [mine]
    k = mean_r.size
    n, mean, m2 = 0.0, np.zeros(k), np.zeros(k)
    for row in rows:
        nb, mb, m2b = row[0], row[1:1 + k], row[1 + k:]
        if nb == 0:
            continue
        tot = n + nb
        delta = mb - mean
        mean = mean + delta * (nb / tot)
        m2 = m2 + m2b + delta * delta * (n * nb / tot)
        n = tot
    if n < 2:
        raise ValueError(f"mc_mean needs at least two draws over all ranks, got {int(n)}")
    shape = arr.shape[1:]
    return mean.reshape(shape), np.sqrt(m2 / (n - 1) / n).reshape(shape), int(n)


def fusion_quadratic(S, z, v, gamma, *, group=None):
    r"""The ScoreFusion quadratic l(lambda) = lambda^T G lambda - 2 b^T lambda + c ([SF] eq. (10)
    with the DSM target, Alg. 1) from Monte Carlo draws spread over the ranks: this rank's
    auxiliary scores ``S`` (n_r, k, d) at its draws, noises ``z`` (n_r, d), variances ``v`` and
    weights ``gamma`` (n_r,) (as :func:`sftheory.fusion.score_fusion` draws them; with
    :func:`sftheory.fusion.fusion_draws` at this rank's global offset the result is the
    one-process estimate). Per-draw terms
    by :func:`sftheory.fusion.dsm_contributions`, means and standard errors by :func:`mc_mean`.

    Returns a dict: ``gram`` (k, k) symmetrized, ``gram_se``, ``linear`` (k,), ``linear_se``,
    ``const``, ``const_se``, ``n`` and ``qp`` (:func:`sftheory.fusion.simplex_qp` of (G, b): the
    fitted weights, identical on every rank)."""
    from .fusion import dsm_contributions, simplex_qp

    S = np.asarray(S, dtype=np.float64)
    if S.ndim != 3:
        raise ValueError(f"S must be (n, k, d) auxiliary scores, got shape {S.shape}")
    n, k, d = S.shape
    z = np.asarray(z, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    gamma = np.asarray(gamma, dtype=np.float64)
    if z.shape != (n, d) or v.shape != (n,) or gamma.shape != (n,):
        raise ValueError(f"z must be ({n}, {d}) and v, gamma ({n},), got {z.shape}, {v.shape}, "
                         f"{gamma.shape}")
    Gj, bj, cj = dsm_contributions(S, z, v, gamma)
    flat = np.concatenate([Gj.reshape(n, k * k), bj, cj[:, None]], 1)
    mean, se, n_tot = mc_mean(flat, group=group)
    G, G_se = mean[:k * k].reshape(k, k), se[:k * k].reshape(k, k)
    G = 0.5 * (G + G.T)
    b, b_se = mean[k * k:k * k + k], se[k * k:k * k + k]
    if not (np.all(np.isfinite(G)) and np.all(np.isfinite(b)) and np.isfinite(mean[-1])):
        raise FloatingPointError("fusion_quadratic: the Monte Carlo terms are not finite")
    return {"gram": G, "gram_se": G_se, "linear": b, "linear_se": b_se,
            "const": float(mean[-1]), "const_se": float(se[-1]), "n": n_tot,
            "qp": simplex_qp(G, b)}


__all__ = ["rank_world", "shard", "sample", "empirical_score", "mc_mean", "fusion_quadratic"]
