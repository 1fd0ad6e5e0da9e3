"""The backend seam: one formula, written once against ``nx``, runs on numpy and on torch.

Algorithms call ``nx = get_backend(x)`` and then only ``nx.*`` operations (the POT pattern), so the
same code evaluates numpy arrays and torch tensors (any dtype, any device, with autograd). Hot
loops on numpy inputs go one level down to the numba kernels in :mod:`sftheory._kernels`; the
numpy backend formula is their reference implementation and parity tests compare the two.

torch is imported lazily: importing sftheory never imports torch.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
from ._validation import is_torch

LOG_2PI = math.log(2.0 * math.pi)


class NumpyBackend:
    name = "numpy"
    is_torch = False

    def from_numpy(self, a: np.ndarray, like=None):
        """Parameter array in the dtype of ``like`` (float32 inputs evaluate in float32)."""
        if like is not None and like.dtype == np.float32:
            return a.astype(np.float32)
        return a

    def to_numpy(self, a):
        return np.asarray(a)

    einsum = staticmethod(np.einsum)
    exp = staticmethod(np.exp)
    log = staticmethod(np.log)
    sqrt = staticmethod(np.sqrt)

    @staticmethod
    def sum(a, axis=None, keepdims=False):
        return np.sum(a, axis=axis, keepdims=keepdims)

    @staticmethod
    def max(a, axis):
        return np.max(a, axis=axis)

    @staticmethod
    def concat(arrays, axis=0):
        return np.concatenate(arrays, axis=axis)

    @staticmethod
    def all_finite(a) -> bool:
        return bool(np.all(np.isfinite(a)))

    @staticmethod
    def is_floating(a) -> bool:
        return a.dtype in (np.float32, np.float64)

    # -- what the algorithms above the models need (random numbers, products, reductions) --
    matmul = staticmethod(np.matmul)
    where = staticmethod(np.where)
    isfinite = staticmethod(np.isfinite)
    abs = staticmethod(np.abs)

    @staticmethod
    def amin(a, axis, keepdims=False):
        return np.min(a, axis=axis, keepdims=keepdims)

    @staticmethod
    def amax(a, axis, keepdims=False):
        return np.max(a, axis=axis, keepdims=keepdims)

    @staticmethod
    def logsumexp(a, axis):
        """log sum exp along ``axis``, stable (max-shifted); -inf rows stay -inf."""
        mx = np.max(a, axis=axis, keepdims=True)
        mx = np.where(np.isfinite(mx), mx, 0.0)
        with np.errstate(divide="ignore"):
            return np.log(np.sum(np.exp(a - mx), axis=axis)) + np.squeeze(mx, axis=axis)

    @staticmethod
    def softmax(a, axis):
        """exp(a - max) / sum: relative accuracy, unlike exp(a - logsumexp), whose rounding is
        eps * |logsumexp| absolute."""
        mx = np.max(a, axis=axis, keepdims=True)
        e = np.exp(a - np.where(np.isfinite(mx), mx, 0.0))
        return e / np.sum(e, axis=axis, keepdims=True)

    @staticmethod
    def asarray(a, like):
        """``a`` (numpy/Python) as an array of ``like``'s dtype."""
        return np.asarray(a, dtype=like.dtype)

    @staticmethod
    def copy(a):
        return np.array(a, copy=True)

    @staticmethod
    def full_like(a, value):
        return np.full_like(a, value)

    @staticmethod
    def standard_normal(shape, seed, like):
        """Standard normal draws of ``shape`` in ``like``'s dtype; ``seed`` an int, None or a numpy
        Generator (the stream is reproducible for a given seed)."""
        from ._validation import check_seed

        return check_seed(seed).standard_normal(shape).astype(like.dtype, copy=False)

    @staticmethod
    def generator(seed, like):
        """A random stream for repeated draws (a numpy Generator; ``seed`` int, None or Generator)."""
        from ._validation import check_seed

        return check_seed(seed)

    @staticmethod
    def randn(gen, shape, like):
        """Standard normal draws from a stream made by :meth:`generator`, in ``like``'s dtype."""
        return gen.standard_normal(shape).astype(like.dtype, copy=False)

    # -- linear algebra and stacking for the fusion objectives (k x k, d x d problems) --
    stack = staticmethod(np.stack)

    @staticmethod
    def solve(a, b):
        """Solution of a x = b (a square)."""
        return np.linalg.solve(a, b)

    @staticmethod
    def logabsdet(a):
        """log |det a| (for symmetric positive definite a: log det a)."""
        return np.linalg.slogdet(a)[1]

    @staticmethod
    def mean_se(a):
        """(mean, standard error std(ddof=1)/sqrt(n)) along axis 0 (n >= 2)."""
        n = a.shape[0]
        return a.mean(axis=0), a.std(axis=0, ddof=1) / np.sqrt(n)


