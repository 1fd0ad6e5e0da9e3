"""Theory of the ODE-vs-SDE paper: exact 1D Gaussian KL and its leading coefficient L(h)."""
from sftheory.theory import odesde

__all__ = ["odesde"]
