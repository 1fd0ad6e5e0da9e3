"""Named tolerances, each with the reason it holds. Tests and claim records cite them by name."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    name: str
    rtol: float
    atol: float
    why: str

    def as_dict(self) -> dict:
        return {"name": self.name, "rtol": self.rtol, "atol": self.atol, "why": self.why}


EXACT_FLOAT64 = Tolerance(
    "EXACT_FLOAT64", 1e-12, 1e-14,
    "two closed forms of the same quantity in float64: rounding only (a few ulps times the "
    "condition number of the covariances the strategies generate, <= 1e2)")
KERNEL_PARITY = Tolerance(
    "KERNEL_PARITY", 1e-12, 1e-12,
    "numba kernel vs numpy/torch formula, float64: same operations in a different order; the "
    "issue's contract is 1e-12 relative (atol guards scores that vanish at a mode)")
FLOAT32 = Tolerance(
    "FLOAT32", 1e-4, 1e-4,
    "float32 evaluation vs float64: eps32 ~ 6e-8 times the O(1e2) accumulated operations and the "
    "condition number of the whitening factors")
SCORE_FD = Tolerance(
    "SCORE_FD", 1e-6, 1e-7,
    "score vs central differences of logpdf with step h = eps^(1/3) * scale: truncation "
    "O(h^2 |f'''|) + rounding O(eps |f| / h), both ~ 1e-10 relative for curvature O(1)")
FOKKER_PLANCK = Tolerance(
    "FOKKER_PLANCK", 1e-5, 1e-6,
    "Fokker-Planck residual from second-order finite differences of logpdf in t and x (steps "
    "1e-4 t and 1e-4 max(1, sqrt(v(t))), the length scale of p_t): truncation ~1e-8 and "
    "rounding eps/h^2 ~ 1e-8 times the size of the terms")
QUADRATURE = Tolerance(
    "QUADRATURE", 1e-8, 1e-10,
    "an integral by adaptive (scipy quad) or refined Gauss-Legendre quadrature vs its closed "
    "form: the integrators' own error estimates are ~1e-12 (and must be <= 1e-10 for the "
    "comparison to count); 1e-8 leaves room for truncated tails (mass < 1e-12)")
QUADRATURE_MAX_ERR_ESTIMATE = 1e-10
"""A quadrature whose own error estimate exceeds this is not accepted as a reference."""
FLOW_ODE = Tolerance(
    "FLOW_ODE", 1e-7, 1e-9,
    "closed form vs scipy solve_ivp (DOP853) at rtol <= 1e-10: solver tolerance times a "
    "stability margin of ~1e3")
ROBUST_VS_MPMATH = Tolerance(
    "ROBUST_VS_MPMATH", 1e-10, 0.0,
    "float64 logpdf/score at extreme inputs (t = 1e-8, |x| = 1e4) vs 50-digit mpmath, relative to "
    "max(|value|, 1): EXACT_FLOAT64 times the condition number of the covariances (<= 1e2)")
SNAP_SCORE = Tolerance(
    "SNAP_SCORE", 1e-6, 0.0,
    "empirical score at t = 1e-8 vs (y - x)/t for a query 1e-5 from its nearest point y: the "
    "offset y - x is known to ~1e-16/1e-5 = 1e-11 relative, the other points' weights are "
    "< e^-200; 1e-6 leaves room for the cancellation in |x - y|^2 at |x| ~ 1")
SNAP_POSTERIOR = Tolerance(
    "SNAP_POSTERIOR", 0.0, 1e-12,
    "posterior mean at t = 1e-8 vs the nearest training point (|y| <= 1): the other weights are "
    "< e^-200, so only rounding of the weighted average, a few ulps of |y|, remains")
MC_SIGMAS = 5.0
"""Monte Carlo mean vs exact value: pass if |mean - exact| <= 5 standard errors (two-sided false
alarm rate 5.7e-7 per comparison for a normal statistic)."""
KS_ALPHA = 1e-5
"""Sample law vs exact law by Kolmogorov-Smirnov: pass if p >= 1e-5 (torchsde's convention)."""
BOUND_REL = 1e-9
"""An inequality `measured <= bound` is checked as `measured <= bound * (1 + 1e-9)`."""

ALL = {t.name: t for t in (EXACT_FLOAT64, KERNEL_PARITY, FLOAT32, SCORE_FD, FOKKER_PLANCK,
                           QUADRATURE, FLOW_ODE, ROBUST_VS_MPMATH, SNAP_SCORE, SNAP_POSTERIOR)}
