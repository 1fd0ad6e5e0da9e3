"""The ``sftheory`` command line: ``validate``, ``list``, ``docs``."""
from __future__ import annotations

import argparse
import sys


def _cmd_validate(args) -> int:
    from .claims.runner import OutputError, toolkit_failures, validate

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
                       seed=args.seed, progress=not args.no_progress,
                       figures=not args.no_figures)
    except (ValueError, OutputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    width = max(len(r["id"]) for r in res["records"])
    for r in res["records"]:
        outcome = r["verdict"] if r["status"] == "ran" else r["status"]
        why = f"  ({r['reason']})" if r["status"] in ("skipped", "needs-gpu") else ""
        print(f"  {r['id']:<{width}}  {outcome:<18} {r['seconds']:7.2f} s{why}")
    summ = {**res["summary"]["verdicts"],
            **{k: v for k, v in res["summary"]["status"].items() if k != "ran"}}
    print(f"{len(res['records'])} checks in {res['seconds']} s: "
          + ", ".join(f"{v} {k}" for k, v in sorted(summ.items())))
    cov = res["catalogue"]
    print(f"paper claims with a check: {cov['checked']} of {cov['paper_claims']} "
          f"(the rest are planned; see the report)")
    print(f"report: {args.out}/index.html  records: {args.out}/results.json")
    failures = toolkit_failures(res)
    if failures:
        print("error: toolkit self-checks refuted or checks crashed (a bug in sftheory): "
              + ", ".join(failures), file=sys.stderr)
        return 1
    return 0


def _cmd_list(args) -> int:
    from .claims.registry import select

    for c in select(args.only):
        tag = "gpu  " if c.needs_gpu else "slow " if c.slow else "     "
        print(f"{c.id:<38} {tag}{c.source:<34} {c.title}")
    return 0


def _cmd_docs(args) -> int:
    from .claims import docs

    if args.claims_md:
        from .claims.catalogue import parse_claims_md, write_catalogue
        from pathlib import Path

        try:
            text = Path(args.claims_md).read_text()
        except OSError as exc:
            print(f"error: cannot read --claims-md {args.claims_md}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 2
        write_catalogue(parse_claims_md(text))
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
    v.add_argument("--no-figures", action="store_true", help="skip drawing figures (verdicts unchanged)")
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
