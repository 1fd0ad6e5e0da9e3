r"""Denoising score matching ([OS] eq. (4)) with the exact Gaussian transition of a forward process.

For a forward process with X_t | X_0 = x_0 ~ N(m(t) x_0, v(t) I) (every process of
:mod:`sftheory.processes`; ``process.conditional_many``), write varpi_t = sqrt(v(t)) and
x_t = m x_0 + varpi_t eps. Then grad log p_{t|0}(x_t | x_0) = -eps / varpi_t and the loss (4)

.. math::
    \int_{t_\min}^T \omega_t\, \mathbb E\,\big\| \mathfrak S_t(X_t)
      + \varepsilon/\varpi_t \big\|^2 dt
    = \int \frac{\omega_t}{\varpi_t^2}\, \mathbb E\,\big\| \hat\varepsilon_t(X_t) - \varepsilon
      \big\|^2 dt,\qquad \hat\varepsilon = -\varpi_t \mathfrak S_t

is estimated with t ~ U(t_min, T) and one eps per data point: each step minimizes the batch mean of
(omega_t / varpi_t^2) ||eps_hat - eps||^2 (up to the constant T - t_min).

Weightings omega_t (:data:`WEIGHTINGS`), each written once below:

* ``"default"``: omega = varpi^2, [OS] eq. (5);
* ``"noise"``: omega = varpi^3, [OS] eq. (45) ("noise-driven");
* ``"data"``: omega = varpi^2 / (0.25 + varpi), [OS] eq. (45) ("data-driven");
* ``"uniform"``: omega = 1 (the plain score-matching loss).

For the VP process varpi_t is eq. (5)'s sqrt(1 - exp(-t^2 (beta_1 - beta_0)/2 - t beta_0)) (its
App. H.5); for other processes it is, as the paper defines it, the standard deviation of X_t given
X_0.
"""
from __future__ import annotations

import copy
import math
import numbers
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._refs import source
from . import cache as _cache
from .datasets import as_data
from .nets import ScoreMLP, process_identity


# ---- weightings omega_t as functions of varpi_t -----------------------------------------------
@source("OS", "eq. (5) (default weight omega = varpi^2)", "os.appI")
def weight_default(varpi):
    """omega_t = varpi_t^2 ([OS] eq. (5))."""
    return varpi * varpi


@source("OS", "eq. (45) (noise-driven weight omega = varpi^3)", "os.appI")
def weight_noise(varpi):
    """omega_t = varpi_t^3 ([OS] eq. (45), "noise-driven")."""
    return varpi * varpi * varpi


@source("OS", "eq. (45) (data-driven weight omega = varpi^2 / (0.25 + varpi))", "os.appI")
def weight_data(varpi):
    """omega_t = varpi_t^2 / (0.25 + varpi_t) ([OS] eq. (45), "data-driven")."""
    return varpi * varpi / (0.25 + varpi)


def weight_uniform(varpi):
    """omega_t = 1: the unweighted score-matching loss."""
    return np.ones_like(varpi)


WEIGHTINGS = {"default": weight_default, "noise": weight_noise, "data": weight_data,
              "uniform": weight_uniform}


def weighting_values(weighting: str, varpi) -> np.ndarray:
    """omega at the given varpi values for a named weighting."""
    return WEIGHTINGS[check_weighting(weighting)](np.asarray(varpi, dtype=np.float64))


def check_weighting(weighting) -> str:
    if not isinstance(weighting, str) or weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {sorted(WEIGHTINGS)}, got {weighting!r}")
    return weighting


