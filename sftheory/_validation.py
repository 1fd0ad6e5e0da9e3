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


def _torch_time_to_numpy(t, name: str):
    if t.requires_grad:
        raise ValueError(f"{name} requires grad: sftheory does not differentiate with respect to "
                         f"time; pass {name}.detach() (derivatives in x are supported)")
    return t.detach().cpu().numpy()


def check_time(t, name: str = "t", *, strictly_positive: bool = False) -> float:
    """A finite scalar time t >= 0 (or > 0): a Python/numpy real or a 0-d array or tensor.

    Arrays of shape (1,) are *not* scalars here, for numpy and torch alike (one rule for both).
    """
    if is_torch(t):
        t = _torch_time_to_numpy(t, name)
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


def check_times(t, n: int, name: str = "t", *, strictly_positive: bool = False):
    """Times for n points: a scalar (one time for all) or an array of shape (n,) (one per point).

    Returns a Python float, or a read-only float64 numpy array of shape (n,). Shape (1,) is a
    per-point array, valid only when n == 1. torch tensors are accepted (and refused if they
    require grad: sftheory does not differentiate in t).
    """
    if is_torch(t):
        t = _torch_time_to_numpy(t, name)
    if isinstance(t, (list, tuple)) or (isinstance(t, np.ndarray) and t.ndim > 0):
        arr = np.asarray(t)
        if arr.dtype.kind == "b" or arr.dtype.kind not in "fiu":
            raise ValueError(f"{name} must be real times, got dtype {arr.dtype}")
        if arr.ndim != 1 or arr.shape[0] != n:
            extra = (" (shape (1,) is one time per point; pass a scalar for one time for all "
                     "points)" if arr.shape == (1,) else "")
            raise ValueError(f"{name} must be a scalar or have shape ({n},) (one time per point), "
                             f"got shape {arr.shape}{extra}")
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite values")
        low = arr.min(initial=np.inf)
        if strictly_positive and low <= 0:
            raise ValueError(f"{name} must be > 0, got min {low}")
        if low < 0:
            raise ValueError(f"{name} must be >= 0, got min {low}")
        arr.flags.writeable = False
        return arr
    return check_time(t, name, strictly_positive=strictly_positive)


def scalar_of(value, name: str):
    """A 0-d torch tensor (not requiring grad) or 0-d real numpy array as a Python float; any
    other value unchanged (for the checks that follow). A scalar argument may be given as a
    0-d tensor, as times may."""
    if is_torch(value):
        import torch

        if value.ndim != 0 or value.is_complex() or value.dtype == torch.bool:
            return value  # refused by the check that follows
        if value.requires_grad:
            raise ValueError(f"{name} requires grad: sftheory does not differentiate with respect "
                             f"to {name}; pass {name}.detach()")
        return float(value.detach().cpu())
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "fiu":
        return float(value)
    return value


def check_real(value, name: str) -> float:
    """A finite real number (not a bool, not None; a 0-d array or tensor is one), as float."""
    value = scalar_of(value, name)  # 0-d arrays and tensors become floats
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def check_positive(value, name: str) -> float:
    value = scalar_of(value, name)  # 0-d arrays and tensors become floats
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def as_float_array(a, name: str, *, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """Parameter array as float64 (model parameters are always kept in float64), finite, of the
    given rank."""
    if is_torch(a):
        a = a.detach().cpu().numpy()
    try:
        arr = np.array(a)  # always a copy: later changes to the caller's array do not leak in
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} must be a rectangular numeric array ({exc})") from None
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}"
                         + (" (ragged or non-numeric entries?)" if arr.dtype.kind == "O" else ""))
    arr = arr.astype(np.float64, copy=False)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            raise ValueError(f"{name} must have {' or '.join(map(str, allowed))} dimension(s), "
                             f"got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def frozen(a: np.ndarray) -> np.ndarray:
    """``a`` marked read-only (parameters are read-only after construction)."""
    a.flags.writeable = False
    return a


def check_simplex(weights, name: str = "weights") -> np.ndarray:
    """Weights on the probability simplex: non-negative, summing to one within SIMPLEX_ATOL for
    float64 input, or within 8 K eps of the input's precision (float32 weights from a softmax sum
    to 1 only to ~1e-7); renormalized exactly."""
    in_eps = np.finfo(np.float64).eps
    dt = getattr(weights, "dtype", None)
    if dt is not None and str(dt) in ("float32", "torch.float32"):
        in_eps = float(np.finfo(np.float32).eps)
    elif dt is not None and str(dt) in ("float16", "torch.float16", "torch.bfloat16"):
        in_eps = float(np.finfo(np.float16).eps)
    w = as_float_array(weights, name, ndim=1)
    if w.size == 0:
        raise ValueError(f"{name} must not be empty")
    if np.any(w < 0):
        raise ValueError(f"{name} must be non-negative, got min {w.min()}")
    total = w.sum()
    atol = max(SIMPLEX_ATOL, 8 * w.size * in_eps)
    if abs(total - 1.0) > atol:
        raise ValueError(f"{name} must sum to one (within {atol:.3g}), got sum {total!r}")
    return w / total


def check_spd(cov: np.ndarray, name: str = "cov") -> tuple[np.ndarray, np.ndarray]:
    """Eigendecomposition (lam, Q) of symmetric positive definite matrices (..., d, d): cov =
    Q diag(lam) Q^T with lam > 0; raise ``ValueError`` naming ``name`` otherwise.

    Batched (one LAPACK call for K matrices, no Python loop). A matrix whose smallest eigenvalue
    is <= d * eps * its largest is numerically singular and rejected.
    """
    if cov.ndim < 2 or cov.shape[-1] != cov.shape[-2]:
        raise ValueError(f"{name} must be square, got shape {cov.shape}")
    # symmetry relative to each matrix's own scale (a small component of a batch is not excused
    # by a large one)
    sym_err = np.abs(cov - np.swapaxes(cov, -1, -2)).max(axis=(-2, -1), initial=0.0)
    scale = np.abs(cov).max(axis=(-2, -1), initial=0.0)
    bad_sym = sym_err > 1e-10 * np.maximum(scale, 1e-300)
    if np.any(bad_sym):
        raise ValueError(f"{name} is not symmetric (max |C - C^T| = {float(np.max(sym_err)):.3g})")
    lam, q = np.linalg.eigh(0.5 * (cov + np.swapaxes(cov, -1, -2)))
    d = cov.shape[-1]
    lo, hi = lam[..., 0], lam[..., -1]
    bad = ~(lo > d * np.finfo(np.float64).eps * hi) | ~np.isfinite(hi)
    if np.any(bad):
        idx = np.argwhere(np.atleast_1d(bad))[0]
        where = "" if cov.ndim == 2 else f" (matrix {tuple(int(i) for i in idx)})"
        raise ValueError(f"{name} is not positive definite{where}: smallest eigenvalue "
                         f"{float(np.atleast_1d(lo)[tuple(idx)]):.3g}")
    return lam, q


def check_seed(seed) -> np.random.Generator:
    """An explicit ``np.random.Generator`` or an integer seed (None: fresh entropy)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)):
        raise ValueError(f"seed must be an int, None or a numpy Generator, got {seed!r}")
    if seed is None or isinstance(seed, numbers.Integral):
        if seed is not None and seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        return np.random.default_rng(seed)
    raise ValueError(f"seed must be an int, None or a numpy Generator, got {type(seed).__name__}")


def check_count(n, name: str = "n") -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {n!r}")
    return int(n)
