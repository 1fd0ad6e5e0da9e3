"""The registry of executable checks, keyed by claim id (CLAIMS.md ids and ``core.*``).

A check is a function ``check(ctx) -> Record`` registered with :func:`claim`. It computes through
the public API, compares with what the paper (or the toolkit's own contract) states, and returns
a :class:`Record` whose verdict the numbers decide.
"""
from __future__ import annotations

import fnmatch
import math
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

VERDICTS = ("confirmed", "refuted", "corrected", "reproduced", "not-checkable-here")


@dataclass
class Record:
    """The outcome of one check; ``to_json()`` is what ``results.json`` holds."""

    id: str
    verdict: str
    title: str = ""
    source: str = ""
    claimed: dict = field(default_factory=dict)
    measured: dict = field(default_factory=dict)
    tolerance: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)
    notes: str = ""
    figures: list = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    def __post_init__(self):
        if self.verdict not in VERDICTS + ("crashed",):
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    def to_json(self) -> dict:
        return _jsonable(asdict(self))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else str(f)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


@dataclass
class Context:
    """What a check may use: mode, seed, device, and where to put figures."""

    quick: bool = True
    seed: int = 0
    device: str = "cpu"
    out_dir: Path = Path("report")
    check_id: str = ""

    def rng(self, stream: int = 0) -> np.random.Generator:
        """An independent, reproducible stream for this check (seed, check id, stream)."""
        key = [self.seed, stream] + [ord(c) for c in self.check_id]
        return np.random.default_rng(key)

    def size(self, quick: int, full: int) -> int:
        return quick if self.quick else full

    def figure_path(self, name: str) -> Path:
        d = self.out_dir / "figures" / self.check_id
        d.mkdir(parents=True, exist_ok=True)
        return d / f"{name}.png"


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    source: str
    fn: Callable[[Context], Record]
    slow: bool = False
    module: str = ""

    @property
    def paper(self) -> str:
        return self.id.split(".")[0]


REGISTRY: dict[str, Check] = {}


def claim(claim_id: str, *, title: str, source: str, slow: bool = False):
    """Register ``fn(ctx) -> Record`` as the check of ``claim_id``.

    ``source`` names paper and location (e.g. ``"[SM] eq. (6), (14)"``); ``slow`` checks run only
    with ``sftheory validate --full``.
    """
    def deco(fn):
        if claim_id in REGISTRY:
            raise ValueError(f"claim {claim_id!r} registered twice")
        REGISTRY[claim_id] = Check(claim_id, title, source, fn, slow, fn.__module__)
        return fn

    return deco


def load_all() -> dict[str, Check]:
    """Import every module of checks (they register themselves) and return the registry."""
    from . import core, sm  # noqa: F401

    return REGISTRY


def select(pattern: str | None = None, *, full: bool = False) -> list[Check]:
    """Checks whose id matches the glob ``pattern`` (substring match if it has no wildcard)."""
    checks = sorted(load_all().values(), key=lambda c: c.id)
    if not full:
        checks = [c for c in checks if not c.slow]
    if pattern:
        pats = [p.strip() for p in pattern.split(",") if p.strip()]
        checks = [c for c in checks
                  if any(fnmatch.fnmatch(c.id, p) if any(ch in p for ch in "*?[") else p in c.id
                         for p in pats)]
    return checks


def run_check(check: Check, ctx: Context) -> Record:
    """Run one check; a crash becomes a record with verdict "crashed" and the traceback."""
    import traceback

    ctx.check_id = check.id
    t0 = time.perf_counter()
    try:
        rec = check.fn(ctx)
        if not isinstance(rec, Record):
            raise TypeError(f"check {check.id} returned {type(rec).__name__}, not Record")
    except Exception:  # noqa: BLE001 - a crash is reported, never hidden
        rec = Record(check.id, "crashed", error=traceback.format_exc())
    rec.id = check.id
    rec.title = rec.title or check.title
    rec.source = rec.source or check.source
    rec.seconds = round(time.perf_counter() - t0, 3)
    # figure paths relative to the report directory, so the report can be moved as a whole
    rec.figures = [os.path.relpath(f, ctx.out_dir) for f in rec.figures]
    return rec


def environment() -> dict:
    import numba
    import scipy

    from .. import __version__

    env = {"sftheory": __version__, "python": platform.python_version(),
           "numpy": np.__version__, "scipy": scipy.__version__, "numba": numba.__version__,
           "platform": platform.platform(), "numba_threads": numba.get_num_threads()}
    try:
        import torch

        env["torch"] = torch.__version__
    except ImportError:
        env["torch"] = None
    env.update(_git_state())
    return env


def _git_state() -> dict:
    """Commit and dirty flag of the checkout the package runs from, or None when the package is
    not a tracked file of a git work tree (an installed wheel inside some other repository)."""
    pkg = Path(__file__).resolve().parents[1]

    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=pkg, timeout=10)

    try:
        if git("ls-files", "--error-unmatch", "__init__.py").returncode != 0:
            return {"commit": None, "dirty": None}
        commit = git("rev-parse", "HEAD").stdout.strip() or None
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".").stdout.strip())
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def verdict_within(ok: bool) -> str:
    """confirmed if the measured numbers are within the stated tolerance, refuted otherwise."""
    return "confirmed" if ok else "refuted"
