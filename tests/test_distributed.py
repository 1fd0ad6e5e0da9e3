"""sftheory.distributed with two CPU processes and the gloo backend (torch.multiprocessing.spawn,
rendezvous through a file:// init method in tmp_path).

One spawn runs every scenario (sampling, sharded empirical score, Monte Carlo mean, ScoreFusion
quadratic, bad inputs) and saves each rank's results; the tests compare them with one-process
runs in this process: sampling on the numba route bit for bit (noise by global particle index),
the torch and Python-loop routes equal to the one-process run with IndexedNoise(seed) (noise by
global particle index, counter-based), the empirical score to 1e-13 relative in float64 (and to an independent scipy logsumexp formula),
the Monte Carlo and fusion means to rounding. Bad inputs raise the same clear error on both
ranks (no hang: the collectives carry a 60 s timeout).
"""
from __future__ import annotations

import datetime
import math
import pickle

import numpy as np
import pytest
from scipy.special import logsumexp

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():  # pragma: no cover
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

from sftheory import distributed  # noqa: E402
from sftheory.fusion import dsm_contributions, simplex_qp  # noqa: E402
from sftheory.models import GaussianMixture  # noqa: E402
from sftheory.processes import OU, VP  # noqa: E402
from sftheory.fields import as_field  # noqa: E402
from sftheory.samplers import (IndexedNoise, initial_points, sample_euler_maruyama,  # noqa: E402
                               sample_exponential)

WORLD = 2
N = 101  # odd: shards of 51 and 50
MEANS = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
MIX = GaussianMixture(np.array([0.1, 0.2, 0.3, 0.4]), MEANS, np.full(4, 0.2 ** 2),
                      covariance_type="spherical")
TS = np.linspace(2.0, 0.01, 31)


def _problem():
    """Everything both ranks and the one-process references share (fixed seeds)."""
    proc = OU()
    rng = np.random.default_rng(0)
    return {
        "proc": proc, "path": MIX.path(proc),
        "x0": initial_points(N, proc, 2.0, law=MIX, seed=1),
        "Y": rng.standard_normal((301, 8)), "q": 1.5 * rng.standard_normal((40, 8)),
        "draws": rng.standard_normal((1001, 3)) + np.array([0.0, 1.0, 2.0]),
        "S": rng.standard_normal((500, 3, 2)), "z": rng.standard_normal((500, 2)),
        "v": rng.uniform(0.1, 1.0, 500), "gamma": rng.uniform(0.5, 1.0, 500),
    }


