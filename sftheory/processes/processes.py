"""The concrete forward processes: OU, VP (linear beta schedule), VE (plain and geometric)."""
from __future__ import annotations

import math

import numpy as np

from .._refs import source
from .._validation import check_positive
from ._base import LinearSDE


@source("SF", "eq. (2)", "core.processes.moments")
class OU(LinearSDE):
    r"""Ornstein-Uhlenbeck process dX = -a X dt + sigma dW ([SF] eq. (2)).

    Defaults a = 1/2, sigma = 1 are the ODE-vs-SDE paper's choice (g = 1 VP-SDE, [OS] Sec. 2).
    Clock theta(t) = sigma^2 t, kappa = a / sigma^2; stationary law N(0, sigma^2/(2a) I).
    """

    def __init__(self, a: float = 0.5, sigma: float = 1.0):
        self.a = check_positive(a, "a")
        self.sigma = check_positive(sigma, "sigma")
        self.kappa = self.a / self.sigma**2

    def diffusion(self, t):
        return self.sigma * np.ones_like(np.asarray(t, dtype=np.float64))

    def clock(self, t):
        return self.sigma**2 * np.asarray(t, dtype=np.float64)

    def clock_inverse(self, theta):
        return np.asarray(theta, dtype=np.float64) / self.sigma**2

    def clock_increment(self, s, t):
        return self.sigma**2 * (np.asarray(t, dtype=np.float64) - np.asarray(s, dtype=np.float64))

    def canonical(self):
        return OU(a=self.kappa, sigma=1.0)

    def _params(self):
        return (self.a, self.sigma)

    def _named_params(self):
        return {"a": self.a, "sigma": self.sigma}


@source("OS", "Sec. 2 (VP-SDE, linear beta schedule); [SONG] eq. (11)", "core.processes.moments")
class VP(LinearSDE):
    r"""Variance-preserving SDE dX = -beta(t)/2 X dt + sqrt(beta(t)) dW, beta linear in t.

    beta(t) = beta_min + (beta_max - beta_min) t, so g(t) = sqrt(beta(t)) ([OS] Sec. 2, after
    eq. (4)). Clock theta(t) = beta_min t + (beta_max - beta_min) t^2 / 2, kappa = 1/2; stationary
    law N(0, I). Defaults 0.1, 20 are Song et al.'s.
    """

    kappa = 0.5

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        self.beta_min = check_positive(beta_min, "beta_min")
        self.beta_max = check_positive(beta_max, "beta_max")
        if self.beta_max < self.beta_min:
            raise ValueError(f"need finite beta_max >= beta_min, got {beta_min}, {beta_max}")

    def beta(self, t):
        return self.beta_min + (self.beta_max - self.beta_min) * np.asarray(t, dtype=np.float64)

    def diffusion(self, t):
        return np.sqrt(self.beta(t))

    def clock(self, t):
        t = np.asarray(t, dtype=np.float64)
        return t * (self.beta_min + 0.5 * (self.beta_max - self.beta_min) * t)

    def clock_inverse(self, theta):
        theta = np.asarray(theta, dtype=np.float64)
        db = self.beta_max - self.beta_min
        # root of db/2 t^2 + beta_min t - theta = 0 in the cancellation-free form
        return 2.0 * theta / (self.beta_min + np.sqrt(self.beta_min**2 + 2.0 * db * theta))

    def clock_increment(self, s, t):
        s = np.asarray(s, dtype=np.float64)
        t = np.asarray(t, dtype=np.float64)
        return (t - s) * (self.beta_min + 0.5 * (self.beta_max - self.beta_min) * (t + s))

    def canonical(self):
        return OU(a=self.kappa, sigma=1.0)

    def _params(self):
        return (self.beta_min, self.beta_max)

    def _named_params(self):
        return {"beta_min": self.beta_min, "beta_max": self.beta_max}


@source("SM", "Sec. 2 (dX = dW)", "core.processes.moments")
class VE(LinearSDE):
    r"""Variance-exploding SDE: dX = dW ([SM] Sec. 2), or dX = sigma^t dW with ``sigma`` given.

    ``VE()``: g = 1, m = 1, v(t) = t (the score-smoothing paper's process).
    ``VE(sigma=25.0)``: Song et al.'s geometric schedule as in the ScoreFusion code, g(t) = sigma^t,
    v(t) = (sigma^{2t} - 1) / (2 log sigma). No stationary law (kappa = 0).
    """

    kappa = 0.0

    def __init__(self, sigma: float | None = None):
        if sigma is not None:
            sigma = check_positive(sigma, "sigma")
            if sigma < 1.0:
                raise ValueError(f"VE(sigma) needs sigma >= 1 (g = sigma^t grows; sigma < 1 gives a "
                                 f"bounded clock, not a variance-exploding process), got {sigma}")
            if sigma == 1.0:
                sigma = None  # sigma^t = 1 is the plain VE process
        self.sigma = sigma
        self._log_sigma = None if sigma is None else math.log(sigma)

    def diffusion(self, t):
        t = np.asarray(t, dtype=np.float64)
        if self.sigma is None:
            return np.ones_like(t)
        return np.exp(self._log_sigma * t)

    def clock(self, t):
        t = np.asarray(t, dtype=np.float64)
        if self.sigma is None:
            return t.copy()
        return np.expm1(2.0 * self._log_sigma * t) / (2.0 * self._log_sigma)

    def clock_inverse(self, theta):
        theta = np.asarray(theta, dtype=np.float64)
        if self.sigma is None:
            return theta.copy()
        return np.log1p(2.0 * self._log_sigma * theta) / (2.0 * self._log_sigma)

    def clock_increment(self, s, t):
        if self.sigma is None:
            return np.asarray(t, dtype=np.float64) - np.asarray(s, dtype=np.float64)
        s = np.asarray(s, dtype=np.float64)
        t = np.asarray(t, dtype=np.float64)
        ls = self._log_sigma
        return np.exp(2 * ls * s) * np.expm1(2 * ls * (t - s)) / (2 * ls)

    def canonical(self):
        return VE()

    def _params(self):
        return (self.sigma,)

    def _named_params(self):
        return {} if self.sigma is None else {"sigma": self.sigma}
