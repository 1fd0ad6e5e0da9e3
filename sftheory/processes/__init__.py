"""Forward diffusion processes (linear SDEs) with closed-form transitions."""
from ._base import LinearSDE as LinearSDE
from ._base import ou_transition as ou_transition
from .processes import OU as OU
from .processes import VE as VE
from .processes import VP as VP

__all__ = ["LinearSDE", "OU", "VP", "VE", "ou_transition"]
