"""hypothesis strategies for exact score models, in the style of ``hypothesis.extra.numpy``.

Every strategy takes keyword-only bounds with sensible defaults, checks them when called (raising
``hypothesis.errors.InvalidArgument``), and bounds conditioning *inside* the strategy (never with
``assume``) so that tolerances stay meaningful. Each docstring says what examples shrink towards.

>>> from hypothesis import given
>>> from sftheory.testing import strategies as sst
>>> @given(sst.gaussian_mixtures(dim=2))
... def test_mean_is_finite(mix):
...     assert mix.mean.shape == (2,)
"""
from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from ..models import EmpiricalDistribution, Gaussian, GaussianMixture
from ..processes import OU, VE, VP
from .random import rotation, spd_from


def _check(cond: bool, msg: str):
    if not cond:
        raise InvalidArgument(msg)


def _dims(dim) -> st.SearchStrategy[int]:
    if isinstance(dim, st.SearchStrategy):
        return dim
    _check(isinstance(dim, int) and dim >= 1, f"dim must be an int >= 1 or a strategy, got {dim!r}")
    return st.just(dim)


def _counts(n, name) -> st.SearchStrategy[int]:
    if isinstance(n, st.SearchStrategy):
        return n
    if isinstance(n, tuple):
        lo, hi = n
        _check(1 <= lo <= hi, f"{name} range must satisfy 1 <= lo <= hi, got {n}")
        return st.integers(lo, hi)
    _check(isinstance(n, int) and n >= 1, f"{name} must be an int >= 1, a (lo, hi) tuple or a strategy")
    return st.just(n)


def spd_matrices(dim, *, min_eig: float = 0.1, max_eig: float = 10.0):
    """Symmetric positive definite (dim, dim) matrices with eigenvalues in [min_eig, max_eig].

    Built as Q diag(lam) Q^T with a random rotation Q, so the condition number is at most
    max_eig / min_eig. Shrinks towards ``min_eig * I``.
    """
    _check(0 < min_eig <= max_eig < math.inf, f"need 0 < min_eig <= max_eig, got {min_eig}, {max_eig}")

    @st.composite
    def build(draw):
        d = draw(_dims(dim))
        lam = np.array(draw(st.lists(st.floats(min_eig, max_eig), min_size=d, max_size=d)))
        return spd_from(lam, rotation(draw(st.integers(0, 2**32 - 1)), d))

    return build()


def simplex_weights(k, *, min_weight: float = 0.0):
    """Points on the probability simplex with k entries, each >= min_weight.

    Shrinks towards the uniform weights.
    """
    _check(min_weight >= 0, f"min_weight must be >= 0, got {min_weight}")

    @st.composite
    def build(draw):
        kk = draw(_counts(k, "k"))
        _check(min_weight * kk < 1, f"min_weight * k must be < 1, got {min_weight} * {kk}")
        raw = np.array(draw(st.lists(st.floats(1.0, 10.0), min_size=kk, max_size=kk)))
        w = raw / raw.sum()
        return min_weight + (1.0 - min_weight * kk) * w

    return build()


def _means(draw, k, d, scale):
    vals = draw(st.lists(st.floats(-scale, scale), min_size=k * d, max_size=k * d))
    return np.array(vals).reshape(k, d)


def gaussians(dim=st.integers(1, 3), *, mean_scale: float = 3.0, min_eig: float = 0.1,
              max_eig: float = 10.0, cov_kinds=("full", "diag", "iso")):
    """:class:`~sftheory.models.Gaussian` laws with |mean_i| <= mean_scale, cov eigenvalues in
    [min_eig, max_eig], covariance given as full matrix, diagonal or scalar.

    Shrinks towards N(0, min_eig I) in the smallest dimension.
    """
    _check(mean_scale >= 0, "mean_scale must be >= 0")
    _check(0 < min_eig <= max_eig < math.inf, f"need 0 < min_eig <= max_eig, got {min_eig}, {max_eig}")
    _check(set(cov_kinds) <= {"full", "diag", "iso"} and len(cov_kinds) > 0, f"bad cov_kinds {cov_kinds}")

    @st.composite
    def build(draw):
        d = draw(_dims(dim))
        mean = _means(draw, 1, d, mean_scale)[0]
        kind = draw(st.sampled_from(cov_kinds))
        if kind == "iso":
            cov = draw(st.floats(min_eig, max_eig))
        elif kind == "diag":
            cov = np.array(draw(st.lists(st.floats(min_eig, max_eig), min_size=d, max_size=d)))
        else:
            cov = draw(spd_matrices(d, min_eig=min_eig, max_eig=max_eig))
        return Gaussian(mean, cov)

    return build()