# ---- learning-rate schedules --------------------------------------------------------------------
@dataclass(frozen=True)
class StepLR:
    """lr_k = lr * gamma^(k // every) at step k (k from 0): [OS] App. H.2 halves the rate every
    8,000 steps (``StepLR(8000, 0.5)``)."""

    every: int
    gamma: float = 0.5

    def __post_init__(self):
        if (isinstance(self.every, bool) or not isinstance(self.every, numbers.Integral)
                or self.every < 1):
            raise ValueError(f"every must be an integer >= 1, got {self.every!r}")
        if not (isinstance(self.gamma, (int, float)) and not isinstance(self.gamma, bool)
                and math.isfinite(self.gamma) and 0 < self.gamma <= 1):
            raise ValueError(f"gamma must be a number in (0, 1], got {self.gamma!r}")

    def factor(self, step: int) -> float:
        return float(self.gamma) ** (step // self.every)

    def identity(self) -> dict:
        return {"kind": "step", "every": int(self.every), "gamma": float(self.gamma)}


@dataclass(frozen=True)
class ConstantLR:
    """lr_k = lr."""

    def factor(self, step: int) -> float:
        return 1.0

    def identity(self) -> dict:
        return {"kind": "constant"}


def check_lr_schedule(s):
    if s is None or s == "constant":
        return ConstantLR()
    if isinstance(s, (StepLR, ConstantLR)):
        return s
    raise ValueError(f"lr_schedule must be None, 'constant', StepLR(every, gamma) or "
                     f"ConstantLR(), got {s!r}")


# ---- the result ---------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What :func:`train_dsm` returns: the trained ``net`` (a :class:`ScoreMLP`, in eval mode),
    the per-step training ``losses``, whether this call ``trained`` (False: loaded from the cache),
    the cache ``key`` and ``path`` (None without a cache), the ``settings`` that were hashed and
    the wall ``seconds``."""

    net: object
    losses: np.ndarray
    trained: bool
    key: str
    path: Path | None
    settings: dict = field(repr=False, default_factory=dict)
    seconds: float = 0.0
    steps_run: int = 0

    def field(self):
        """The trained network as a score field (``net.as_field()``)."""
        return self.net.as_field()


def _check_int(v, name, lo):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def _check_pos(v, name):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    return float(v)


def _build_net(net_or_config, data_dim, process, seed):
    import torch

    if isinstance(net_or_config, ScoreMLP):
        net = copy.deepcopy(net_or_config)
        if net.dim != data_dim:
            raise ValueError(f"data has dimension {data_dim} but the net has dim {net.dim}")
        if net.process is not None and process_identity(net.process) != process_identity(process):
            raise ValueError(f"the net was built for {net.process!r} but training uses "
                             f"{process!r}")
        if net.process is None:
            net.process = process
        return net
    if isinstance(net_or_config, dict):
        cfg = dict(net_or_config)
        cfg.setdefault("dim", data_dim)
        if cfg["dim"] != data_dim:
            raise ValueError(f"data has dimension {data_dim} but the config has dim {cfg['dim']}")
        cfg.setdefault("process", process)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the initialization is part of the run's seed
            return ScoreMLP(**cfg)
    raise ValueError(f"net_or_config must be a ScoreMLP or a dict of ScoreMLP arguments, got "
                     f"{type(net_or_config).__name__}")


class torch_threads:
    """Context manager: torch uses ``n`` CPU threads inside (None: unchanged), restored after."""

    def __init__(self, n: int | None):
        self.n, self.old = n, None

    def __enter__(self):
        import torch

        if self.n is not None:
            self.old = torch.get_num_threads()
            torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        import torch

        if self.old is not None:
            torch.set_num_threads(self.old)
        return False


def _check_device(device):
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be a torch device string such as 'cpu' or 'cuda', got "
                         f"{device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return dev


@source("OS", "eq. (4) (denoising score-matching loss with weight omega_t)", "os.fig5", "os.appI")
def train_dsm(net_or_config, data, process, *, steps: int, batch_size: int = 400,
              lr: float = 1e-2, lr_schedule=None, weighting: str = "default",
              t_min: float = 1e-5, T: float = 1.0, seed: int = 0, device: str = "cpu",
              optimizer: str = "adam", betas=(0.9, 0.999), weight_decay: float = 0.0,
              progress: bool = True, cache=False, callback=None,
              threads: int | None = 1) -> TrainResult:
    r"""Train a score network by denoising score matching ([OS] eq. (4)) under ``process``.

    Parameters
    ----------
    net_or_config : ScoreMLP or dict
        A network (copied, never modified) or the keyword arguments of :class:`ScoreMLP`
        (``dim`` and ``process`` default to the data's and the training process; the weights are
        initialized under ``torch.manual_seed(seed)``).
    data : array (n, d), sftheory law, or data source
        A fixed data set (minibatches drawn with replacement), a law (fresh draws per step) or
        e.g. :class:`~sftheory.training.datasets.SwissRoll`.
    process : a sftheory process
        The forward process; its exact transition N(m x0, v I) noises the data.
    steps, batch_size, lr : training length, minibatch size, base learning rate.
    lr_schedule : None / "constant", or :class:`StepLR` (``StepLR(8000, 0.5)``: [OS] App. H.2).
    weighting : {"default", "noise", "data", "uniform"}
        omega_t: [OS] eq. (5), eq. (45) noise- and data-driven, or 1.
    t_min, T : times are drawn uniformly in [t_min, T], 0 < t_min < T.
    seed : int
        Seeds the initialization (for a config), the data stream, the times and the noise; on CPU
        two runs with one seed give identical weights.
    device : str ("cpu", "cuda", "cuda:1", ...)
    optimizer : {"adam", "adamw"}, with ``betas`` and ``weight_decay`` (the [OS] authors' code
        uses AdamW, betas (0.5, 0.999), weight decay 0.01).
    progress : show a tqdm bar.
    cache : False/None (default: always train), True (``$SFTHEORY_CACHE`` or
        ``~/.cache/sftheory``) or a directory. With a cache, a run whose settings (see
        :mod:`sftheory.training.cache`) were trained before is loaded instead
        (``result.trained`` is False).
    callback : called as ``callback(step, loss)`` after each training step.
    threads : int or None
        torch CPU threads while training (restored afterwards). Small MLPs run fastest on one
        thread (measured: 2.8 ms per step with 1 thread, 58 ms with 2 on a loaded 2-core
        machine); None leaves torch's setting alone. Not part of the cache key.

    Returns
    -------
    TrainResult
    """
    from ..processes import LinearSDE

    if not isinstance(process, LinearSDE):
        raise ValueError(f"process must be a sftheory.processes process, got {process!r}")
    steps = _check_int(steps, "steps", 1)
    batch_size = _check_int(batch_size, "batch_size", 1)
    lr = _check_pos(lr, "lr")
    sched = check_lr_schedule(lr_schedule)
    weighting = check_weighting(weighting)
    T = _check_pos(T, "T")
    t_min = _check_pos(t_min, "t_min")
    if not t_min < T:
        raise ValueError(f"need t_min < T, got t_min={t_min}, T={T}")
    seed = _check_int(seed, "seed", 0)
    dev = _check_device(device)
    if optimizer not in ("adam", "adamw"):
        raise ValueError(f"optimizer must be 'adam' or 'adamw', got {optimizer!r}")
    try:
        betas = (float(betas[0]), float(betas[1]))
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"betas must be a pair of numbers in [0, 1), got {betas!r}") from None
    if not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"betas must be in [0, 1), got {betas!r}")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, numbers.Real) or not (
            math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    if callback is not None and not callable(callback):
        raise ValueError("callback must be callable as callback(step, loss)")
    directory = _cache.cache_dir(cache)
    src = as_data(data)
    _, v_min = process.conditional(t_min)
    if not v_min > 0:
        raise ValueError(f"v(t_min) = {v_min} under {process!r}: pick a larger t_min")

    if threads is not None:
        threads = _check_int(threads, "threads", 1)
    with torch_threads(threads):
        return _train(net_or_config, src, process, steps, batch_size, lr, sched, weighting,
                      t_min, T, seed, dev, optimizer, betas, weight_decay, progress, directory,
                      callback)


def _train(net_or_config, src, process, steps, batch_size, lr, sched, weighting, t_min, T, seed,
           dev, optimizer, betas, weight_decay, progress, directory, callback):
    import torch
    from tqdm.auto import tqdm

    net = _build_net(net_or_config, src.dim, process, seed).to(dev)
    settings = {
        "net": net.config(), "init": _cache.state_digest(net.state_dict()),
        "data": src.identity(), "process": process_identity(process), "steps": steps,
        "batch_size": batch_size, "lr": lr, "lr_schedule": sched.identity(),
        "weighting": weighting, "t_min": t_min, "T": T, "seed": seed,
        "optimizer": {"name": optimizer, "betas": list(betas), "weight_decay": float(weight_decay)},
        "device": dev.type, "torch": torch.__version__,
    }
    key = _cache.settings_key(settings)
    t0 = time.perf_counter()
    if directory is not None:
        hit = _cache.load_entry(directory, key, settings, dev)
        if hit is not None:
            net.load_state_dict(hit["state_dict"])
            net.eval()
            return TrainResult(net, hit["losses"].cpu().numpy().astype(np.float64), False, key,
                               _cache.entry_path(directory, key), settings,
                               time.perf_counter() - t0, 0)

    rng = np.random.default_rng([seed, 1])  # data stream and times
    noise_seed = int(np.random.default_rng([seed, 2]).integers(2**62))
    gen = torch.Generator(device=dev).manual_seed(noise_seed)  # eps draws
    opt_cls = torch.optim.Adam if optimizer == "adam" else torch.optim.AdamW
    opt = opt_cls(net.parameters(), lr=lr, betas=betas, weight_decay=float(weight_decay))
    wfun = WEIGHTINGS[weighting]
    losses = np.empty(steps)
    net.train()
    bar = tqdm(range(steps), disable=not progress, desc=f"dsm ({weighting})", unit="step",
               leave=False)
    for k in bar:
        for g in opt.param_groups:
            g["lr"] = lr * sched.factor(k)
        x0_np = src.sample(batch_size, rng)
        if x0_np.shape != (batch_size, src.dim) or not np.all(np.isfinite(x0_np)):
            raise ValueError(f"data source {src!r} returned a batch of shape {x0_np.shape} or "
                             f"with NaN/infinite values")
        t_np = rng.uniform(t_min, T, size=batch_size)
        m, v = process.conditional_many(t_np)
        varpi = np.sqrt(v)
        factor = wfun(varpi) / v  # omega_t / varpi_t^2
        x0 = torch.as_tensor(x0_np, dtype=net.dtype, device=dev)
        eps = torch.randn(x0.shape, generator=gen, dtype=net.dtype, device=dev)
        mt = torch.as_tensor(m, dtype=net.dtype, device=dev)[:, None]
        st = torch.as_tensor(varpi, dtype=net.dtype, device=dev)[:, None]
        xt = mt * x0 + st * eps
        tt = torch.as_tensor(t_np, dtype=net.dtype, device=dev)
        pred = net.noise_prediction(xt, tt)
        fac = torch.as_tensor(factor, dtype=net.dtype, device=dev)
        loss = (fac * ((pred - eps) ** 2).sum(dim=1)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lv = float(loss.detach())
        if not math.isfinite(lv):
            raise FloatingPointError(f"the training loss became {lv} at step {k} (lr too large?)")
        losses[k] = lv
        if callback is not None:
            callback(k, lv)
        if progress and k % 100 == 0:
            bar.set_postfix_str(f"loss {lv:.4g}")
    net.eval()
    path = None
    if directory is not None:
        path = _cache.save_entry(directory, key, settings, net.state_dict(), losses)
    return TrainResult(net, losses, True, key, path, settings, time.perf_counter() - t0, steps)


__all__ = ["train_dsm", "TrainResult", "torch_threads", "StepLR", "ConstantLR", "WEIGHTINGS",
           "weighting_values", "weight_default", "weight_noise", "weight_data", "weight_uniform",
           "check_weighting"]
