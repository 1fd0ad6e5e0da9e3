"""Exact score models: closed-form densities, scores, marginals under any forward process."""
from .base import Provenance as Provenance
from .base import ScoreModel as ScoreModel
from .empirical import EmpiricalDistribution as EmpiricalDistribution
from .gaussian import Gaussian as Gaussian
from .mixture import GaussianMixture as GaussianMixture

__all__ = ["ScoreModel", "Gaussian", "GaussianMixture", "EmpiricalDistribution", "Provenance"]
