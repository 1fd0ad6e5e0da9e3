"""The registry of executable checks, keyed by claim id (CLAIMS.md ids and ``core.*``).

A check is a function ``check(ctx) -> Record`` registered with :func:`claim` in a module of
:mod:`sftheory.claims.checks` (one module per paper section, e.g. ``core_processes.py``,
``sm_esf.py``). :func:`load_all` imports every such module it finds; nothing lists them by hand.
"""
from __future__ import annotations

import fnmatch
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

from .record import Context, Record


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    source: str
    fn: Callable[[Context], Record]
    slow: bool = False
    needs_gpu: bool = False
    module: str = ""

    @property
    def paper(self) -> str:
        return self.id.split(".")[0]


REGISTRY: dict[str, Check] = {}


def claim(claim_id: str, *, title: str, source: str, slow: bool = False, needs_gpu: bool = False):
    """Register ``fn(ctx) -> Record`` as the check of ``claim_id``.

    ``source`` names paper and location (e.g. ``"[SM] eq. (6), (14)"``); ``slow`` checks run only
    with ``sftheory validate --full`` (a quick run records them as skipped); ``needs_gpu`` checks
    run only with ``--device cuda`` (otherwise recorded with status ``needs-gpu``).
    """
    def deco(fn):
        if claim_id in REGISTRY:
            raise ValueError(f"claim {claim_id!r} registered twice")
        REGISTRY[claim_id] = Check(claim_id, title, source, fn, slow, needs_gpu, fn.__module__)
        return fn

    return deco


def check_modules() -> list[str]:
    """Names of the check modules under :mod:`sftheory.claims.checks` (private ``_*`` excluded)."""
    from . import checks

    return sorted(f"{checks.__name__}.{m.name}" for m in pkgutil.iter_modules(checks.__path__)
                  if not m.name.startswith("_"))


def load_all() -> dict[str, Check]:
    """Import every check module (they register themselves) and return the registry."""
    for name in check_modules():
        importlib.import_module(name)
    return REGISTRY


def select(pattern: str | None = None) -> list[Check]:
    """Checks whose id matches ``pattern``: comma-separated globs, or substrings without wildcards.

    Slow and GPU checks are selected too; the runner decides whether they run.
    """
    checks = sorted(load_all().values(), key=lambda c: c.id)
    if pattern:
        pats = [p.strip() for p in pattern.split(",") if p.strip()]
        checks = [c for c in checks
                  if any(fnmatch.fnmatch(c.id, p) if any(ch in p for ch in "*?[") else p in c.id
                         for p in pats)]
    return checks
