"""What one check found (:class:`Record`) and what a check may use (:class:`Context`).

A record keeps what the run did apart from what it found: ``status`` is ``ran``, ``crashed``,
``skipped`` (with the reason, e.g. a slow check in a quick run) or ``needs-gpu``; ``verdict`` is
one of :data:`VERDICTS` and is set only when the check ran. Every verdict that rests on numbers
says what was compared with what (``compared``), and a measured value is never None: a route that
did not run is recorded as ``"not run: <why>"`` (:func:`~sftheory.claims.verdicts.not_run`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .verdicts import VERDICTS, Verdict

STATUSES = ("ran", "crashed", "skipped", "needs-gpu")
NUMERIC_VERDICTS = ("confirmed", "refuted", "corrected", "reproduced")


class SkipCheck(Exception):
    """Raised by :meth:`Context.skip`: the check did not run, for the reason given."""


def _find_none(obj, path="measured"):
    if obj is None:
        return path
    if isinstance(obj, dict):
        for k, v in obj.items():
            if (p := _find_none(v, f"{path}.{k}")) is not None:
                return p
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            if (p := _find_none(v, f"{path}[{i}]")) is not None:
                return p
    return None


def _compared(pairs) -> list[dict]:
    """Normalize ``[(measured route, reference route), ...]`` or dicts to a list of dicts."""
    out = []
    for p in pairs or []:
        if isinstance(p, dict):
            d = dict(p)
        else:
            d = dict(zip(("measured", "reference"), p))
        if not d.get("measured") or not d.get("reference"):
            raise ValueError(f"a comparison names its measured and its reference route, got {p!r}")
        out.append(d)
    return out


@dataclass
class Record:
    """The outcome of one check; ``to_json()`` is what ``results.json`` holds."""

    id: str
    status: str = "ran"
    verdict: str | None = None
    reason: str = ""
    title: str = ""
    source: str = ""
    compared: list = field(default_factory=list)
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
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.status == "ran":
            if self.verdict not in VERDICTS:
                raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        elif self.verdict is not None:
            raise ValueError(f"a check with status {self.status!r} has no verdict "
                             f"(got {self.verdict!r})")
        if self.status == "crashed" and not self.error:
            raise ValueError("a crashed record carries the traceback in `error`")
        if self.status in ("skipped", "needs-gpu") and not self.reason:
            raise ValueError(f"a record with status {self.status!r} says why (`reason`)")
        if self.verdict == "not-checkable-here" and not self.reason:
            raise ValueError("not-checkable-here needs the reason")
        if self.verdict == "confirmed" and _has_non_finite(self.measured):
            raise ValueError("a confirmed record cannot carry a NaN or infinite measured value "
                             "(use a verdict helper: a non-finite number is a failure)")
        self.compared = _compared(self.compared)
        if self.verdict in NUMERIC_VERDICTS:
            if not self.compared:
                raise ValueError(f"{self.id}: a {self.verdict!r} record says what was compared "
                                 "with what (`compared`)")
            if not self.measured:
                raise ValueError(f"{self.id}: a {self.verdict!r} record carries its numbers")
        if (p := _find_none(self.measured)) is not None:
            raise ValueError(f"{self.id}: {p} is None; record a route that did not run as "
                             "not_run('why')")

    def to_json(self) -> dict:
        return _jsonable(asdict(self))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else str(f)  # "nan", "inf": JSON has no non-finite numbers
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


@dataclass
class Context:
    """What a check may use: mode, seed, device, where figures go; and how it reports."""

    quick: bool = True
    seed: int = 0
    device: str = "cpu"
    out_dir: Path | None = None
    check_id: str = ""
    figures: list = field(default_factory=list)

    def rng(self, stream: int = 0) -> np.random.Generator:
        """An independent, reproducible stream for this check (seed, check id, stream)."""
        key = [self.seed, stream] + [ord(c) for c in self.check_id]
        return np.random.default_rng(key)

    def size(self, quick: int, full: int) -> int:
        return quick if self.quick else full

    def skip(self, reason: str):
        """Stop here: the check did not run (status ``skipped``) for ``reason``."""
        raise SkipCheck(reason)

    def figure(self, name: str, draw, *args, **kwargs) -> str | None:
        """Draw a figure with ``draw(fig_path, *args, **kwargs)`` unless figures are off
        (``out_dir`` None); returns its path. A figure never decides a verdict."""
        if self.out_dir is None:
            return None
        d = Path(self.out_dir) / "figures" / self.check_id
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{name}.png"
        draw(path, *args, **kwargs)
        self.figures.append(str(path))
        return str(path)

    def verdict(self, v: Verdict, *, compared, claimed: dict, measured: dict | None = None,
                tolerance: dict | None = None, inputs: dict | None = None,
                rows: list | None = None, notes: str = "") -> Record:
        """The record of this check: the helper's verdict and reason, the numbers that decided
        it merged with ``measured``, and what was compared with what."""
        merged = dict(v.measured)
        for k, val in (measured or {}).items():
            if k in merged and not _same(merged[k], val):
                raise ValueError(f"measured[{k!r}] given twice with different values")
            merged[k] = val
        if v.rows and rows:
            raise ValueError("rows come from the verdict helper (reproduced) or the check, not both")
        return Record(self.check_id, "ran", v.verdict, reason=v.reason, compared=compared,
                      claimed=claimed, measured=merged, tolerance=tolerance or {},
                      inputs=inputs or {}, rows=list(v.rows or rows or []), notes=notes,
                      figures=list(self.figures))


def _same(a, b) -> bool:
    try:
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    except Exception:  # noqa: BLE001 - arrays etc.: treat as different
        return False


def _has_non_finite(obj) -> bool:
    """Any NaN or infinite float (or numpy float) anywhere inside dicts/lists/arrays."""
    if isinstance(obj, dict):
        return any(_has_non_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_has_non_finite(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return obj.dtype.kind == "f" and not bool(np.all(np.isfinite(obj)))
    if isinstance(obj, (float, np.floating)):
        return not math.isfinite(float(obj))
    return False
