"""The HTML page of a validation run: summary, one table row per check, one section per check."""
from __future__ import annotations

import base64
import html
from pathlib import Path

COLORS = {"confirmed": "#1a7f37", "reproduced": "#1a7f37", "corrected": "#9a6700",
          "refuted": "#cf222e", "not-checkable-here": "#57606a", "crashed": "#8250df",
          "skipped": "#57606a", "needs-gpu": "#57606a", "ran": "#000"}


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


def _outcome(r: dict) -> str:
    """The verdict if the check ran, else its run status."""
    return r["verdict"] if r["status"] == "ran" else r["status"]


def _coverage_html(cov: dict | None) -> str:
    if not cov or not cov["unchecked"]:
        return ""
    rows = "".join(f"<tr><td><code>{html.escape(u['id'])}</code></td><td>{html.escape(u['planned'])}</td></tr>"
                   for u in cov["unchecked"])
    return (f"<h3>Not checked yet ({len(cov['unchecked'])} ids)</h3>"
            f"<table><tr><th>id</th><th>planned</th></tr>{rows}</table>")


def _compared_html(pairs: list[dict]) -> str:
    if not pairs:
        return ""
    items = "".join(f"<li>{html.escape(p['measured'])} <b>vs</b> {html.escape(p['reference'])}</li>"
                    for p in pairs)
    return f"<p><b>compared:</b></p><ul>{items}</ul>"


def render_html(results: dict, out: Path) -> str:
    """A self-contained page: summary, verdict table, one section per check with its figures
    embedded as data URIs (and linked as PNG files)."""
    e = html.escape
    recs = results["records"]
    counts = {**results["summary"]["verdicts"],
              **{k: v for k, v in results["summary"]["status"].items() if k != "ran"}}
    summary = " &middot; ".join(f"<b style='color:{COLORS.get(k, '#000')}'>{v} {e(k)}</b>"
                                for k, v in sorted(counts.items()))
    rows = []
    for r in recs:
        o = _outcome(r)
        rows.append(f"<tr><td><a href='#{e(r['id'])}'><code>{e(r['id'])}</code></a></td>"
                    f"<td>{e(r['title'])}</td><td style='color:{COLORS.get(o, '#000')};"
                    f"font-weight:bold'>{e(o)}</td><td>{e(_fmt(r['measured']))}</td>"
                    f"<td>{r['seconds']:.2f}</td></tr>")
    sections = []
    for r in recs:
        figs = []
        for f in r.get("figures", []):
            p = Path(out) / f
            if p.exists():
                data = base64.b64encode(p.read_bytes()).decode()
                figs.append(f"<a href='{e(f)}'><img src='data:image/png;base64,{data}'></a>")
        err = f"<pre class='err'>{e(r['error'])}</pre>" if r.get("error") else ""
        o = _outcome(r)
        sections.append(
            f"<section id='{e(r['id'])}'><h2><code>{e(r['id'])}</code> — {e(r['title'])}</h2>"
            f"<p><b>status:</b> {e(r['status'])} &middot; <b>verdict:</b> "
            f"<span style='color:{COLORS.get(o, '#000')}'>{e(str(r['verdict'] or '—'))}</span>"
            f" &middot; <b>source:</b> {e(r['source'])} &middot; {r['seconds']:.2f} s</p>"
            + (f"<p><b>why:</b> {e(r['reason'])}</p>" if r.get("reason") else "")
            + _compared_html(r.get("compared", []))
            + f"<p><b>claimed:</b> {e(_fmt(r['claimed']))}</p>"
            f"<p><b>measured:</b> {e(_fmt(r['measured']))}</p>"
            f"<p><b>tolerance:</b> {e(_fmt(r.get('tolerance') or {}))}</p>"
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
<p><small>Verdicts (what the numbers say): confirmed / refuted / corrected / reproduced /
not-checkable-here. Run status (what the run did), shown instead of a verdict when a check did
not run: crashed (the check itself failed), skipped (with the reason), needs-gpu.</small></p>
<table><tr><th>id</th><th>claim</th><th>outcome</th><th>measured</th><th>s</th></tr>{''.join(rows)}</table>
{_coverage_html(results.get("catalogue"))}
{''.join(sections)}</body></html>
"""
