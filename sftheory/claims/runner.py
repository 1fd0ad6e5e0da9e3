"""Run a selection of checks and write ``results.json`` and ``index.html``."""
from __future__ import annotations

import base64
import html
import json
import time
from datetime import datetime, timezone
from pathlib import Path

from .registry import Context, environment, run_check, select

SCHEMA_VERSION = 1


def validate(*, full: bool = False, only: str | None = None, out: str | Path = "report",
             device: str = "cpu", seed: int = 0, progress: bool = True) -> dict:
    """Run the checks (quick unless ``full``) and write the report; returns the results dict."""
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checks = select(only, full=full)
    if not checks:
        raise ValueError(f"no check matches {only!r}; see `sftheory list`")
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    records = []
    bar = tqdm(checks, disable=not progress, unit="check", desc="sftheory validate")
    for check in bar:
        bar.set_postfix_str(check.id)
        ctx = Context(quick=not full, seed=seed, device=device, out_dir=out)
        records.append(run_check(check, ctx))
    counts: dict[str, int] = {}
    for r in records:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    results = {
        "schema_version": SCHEMA_VERSION,
        "catalogue": catalogue_coverage(),
        "mode": "full" if full else "quick",
        "only": only, "seed": seed, "device": device,
        "started": started, "seconds": round(time.perf_counter() - t0, 2),
        "env": environment(), "summary": counts,
        "records": [r.to_json() for r in records],
    }
    (out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    (out / "index.html").write_text(render_html(results, out))
    return results


def catalogue_coverage() -> dict:
    """How many of the papers' catalogued claims have a check, and where the rest are planned."""
    from .catalogue import load_catalogue, roadmap_item
    from .registry import load_all

    reg = load_all()
    cat = load_catalogue()
    return {"paper_claims": len(cat), "checked": sum(1 for e in cat if e.id in reg),
            "unchecked": [{"id": e.id, "planned": roadmap_item(e.id)} for e in cat if e.id not in reg]}


_COLORS = {"confirmed": "#1a7f37", "reproduced": "#1a7f37", "corrected": "#9a6700",
           "refuted": "#cf222e", "not-checkable-here": "#57606a", "crashed": "#8250df"}


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items())
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v[:8]) + (", ..." if len(v) > 8 else "") + "]"
    return str(v)


def _table(rows: list[dict]) -> str:
    if not rows:
        return ""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c, '')))}</td>" for c in cols)
                   + "</tr>" for r in rows)
    return f"<table class='rows'><tr>{head}</tr>{body}</table>"


def _coverage_html(cov: dict | None) -> str:
    if not cov or not cov["unchecked"]:
        return ""
    rows = "".join(f"<tr><td><code>{html.escape(u['id'])}</code></td><td>{html.escape(u['planned'])}</td></tr>"
                   for u in cov["unchecked"])
    return (f"<h3>Not checked yet ({len(cov['unchecked'])} ids)</h3>"
            f"<table><tr><th>id</th><th>planned</th></tr>{rows}</table>")


def render_html(results: dict, out: Path) -> str:
    """A self-contained page: summary, verdict table, one section per check with its figures
    embedded as data URIs (and linked as PNG files)."""
    e = html.escape
    recs = results["records"]
    summary = " &middot; ".join(f"<b style='color:{_COLORS.get(k, '#000')}'>{v} {e(k)}</b>"
                                for k, v in sorted(results["summary"].items()))
    rows = []
    for r in recs:
        c = _COLORS.get(r["verdict"], "#000")
        rows.append(f"<tr><td><a href='#{e(r['id'])}'><code>{e(r['id'])}</code></a></td>"
                    f"<td>{e(r['title'])}</td><td style='color:{c};font-weight:bold'>{e(r['verdict'])}</td>"
                    f"<td>{e(_fmt(r['measured']))}</td><td>{r['seconds']:.2f}</td></tr>")
    sections = []
    for r in recs:
        figs = []
        for f in r.get("figures", []):
            p = out / f
            if p.exists():
                data = base64.b64encode(p.read_bytes()).decode()
                figs.append(f"<a href='{e(f)}'><img src='data:image/png;base64,{data}'></a>")
        err = f"<pre class='err'>{e(r['error'])}</pre>" if r.get("error") else ""
        tol = r.get("tolerance") or {}
        sections.append(
            f"<section id='{e(r['id'])}'><h2><code>{e(r['id'])}</code> — {e(r['title'])}</h2>"
            f"<p><b>verdict:</b> <span style='color:{_COLORS.get(r['verdict'], '#000')}'>"
            f"{e(r['verdict'])}</span> &middot; <b>source:</b> {e(r['source'])} &middot; "
            f"{r['seconds']:.2f} s</p>"
            f"<p><b>claimed:</b> {e(_fmt(r['claimed']))}</p>"
            f"<p><b>measured:</b> {e(_fmt(r['measured']))}</p>"
            f"<p><b>tolerance:</b> {e(_fmt(tol))}</p>"
            f"<p><b>inputs:</b> {e(_fmt(r['inputs']))}</p>"
            + (f"<p><b>notes:</b> {e(r['notes'])}</p>" if r.get("notes") else "")
            + _table(r.get("rows", [])) + "".join(figs) + err + "</section>")
    env = results["env"]
    cov = results.get("catalogue") or {"checked": 0, "paper_claims": 0}
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>sftheory validate</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}}
table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}}
table.rows td{{font-size:12px}}img{{max-width:100%;border:1px solid #eee;margin:.3em 0}}
section{{border-top:2px solid #ddd;margin-top:1.5em}}pre.err{{background:#fee;padding:.5em;overflow:auto}}</style>
</head><body><h1>sftheory validate — {e(results['mode'])}</h1>
<p><b>{cov['checked']} of {cov['paper_claims']} catalogued paper claims have a check in this
version</b>; the others are listed below with the roadmap item that will check them.</p>
<p>{summary} &middot; {len(recs)} checks in {results['seconds']} s &middot; seed {results['seed']}
&middot; device {e(results['device'])} &middot; started {e(results['started'])}</p>
<p><small>sftheory {e(str(env.get('sftheory')))}, commit {e(str(env.get('commit')))}{' (with uncommitted changes)' if env.get('dirty') else ''}, numpy {e(str(env.get('numpy')))},
numba {e(str(env.get('numba')))} ({env.get('numba_threads')} threads), torch {e(str(env.get('torch')))},
{e(str(env.get('platform')))}. Records: <a href="results.json">results.json</a>.</small></p>
<p><small>Verdicts: confirmed / refuted / corrected / reproduced / not-checkable-here are what the
numbers say; "crashed" means the check itself failed to run.</small></p>
<table><tr><th>id</th><th>claim</th><th>verdict</th><th>measured</th><th>s</th></tr>{''.join(rows)}</table>
{_coverage_html(results.get("catalogue"))}
{''.join(sections)}</body></html>
"""
