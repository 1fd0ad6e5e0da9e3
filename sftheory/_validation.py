"""Argument checks shared by every public entry point (raise ``ValueError`` at the boundary)."""
from __future__ import annotations

import math
import numbers
import sys

import numpy as np

SIMPLEX_ATOL = 1e-9  # weights must sum to one to this accuracy; float64 inputs built as w/sum(w) do


def is_torch(x) -> bool:
    """True for torch tensors (subclasses included); never imports torch itself."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def check_time(t, name: str = "t", *, strictly_positive: bool = False) -> float:
    """A finite scalar time t >= 0 (or > 0)."""
    if is_torch(t):
        t = t.item()
    if isinstance(t, np.ndarray):
        if t.ndim != 0:
            raise ValueError(f"{name} must be a scalar time, got an array of shape {t.shape}")
        t = t.item()
    if isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {type(t).__name__}")
    t = float(t)
    if not math.isfinite(t):
        raise ValueError(f"{name} must be finite, got {t}")
    if strictly_positive and t <= 0:
        raise ValueError(f"{name} must be > 0, got {t}")
    if t < 0:
        raise ValueError(f"{name} must be >= 0, got {t}")
    return t


def check_positive(value, name: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def as_float_array(a, name: str, *, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """Parameter array as float64 (model parameters are always kept in float64), finite, of the
    given rank."""
    if is_torch(a):
        a = a.detach().cpu().numpy()
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            raise ValueError(f"{name} must have {' or '.join(map(str, allowed))} dimension(s), "
                             f"got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def check_simplex(weights, name: str = "weights") -> np.ndarray:
    """Weights on the probability simplex: non-negative, summing to one within SIMPLEX_ATOL."""
    w = as_float_array(weights, name, ndim=1)
    if w.size == 0:
        raise ValueError(f"{name} must not be empty")
    if np.any(w < 0):
        raise ValueError(f"{name} must be non-negative, got min {w.min()}")
    total = w.sum()
    if abs(total - 1.0) > SIMPLEX_ATOL:
        raise ValueError(f"{name} must sum to one (within {SIMPLEX_ATOL}), got sum {total!r}")
    return w / total


def check_spd(cov: np.ndarray, name: str = "cov") -> np.ndarray:
    """Cholesky factor(s) of symmetric positive definite matrices (..., d, d); raise otherwise."""
    if cov.shape[-1] != cov.shape[-2]:
        raise ValueError(f"{name} must be square, got shape {cov.shape}")
    sym_err = np.abs(cov - np.swapaxes(cov, -1, -2)).max(initial=0.0)
    scale = np.abs(cov).max(initial=0.0)
    if sym_err > 1e-10 * max(scale, 1e-300):
        raise ValueError(f"{name} is not symmetric (max |C - C^T| = {sym_err:.3g})")
    try:
        chol = np.linalg.cholesky(0.5 * (cov + np.swapaxes(cov, -1, -2)))
    except np.linalg.LinAlgError:
        raise ValueError(f"{name} is not positive definite") from None
    if not np.all(np.isfinite(chol)):
        raise ValueError(f"{name} is not positive definite")
    return chol


def check_seed(seed) -> np.random.Generator:
    """An explicit ``np.random.Generator`` or an integer seed (None: fresh entropy)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, numbers.Integral):
        return np.random.default_rng(seed)
    raise ValueError(f"seed must be an int, None or a numpy Generator, got {type(seed).__name__}")


def check_count(n, name: str = "n") -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {n!r}")
    return int(n)
