"""Training data generated in code (never downloaded): the Swiss roll of [OS] App. H.1-H.2, a
sftheory law, or a fixed array of points.

Every data source has ``dim``, ``sample(n, rng) -> ndarray (n, dim)`` (``rng`` a numpy
Generator or an int seed) and ``identity() -> dict`` (what the cache key records about it).
"""
from __future__ import annotations

import math

import numpy as np

from .._refs import source
from .._validation import check_count, check_seed
from .cache import array_digest

SWISS_ROLL_T_RANGE = (1.5 * math.pi, 4.5 * math.pi)
_GRID = 200_001  # grid for the coordinate extrema: error <= max|f''| dt^2 / 8 ~ 4e-9


@source("OS", "App. H.1 (Swiss roll)", "os.fig5", "os.appI")
def swiss_roll_curve(t):
    r"""The Swiss roll curve of [OS] App. H.1: :math:`(x, y) = (t \sin t, t \cos t)`.

    Source: [OS] App. H.1, with :math:`t \sim \mathcal U(3\pi/2, 9\pi/2)`.
    """
    t = np.asarray(t, dtype=np.float64)
    return np.stack([t * np.sin(t), t * np.cos(t)], axis=-1)


_EXTREMA: list = []


def swiss_roll_extrema() -> tuple[np.ndarray, np.ndarray]:
    """Per-coordinate (min, max) of the curve over t in [3 pi/2, 9 pi/2] (dense grid)."""
    if not _EXTREMA:
        pts = swiss_roll_curve(np.linspace(*SWISS_ROLL_T_RANGE, _GRID))
        _EXTREMA.append((pts.min(axis=0), pts.max(axis=0)))
    return _EXTREMA[0]


class SwissRoll:
    """The 2-D Swiss roll of [OS] App. H.1: (t sin t, t cos t), t ~ U(3 pi/2, 9 pi/2), plus
    optional isotropic Gaussian ``noise`` (standard deviation, in the curve's raw units; the
    paper's experiments use 0), then each coordinate mapped affinely onto [-scale, scale].

    The paper does not state a scaling; its authors' code (github.com/yucaoyc/OptimalDiffusion,
    ``Swissroll/data.py`` with ``a = 2.0`` in the notebook) min-max scales each coordinate to
    [-a, a] with a = 2, using the extrema of a random sample; here the exact extrema of the curve
    are used, so the law does not depend on a draw. ``scale=None`` keeps the raw coordinates
    (|x| up to 14).
    """

    dim = 2

    def __init__(self, scale: float | None = 2.0, noise: float = 0.0):
        if scale is not None:
            if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (
                    math.isfinite(scale) and scale > 0):
                raise ValueError(f"scale must be a finite number > 0 or None, got {scale!r}")
            scale = float(scale)
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not (
                math.isfinite(noise) and noise >= 0):
            raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
        self.scale = scale
        self.noise = float(noise)

    def sample(self, n, rng=None) -> np.ndarray:
        """``n`` independent points, shape (n, 2), float64."""
        n = check_count(n)
        rng = check_seed(rng)
        t = rng.uniform(*SWISS_ROLL_T_RANGE, size=n)
        pts = swiss_roll_curve(t)
        if self.noise > 0:
            pts = pts + self.noise * rng.standard_normal(pts.shape)
        if self.scale is None:
            return pts
        lo, hi = swiss_roll_extrema()
        return self.scale * (2.0 * (pts - lo) / (hi - lo) - 1.0)

    def identity(self) -> dict:
        return {"kind": "SwissRoll", "scale": self.scale, "noise": self.noise,
                "t_range": list(SWISS_ROLL_T_RANGE)}

    def __repr__(self):
        return f"SwissRoll(scale={self.scale!r}, noise={self.noise!r})"


class LawData:
    """Fresh draws from a sftheory law (``Gaussian``, ``GaussianMixture``, ...) at every step."""

    def __init__(self, law):
        if not (hasattr(law, "sample") and hasattr(law, "dim")):
            raise ValueError(f"law must have sample(n, seed) and dim, got {law!r}")
        self.law = law
        self.dim = int(law.dim)

    def sample(self, n, rng=None) -> np.ndarray:
        x = np.asarray(self.law.sample(check_count(n), seed=check_seed(rng)), dtype=np.float64)
        return x.reshape(x.shape[0], self.dim)

    def identity(self) -> dict:
        parts = {}
        for name in ("weights", "means", "covs", "mean", "cov"):
            v = getattr(self.law, name, None)
            if v is not None and not callable(v):
                parts[name] = array_digest(np.asarray(v, dtype=np.float64))
        return {"kind": type(self.law).__name__, "dim": self.dim, "params": parts,
                "repr": repr(self.law) if not parts else ""}

    def __repr__(self):
        return f"LawData({self.law!r})"


class ArrayData:
    """A fixed data set of points (n, d): minibatches drawn with replacement."""

    def __init__(self, x):
        try:
            a = np.array(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError("data must be an array of points of shape (n, d)") from None
        if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
            raise ValueError(f"data must have shape (n, d) with n, d >= 1, got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("data contains NaN or infinite values")
        a.flags.writeable = False
        self.x = a
        self.dim = a.shape[1]
        self._digest = array_digest(a)

    def sample(self, n, rng=None) -> np.ndarray:
        rng = check_seed(rng)
        return self.x[rng.integers(0, self.x.shape[0], size=check_count(n))]

    def identity(self) -> dict:
        return {"kind": "array", "shape": list(self.x.shape), "sha256": self._digest}

    def __repr__(self):
        return f"ArrayData(shape={self.x.shape})"


def as_data(data):
    """A data source from an array (n, d), a sftheory law, or an object with ``sample``,
    ``dim`` and ``identity`` (returned as is)."""
    if isinstance(data, (SwissRoll, LawData, ArrayData)):
        return data
    if hasattr(data, "sample") and hasattr(data, "dim") and hasattr(data, "identity"):
        return data
    if hasattr(data, "sample") and hasattr(data, "dim"):
        return LawData(data)
    if is_array_like(data):
        return ArrayData(data)
    raise ValueError(f"data must be an array of shape (n, d), a sftheory law or a data source "
                     f"with sample/dim/identity, got {type(data).__name__}")


def is_array_like(data) -> bool:
    if isinstance(data, np.ndarray) or isinstance(data, (list, tuple)):
        return True
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(data, torch.Tensor)


__all__ = ["SwissRoll", "LawData", "ArrayData", "as_data", "swiss_roll_curve",
           "swiss_roll_extrema", "SWISS_ROLL_T_RANGE"]
