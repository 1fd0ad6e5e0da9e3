"""Verdict helpers: the numbers decide, and a number that is not finite never passes.

A check measures numbers, then hands them to one of these helpers, which returns a
:class:`Verdict` (the verdict, the reason in words, and the numbers that decided it):

- :func:`within` — ``confirmed`` if every error-over-tolerance is finite and <= 1, else ``refuted``;
- :func:`corrected` — the paper's version and a fixed version both measured; ``confirmed`` if the
  paper's holds, ``corrected`` if only the fix holds, ``refuted`` if neither does;
- :func:`reproduced` — a table or figure: paper value beside measured value, row by row;
- :func:`not_checkable` — ``not-checkable-here``, with the reason no targeted machine can check it.

Aggregates keep NaN: Python's ``max(worst, nan)`` returns ``worst`` and ``np.maximum.reduce``
needs care, so use :class:`Worst` (a running maximum with the case it came from) or
:func:`worst_of`. A route that was not run is recorded as :func:`not_run` ("not run: why"),
never as 0.0 or None.

>>> within(0.3).verdict, within(float("nan")).verdict, within([0.1, 2.0]).verdict
('confirmed', 'refuted', 'refuted')
>>> corrected(paper=float("nan"), fixed=0.2, fix="i in {2..d}").verdict
'corrected'
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

VERDICTS = ("confirmed", "refuted", "corrected", "reproduced", "not-checkable-here")
NOT_RUN = "not run: "


def not_run(why: str) -> str:
    """The value to record for a route that was not run (never 0.0 or None)."""
    if not why:
        raise ValueError("say why the route was not run")
    return NOT_RUN + why


def is_not_run(value) -> bool:
    return isinstance(value, str) and value.startswith(NOT_RUN)


@dataclass(frozen=True)
class Verdict:
    """What a verdict helper decided: the verdict, why, and the numbers that decided it."""

    verdict: str
    reason: str
    measured: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if not self.reason:
            raise ValueError("a verdict needs its reason")


# ---- aggregates that keep NaN ----------------------------------------------------------------
def worst_of(values) -> float:
    """The largest of ``values`` (numbers or arrays), NaN if any is NaN or if there are none.

    An empty aggregate is NaN: nothing was compared, and that must not pass as a worst error of 0.
    """
    w = Worst()
    for v in values:
        w.add(v)
    return w.value


class Worst:
    """A running maximum that keeps NaN and remembers where the worst value came from.

    ``add(value, where)`` takes a number or an array; a NaN anywhere makes the maximum NaN for
    good (+inf is kept as +inf; both fail :func:`within`). ``value`` is NaN while nothing has been
    added. ``non_finite`` lists the cases (``where``) that produced a NaN or infinite value.
    """

    def __init__(self):
        self._value = -math.inf
        self.where = None
        self.count = 0
        self.non_finite: list = []

    def add(self, value, where=None) -> float:
        """Fold ``value`` (number or array) into the maximum; returns its own maximum (NaN-aware)."""
        if is_not_run(value):
            raise ValueError(f"{value!r} cannot enter an aggregate: the route did not run")
        arr = np.asarray(value, dtype=np.float64).ravel()
        if arr.size == 0:
            raise ValueError("an empty comparison cannot enter an aggregate")
        self.count += arr.size
        if np.isnan(arr).any():
            v = math.nan
        else:
            v = float(arr.max())
        if not math.isfinite(v):
            self.non_finite.append(where)
        if math.isnan(self._value):
            return v
        if math.isnan(v) or v > self._value:
            self._value, self.where = v, where
        return v

    @property
    def value(self) -> float:
        return math.nan if self.count == 0 else self._value

    def __float__(self) -> float:
        return self.value

    def summary(self) -> dict:
        out = {"worst": self.value, "cases": self.count}
        if self.where is not None:
            out["worst_at"] = self.where
        if self.non_finite:
            out["non_finite_at"] = self.non_finite[:10]
        return out

    def __repr__(self):
        return f"Worst({self.value!r}, where={self.where!r}, cases={self.count})"


# ---- confirmed / refuted ---------------------------------------------------------------------
def _value(x) -> float:
    """One number for an excess given as a number, an array or a :class:`Worst` (NaN-aware)."""
    if isinstance(x, Worst):
        return x.value
    return worst_of([x])


def _judge(excess, limit: float) -> tuple[bool, dict, list[str]]:
    """(passes, {name: value}, [failure descriptions]) for one excess or a mapping of them."""
    items = excess.items() if isinstance(excess, Mapping) else [(None, excess)]
    values, failures = {}, []
    for name, x in items:
        v = _value(x)
        values[name] = v
        label = f"{name} = " if name is not None else ""
        where = f" at {x.where}" if isinstance(x, Worst) and x.where is not None else ""
        if not math.isfinite(v):
            failures.append(f"{label}{v} (a non-finite measured value fails){where}")
        elif not v <= limit:
            failures.append(f"{label}{v:.4g} > {limit:g}{where}")
    if not values:
        failures.append("nothing was compared")
    return not failures, values, failures


def within(excess, *, limit: float = 1.0, name: str = "worst_error_over_tolerance") -> Verdict:
    """``confirmed`` iff every error-over-tolerance is finite and <= ``limit`` (default 1).

    ``excess``: a number, an array, a :class:`Worst`, or a mapping ``{what: one of those}`` (each
    entry must pass). NaN, +inf and an empty comparison are failures, and the reason says so.
    """
    ok, values, failures = _judge(excess, limit)
    measured = {name: values[None]} if None in values else dict(values)
    if ok:
        return Verdict("confirmed", f"every error is within its tolerance (<= {limit:g})", measured)
    return Verdict("refuted", "; ".join(failures), measured)


def corrected(*, paper, fixed, fix: str, limit: float = 1.0) -> Verdict:
    """Measure the paper's version and a fixed version; the numbers choose the verdict.

    ``paper`` and ``fixed`` are error-over-tolerance values as for :func:`within` (a route that
    cannot be evaluated, e.g. a coordinate the paper leaves unspecified, enters as NaN and fails).
    The paper's version holding gives ``confirmed``; only the fix holding gives ``corrected``;
    neither gives ``refuted``. ``fix`` names the fix in words.
    """
    if not fix:
        raise ValueError("name the fix")
    p_ok, p_val, p_fail = _judge(paper, limit)
    f_ok, f_val, f_fail = _judge(fixed, limit)
    measured = {"paper_version": p_val[None] if None in p_val else p_val,
                "fixed_version": f_val[None] if None in f_val else f_val}
    if p_ok:
        tail = "" if f_ok else f" (the fix '{fix}' does not hold: {'; '.join(f_fail)})"
        return Verdict("confirmed", "the paper's version holds as written" + tail, measured)
    if f_ok:
        return Verdict("corrected", f"the paper's version fails ({'; '.join(p_fail)}); it holds "
                                    f"after the fix: {fix}", measured)
    return Verdict("refuted", f"the paper's version fails ({'; '.join(p_fail)}) and so does the "
                              f"fix '{fix}' ({'; '.join(f_fail)})", measured)


def reproduced(rows: list[dict], *, rtol: float = 0.0, atol: float = 0.0,
               paper: str = "paper", measured: str = "measured") -> Verdict:
    """A table or figure regenerated: each row pairs the paper's value with the measured one.

    A row agrees when |measured - paper| <= atol + rtol |paper| (state in the check why those
    tolerances fit, e.g. half a unit in the paper's last printed digit). ``reproduced`` if every
    row agrees; ``refuted`` otherwise (a row whose measured value is not finite or was not run
    disagrees). Returns the rows with ``abs_diff`` and ``agrees`` added.
    """
    out, bad = [], []
    for i, r in enumerate(rows):
        p, m = r[paper], r[measured]
        row = dict(r)
        if is_not_run(m) or m is None:
            row["abs_diff"], row["agrees"] = (m if is_not_run(m) else not_run("no value")), False
        else:
            diff = abs(float(m) - float(p))
            row["abs_diff"] = diff
            row["agrees"] = bool(math.isfinite(diff) and diff <= atol + rtol * abs(float(p)))
        if not row["agrees"]:
            bad.append(i)
        out.append(row)
    summary = {"rows": len(out), "rows_agreeing": len(out) - len(bad)}
    if not out:
        return Verdict("refuted", "no rows were compared", summary, out)
    if bad:
        return Verdict("refuted", f"{len(bad)} of {len(out)} rows disagree (first: row {bad[0]}) "
                                  f"beyond atol={atol:g}, rtol={rtol:g}", summary, out)
    return Verdict("reproduced", f"all {len(out)} rows agree within atol={atol:g}, rtol={rtol:g}",
                   summary, out)


def not_checkable(reason: str) -> Verdict:
    """``not-checkable-here``: no machine this toolkit targets can check the claim (say why)."""
    if not reason:
        raise ValueError("say why the claim cannot be checked here")
    return Verdict("not-checkable-here", reason)
