"""Tools for users' own tests: hypothesis strategies, assertion helpers, named tolerances.

>>> from sftheory.testing import strategies, assert_score_is_gradient, tolerances, textbook
"""
from . import textbook as textbook
from . import tolerances as tolerances
from .asserts import assert_density_normalized as assert_density_normalized
from .asserts import assert_fokker_planck as assert_fokker_planck
from .asserts import assert_moments_match as assert_moments_match
from .asserts import assert_score_is_gradient as assert_score_is_gradient
from .asserts import finite_difference_gradient as finite_difference_gradient
from .asserts import measure_backend_parity as measure_backend_parity
from .asserts import measure_fokker_planck as measure_fokker_planck
from .asserts import measure_normalization as measure_normalization
from .asserts import measure_score_gradient as measure_score_gradient



def __getattr__(name):
    # strategies needs hypothesis (the `dev` extra); import it only when asked for
    if name == "strategies":
        import importlib

        return importlib.import_module(f"{__name__}.strategies")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["strategies", "textbook", "tolerances", "assert_density_normalized", "assert_fokker_planck",
           "assert_moments_match", "assert_score_is_gradient", "finite_difference_gradient",
           "measure_backend_parity", "measure_fokker_planck", "measure_normalization",
           "measure_score_gradient"]
