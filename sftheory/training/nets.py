"""Small time-conditioned networks for score fields: :class:`ScoreMLP`.

``ScoreMLP(dim, hidden=(50, 50), activation="relu", time_embedding="sinusoidal")`` is a multilayer
perceptron on (x, embedding(t)). Called as ``net(x, t)`` it returns the **score** s(x, t)
(forward time t; x a torch tensor (N, d), t a float or a tensor (N,)). With the default
``parametrization="noise"`` the network's raw output is a noise predictor eps_hat(x, t) and

.. math:: s(x, t) = -\\hat\\varepsilon(x, t) / \\varpi_t, \\qquad \\varpi_t = \\sqrt{v(t)},

v(t) the conditional variance of the forward ``process`` (as in the [OS] authors' code: a
network trained on ||eps_hat + eps||^2 with the default weight (5)); with
``parametrization="score"`` the raw output is the score itself.

``net.as_field()`` is the network as a :class:`sftheory.fields.ScoreField`, so the samplers take
it: ``sample_euler_maruyama(net.as_field(), x, ts, process, h=...)`` with numpy or torch x.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .._validation import is_torch

try:  # torch is an optional extra: the module imports, the classes need it
    import torch
    from torch import nn
    _Module = nn.Module
except ImportError:  # pragma: no cover - exercised only without torch
    torch = None
    nn = None
    _Module = object

ACTIVATIONS = ("relu", "silu", "tanh", "softplus", "gelu")
TIME_EMBEDDINGS = ("sinusoidal", "identity")
PARAMETRIZATIONS = ("noise", "score")


def _require_torch():
    if torch is None:  # pragma: no cover
        raise ImportError("sftheory.training needs torch: pip install torch")


def _activation(name):
    return {"relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh, "softplus": nn.Softplus,
            "gelu": nn.GELU}[name]()


def process_identity(process) -> dict:
    """What identifies a forward process in a cache key: its class and parameters."""
    return {"type": type(process).__name__, "params": dict(process._named_params())}


class ScoreMLP(_Module):
    """Time-conditioned MLP whose call ``net(x, t)`` is the score s(x, t).

    Parameters
    ----------
    dim : int
        Dimension d of the points.
    hidden : tuple of int
        Hidden layer widths; ``(50, 50)`` with a final linear layer to ``dim`` is [OS] App. H.2's
        "50, 50, 2" Swiss roll network.
    activation : {"relu", "silu", "tanh", "softplus", "gelu"}
    time_embedding : {"sinusoidal", "identity"}
        ``"sinusoidal"``: (sin(w_i t), cos(w_i t)) with w_i = 1000^(-i/k), i < k =
        ``n_frequencies`` (k = 1 gives (sin t, cos t), the [OS] authors' embedding for d <= 2);
        ``"identity"``: t itself.
    n_frequencies : int
    parametrization : {"noise", "score"}
        What the raw output is (see the module docstring); ``"noise"`` needs ``process``.
    process : a sftheory process
        The forward process (for varpi_t); required for ``"noise"``.
    init_std : float or None
        None: torch's default initialization; a number: weights ~ N(0, init_std^2) and zero biases
        (the [OS] authors use 0.02).
    dtype : torch dtype (default float64)
    """

    def __init__(self, dim: int, hidden=(50, 50), activation: str = "relu",
                 time_embedding: str = "sinusoidal", *, n_frequencies: int = 1,
                 parametrization: str = "noise", process=None, init_std: float | None = None,
                 dtype=None):
        _require_torch()
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
            raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
        try:
            hidden = tuple(hidden)
        except TypeError:
            raise ValueError(f"hidden must be a tuple of layer widths, got {hidden!r}") from None
        if not hidden or any(isinstance(w, bool) or not isinstance(w, numbers.Integral) or w < 1
                             for w in hidden):
            raise ValueError(f"hidden must be a non-empty tuple of integers >= 1, got {hidden!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if time_embedding not in TIME_EMBEDDINGS:
            raise ValueError(f"time_embedding must be one of {TIME_EMBEDDINGS}, got "
                             f"{time_embedding!r}")
        if (isinstance(n_frequencies, bool) or not isinstance(n_frequencies, numbers.Integral)
                or n_frequencies < 1):
            raise ValueError(f"n_frequencies must be an integer >= 1, got {n_frequencies!r}")
        if parametrization not in PARAMETRIZATIONS:
            raise ValueError(f"parametrization must be one of {PARAMETRIZATIONS}, got "
                             f"{parametrization!r}")
        if process is not None:
            from ..processes import LinearSDE

            if not isinstance(process, LinearSDE):
                raise ValueError(f"process must be a sftheory.processes process, got {process!r}")
        if parametrization == "noise" and process is None:
            raise ValueError("parametrization='noise' needs the forward process (score = "
                             "-eps_hat / sqrt(v(t))): pass process=")
        if init_std is not None and not (isinstance(init_std, (int, float))
                                         and not isinstance(init_std, bool)
                                         and math.isfinite(init_std) and init_std > 0):
            raise ValueError(f"init_std must be None or a finite number > 0, got {init_std!r}")
        dtype = torch.float64 if dtype is None else dtype
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
        self.dim = int(dim)
        self.hidden = tuple(int(w) for w in hidden)
        self.activation = activation
        self.time_embedding = time_embedding
        self.n_frequencies = int(n_frequencies)
        self.parametrization = parametrization
        self.process = process
        self.init_std = None if init_std is None else float(init_std)
        emb = 2 * self.n_frequencies if time_embedding == "sinusoidal" else 1
        layers, width = [], self.dim + emb
        for w in self.hidden:
            layers += [nn.Linear(width, w), _activation(activation)]
            width = w
        layers.append(nn.Linear(width, self.dim))
        self.model = nn.Sequential(*layers).to(dtype)
        if self.init_std is not None:
            with torch.no_grad():
                for m in self.model:
                    if isinstance(m, nn.Linear):
                        m.weight.normal_(0.0, self.init_std)
                        m.bias.zero_()
        freqs = np.power(1000.0, -np.arange(self.n_frequencies) / self.n_frequencies)
        self.register_buffer("freqs", torch.as_tensor(freqs, dtype=dtype), persistent=False)

    # ---- description --------------------------------------------------------------------------
    def config(self) -> dict:
        """The constructor settings (JSON-ready; the process by class and parameters)."""
        return {"class": "ScoreMLP", "dim": self.dim, "hidden": list(self.hidden),
                "activation": self.activation, "time_embedding": self.time_embedding,
                "n_frequencies": self.n_frequencies, "parametrization": self.parametrization,
                "process": None if self.process is None else process_identity(self.process),
                "init_std": self.init_std, "dtype": str(self.dtype)}

    @property
    def dtype(self):
        return self.model[0].weight.dtype

    @property
    def device(self):
        return self.model[0].weight.device

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, hidden={self.hidden}, activation={self.activation!r}, "
                f"time_embedding={self.time_embedding!r}, parametrization="
                f"{self.parametrization!r}")

    # ---- evaluation -----------------------------------------------------------------------------
    def _times(self, t, n: int):
        """t as a (n,) tensor on the net's device and dtype (t a float, 0-d or (n,) array)."""
        if is_torch(t):
            tt = t.detach().to(device=self.device, dtype=self.dtype)
        else:
            ta = np.asarray(t, dtype=np.float64)
            if not ta.flags.writeable:  # e.g. np.broadcast_to: torch warns on read-only memory
                ta = ta.copy()
            tt = torch.as_tensor(ta, dtype=self.dtype, device=self.device)
        if tt.ndim == 0:
            tt = tt.expand(n)
        if tt.shape != (n,):
            raise ValueError(f"t must be a scalar or have shape ({n},), got {tuple(tt.shape)}")
        return tt

    def embed(self, t):
        """Time features, shape (n, embedding width), for a (n,) tensor of times."""
        if self.time_embedding == "identity":
            return t[:, None]
        arg = t[:, None] * self.freqs[None, :]
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)

    def raw(self, x, t):
        """The network's raw output at (x, t): eps_hat ("noise") or the score ("score")."""
        if not is_torch(x) or x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must be a torch tensor of shape (N, {self.dim}), got "
                             f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
        tt = self._times(t, x.shape[0])
        z = torch.cat([x.to(self.dtype), self.embed(tt)], dim=1)
        return self.model(z)

    def sigma(self, t, n: int):
        """varpi_t = sqrt(v(t)) of the net's process, as a (n,) tensor (``"noise"`` only)."""
        if self.process is None:
            raise ValueError("this net has no process")
        if is_torch(t):
            tn = t.detach().cpu().numpy()
        else:
            tn = np.asarray(t, dtype=np.float64)
        if tn.ndim == 0:
            _, v = self.process.conditional(float(tn))
            return torch.full((n,), math.sqrt(v), dtype=self.dtype, device=self.device)
        _, v = self.process.conditional_many(np.asarray(tn, dtype=np.float64))
        return torch.as_tensor(np.sqrt(v), dtype=self.dtype, device=self.device)

    def noise_prediction(self, x, t):
        """-varpi_t s(x, t): the quantity the denoising loss compares with eps (no division, so
        it stays finite as t -> 0 for the noise parametrization)."""
        out = self.raw(x, t)
        if self.parametrization == "noise":
            return out
        sig = self.sigma(t, x.shape[0]) if self.process is not None else None
        if sig is None:
            raise ValueError("parametrization='score' needs process= for noise predictions")
        return -sig[:, None] * out

    def forward(self, x, t):
        """The score s(x, t), shape (N, d), in x's dtype and device."""
        out = self.raw(x, t)
        if self.parametrization == "noise":
            out = -out / self.sigma(t, x.shape[0])[:, None]
        return out.to(dtype=x.dtype, device=x.device)

    def as_field(self):
        """This network as a score field (:class:`sftheory.fields.CallableField`): numpy x is
        evaluated in the net's dtype and returned as numpy in x's dtype; torch x in x's dtype and
        device. Evaluated without autograd unless x requires grad."""
        from ..fields import CallableField

        net = self

        def score(x, t):
            if is_torch(x):
                if x.requires_grad:
                    return net(x.to(device=net.device), t).to(device=x.device)
                with torch.no_grad():
                    return net(x.to(device=net.device), t).to(device=x.device)
            xt = torch.as_tensor(np.asarray(x), dtype=net.dtype, device=net.device)
            with torch.no_grad():
                out = net(xt, t)
            return out.cpu().numpy().astype(np.asarray(x).dtype, copy=False)

        score.__qualname__ = f"ScoreMLP(hidden={self.hidden}).score"
        return CallableField(score, self.dim, name=score.__qualname__)


__all__ = ["ScoreMLP", "ACTIVATIONS", "TIME_EMBEDDINGS", "PARAMETRIZATIONS", "process_identity"]
