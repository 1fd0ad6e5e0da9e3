"""The claims registry: ids, records, the report schema, the shipped catalogue."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from sftheory.claims import VERDICTS, Context, Record, load_all, run_check, select, validate
from sftheory.claims.catalogue import load_catalogue, parse_claims_md

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "validation" / "record.schema.json").read_text())
CLAIMS_MD = ROOT.parent / "shared" / "CLAIMS.md"


def test_registered_ids_are_catalogued_or_core():
    catalogue = {e.id for e in load_catalogue()}
    for cid in load_all():
        assert cid.startswith("core.") or cid in catalogue or ".extra." in cid, cid


@pytest.mark.skipif(not CLAIMS_MD.exists(), reason="shared/CLAIMS.md is not beside this checkout")
def test_shipped_catalogue_matches_claims_md():
    parsed = parse_claims_md(CLAIMS_MD.read_text())
    assert [e.id for e in parsed] == [e.id for e in load_catalogue()]
    assert parsed == list(load_catalogue())


def test_catalogue_parser_splits_shared_ids():
    text = "| id | statement | how |\n| --- | --- | --- |\n| sf.a / sf.b | both | quadrature |\n"
    assert [e.id for e in parse_claims_md(text)] == ["sf.a", "sf.b"]


def test_record_rejects_unknown_verdict():
    with pytest.raises(ValueError, match="verdict"):
        Record("core.x", "probably-fine")


def test_crash_becomes_crashed_record(tmp_path):
    from sftheory.claims.registry import Check

    def boom(ctx):
        raise RuntimeError("kaput")

    rec = run_check(Check("core.test.boom", "boom", "none", boom), Context(out_dir=tmp_path))
    assert rec.verdict == "crashed" and "kaput" in rec.error


def test_select_patterns():
    ids = [c.id for c in select("core.processes.*")]
    assert ids and all(i.startswith("core.processes.") for i in ids)
    assert [c.id for c in select("sm.esf")] == ["sm.esf"]
    assert select("nothing-matches-this") == []


FAST = "core.processes.*,core.models.tweedie,sm.esf"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return out, validate(only=FAST, out=out, progress=False)


def test_quick_run_writes_schema_valid_results(quick_run):
    out, res = quick_run
    on_disk = json.loads((out / "results.json").read_text())
    jsonschema.validate(on_disk, SCHEMA)
    assert on_disk["records"] == res["records"]
    for r in on_disk["records"]:
        assert r["verdict"] in VERDICTS, (r["id"], r.get("error"))
        for f in r["figures"]:
            assert (out / f).is_file()


def test_html_report_embeds_figures_and_lists_every_check(quick_run):
    out, res = quick_run
    page = (out / "index.html").read_text()
    for r in res["records"]:
        assert f"id='{r['id']}'" in page
    assert page.count("data:image/png;base64,") == sum(len(r["figures"]) for r in res["records"])


def test_core_checks_confirm(quick_run):
    """The toolkit's self-checks on the fast subset: a refuted core check is a bug."""
    _, res = quick_run
    core = [r for r in res["records"] if r["id"].startswith("core.")]
    assert core
    assert all(r["verdict"] == "confirmed" for r in core), [(r["id"], r["measured"]) for r in core]


def test_schema_rejects_a_record_without_numbers(quick_run):
    _, res = quick_run
    bad = json.loads(json.dumps(res))
    bad["records"][0]["measured"] = {}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)


def test_compare_reports_verdict_changes(quick_run):
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare", ROOT / "validation" / "compare.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    _, res = quick_run
    new = json.loads(json.dumps(res))
    new["records"][0]["verdict"] = "refuted"
    key = next(iter(k for k, v in new["records"][1]["measured"].items() if isinstance(v, float)))
    new["records"][1]["measured"][key] *= 2
    lines, changed = mod.compare(res, new)
    assert changed
    assert any(line.startswith("!") for line in lines) and any(line.startswith("~") for line in lines)
    assert mod.compare(res, res) == ([], False)
