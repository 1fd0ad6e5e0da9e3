"""sftheory: theory and numerics for score-based diffusion models.

Subpackages: :mod:`sftheory.processes` (forward SDEs), :mod:`sftheory.models` (exact laws,
densities and their diffusion paths), :mod:`sftheory.fields` (score fields s(x, t) and their
combinators), :mod:`sftheory.testing` (hypothesis strategies and assertions), :mod:`sftheory.claims`
(the registry of executable checks behind ``sftheory validate``).
"""
from . import fields as fields
from . import models as models
from . import processes as processes
from .backend import get_backend as get_backend
from .backend import use_kernels as use_kernels
from .models import EmpiricalDistribution as EmpiricalDistribution
from .models import Gaussian as Gaussian
from .models import GaussianMixture as GaussianMixture
from .models import stationary_law as stationary_law
from .processes import OU as OU
from .processes import VE as VE
from .processes import VP as VP

__version__ = "0.1.0"

__all__ = ["fields", "models", "processes", "stationary_law", "get_backend", "use_kernels", "Gaussian", "GaussianMixture",
           "EmpiricalDistribution", "OU", "VP", "VE", "__version__"]
