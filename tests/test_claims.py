"""The claims registry: discovery, the report and its schema, every check on the correct library,
the shipped catalogue against CLAIMS.md."""
from __future__ import annotations

import ast
import importlib.util
import json
import re
import sys
from pathlib import Path

import jsonschema
import pytest

from sftheory.claims import Context, run_check, select, validate
from sftheory.claims import registry
from sftheory.claims.catalogue import load_catalogue, parse_claims_md, roadmap_item, table_cells

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "validation" / "record.schema.json").read_text())
CLAIMS_MD = ROOT.parent / "shared" / "CLAIMS.md"
ROADMAP_MD = ROOT.parent / "shared" / "ROADMAP.md"
CHECK_IDS = {"core.processes.moments", "core.processes.time_change",
             "core.processes.transition_sampling", "core.models.score_is_gradient",
             "core.models.normalization", "core.models.fokker_planck", "core.models.marginal_mc",
             "core.models.tweedie", "core.kernels.parity", "core.models.robustness", "sm.esf"}


# ---- registry -----------------------------------------------------------------------------------
def test_the_eleven_checks_keep_their_ids():
    assert CHECK_IDS <= set(registry.load_all())


def test_registered_ids_are_catalogued_or_core():
    catalogue = {e.id for e in load_catalogue()}
    for cid in registry.load_all():
        assert cid.startswith("core.") or cid in catalogue or ".extra." in cid, cid


def test_check_modules_are_discovered_from_the_package_directory():
    pkg = ROOT / "sftheory" / "claims" / "checks"
    on_disk = {f"sftheory.claims.checks.{p.stem}" for p in pkg.glob("*.py") if not p.stem.startswith("_")}
    assert set(registry.check_modules()) == on_disk
    assert {"sftheory.claims.checks.core_processes", "sftheory.claims.checks.sm_esf"} <= on_disk
    assert {c.module for c in registry.load_all().values()} <= on_disk