def _catch(fn):
    try:
        fn()
    except (ValueError, TypeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _net(path):
    """The exact score behind a plain callable: not an exact form, so the Python loop runs."""
    return as_field(lambda x, t: path.score(x, t), 2)


def _worker(rank, world, init_file, out_dir, backend="gloo"):
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=60))
    try:
        p = _problem()
        proc, path, x0 = p["proc"], p["path"], p["x0"]
        out = {}
        save = TS[[0, 15, 30]]
        for name, sampler in (("em", sample_euler_maruyama), ("exp", sample_exponential)):
            r = distributed.sample(sampler, path, x0, TS, proc, seed=5, save_at=save)
            out[f"numba_{name}"] = (r.x, [np.array(s) for s in r.snapshots], list(r.times))
        out["local"] = distributed.sample(sample_euler_maruyama, path, x0, TS, proc, seed=5,
                                          gather=False).x
        out["torch"] = distributed.sample(sample_euler_maruyama, path, torch.from_numpy(x0), TS,
                                          proc, seed=5).x.numpy()
        out["torch32"] = distributed.sample(sample_exponential, path,
                                            torch.from_numpy(x0).float(), TS, proc,
                                            seed=6).x.numpy()
        out["pyloop"] = distributed.sample(sample_euler_maruyama, _net(path), x0, TS, proc,
                                           seed=5).x
        out["numba_indexed"] = distributed.sample(sample_euler_maruyama, path, x0, TS, proc,
                                                  noise=IndexedNoise(7)).x
        seeds = distributed.sample(sample_euler_maruyama, path, x0[:, :], TS[:3], proc).x
        out["seed_none"] = seeds
        Yl = p["Y"][distributed.shard(len(p["Y"]))]
        for kind in ("torch", "numpy"):
            q = torch.from_numpy(p["q"]) if kind == "torch" else p["q"]
            Ys = torch.from_numpy(Yl) if kind == "torch" else Yl
            for post in (False, True):
                lp, vec = distributed.empirical_score(q, Ys, 0.4, VP(), posterior=post)
                out[f"esf_{kind}_{post}"] = (np.asarray(lp), np.asarray(vec))
        out["mc"] = distributed.mc_mean(p["draws"][distributed.shard(len(p["draws"]))])
        sl = distributed.shard(500)
        fq = distributed.fusion_quadratic(p["S"][sl], p["z"][sl], p["v"][sl], p["gamma"][sl])
        out["fusion"] = {k: (v.weights if k == "qp" else v) for k, v in fq.items()}
        # bad inputs: every rank must raise (no hang)
        xf = torch.from_numpy(x0).to(torch.float32 if rank == 1 else torch.float64)
        out["err_dtype"] = _catch(lambda: distributed.sample(sample_euler_maruyama, path, xf, TS,
                                                             proc, seed=1))
        out["err_world"] = _catch(lambda: distributed.sample(sample_euler_maruyama, path, x0[:1],
                                                             TS, proc, seed=1))
        out["err_seed"] = _catch(lambda: distributed.sample(sample_euler_maruyama, path, x0, TS,
                                                            proc, seed=1 + rank))
        bad_y = torch.from_numpy(Yl).float() if rank == 0 else torch.from_numpy(Yl)
        out["err_data"] = _catch(lambda: distributed.empirical_score(torch.from_numpy(p["q"]),
                                                                     bad_y, 0.4, VP()))
        out["ok_after_errors"] = distributed.mc_mean(np.arange(4.0) + rank)[0]
    finally:
        dist.destroy_process_group()
    with open(f"{out_dir}/rank{rank}.pkl", "wb") as fh:
        pickle.dump(out, fh)


def _spawn(tmp, backend):
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(WORLD, str(tmp / "init"), str(tmp), backend), nprocs=WORLD,
             join=True)
    out = []
    for r in range(WORLD):
        with open(tmp / f"rank{r}.pkl", "rb") as fh:
            out.append(pickle.load(fh))
    return out


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return _spawn(tmp_path_factory.mktemp("dist"), "gloo")


@pytest.mark.skipif(not (torch.cuda.is_available() and torch.cuda.device_count() >= WORLD
                         and dist.is_nccl_available()),
                    reason=f"nccl needs {WORLD} CUDA devices (one per rank)")
def test_nccl_ranks_give_the_gloo_results(ranks, tmp_path):
    """The same scenarios with nccl (one GPU per rank; the collectives move data through CUDA):
    every result equals the gloo run's. Sampling and the Monte Carlo/fusion means run on CPU
    data in both, so they agree bit for bit; the empirical-score partials are merged on the GPU
    (summation order may differ): 1e-13 relative."""
    nccl = _spawn(tmp_path, "nccl")
    for g, c in zip(ranks, nccl):
        for key in ("numba_em", "torch", "pyloop", "numba_indexed", "local"):
            a = g[key][0] if isinstance(g[key], tuple) else g[key]
            b = c[key][0] if isinstance(c[key], tuple) else c[key]
            assert np.array_equal(a, b), key
        for key in [k for k in g if k.startswith("esf_")]:
            for a, b in zip(g[key], c[key]):
                assert np.max(np.abs(a - b)) <= 1e-13 * np.max(np.abs(a)), key
        assert g["err_seed"] == c["err_seed"]


