"""Diff two ``sftheory validate`` results.json files: verdict changes and moved numbers.

    python validation/compare.py OLD/results.json NEW/results.json [--rtol 1e-6]

Prints one line per check whose verdict changed, appeared or disappeared, and per measured number
that moved by more than ``rtol`` (relative). Exit code 1 if any verdict changed, else 0.
"""
from __future__ import annotations

import argparse
import json
import math
import sys


def _flatten(d, prefix=""):
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def compare(old: dict, new: dict, rtol: float = 1e-6) -> tuple[list[str], bool]:
    o = {r["id"]: r for r in old["records"]}
    n = {r["id"]: r for r in new["records"]}
    lines, verdict_changed = [], False
    for cid in sorted(set(o) | set(n)):
        if cid not in n:
            lines.append(f"- {cid}: removed (was {o[cid]['verdict']})")
            verdict_changed = True
            continue
        if cid not in o:
            lines.append(f"+ {cid}: new, {n[cid]['verdict']}")
            continue
        if o[cid]["verdict"] != n[cid]["verdict"]:
            lines.append(f"! {cid}: {o[cid]['verdict']} -> {n[cid]['verdict']}")
            verdict_changed = True
        mo, mn = _flatten(o[cid]["measured"]), _flatten(n[cid]["measured"])
        for key in sorted(set(mo) & set(mn)):
            a, b = mo[key], mn[key]
            if not math.isclose(a, b, rel_tol=rtol, abs_tol=0.0):
                lines.append(f"~ {cid}: measured.{key} {a:.6g} -> {b:.6g}")
    return lines, verdict_changed


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
