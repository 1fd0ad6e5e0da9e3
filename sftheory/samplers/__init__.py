"""Samplers of the generative process with diffusion h ([OS] eq. (3), (7)): one flat signature
``sample_*(score, x, ts, process, *, h=None, seed=None, noise=None, callback=None, save_at=None,
disable=None)`` for every integrator (as k-diffusion does), each declaring its weak and strong
order. Times are forward times; ``ts`` decreases from T."""
from ._core import SampleResult as SampleResult
from ._core import initial_points as initial_points
from ._core import sample_euler_maruyama as sample_euler_maruyama
from ._core import sample_exponential as sample_exponential
from ._core import sample_ode as sample_ode
from .brownian import BrownianPath as BrownianPath
from .brownian import IndexedNoise as IndexedNoise
from .likelihood import LikelihoodResult as LikelihoodResult
from .likelihood import log_likelihood as log_likelihood

__all__ = ["SampleResult", "BrownianPath", "IndexedNoise", "initial_points", "sample_euler_maruyama",
           "sample_exponential", "sample_ode", "LikelihoodResult", "log_likelihood"]
