"""Counter-based sampler noise (sftheory/_kernels/threefry.py, samplers.IndexedNoise).

Independent references: (1) Threefry-2x32-20 against the known-answer vectors published with
Random123 (Salmon et al. 2011; the same vectors are in JAX's random tests); (2) the normals
against N(0, 1) by a KS test and moment z-scores with their Monte Carlo standard errors, and
against independence (correlations across pair partners, steps and particles within 5 SE);
(3) every sampler route (compiled numba loop, numpy Python loop, torch device loop, torch Python
loop) given the same IndexedNoise produces the same chain to rounding, and shards at their global
offsets reproduce the whole batch.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sftheory import use_kernels
from sftheory._kernels import threefry
from sftheory.fields import as_field
from sftheory.models import GaussianMixture
from sftheory.processes import OU, VP
from sftheory.samplers import (BrownianPath, IndexedNoise, initial_points, sample_euler_maruyama,
                               sample_exponential, sample_ode)
from sftheory.samplers._core import run_shard
from sftheory.testing import textbook
from sftheory.testing.tolerances import MC_SIGMAS

MEANS = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
MIX = GaussianMixture(np.array([0.1, 0.2, 0.3, 0.4]), MEANS, np.full(4, 0.2 ** 2),
                      covariance_type="spherical")
TS = np.linspace(2.0, 0.01, 31)
# Random123 kat_vectors, threefry2x32 with 20 rounds: (key, counter) -> output
KAT = [((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
       ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
       ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0))]


def _torch():
    return pytest.importorskip("torch")


# ---- the bit generator ---------------------------------------------------------------------------
def test_threefry_matches_the_random123_known_answers_on_every_backend():
    torch = _torch()
    for (k0, k1), (c0, c1), want in KAT:
        assert threefry.threefry2x32(k0, k1, c0, c1) == want  # Python ints
        arr = threefry.threefry2x32(k0, k1, np.array([c0, c0], dtype=np.int64),
                                    np.array([c1, c1], dtype=np.int64))
        assert [int(a[0]) for a in arr] == list(want)
        ten = threefry.threefry2x32(k0, k1, torch.tensor([c0], dtype=torch.int64),
                                    torch.tensor([c1], dtype=torch.int64))
        assert [int(a[0]) for a in ten] == list(want)
        # the compiled copy of the same function (the numpy route's kernel)
        nb = threefry._threefry_nb(*(np.int64(v) for v in (k0, k1, c0, c1)))
        assert [int(a) for a in nb] == list(want)


def test_the_known_answer_test_sees_a_planted_rotation(monkeypatch):
    """Planted error: one rotation constant changed (13 -> 14) breaks every known answer."""
    monkeypatch.setattr(threefry, "ROTATIONS", (14,) + threefry.ROTATIONS[1:])
    assert all(threefry.threefry2x32(*k, *c) != want for k, c, want in KAT)


# ---- the normals ---------------------------------------------------------------------------------
def _sample(noise_cls=IndexedNoise, n=40_000, d=5, seed=3):
    noise = noise_cls(seed)
    like = np.zeros((n, d))
    return np.stack([noise.normals(0, k, like) for k in range(2)])  # (2 steps, n, d)


def _normality_z(z):
    """KS statistic over its 1e-3 critical value, and the z-scores of the mean, variance and
    fourth moment of the pooled draws (SEs 1/sqrt(n), sqrt(2/n), sqrt(96/n): the variances of
    z, z^2 and z^4 under N(0, 1) are 1, 2 and 105 - 9 = 96)."""
    x = z.ravel()
    n = x.size
    ks = stats.kstest(x, "norm").statistic / (1.95 / math.sqrt(n))
    return ks, [x.mean() * math.sqrt(n), (np.mean(x ** 2) - 1) / math.sqrt(2 / n),
                (np.mean(x ** 4) - 3) / math.sqrt(96 / n)]


def _correlation_z(z):
    """z-scores (sqrt(n) r) of the correlations between pair partners (coordinates 0 and 1,
    one Box-Muller pair), coordinates 1 and 2 (different pairs), steps 0 and 1, and particles
    i and i + 1."""
    pairs = [(z[0, :, 0], z[0, :, 1]), (z[0, :, 1], z[0, :, 2]), (z[0, :, 0], z[1, :, 0]),
             (z[0, :-1, 3], z[0, 1:, 3])]
    return [np.corrcoef(a, b)[0, 1] * math.sqrt(a.size) for a, b in pairs]


def test_indexed_normals_are_independent_standard_normals():
    z = _sample()
    assert np.all(np.isfinite(z))
    ks, zs = _normality_z(z)
    assert ks < 1.0, ks
    assert max(abs(v) for v in zs + _correlation_z(z)) < MC_SIGMAS, (zs, _correlation_z(z))


class _Skewed(IndexedNoise):
    """A planted error: normals scaled by 1.01 (a 2 % variance error)."""

    def normals(self, row0, step, like):
        return 1.01 * super().normals(row0, step, like)


class _Correlated(IndexedNoise):
    """A planted error: step 1 repeats 5 % of step 0's normals."""

    def normals(self, row0, step, like):
        z = super().normals(row0, step, like)
        return z if step == 0 else 0.95 * z + 0.05 * super().normals(row0, 0, like)


