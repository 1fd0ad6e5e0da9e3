"""Validation and shaping of evaluation points, shared by every layer that takes points x."""
from __future__ import annotations

import numpy as np

from .backend import get_backend


def prepare_points(x, dim: int):
    """Validate points; return (x2d, nx, out_shape_kind) with x2d of shape (N, dim).

    Accepts numpy arrays / array-likes (int -> float64; float32 kept) and torch tensors
    (float32/float64, any device). A 1-D array is N points when dim == 1; a scalar is one point
    when dim == 1. ``out_shape_kind`` is "2d", "1d" or "0d" and shapes the outputs like the input.
    """
    nx = get_backend(x)
    if nx.is_torch:
        if x.is_complex() or x.dtype in (nx.torch.float16, nx.torch.bfloat16):
            raise ValueError(f"x must be a float32 or float64 tensor, got {x.dtype}")
        if not x.is_floating_point():  # integers and booleans, as for numpy: float64
            x = x.to(nx.torch.float64)
    else:
        try:
            x = np.asarray(x)
        except ValueError as exc:
            raise ValueError(f"x must be a rectangular array of points ({exc})") from None
        if x.dtype.kind in "iub":
            x = x.astype(np.float64)
        elif x.dtype not in (np.float32, np.float64):
            raise ValueError(f"x must be float32 or float64, got dtype {x.dtype}")
    if x.ndim == 2:
        if x.shape[1] != dim:
            raise ValueError(f"x has shape {tuple(x.shape)}: expected (N, {dim}) points for a "
                             f"model in dimension {dim}")
        kind = "2d"
    elif x.ndim == 1:
        if dim != 1:
            raise ValueError(f"x has shape {tuple(x.shape)}: a 1-D array means N points only for "
                             f"dimension 1; pass shape (N, {dim})")
        x = x[:, None]
        kind = "1d"
    elif x.ndim == 0:
        if dim != 1:
            raise ValueError(f"a scalar x is one point only in dimension 1; pass shape (N, {dim})")
        x = x.reshape(1, 1)
        kind = "0d"
    else:
        raise ValueError(f"x must have shape (N, {dim}), got {tuple(x.shape)}")
    if not nx.all_finite(x):
        raise ValueError("x contains NaN or infinite values")
    return x, nx, kind


def shape_vector(kind: str, vec):
    """Shape an (N, d) result like the input points (see :func:`prepare_points`)."""
    if kind == "2d":
        return vec
    if kind == "1d":
        return vec[:, 0]
    return vec[0, 0]


def shape_scalar(kind: str, val):
    """Shape an (N,) result like the input points."""
    return val[0] if kind == "0d" else val