def test_shard_splits_contiguously_and_refuses_bad_worlds():
    sl = [distributed.shard(10, r, 3) for r in range(3)]
    assert [(s.start, s.stop) for s in sl] == [(0, 4), (4, 7), (7, 10)]
    assert distributed.shard(5) == slice(0, 5)  # not initialized: a world of one
    with pytest.raises(ValueError, match="world size 4 exceeds the 3 items"):
        distributed.shard(3, 0, 4)
    with pytest.raises(ValueError, match="rank must lie in"):
        distributed.shard(10, 3, 3)
    with pytest.raises(ValueError, match="world"):
        distributed.shard(10, 0, 0)
    with pytest.raises(ValueError, match="n must be"):
        distributed.shard(-1, 0, 1)


def test_sampling_is_bit_identical_to_one_process_on_the_numba_route(ranks):
    p = _problem()
    for name, sampler in (("em", sample_euler_maruyama), ("exp", sample_exponential)):
        one = sampler(p["path"], p["x0"], TS, p["proc"], seed=5, save_at=TS[[0, 15, 30]],
                      disable=True)
        for r in ranks:
            x, shots, times = r[f"numba_{name}"]
            assert np.array_equal(x, one.x), name
            assert times == list(one.times)
            for a, b in zip(shots, one.snapshots):
                assert np.array_equal(a, b)
    whole = sample_euler_maruyama(p["path"], p["x0"], TS, p["proc"], seed=5, disable=True).x
    assert np.array_equal(ranks[0]["local"], whole[:51])
    assert np.array_equal(ranks[1]["local"], whole[51:])
    assert np.array_equal(ranks[0]["seed_none"], ranks[1]["seed_none"])  # one broadcast seed


def test_torch_and_python_loop_shards_equal_one_process_with_indexed_noise(ranks):
    """Off the numba route the shards draw IndexedNoise(seed) by global particle index: the
    gathered result is the one-process run with noise=IndexedNoise(seed). Tolerance: bit for bit
    is what one device gives (each row's arithmetic does not depend on the other rows); 1e-13
    relative allows a vectorized and a scalar tail loop to round one transcendental differently."""
    p = _problem()
    xt = torch.from_numpy(p["x0"])
    one = {
        "torch": sample_euler_maruyama(p["path"], xt, TS, p["proc"], noise=IndexedNoise(5),
                                       disable=True).x.numpy(),
        "torch32": sample_exponential(p["path"], xt.float(), TS, p["proc"],
                                      noise=IndexedNoise(6), disable=True).x.numpy(),
        "pyloop": sample_euler_maruyama(_net(p["path"]), p["x0"], TS, p["proc"],
                                        noise=IndexedNoise(5), disable=True).x,
        "numba_indexed": sample_euler_maruyama(p["path"], p["x0"], TS, p["proc"],
                                               noise=IndexedNoise(7), disable=True).x,
    }
    for r in ranks:
        for name, ref in one.items():
            scale = np.max(np.abs(ref))
            assert r[name].dtype == ref.dtype, name
            assert np.max(np.abs(r[name] - ref)) <= 1e-13 * scale, name
    # every route ran the same noise: numba (IndexedNoise 7) differs from torch (IndexedNoise 5)
    assert np.max(np.abs(ranks[0]["torch"] - ranks[0]["numba_indexed"])) > 1e-2
    assert np.max(np.abs(ranks[0]["torch"] - ranks[0]["pyloop"])) <= 1e-12 * scale


def _esf_reference(q, Y, t, posterior):
    """log p and score / posterior mean of (1/n) sum_j N(m y_j, v I) by scipy's logsumexp over
    the difference-form logits, all points at once (float64)."""
    m, v = VP().conditional(t)
    d = q.shape[1]
    ell = -((q[:, None, :] - m * Y[None]) ** 2).sum(-1) / (2 * v)
    lse = logsumexp(ell, axis=1)
    r = np.exp(ell - lse[:, None])
    ybar = r @ Y
    logp = lse - math.log(len(Y)) - 0.5 * d * math.log(2 * math.pi * v)
    return logp, (ybar if posterior else (m * ybar - q) / v)


