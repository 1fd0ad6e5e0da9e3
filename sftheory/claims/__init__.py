"""The registry of executable checks behind ``sftheory validate``.

>>> from sftheory.claims import select, run_check, Context
>>> [c.id for c in select("core.processes")]            # doctest: +SKIP
"""
from .registry import REGISTRY as REGISTRY
from .registry import VERDICTS as VERDICTS
from .registry import Check as Check
from .registry import Context as Context
from .registry import Record as Record
from .registry import claim as claim
from .registry import load_all as load_all
from .registry import run_check as run_check
from .registry import select as select
from .runner import validate as validate

__all__ = ["REGISTRY", "VERDICTS", "Check", "Context", "Record", "claim", "load_all", "run_check",
           "select", "validate"]