def test_the_normality_checks_see_planted_errors():
    ks, zs = _normality_z(_sample(_Skewed))
    assert max(abs(v) for v in zs) > MC_SIGMAS
    assert max(abs(v) for v in _correlation_z(_sample(_Correlated))) > MC_SIGMAS


def test_uniform_edges_give_finite_normals():
    """The smallest uniform (all-zero words) is 2^-54: radius sqrt(2 * 54 log 2) = 8.654; the
    largest rounds to 1: radius 0. Neither is NaN or infinite."""
    zero = np.zeros(1, dtype=np.int64)
    u_lo = (threefry._uniform53(zero, zero) + 0.5) * 2.0 ** -53
    top = np.full(1, threefry.MASK32, dtype=np.int64)
    u_hi = (threefry._uniform53(top, top).astype(np.float64) + 0.5) * 2.0 ** -53
    assert u_lo[0] == 2.0 ** -54 and u_hi[0] == 1.0
    assert math.isclose(math.sqrt(-2 * math.log(u_lo[0])), math.sqrt(108 * math.log(2)),
                        rel_tol=1e-15)


def test_rows_are_keyed_by_global_index_on_numpy_and_torch():
    torch = _torch()
    noise = IndexedNoise(11)
    whole = noise.normals(0, 7, np.zeros((101, 3)))
    part = noise.normals(51, 7, np.zeros((50, 3)))
    assert np.array_equal(part, whole[51:])
    t_whole = noise.normals(0, 7, torch.zeros((101, 3), dtype=torch.float64))
    t_part = noise.normals(51, 7, torch.zeros((50, 3), dtype=torch.float64))
    assert torch.equal(t_part, t_whole[51:])
    # numpy and torch evaluate the same float64 formula; their log/cos/sin may differ by an ulp:
    # |dz| <= a few ulp of |z| <= 8.66, so 1e-14 absolute
    assert np.max(np.abs(t_whole.numpy() - whole)) < 1e-14
    t32 = noise.normals(0, 7, torch.zeros((101, 3), dtype=torch.float32))
    assert t32.dtype == torch.float32 and torch.equal(t32, t_whole.float())
    # d = 1 keeps the first normal of each pair; at step 0 the counters of d = 1 and d = 3 start
    # alike (c1 = 2 k ceil(d/2) + lane), at later steps the layout depends on d
    odd = noise.normals(0, 0, np.zeros((101, 1)))
    assert np.array_equal(odd[:, 0], noise.normals(0, 0, np.zeros((101, 3)))[:, 0])
    assert not np.allclose(IndexedNoise(12).normals(0, 7, np.zeros((101, 3))), whole)
    assert not np.allclose(noise.normals(0, 8, np.zeros((101, 3))), whole)


# ---- every sampler route draws the same numbers -------------------------------------------------
def _routes(noise, sampler=sample_euler_maruyama, x0=None):
    torch = _torch()
    proc = OU()
    path = MIX.path(proc)
    x0 = initial_points(101, proc, 2.0, law=MIX, seed=1) if x0 is None else x0
    net = as_field(lambda x, t: path.score(x, t), 2)  # not an exact form: the Python loops
    out = {"numba": sampler(path, x0, TS, proc, noise=noise, disable=True).x}
    with use_kernels("numpy"):
        out["numpy-loop"] = sampler(path, x0, TS, proc, noise=noise, disable=True).x
    xt = torch.from_numpy(x0)
    out["torch-device"] = sampler(path, xt, TS, proc, noise=noise, disable=True).x.numpy()
    out["torch-loop"] = sampler(net, xt, TS, proc, noise=noise, disable=True).x.numpy()
    return out