def test_a_new_check_module_is_picked_up_without_listing_it(tmp_path, monkeypatch):
    from sftheory.claims import checks

    (tmp_path / "zz_extra.py").write_text(
        "from sftheory.claims.registry import claim\n"
        "@claim('core.zz.extra', title='t', source='s')\n"
        "def check(ctx):\n    ctx.skip('test module')\n")
    monkeypatch.setattr(checks, "__path__", [*checks.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "REGISTRY", dict(registry.REGISTRY))
    try:
        assert "core.zz.extra" in registry.load_all()
        assert [c.id for c in select("core.zz.*")] == ["core.zz.extra"]
    finally:
        sys.modules.pop("sftheory.claims.checks.zz_extra", None)


def test_old_check_modules_are_gone():
    """One mechanism per job: the checks live in claims/checks/ only."""
    assert not (ROOT / "sftheory" / "claims" / "core.py").exists()
    assert not (ROOT / "sftheory" / "claims" / "sm.py").exists()


def test_select_patterns():
    ids = [c.id for c in select("core.processes.*")]
    assert ids and all(i.startswith("core.processes.") for i in ids)
    assert [c.id for c in select("sm.esf")] == ["sm.esf"]
    assert select("nothing-matches-this") == []
    sm_ids = {c.id for c in select("sm.")}
    assert "sm.esf" in sm_ids and all(i.startswith("sm.") for i in sm_ids)
    assert {c.id for c in select("core.kernels.parity, sm.")} == {"core.kernels.parity"} | sm_ids


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            out.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


@pytest.mark.parametrize("layer", ["processes", "models", "testing", "_kernels", "samplers",
                                   "fusion", "theory", "training"])
def test_lower_layers_never_import_claims(layer):
    base = ROOT / "sftheory" / layer
    files = [base] if base.suffix == ".py" else sorted(base.rglob("*.py"))
    for f in files:
        for imp in _imports(f):
            assert "claims" not in imp and "cli" not in imp.split("."), (f, imp)


# ---- every check on the correct library ---------------------------------------------------------
ALL_IDS = sorted(c.id for c in select())
PAPER_VERDICTS = {"os.table3": "refuted", "os.prop34": "confirmed", "os.prop35": "confirmed",
                  "os.table1": "not-checkable-here", "os.B4": "confirmed", "os.H4": "confirmed",
                  "os.H5": "confirmed", "os.fig3": "confirmed", "os.fig4": "confirmed",
                  "os.fig8": "confirmed", "os.fig9": "confirmed", "os.bound17": "confirmed",
                  "os.prop36": "confirmed", "os.appF1": "confirmed", "os.prop32": "confirmed",
                  "os.lemmaB1": "confirmed", "os.B2": "confirmed", "os.fig2": "confirmed",
                  "os.fig6": "confirmed", "os.fig7": "confirmed",
                  "sm.eq8": "confirmed", "sm.lemma1": "confirmed", "sm.prop2": "corrected",
                  "sm.rate": "corrected", "sm.A1": "corrected", "sm.A3": "confirmed",
                  "sm.prop3": "corrected", "sm.eq17": "corrected", "sm.eq13": "confirmed",
                  "sm.lemma4": "confirmed", "sm.cor5": "confirmed", "sm.prop6": "corrected",
                  "sm.fig1": "confirmed", "sm.fig3": "confirmed",
                  "sf.thm1": "confirmed", "sf.lemma1": "confirmed", "sf.prop1": "confirmed",
                  "sf.remark2": "confirmed", "sf.alg2": "corrected", "sf.lemma6": "corrected",
                  "sf.thm2": "corrected", "sf.thm3": "confirmed", "sf.lemma7": "corrected",
                  "sf.lemma2": "corrected", "sf.slides.grad": "confirmed",
                  "sf.slides.merge": "confirmed", "sf.alg1": "confirmed",
                  "sf.thm4.ttilde": "corrected", "sf.thm4": "corrected", "sf.dimfree": "confirmed",
                  "sf.table1": "corrected"}


def test_every_registered_check_is_run_below():
    assert CHECK_IDS <= set(ALL_IDS) and "core.paths.per_point_times" in ALL_IDS


@pytest.mark.parametrize("cid", ALL_IDS)
def test_every_check_on_the_correct_library(cid, quick_record):
    """Each check, quick mode, seed 0, figures off. Every toolkit self-check (core.*) confirms: a
    refuted core check is a bug. sm.esf: [SM] (6) and (14) hold as written; (19) names
    i in {2..n} where {2..d} is meant, so the paper's version fails and the fixed one holds:
    `corrected`. A regression in the toolkit's ESF makes both versions fail (refuted) and fails
    this test."""
    (check,) = [c for c in select(cid) if c.id == cid]
    rec = quick_record(cid)  # run_check(check, Context(quick=True, seed=0, out_dir=None))
    if check.slow:  # runs with --full only; its own tests run it at small sizes
        assert rec["status"] == "skipped" and "--full" in rec["reason"], rec
        return
    assert rec["status"] == "ran", rec["error"]
    assert rec["reason"] and (rec["compared"] or rec["verdict"] == "not-checkable-here")
    if cid.startswith("core."):
        assert rec["verdict"] == "confirmed", rec["reason"]
        return
    if cid in PAPER_VERDICTS:
        # what the numbers said when the check was built (reasons in each check's notes and in
        # tests/claims/test_<module>.py); a change here is a finding to look at, not to silence
        assert rec["verdict"] == PAPER_VERDICTS[cid], rec["reason"]
        return
    assert cid == "sm.esf", f"{cid}: add its measured verdict to PAPER_VERDICTS"
    assert rec["verdict"] == "corrected", rec["reason"]
    paper, fixed = rec["measured"]["paper_version"], rec["measured"]["fixed_version"]
    assert all(isinstance(v, float) and v <= 1 for k, v in paper.items() if not k.startswith("eq19"))
    assert all(isinstance(v, float) and v <= 1 for v in fixed.values())
    assert paper["eq19_paper_score_vs_formula"] == "nan"  # coordinates 4..5 unspecified (n=3 < d=5)
    assert paper["eq19_paper_names_only_existing_coordinates"] == "inf"  # n=5 > d=3


FAST = "core.processes.*,sm.esf"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """A report of the fast checks (two of them draw figures)."""
    out = tmp_path_factory.mktemp("report")
    return out, validate(only=FAST, out=out, progress=False)


def test_results_are_schema_valid_and_say_what_was_compared(quick_run):
    out, res = quick_run
    on_disk = json.loads((out / "results.json").read_text())
    jsonschema.validate(on_disk, SCHEMA)
    assert on_disk["records"] == res["records"]
    for r in on_disk["records"]:
        assert r["compared"] and r["reason"], r["id"]
        for f in r["figures"]:
            assert (out / f).is_file()
    assert sum(res["summary"]["verdicts"].values()) == len(res["records"])


def test_html_report_embeds_figures_and_lists_every_check(quick_run):
    out, res = quick_run
    page = (out / "index.html").read_text()
    for r in res["records"]:
        assert f"id='{r['id']}'" in page
    assert page.count("data:image/png;base64,") == sum(len(r["figures"]) for r in res["records"])
    assert sum(len(r["figures"]) for r in res["records"]) >= 2


@pytest.mark.parametrize("mutate", [
    lambda r: r["measured"].clear(),
    lambda r: r["measured"].update(torch=None),
    lambda r: r.update(compared=[]),
    lambda r: r.update(status="crashed"),  # crashed keeps no verdict and carries an error
    lambda r: r.update(verdict=None),
    lambda r: r.update(status="skipped", verdict=None, reason=""),
])
def test_schema_rejects_records_that_could_lie(quick_run, mutate):
    _, res = quick_run
    bad = json.loads(json.dumps(res))
    mutate(bad["records"][0])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)


