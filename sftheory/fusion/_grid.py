"""Tensor quadrature grids for d <= 2 (private): the trapezoid rule on a uniform grid wide enough
for every law involved. For integrands analytic in a strip |Im z| < a with Gaussian tails the
uniform trapezoid rule has error ~ exp(-2 pi a / h). A Gaussian is entire, but log p and p^lambda
of a mixture have branch points at the complex zeros of p, at distance ~ pi s^2 / Delta from the
real axis (components of scale s, means Delta apart). The spacing is therefore
h = s * min(1, s / Delta) / 3 (exp(-2 pi a / h) <~ exp(-3 pi^2) ~ 1e-13 relative at worst)."""
from __future__ import annotations

import numpy as np

from .._validation import check_seed

# half-width of the box in units of each law's standard deviation: exp(-12^2 / 2) ~ 5e-32
BOX_SDS = 12.0
# spacing in units of s * min(1, s / Delta) (see the module docstring)
SPACING_OF_SCALE = 1.0 / 3.0
MAX_POINTS_PER_AXIS = {1: 40001, 2: 801}


def _scales(law, rng):
    """(lo (d,), hi (d,), smallest scale, component centres (m, d)) of one law: from its
    mean/cov and component means/covariances when it has them, otherwise from 20000 draws."""
    mean = getattr(law, "mean", None)
    cov = getattr(law, "cov", None)
    if isinstance(mean, np.ndarray) and isinstance(cov, np.ndarray):
        sd = np.sqrt(np.diag(cov))
        small = float(sd.min())
        covs = getattr(law, "covs", None)
        if isinstance(covs, np.ndarray):
            small = float(np.sqrt(np.diagonal(covs, axis1=-2, axis2=-1).min()))
            # smallest eigenvalue bounds every direction
            small = min(small, float(np.sqrt(np.linalg.eigvalsh(covs).min())))
        else:
            small = min(small, float(np.sqrt(np.linalg.eigvalsh(cov).min())))
        centres = getattr(law, "means", None)
        centres = centres if isinstance(centres, np.ndarray) else mean[None]
        return mean - BOX_SDS * sd, mean + BOX_SDS * sd, small, centres
    if not callable(getattr(law, "sample", None)):
        raise ValueError(f"{law!r} has neither mean/cov nor sample: cannot place a quadrature grid")
    x = np.asarray(law.sample(20000, seed=rng), dtype=np.float64)
    sd = x.std(axis=0)
    return (x.min(axis=0) - BOX_SDS * sd, x.max(axis=0) + BOX_SDS * sd, float(sd.min()) / 10.0,
            x.mean(axis=0)[None])


def coarse_weights(n_axis, h) -> np.ndarray:
    """Trapezoid weights of the grid with twice the spacing (every other point of an odd grid
    with n_axis[a] points and spacing h[a] on axis a), zero on the skipped points: the difference of
    the two rules estimates the error of the coarse one, a bound on the fine one's for a
    spectrally converging rule."""
    ws = []
    for n, step in zip(n_axis, h):
        w = np.zeros(n)
        w[::2] = 2 * step
        w[0] = w[-1] = step
        ws.append(w)
    return ws[0] if len(ws) == 1 else np.outer(ws[0], ws[1]).ravel()


def tensor_grid(laws, dim: int, seed=0, *, with_coarse: bool = False):
    """(points (N, d), weights (N,)) of the trapezoid rule on a box covering every law in
    ``laws`` (d in {1, 2}); ValueError for d > 2. ``with_coarse`` adds the weights of the rule
    with twice the spacing on the same points (see :func:`coarse_weights`)."""
    if dim not in (1, 2):
        raise ValueError(f"quadrature is available in dimension 1 or 2, got {dim}")
    rng = check_seed(seed)
    los, his, small, centres = [], [], np.inf, []
    for law in laws:
        lo, hi, s, c = _scales(law, rng)
        los.append(lo)
        his.append(hi)
        small = min(small, s)
        centres.append(np.asarray(c, dtype=np.float64).reshape(-1, dim))
    lo, hi = np.min(los, axis=0), np.max(his, axis=0)
    c = np.concatenate(centres)
    spread = float(np.max(c.max(axis=0) - c.min(axis=0)))
    scale = small * min(1.0, small / spread) if spread > 0 else small
    axes, ws = [], []
    for a in range(dim):
        n = int(np.ceil((hi[a] - lo[a]) / (SPACING_OF_SCALE * scale))) + 1
        n = min(max(n, 201), MAX_POINTS_PER_AXIS[dim])
        n += 1 - n % 2  # odd: every other point is the grid of twice the spacing
        g = np.linspace(lo[a], hi[a], n)
        w = np.full(n, g[1] - g[0])
        w[0] = w[-1] = 0.5 * (g[1] - g[0])
        axes.append(g)
        ws.append(w)
    if dim == 1:
        pts, wts = axes[0][:, None], ws[0]
    else:
        gx, gy = np.meshgrid(axes[0], axes[1], indexing="ij")
        pts, wts = np.column_stack([gx.ravel(), gy.ravel()]), np.outer(ws[0], ws[1]).ravel()
    if not with_coarse:
        return pts, wts
    return pts, wts, coarse_weights([len(g) for g in axes], [g[1] - g[0] for g in axes])