@pytest.mark.parametrize("sampler", [sample_euler_maruyama, sample_exponential])
def test_every_route_gives_the_same_chain_given_indexed_noise(sampler):
    """30 steps of one chain on four routes: the normals agree to an ulp and every score formula
    agrees to ~1e-15 relative (tests/models), so the chains agree to rounding accumulated over 30
    steps: 1e-12 relative (measured ~4e-15)."""
    out = _routes(IndexedNoise(5), sampler)
    ref = out["numba"]
    scale = np.max(np.abs(ref))
    for name, x in out.items():
        assert np.max(np.abs(x - ref)) <= 1e-12 * scale, name


def test_the_route_comparison_sees_a_planted_seed_or_offset():
    """Planted errors: a different seed, and a shard at the wrong offset, move the chain far
    beyond the 1e-12 tolerance."""
    torch = _torch()
    proc = OU()
    path = MIX.path(proc)
    x0 = initial_points(101, proc, 2.0, law=MIX, seed=1)
    ref = sample_euler_maruyama(path, x0, TS, proc, noise=IndexedNoise(5), disable=True).x
    other = sample_euler_maruyama(path, torch.from_numpy(x0), TS, proc, noise=IndexedNoise(6),
                                  disable=True).x.numpy()
    assert np.max(np.abs(other - ref)) > 1e-2
    for route_x in (x0[51:], torch.from_numpy(x0[51:])):
        good = run_shard(sample_euler_maruyama, path, route_x, TS, proc, particle_offset=51,
                         noise=IndexedNoise(5), disable=True).x
        bad = run_shard(sample_euler_maruyama, path, route_x, TS, proc, particle_offset=50,
                        noise=IndexedNoise(5), disable=True).x
        good, bad = (np.asarray(a) for a in (good, bad))
        assert np.max(np.abs(good - ref[51:])) <= 1e-12 * np.max(np.abs(ref))
        assert np.max(np.abs(bad - ref[51:])) > 1e-2


def test_torch_shards_without_noise_use_indexed_noise_by_global_index():
    """A shard off the numba route given only a seed draws IndexedNoise(seed) rows at its global
    offset: the two shards concatenated are the one-process run with noise=IndexedNoise(seed),
    bit for bit on one device (each row's arithmetic does not depend on the other rows)."""
    torch = _torch()
    proc = VP()
    path = MIX.path(proc)
    x0 = torch.from_numpy(initial_points(101, proc, 1.0, law=MIX, seed=2))
    ts = np.linspace(1.0, 0.02, 21)
    whole = sample_euler_maruyama(path, x0, ts, proc, noise=IndexedNoise(9), disable=True).x
    parts = [run_shard(sample_euler_maruyama, path, x0[sl], ts, proc, particle_offset=sl.start,
                       seed=9, disable=True).x for sl in (slice(0, 51), slice(51, 101))]
    assert torch.equal(torch.cat(parts), whole)


def test_float32_runs_see_the_same_noise_rounded():
    """torch float32 vs float64 with the same IndexedNoise: the difference is float32 rounding
    of x, the score and the noise at each step, propagated by the chain. Bound: per step a
    relative error <= 8 eps_32 of the step's output, amplified by the later steps' Lipschitz
    factors |alpha_k| + beta_k L_k, L_k = 1 / min_j(m_k^2 s_j^2 + v_k) (the largest curvature of
    a mixture component's log density; the mixture's score Lipschitz constant is bounded by it
    plus the component-weight term, which the factor 2 below covers). Coefficients from the
    textbook SDE (not the library's)."""
    torch = _torch()
    proc = OU()
    path = MIX.path(proc)
    x0 = initial_points(101, proc, 2.0, law=MIX, seed=1)
    noise = IndexedNoise(5)
    a = sample_euler_maruyama(path, torch.from_numpy(x0), TS, proc, noise=noise,
                              disable=True).x.numpy()
    b = sample_euler_maruyama(path, torch.from_numpy(x0).float(), TS, proc, noise=noise,
                              disable=True).x.double().numpy()
    bound, eps32 = 0.0, float(np.finfo(np.float32).eps)
    for k in range(len(TS) - 1):
        amp = 1.0
        for j in range(k + 1, len(TS) - 1):
            hi, lo = TS[j], TS[j + 1]
            dt = hi - lo
            m, v = textbook.exact_mv(proc, float(hi))
            lip = 1.0 / (m * m * 0.2 ** 2 + v)
            a_k = 1 + dt * float(textbook.drift_coef(proc, hi))
            b_k = dt * float(textbook.diffusion_sq(proc, hi))
            amp *= abs(a_k) + 2 * b_k * lip
        bound += 8 * eps32 * amp
    err = np.max(np.abs(a - b)) / np.max(np.abs(a))
    assert err <= bound, (err, bound)
    assert err > 0  # float32 really ran in float32