def _compare_module():
    spec = importlib.util.spec_from_file_location("compare", ROOT / "validation" / "compare.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_compare_reports_outcome_changes_and_non_finite_numbers(quick_run):
    mod = _compare_module()
    _, res = quick_run
    new = json.loads(json.dumps(res))
    new["records"][0]["verdict"] = "refuted"
    key = next(k for k, v in new["records"][1]["measured"].items() if isinstance(v, float))
    new["records"][1]["measured"][key] *= 2
    key2 = next(k for k, v in new["records"][2]["measured"].items() if isinstance(v, float))
    new["records"][2]["measured"][key2] = "nan"
    new["records"][3].update(status="crashed", verdict=None, error="tb")
    lines, changed = mod.compare(res, new)
    assert changed
    assert any(line.startswith(f"! {new['records'][0]['id']}") for line in lines)
    assert any(line.startswith(f"! {new['records'][3]['id']}") and "crashed" in line for line in lines)
    assert any(line.startswith(f"~ {new['records'][1]['id']}") for line in lines)
    assert any(line.startswith(f"~ {new['records'][2]['id']}") and "nan" in line for line in lines)
    assert mod.compare(res, res) == ([], False)


# ---- seeds ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(1, 12))
@pytest.mark.parametrize("cid", ["core.models.normalization", "core.models.score_is_gradient"])
def test_checks_do_not_flip_with_the_seed(cid, seed):
    """With --seed 3 the panelled Gauss-Legendre rule's error estimate exceeded its ceiling on a
    correct library (refuted); seeds 8 and 10 then found the integration box too small for a
    light, wide component, and seeds 4, 9, 20, 22, 33 a finite-difference rounding allowance
    missing from score_is_gradient's per-point branch. (Seeds 0-39 of both pass by hand.)"""
    (check,) = [c for c in select(cid) if c.id == cid]
    rec = run_check(check, Context(seed=seed))
    assert rec.verdict == "confirmed", rec.reason


# ---- catalogue --------------------------------------------------------------------------------------
@pytest.mark.skipif(not CLAIMS_MD.exists(), reason="shared/CLAIMS.md is not beside this checkout")
def test_shipped_catalogue_matches_claims_md():
    parsed = parse_claims_md(CLAIMS_MD.read_text())
    assert parsed == list(load_catalogue())


@pytest.mark.skipif(not CLAIMS_MD.exists(), reason="shared/CLAIMS.md is not beside this checkout")
def test_parser_reads_claims_md_as_written():
    """Against the file itself: every id row has three cells once escaped pipes are kept, the ids
    are the ones in the file's first column, and escaped pipes come back as '|'."""
    text = CLAIMS_MD.read_text()
    rows = [ln for ln in text.splitlines() if re.match(r"^\| [a-z]+\.", ln)]
    ids = [i.strip() for ln in rows for i in ln.split("|")[1].split("/")]
    entries = parse_claims_md(text)
    assert [e.id for e in entries] == ids
    assert len(ids) == len(set(ids))
    by_id = {e.id: e for e in entries}
    # written in CLAIMS.md as ``KL(.\|\|p_i)``: one cell, read with the bars
    assert by_id["sf.thm1"].how.endswith("sum_i lambda_i KL(.||p_i)")
    assert by_id["sm.lemma4"].statement == "KL(u[-1,1] || p^_0) = KL(u[-tau,tau] || p^_t)"
    assert by_id["sm.eq17"].statement == "n-point flow map (17) and phi_0|t"
    for ln in rows:
        if "\\|" in ln:
            cid = ln.split("|")[1].split("/")[0].strip()
            e = by_id[cid]
            assert "\\" not in e.statement + e.how and "|" in e.statement + e.how, cid


def test_catalogue_parser_cells_and_errors():
    text = ("| id | statement | how |\n| --- | --- | --- |\n| sf.a / sf.b | both | quadrature |\n"
            "| sm.c | KL(p \\|\\| q) | a \\| b |\n")
    entries = parse_claims_md(text)
    assert [e.id for e in entries] == ["sf.a", "sf.b", "sm.c"]
    assert (entries[2].statement, entries[2].how) == ("KL(p || q)", "a | b")
    assert table_cells("| a \\| b | c |") == ["a | b", "c"]
    assert table_cells("not a row") is None
    with pytest.raises(ValueError, match="3 cells"):
        parse_claims_md("| sm.d | KL(p || q) | how |\n")  # an unescaped bar inside a cell


def test_every_catalogued_id_has_a_roadmap_item():
    for e in load_catalogue():
        assert re.match(r"^ROADMAP (\d|Later) \(", roadmap_item(e.id)), e.id
    assert roadmap_item("os.table1").startswith("ROADMAP 1") and "not-checkable-here" in roadmap_item("os.table1")
    assert roadmap_item("sm.rate").startswith("ROADMAP 2")
    assert roadmap_item("sf.thm4.ttilde").startswith("ROADMAP 4")
    assert roadmap_item("sf.thm1").startswith("ROADMAP 3")
    with pytest.raises(ValueError):
        roadmap_item("core.models.tweedie")


@pytest.mark.skipif(not ROADMAP_MD.exists(), reason="shared/ROADMAP.md is not beside this checkout")
def test_ids_the_roadmap_names_are_placed_there():
    later = ROADMAP_MD.read_text().split("## Later", 1)[1]
    named = set(re.findall(r"\b(?:sf|os|sm)\.[a-z0-9_.]*[a-z0-9]", later))
    assert named, "ROADMAP.md's Later section names no ids any more"
    for cid in named:
        assert roadmap_item(cid).startswith("ROADMAP Later"), cid
