"""Run checks: one (:func:`run_check`) or a selection (:func:`validate`, which writes
``results.json`` and ``index.html``)."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .record import Context, Record, SkipCheck
from .registry import Check, load_all, select

SCHEMA_VERSION = 2


class OutputError(ValueError):
    """The report directory cannot be used (not a directory, not writable)."""


def run_check(check: Check, ctx: Context) -> Record:
    """Run one check and return its record; what the run did is the record's ``status``.

    A slow check in a quick run is ``skipped`` and a GPU check without ``--device cuda`` is
    ``needs-gpu`` (neither runs); :meth:`Context.skip` gives ``skipped``; an exception, or a check
    that returns something else than a Record, gives ``crashed`` with the traceback.
    """
    ctx.check_id = check.id
    ctx.figures = []
    t0 = time.perf_counter()
    if check.slow and ctx.quick:
        rec = Record(check.id, "skipped", reason="slow check: runs with `sftheory validate --full`")
    elif check.needs_gpu and ctx.device != "cuda":
        rec = Record(check.id, "needs-gpu", reason="needs a CUDA device: run with --device cuda")
    else:
        try:
            # a non-finite number is a finding the verdict helpers report, not a warning
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                rec = check.fn(ctx)
            if not isinstance(rec, Record):
                raise TypeError(f"check {check.id} returned {type(rec).__name__}, not Record")
            if rec.id != check.id:
                raise ValueError(f"check {check.id} returned the record of {rec.id!r}")
        except SkipCheck as exc:
            rec = Record(check.id, "skipped", reason=str(exc) or "skipped by the check")
        except Exception:  # noqa: BLE001 - a crash is reported, never hidden
            rec = Record(check.id, "crashed", error=traceback.format_exc())
    rec.title = rec.title or check.title
    rec.source = rec.source or check.source
    rec.seconds = round(time.perf_counter() - t0, 3)
    if ctx.out_dir is not None:  # figure paths relative to the report: it can move as a whole
        rec.figures = [os.path.relpath(f, ctx.out_dir) for f in rec.figures]
    return rec


def run_claim(claim_id: str, *, quick: bool = True, seed: int = 0, out_dir=None) -> Record:
    """Run the one registered check ``claim_id`` (figures only if ``out_dir`` is given) and return
    its record: ``run_claim("os.prop32").verdict``. Raises KeyError for an unknown id."""
    from .registry import load_all

    check = load_all().get(claim_id)
    if check is None:
        raise KeyError(f"no check is registered for {claim_id!r} (see `sftheory list`)")
    return run_check(check, Context(quick=quick, seed=seed, out_dir=out_dir))


def prepare_out(out: str | Path) -> Path:
    """Create the report directory (parents too) and prove it writable, or raise OutputError."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".sftheory-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    return out


def summarize(records: list[Record | dict]) -> dict:
    """Counts of verdicts (checks that ran) and of run statuses."""
    verdicts: dict[str, int] = {}
    status: dict[str, int] = {}
    for r in records:
        r = r if isinstance(r, dict) else r.to_json()
        status[r["status"]] = status.get(r["status"], 0) + 1
        if r["verdict"] is not None:
            verdicts[r["verdict"]] = verdicts.get(r["verdict"], 0) + 1
    return {"verdicts": verdicts, "status": status}


def validate(*, full: bool = False, only: str | None = None, out: str | Path = "report",
             device: str = "cpu", seed: int = 0, progress: bool = True,
             figures: bool = True) -> dict:
    """Run the checks (quick unless ``full``) and write the report; returns the results dict.

    Raises ValueError when ``only`` matches nothing (before anything is written) and
    :class:`OutputError` when ``out`` cannot hold the report.
    """
    from tqdm.auto import tqdm

    from .report import render_html

    checks = select(only)
    if not checks:
        raise ValueError(f"no check matches {only!r}; see `sftheory list`")
    out = prepare_out(out)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    records = []
    bar = tqdm(checks, disable=not progress, unit="check", desc="sftheory validate")
    for check in bar:
        bar.set_postfix_str(check.id)
        ctx = Context(quick=not full, seed=seed, device=device, out_dir=out if figures else None)
        records.append(run_check(check, ctx))
    results = {
        "schema_version": SCHEMA_VERSION,
        "catalogue": catalogue_coverage(),
        "mode": "full" if full else "quick",
        "only": only, "seed": seed, "device": device,
        "started": started, "seconds": round(time.perf_counter() - t0, 2),
        "env": environment(), "summary": summarize(records),
        "records": [r.to_json() for r in records],
    }
    try:
        (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        (out / "index.html").write_text(render_html(results, out))
    except OSError as exc:
        raise OutputError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    return results


def toolkit_failures(results: dict) -> list[str]:
    """Ids of ``core.*`` self-checks that were refuted or crashed, and of any crashed check:
    a bug in sftheory, unlike a refuted paper claim (a finding)."""
    return [r["id"] for r in results["records"]
            if r["status"] == "crashed" or (r["id"].startswith("core.") and r["verdict"] == "refuted")]


def catalogue_coverage() -> dict:
    """How many of the papers' catalogued claims have a check, and where the rest are planned."""
    from .catalogue import load_catalogue, roadmap_item

    reg = load_all()
    cat = load_catalogue()
    return {"paper_claims": len(cat), "checked": sum(1 for e in cat if e.id in reg),
            "unchecked": [{"id": e.id, "planned": roadmap_item(e.id)} for e in cat if e.id not in reg]}


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
        dirty = bool(git("status", "--porcelain", "--untracked-files=normal", "--", ".").stdout.strip())
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
