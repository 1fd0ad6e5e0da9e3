"""The ``sftheory`` command line: ``validate``, ``list``, ``docs``."""
from __future__ import annotations

import argparse
import sys


def _cmd_validate(args) -> int:
    from .claims.runner import validate

    if args.seed < 0:
        print(f"error: --seed must be >= 0, got {args.seed}", file=sys.stderr)
        return 2
    if args.device == "cuda":
        try:
            import torch
        except ImportError:
            print("error: --device cuda needs torch (pip install torch)", file=sys.stderr)
            return 2
        if not torch.cuda.is_available():
            print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
            return 2
    try:
        res = validate(full=args.full, only=args.only, out=args.out, device=args.device,
                       seed=args.seed, progress=not args.no_progress)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    width = max(len(r["id"]) for r in res["records"])
    for r in res["records"]:
        print(f"  {r['id']:<{width}}  {r['verdict']:<18} {r['seconds']:7.2f} s")
    print(f"{len(res['records'])} checks in {res['seconds']} s: "
          + ", ".join(f"{v} {k}" for k, v in sorted(res["summary"].items())))
    cov = res["catalogue"]
    print(f"paper claims with a check: {cov['checked']} of {cov['paper_claims']} "
          f"(the rest are planned; see the report)")
    print(f"report: {args.out}/index.html  records: {args.out}/results.json")
    crashed = [r["id"] for r in res["records"] if r["verdict"] == "crashed"]
    if crashed:
        print("crashed: " + ", ".join(crashed), file=sys.stderr)
        return 1
    refuted_core = [r["id"] for r in res["records"]
                    if r["verdict"] == "refuted" and r["id"].startswith("core.")]
    if refuted_core:
        print("warning: toolkit self-checks refuted (a bug in sftheory): " + ", ".join(refuted_core),
              file=sys.stderr)
    return 0


def _cmd_list(args) -> int:
    from .claims.registry import select

    for c in select(args.only, full=True):
        print(f"{c.id:<38} {'slow ' if c.slow else '     '}{c.source:<34} {c.title}")
    return 0


def _cmd_docs(args) -> int:
    from .claims import docs

    if args.claims_md:
        from .claims.catalogue import parse_claims_md, write_catalogue
        from pathlib import Path

        write_catalogue(parse_claims_md(Path(args.claims_md).read_text()))
    for path in docs.write_docs(args.out):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sftheory", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    v = sub.add_parser("validate", help="run the claim checks and write DIR/index.html + results.json")
    mode = v.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fast CPU run (default)")
    mode.add_argument("--full", action="store_true", help="all checks, larger samples, slow ones too")
    v.add_argument("--only", metavar="PATTERN", help="ids to run: glob(s) or substrings, comma-separated")
    v.add_argument("--out", metavar="DIR", default="report", help="output directory (default: report)")
    v.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="torch device for torch paths")
    v.add_argument("--seed", type=int, default=0, help="base seed of every check's random streams")
    v.add_argument("--no-progress", action="store_true", help="no progress bar")
    v.set_defaults(func=_cmd_validate)

    ls = sub.add_parser("list", help="list the registered checks")
    ls.add_argument("--only", metavar="PATTERN")
    ls.set_defaults(func=_cmd_list)

    d = sub.add_parser("docs", help="regenerate docs/claims/*.md from the registry")
    d.add_argument("--out", default="docs", help="docs directory (default: docs)")
    d.add_argument("--claims-md", metavar="PATH", help="refresh the shipped catalogue from CLAIMS.md")
    d.set_defaults(func=_cmd_docs)

    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
