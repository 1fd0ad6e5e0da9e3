"""The registry of executable checks behind ``sftheory validate``.

Layout: :mod:`.verdicts` (verdict helpers), :mod:`.record` (Record, Context), :mod:`.registry`
(``@claim`` and discovery of :mod:`.checks`), :mod:`.runner` (run one or many checks),
:mod:`.report` (HTML), :mod:`.catalogue` (the papers' claim ids), :mod:`.docs` (generated pages).

>>> from sftheory.claims import select, run_check, Context
>>> [c.id for c in select("core.processes")]            # doctest: +SKIP
"""
from .record import STATUSES as STATUSES
from .record import Context as Context
from .record import Record as Record
from .registry import REGISTRY as REGISTRY
from .registry import Check as Check
from .registry import claim as claim
from .registry import load_all as load_all
from .registry import select as select
from .runner import run_check as run_check
from .runner import validate as validate
from .verdicts import VERDICTS as VERDICTS
from .verdicts import Verdict as Verdict
from .verdicts import Worst as Worst
from .verdicts import corrected as corrected
from .verdicts import not_checkable as not_checkable
from .verdicts import not_run as not_run
from .verdicts import reproduced as reproduced
from .verdicts import within as within
from .verdicts import worst_of as worst_of

__all__ = ["REGISTRY", "STATUSES", "VERDICTS", "Check", "Context", "Record", "Verdict", "Worst",
           "claim", "corrected", "load_all", "not_checkable", "not_run", "reproduced",
           "run_check", "select", "validate", "within", "worst_of"]