# ---- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [-1, 2 ** 64, True, 1.5, "3"])
def test_bad_seeds_are_refused(seed):
    with pytest.raises(ValueError, match="seed"):
        IndexedNoise(seed)


def test_none_seed_is_drawn_and_kept():
    a, b = IndexedNoise(), IndexedNoise()
    assert 0 <= a.seed < 2 ** 64 and a.seed != b.seed
    assert repr(a) == f"IndexedNoise(seed={a.seed})"


def test_counter_room_and_misuse_raise_clear_errors():
    with pytest.raises(ValueError, match="2\\^32 particles"):
        threefry.check_counter_room(2 ** 32 + 1, 10, 2)
    with pytest.raises(ValueError, match="steps x ceil"):
        threefry.check_counter_room(10, 2 ** 31, 3)
    threefry.check_counter_room(2 ** 32, 2 ** 30, 4)  # the largest room that fits
    proc = OU()
    path = MIX.path(proc)
    x0 = initial_points(5, proc, 2.0, law=MIX, seed=1)
    with pytest.raises(ValueError, match="deterministic"):
        sample_ode(path, x0, TS, proc, noise=IndexedNoise(1))
    with pytest.raises(ValueError, match="noise must be"):
        sample_euler_maruyama(path, x0, TS, proc, noise=np.zeros((5, 2)))
    with pytest.raises(ValueError, match="BrownianPath"):
        run_shard(sample_euler_maruyama, path, x0, TS, proc, particle_offset=0,
                  noise=BrownianPath((5, 2), seed=0))
    with pytest.raises(ValueError, match="integer seed"):
        run_shard(sample_euler_maruyama, as_field(lambda x, t: -x, 2), x0, TS, proc,
                  particle_offset=3, seed=np.random.default_rng(0))


@pytest.mark.parametrize("route", ["numba", "torch-device", "torch-loop"])
def test_save_at_segments_keep_the_global_step_index(route):
    """save_at splits a run into segments; each segment must key its noise by the global step
    (not restart at 0): the final points equal the run without save_at, and the snapshot at
    ts[j] equals the run that stops at ts[j]."""
    torch = _torch()
    proc = OU()
    path = MIX.path(proc)
    x0 = initial_points(33, proc, 2.0, law=MIX, seed=1)
    noise = IndexedNoise(21)
    j = 12

    def run(ts, save_at=None):
        if route == "numba":
            x, f = x0, path
        else:
            x = torch.from_numpy(x0)
            f = path if route == "torch-device" else as_field(lambda z, t: path.score(z, t), 2)
        r = sample_euler_maruyama(f, x, ts, proc, noise=noise, save_at=save_at, disable=True)
        return np.asarray(r.x), [np.asarray(s) for s in r.snapshots]

    whole, _ = run(TS)
    final, shots = run(TS, save_at=TS[[j]])
    head, _ = run(TS[:j + 1])
    assert np.array_equal(final, whole)
    assert np.array_equal(shots[0], head)


def _like(backend, shape):
    if backend == "torch":
        return _torch().zeros(shape, dtype=_torch().float64)
    return np.zeros(shape)


def _as_numpy(z):
    return z.numpy() if hasattr(z, "numpy") else z


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("d", [1, 2, 3, 4, 5, 6])
def test_every_particle_step_and_coordinate_gets_its_own_normal(d, backend):
    """The counter layout is injective: over 3 particles x 4 steps x d coordinates no two normals
    coincide (a layout where steps or coordinates share counters repeats values exactly); on the
    compiled kernel (numpy) and the array code (torch)."""
    noise = IndexedNoise(5)
    like = _like(backend, (3, d))
    z = np.concatenate([_as_numpy(noise.normals(0, k, like)).ravel() for k in range(4)])
    assert np.unique(z).size == z.size


