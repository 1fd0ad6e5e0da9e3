"""Diff two ``sftheory validate`` results.json files: outcome changes and moved numbers.

    python validation/compare.py OLD/results.json NEW/results.json [--rtol 1e-6]

Prints one line per check whose outcome (its verdict, or its run status when it did not run)
changed, appeared or disappeared (``!``, ``+``, ``-``), and per measured value that moved by more
than ``rtol`` (relative) or changed kind: a number that became "nan"/"inf", a route that became
"not run: ..." (``~``). Exit code 1 if any outcome changed, else 0.
"""
from __future__ import annotations

import argparse
import json
import math
import sys


def outcome(rec: dict) -> str:
    """The verdict of a check that ran, else its run status (schema 2); schema 1 had only verdict."""
    if "status" in rec and rec["status"] != "ran":
        return rec["status"]
    return rec["verdict"]


def _flatten(d, prefix=""):
    """{dotted key: float or str} for the numbers and strings of a measured dict ("nan", "inf",
    "not run: ..." are strings in results.json)."""
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, bool):
            out[key] = str(v)
        elif isinstance(v, (int, float)):
            out[key] = float(v)
        elif isinstance(v, str):
            try:
                out[key] = float(v) if v in ("nan", "inf", "-inf") else v
            except ValueError:  # pragma: no cover - the tuple above parses
                out[key] = v
    return out


def _moved(a, b, rtol: float) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) != math.isnan(b)
        if math.isinf(a) or math.isinf(b):
            return a != b
        return not math.isclose(a, b, rel_tol=rtol, abs_tol=0.0)
    return a != b


def _show(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else repr(v)


def compare(old: dict, new: dict, rtol: float = 1e-6) -> tuple[list[str], bool]:
    o = {r["id"]: r for r in old["records"]}
    n = {r["id"]: r for r in new["records"]}
    lines, changed = [], False
    for cid in sorted(set(o) | set(n)):
        if cid not in n:
            lines.append(f"- {cid}: removed (was {outcome(o[cid])})")
            changed = True
            continue
        if cid not in o:
            lines.append(f"+ {cid}: new, {outcome(n[cid])}")
            continue
        if outcome(o[cid]) != outcome(n[cid]):
            lines.append(f"! {cid}: {outcome(o[cid])} -> {outcome(n[cid])}")
            changed = True
        mo, mn = _flatten(o[cid]["measured"]), _flatten(n[cid]["measured"])
        for key in sorted(set(mo) | set(mn)):
            if key not in mn:
                lines.append(f"~ {cid}: measured.{key} {_show(mo[key])} -> (absent)")
            elif key not in mo:
                lines.append(f"~ {cid}: measured.{key} (absent) -> {_show(mn[key])}")
            elif _moved(mo[key], mn[key], rtol):
                lines.append(f"~ {cid}: measured.{key} {_show(mo[key])} -> {_show(mn[key])}")
    return lines, changed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--rtol", type=float, default=1e-6)
    a = p.parse_args(argv)
    with open(a.old) as f:
        old = json.load(f)
    with open(a.new) as f:
        new = json.load(f)
    lines, changed = compare(old, new, a.rtol)
    print("\n".join(lines) if lines else "no differences")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
