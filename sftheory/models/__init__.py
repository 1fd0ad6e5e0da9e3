"""Exact laws: closed-form densities, scores, marginals and diffusion paths under any forward
process. Roles (:class:`Law`, :class:`Density`) are described in :mod:`sftheory.models.base`."""
from .base import Density as Density
from .base import Law as Law
from .base import LogNormalizer as LogNormalizer
from .base import stationary_law as stationary_law
from .empirical import EmpiricalDistribution as EmpiricalDistribution
from .gaussian import Gaussian as Gaussian
from .mixture import GaussianMixture as GaussianMixture
from .path import MixturePath as MixturePath

__all__ = ["Law", "Density", "LogNormalizer", "MixturePath", "Gaussian", "GaussianMixture",
           "EmpiricalDistribution", "stationary_law"]