def test_the_injectivity_check_sees_a_colliding_layout(monkeypatch):
    """Planted error: c1 = k (2P - 2) + lane makes step k + 1 repeat step k's counters when
    d <= 2 (P = 1); the uniqueness check above fails on it (planted in the array code, which
    calls threefry2x32 by name; the compiled kernel is held to it by the parity test below)."""
    orig = threefry.threefry2x32

    def colliding(k0, k1, c0, c1):
        return orig(k0, k1, c0, c1 % 2)  # every step's lanes fold onto step 0's (P = 1)

    monkeypatch.setattr(threefry, "threefry2x32", colliding)
    noise = IndexedNoise(5)
    like = _like("torch", (3, 2))
    z = np.concatenate([_as_numpy(noise.normals(0, k, like)).ravel() for k in range(4)])
    assert np.unique(z).size < z.size


def _kernel_vs_array_code(seed, row0, step0, n_steps, n, d):
    """Worst |compiled kernel - array code| over a block of steps, and whether the block equals
    the per-step calls exactly."""
    noise = IndexedNoise(seed)
    like = np.zeros((n, d))
    block = noise.normals_steps(row0, step0, n_steps, like)
    rows = threefry.particle_rows(row0, n, like)
    ref = np.stack([threefry._normals_xp(seed, rows, step0 + k, d) for k in range(n_steps)])
    per_step = np.stack([noise.normals(row0, step0 + k, like) for k in range(n_steps)])
    return float(np.max(np.abs(block - ref))), np.array_equal(block, per_step)


@pytest.mark.parametrize("d", [1, 2, 3, 5, 8])
def test_the_compiled_kernel_equals_the_array_code(d):
    """numpy's normals come from the numba kernel, torch's from the array code: the same bits,
    then log/cos/sin of two libms, so they agree to a few ulp of |z| <= 8.66: 1e-14 absolute.
    Large row offsets and steps exercise the high counter bits."""
    for seed, row0, step0 in ((0, 0, 0), (2**63 + 12345, 2**31 + 7, 1000), (7, 2**32 - 300, 3)):
        worst, same = _kernel_vs_array_code(seed, row0, step0, 3, 257, d)
        assert np.isfinite(worst) and worst < 1e-14, (seed, row0, step0, worst)
        assert same


def test_the_kernel_parity_sees_a_planted_kernel(monkeypatch):
    """Planted error: the kernel's output 1e-12 relative off (its Python body, then scaled);
    the parity test's 1e-14 fails on it, and a NaN fails it too."""
    orig = threefry._normals_numba

    def planted(scale):
        def kernel(k0, k1, rows, step0, out):
            orig(k0, k1, rows, step0, out)
            out *= scale
        return kernel

    for scale in (1.0 + 1e-12, np.nan):
        monkeypatch.setattr(threefry, "_normals_numba", planted(scale))
        worst, _ = _kernel_vs_array_code(3, 5, 2, 2, 64, 3)
        assert not (np.isfinite(worst) and worst < 1e-14)


def test_normals_steps_validates_and_handles_no_steps():
    noise = IndexedNoise(1)
    assert noise.normals_steps(0, 4, 0, np.zeros((5, 2))).shape == (0, 5, 2)
    torch = _torch()
    t = noise.normals_steps(3, 4, 2, torch.zeros((5, 2), dtype=torch.float32))
    assert t.shape == (2, 5, 2) and t.dtype == torch.float32
    with pytest.raises(ValueError, match="n_steps"):
        noise.normals_steps(0, 0, -1, np.zeros((5, 2)))


def test_normals_refuse_counters_that_would_wrap():
    noise = IndexedNoise(1)
    like = np.zeros((4, 2))
    with pytest.raises(ValueError, match="2\\^32 particles"):
        noise.normals(2 ** 32, 0, like)
    with pytest.raises(ValueError, match="step must be"):
        noise.normals(0, -1, like)
    with pytest.raises(ValueError, match="row0 must be"):
        noise.normals(-1, 0, like)
    with pytest.raises(ValueError, match="like must be"):
        noise.normals(0, 0, np.zeros(3))
    proc = OU()
    x0 = initial_points(5, proc, 2.0, law=MIX, seed=1)
    with pytest.raises(ValueError, match="2\\^32 particles"):  # the numba route checks too
        run_shard(sample_euler_maruyama, MIX.path(proc), x0, TS, proc, particle_offset=2 ** 32,
                  noise=IndexedNoise(1), disable=True)
