"""Theory of the ODE-vs-SDE paper: the exact Gaussian KL and its leading coefficient L(h) in 1D
(:mod:`~sftheory.theory.odesde`) and d dimensions (:mod:`~sftheory.theory.gaussian_nd`), L(h) of
any 1D law from the linearized Fokker-Planck solution (:mod:`~sftheory.theory.linearized`), the
bounds and limits of Props 3.4-3.6 and App. E-F (:mod:`~sftheory.theory.bounds`), and the
symbolic derivations of App. B.4, H.4, H.5 (:mod:`~sftheory.theory.symbolic`); and the
score-smoothing theory: smoothed scores, F, the smoothing operators
(:mod:`~sftheory.theory.smoothing`) and the closed-form flow maps and pushforward laws
(:mod:`~sftheory.theory.smoothing_flow`, re-exported by ``smoothing``)."""
from sftheory.theory import (bounds, gaussian_nd, linearized, odesde, smoothing, smoothing_flow,
                             symbolic)

__all__ = ["odesde", "gaussian_nd", "linearized", "bounds", "symbolic", "smoothing",
           "smoothing_flow"]