@pytest.mark.parametrize("kind", ["torch", "numpy"])
@pytest.mark.parametrize("post", [False, True])
def test_sharded_empirical_score_equals_one_process(ranks, kind, post):
    p = _problem()
    q = torch.from_numpy(p["q"]) if kind == "torch" else p["q"]
    Y = torch.from_numpy(p["Y"]) if kind == "torch" else p["Y"]
    lp1, v1 = (np.asarray(a) for a in distributed.empirical_score(q, Y, 0.4, VP(),
                                                                  posterior=post))
    lp_ref, v_ref = _esf_reference(p["q"], p["Y"], 0.4, post)
    for r in ranks:
        lp, vec = r[f"esf_{kind}_{post}"]
        assert np.max(np.abs(lp - lp1)) <= 1e-13 * np.max(np.abs(lp1))
        assert np.max(np.abs(vec - v1)) <= 1e-13 * np.max(np.abs(v1))
        # independent route: the expanded GEMM form loses ~eps (|x| + m|y|)^2 / 2v per logit
        assert np.max(np.abs(lp - lp_ref)) <= 1e-10 * np.max(np.abs(lp_ref))
        assert np.max(np.abs(vec - v_ref)) <= 1e-10 * np.max(np.abs(v_ref))


def test_mc_mean_and_fusion_quadratic_equal_one_process(ranks):
    p = _problem()
    d = p["draws"]
    mean, se, n = ranks[0]["mc"]
    assert n == 1001
    np.testing.assert_allclose(mean, d.mean(0), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(se, d.std(0, ddof=1) / math.sqrt(1001), rtol=1e-12)
    Gj, bj, cj = dsm_contributions(p["S"], p["z"], p["v"], p["gamma"])
    G = Gj.mean(0)
    G = 0.5 * (G + G.T)
    for r in ranks:
        f = r["fusion"]
        assert f["n"] == 500
        np.testing.assert_allclose(f["gram"], G, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(f["linear"], bj.mean(0), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(f["const"], cj.mean(), rtol=1e-13)
        np.testing.assert_allclose(f["linear_se"], bj.std(0, ddof=1) / math.sqrt(500), rtol=1e-10)
        np.testing.assert_allclose(f["qp"], simplex_qp(G, bj.mean(0)).weights, atol=1e-9)
        assert np.array_equal(f["qp"], ranks[0]["fusion"]["qp"])


def test_bad_inputs_raise_on_every_rank(ranks):
    for r in ranks:
        assert "dtype differs across ranks" in r["err_dtype"]
        assert "exceeds the 1 items" in r["err_world"] or "rejected their input" in r["err_world"]
        assert "seed differs across ranks" in r["err_seed"]
        assert r["ok_after_errors"] == 2.0  # the group still works after the errors
    assert "data is on" in ranks[0]["err_data"] and "rejected their input" in ranks[1]["err_data"]
    assert "exceeds the 1 items" in ranks[0]["err_world"]


def test_the_offset_is_what_makes_shards_match():
    """Planted error: the second shard run with offset 0 (streams of particles 0..49) instead of
    51 does not reproduce the one-process rows; with offset 51 it does, bit for bit."""
    from sftheory.samplers._core import run_shard

    p = _problem()
    whole = sample_euler_maruyama(p["path"], p["x0"], TS, p["proc"], seed=5, disable=True).x
    good = run_shard(sample_euler_maruyama, p["path"], p["x0"][51:], TS, p["proc"],
                     particle_offset=51, seed=5, disable=True).x
    bad = run_shard(sample_euler_maruyama, p["path"], p["x0"][51:], TS, p["proc"],
                    particle_offset=0, seed=5, disable=True).x
    assert np.array_equal(good, whole[51:]) and np.max(np.abs(bad - whole[51:])) > 1e-2
    with pytest.raises(ValueError, match="particle_offset"):
        run_shard(sample_euler_maruyama, p["path"], p["x0"], TS, p["proc"], particle_offset=-1)
    with pytest.raises(ValueError, match="sampler must be"):
        run_shard(print, p["path"], p["x0"], TS, p["proc"], particle_offset=0)