def gaussian_mixtures(n_components=(1, 4), dim=st.integers(1, 3), *, mean_scale: float = 3.0,
                      min_eig: float = 0.1, max_eig: float = 10.0, min_weight: float = 0.02,
                      cov_kinds=("full", "diag", "iso")):
    """:class:`~sftheory.models.GaussianMixture` laws: K components (int, (lo, hi) or strategy),
    weights >= min_weight, |means| <= mean_scale, component eigenvalues in [min_eig, max_eig];
    one covariance kind per mixture (full, diag or isotropic).

    Shrinks towards one standard-ish component N(0, min_eig I) in the smallest dimension.
    """
    _check(mean_scale >= 0, "mean_scale must be >= 0")
    _check(0 < min_eig <= max_eig, "need 0 < min_eig <= max_eig")

    @st.composite
    def build(draw):
        k = draw(_counts(n_components, "n_components"))
        d = draw(_dims(dim))
        w = draw(simplex_weights(k, min_weight=min(min_weight, 0.5 / k)))
        means = _means(draw, k, d, mean_scale)
        kind = draw(st.sampled_from(cov_kinds))
        if kind == "iso":
            covs = np.array(draw(st.lists(st.floats(min_eig, max_eig), min_size=k, max_size=k)))
        elif kind == "diag":
            covs = np.array(draw(st.lists(st.floats(min_eig, max_eig), min_size=k * d,
                                          max_size=k * d))).reshape(k, d)
        else:
            covs = np.stack([draw(spd_matrices(d, min_eig=min_eig, max_eig=max_eig)) for _ in range(k)])
        return GaussianMixture(w, means, covs, covariance_type={"iso": "spherical"}.get(kind, kind))

    return build()


def point_clouds(n=(1, 20), dim=st.integers(1, 3), *, scale: float = 3.0, min_separation: float = 0.0):
    """(n, dim) arrays of points in [-scale, scale]^dim whose pairwise distances are >= min_separation.

    Points are placed on a jittered grid of spacing >= min_separation, so the separation holds by
    construction. Shrinks towards points near the origin / the first grid cells.
    """
    _check(scale > 0 and min_separation >= 0, "need scale > 0 and min_separation >= 0")

    @st.composite
    def build(draw):
        nn = draw(_counts(n, "n"))
        d = draw(_dims(dim))
        if min_separation == 0:
            vals = draw(st.lists(st.floats(-scale, scale), min_size=nn * d, max_size=nn * d))
            return np.array(vals).reshape(nn, d)
        cells_per_axis = int(2 * scale // (2 * min_separation))
        _check(cells_per_axis ** d >= nn, f"cannot fit {nn} points {min_separation} apart in the box")
        flat = draw(st.lists(st.integers(0, cells_per_axis ** d - 1), min_size=nn, max_size=nn,
                             unique=True))
        idx = np.array(np.unravel_index(flat, (cells_per_axis,) * d)).T
        jitter = np.array(draw(st.lists(st.floats(0, 0.5), min_size=nn * d, max_size=nn * d))).reshape(nn, d)
        return -scale + 2 * min_separation * (idx + 0.5 + jitter - 0.25)

    return build()


def empirical_distributions(n=(1, 20), dim=st.integers(1, 3), *, scale: float = 3.0,
                            min_separation: float = 0.0):
    """:class:`~sftheory.models.EmpiricalDistribution` on a :func:`point_clouds` training set."""
    return point_clouds(n, dim, scale=scale, min_separation=min_separation).map(EmpiricalDistribution)


def diffusion_times(t_min: float = 1e-3, t_max: float = 5.0):
    """Times in [t_min, t_max], log-uniform so both small and large t appear. Shrinks towards t_max.

    (Shrinking towards the large-noise end keeps minimal examples well conditioned.)
    """
    _check(0 < t_min <= t_max < math.inf, f"need 0 < t_min <= t_max, got {t_min}, {t_max}")
    lo, hi = math.log(t_min), math.log(t_max)
    # exp(log(t)) can miss t by an ulp: clamp so the bounds hold exactly
    return st.floats(0.0, 1.0).map(lambda u: min(t_max, max(t_min, math.exp(hi - u * (hi - lo)))))


def processes(kinds=("OU", "VP", "VE", "VE-geometric")):
    """Forward processes: OU(a, sigma) with a in [0.1, 2], sigma in [0.5, 2]; VP with beta_min in
    [0.05, 1], beta_max in [beta_min, 20]; VE(); VE(sigma) with sigma in [2, 50].

    Shrinks towards the first kind listed with its smallest parameters.
    """
    _check(set(kinds) <= {"OU", "VP", "VE", "VE-geometric"} and len(kinds) > 0, f"bad kinds {kinds}")
    options = {
        "OU": st.builds(OU, a=st.floats(0.1, 2.0), sigma=st.floats(0.5, 2.0)),
        "VP": st.floats(0.05, 1.0).flatmap(
            lambda b0: st.builds(VP, beta_min=st.just(b0), beta_max=st.floats(b0, 20.0))),
        "VE": st.just(VE()),
        "VE-geometric": st.builds(VE, sigma=st.floats(2.0, 50.0)),
    }
    return st.one_of(*[options[k] for k in kinds])


def points_for(dim: int, n=(1, 16), *, scale: float = 4.0):
    """(n, dim) float64 evaluation points in [-scale, scale]^dim. Shrinks towards the origin."""
    return point_clouds(n, dim, scale=scale)