class TorchBackend:
    name = "torch"
    is_torch = True

    def __init__(self):
        import torch

        self.torch = torch

    def from_numpy(self, a: np.ndarray, like=None):
        a = np.ascontiguousarray(a)
        if not a.flags.writeable:  # parameters are read-only; torch wants memory it may write
            a = a.copy()
        t = self.torch.from_numpy(a)
        if like is not None:
            t = t.to(dtype=like.dtype, device=like.device)
        return t

    def to_numpy(self, a):
        return a.detach().cpu().numpy()

    def einsum(self, spec, *ops):
        return self.torch.einsum(spec, *ops)

    def exp(self, a):
        return self.torch.exp(a)

    def log(self, a):
        return self.torch.log(a)

    def sqrt(self, a):
        return self.torch.sqrt(a)

    def sum(self, a, axis=None, keepdims=False):
        if axis is None:
            return a.sum()
        return a.sum(dim=axis, keepdim=keepdims)

    def max(self, a, axis):
        return self.torch.amax(a, dim=axis)

    def concat(self, arrays, axis=0):
        return self.torch.cat(arrays, dim=axis)

    def all_finite(self, a) -> bool:
        return bool(self.torch.isfinite(a).all())

    def is_floating(self, a) -> bool:
        return a.dtype in (self.torch.float32, self.torch.float64)

    def matmul(self, a, b):
        return self.torch.matmul(a, b)

    def where(self, cond, a, b):
        return self.torch.where(cond, a, b)

    def isfinite(self, a):
        return self.torch.isfinite(a)

    def abs(self, a):
        return self.torch.abs(a)

    def amin(self, a, axis, keepdims=False):
        return self.torch.amin(a, dim=axis, keepdim=keepdims)

    def amax(self, a, axis, keepdims=False):
        return self.torch.amax(a, dim=axis, keepdim=keepdims)

    def logsumexp(self, a, axis):
        return self.torch.logsumexp(a, dim=axis)

    def softmax(self, a, axis):
        return self.torch.softmax(a, dim=axis)

    def asarray(self, a, like):
        if isinstance(a, np.ndarray) and not a.flags.writeable:
            a = a.copy()
        return self.torch.as_tensor(a, dtype=like.dtype, device=like.device)

    def copy(self, a):
        return a.clone()

    def full_like(self, a, value):
        return self.torch.full_like(a, value)

    def standard_normal(self, shape, seed, like):
        """Standard normal draws on ``like``'s device and dtype, from a ``torch.Generator`` on that
        device seeded by ``seed`` (an int, or a numpy Generator that supplies one; None: torch's
        global stream)."""
        gen = None
        if seed is not None:
            from ._validation import check_seed

            if not isinstance(seed, np.random.Generator):
                check_seed(seed)  # same validation (and messages) as the numpy backend
                seed = int(seed) % (2**63)
            else:
                seed = int(seed.integers(0, 2**63 - 1))
            gen = self.torch.Generator(device=like.device).manual_seed(seed)
        return self.torch.randn(tuple(shape), generator=gen, dtype=like.dtype, device=like.device)

    def generator(self, seed, like):
        """A ``torch.Generator`` on ``like``'s device (seeded as in :meth:`standard_normal`)."""
        from ._validation import check_seed

        if isinstance(seed, np.random.Generator):
            seed = int(seed.integers(0, 2**63 - 1))
        elif seed is None:
            seed = int(np.random.default_rng().integers(0, 2**63 - 1))
        else:
            check_seed(seed)
            seed = int(seed) % (2**63)
        return self.torch.Generator(device=like.device).manual_seed(seed)

    def randn(self, gen, shape, like):
        return self.torch.randn(tuple(shape), generator=gen, dtype=like.dtype, device=like.device)

    def stack(self, arrays, axis=0):
        return self.torch.stack(list(arrays), dim=axis)

    def solve(self, a, b):
        return self.torch.linalg.solve(a, b)

    def logabsdet(self, a):
        return self.torch.linalg.slogdet(a)[1]

    def mean_se(self, a):
        n = a.shape[0]
        return a.mean(dim=0), a.std(dim=0, correction=1) / math.sqrt(n)


_NUMPY = NumpyBackend()
_TORCH: TorchBackend | None = None


def get_backend(*arrays):
    """The backend of the inputs: torch if any is a torch tensor, numpy otherwise."""
    global _TORCH
    if any(is_torch(a) for a in arrays):
        if _TORCH is None:
            _TORCH = TorchBackend()
        return _TORCH
    return _NUMPY


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# --- which implementation evaluates numpy inputs --------------------------------------------------
_KERNEL = {"impl": "numba"}


def kernel_impl() -> str:
    """``"numba"`` (default) or ``"numpy"``: who evaluates mixtures on numpy inputs."""
    return _KERNEL["impl"]


def check_impl(impl: str) -> str:
    if impl not in ("numba", "numpy"):
        raise ValueError(f"impl must be 'numba' or 'numpy', got {impl!r}")
    return impl


@contextlib.contextmanager
def use_kernels(impl: str):
    """Context manager selecting the numpy-input implementation: ``"numba"`` or ``"numpy"``.

    >>> with use_kernels("numpy"):   # the plain numpy reference formula
    ...     pass
    """
    check_impl(impl)
    old = _KERNEL["impl"]
    _KERNEL["impl"] = impl
    try:
        yield
    finally:
        _KERNEL["impl"] = old
