"""The `sftheory` command line."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sftheory.cli import main


def test_validate_only_writes_report(tmp_path, capsys):
    rc = main(["validate", "--only", "core.processes.time_change", "--out", str(tmp_path),
               "--no-progress", "--seed", "3"])
    assert rc == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert [r["id"] for r in res["records"]] == ["core.processes.time_change"]
    assert res["seed"] == 3 and res["mode"] == "quick"
    assert (tmp_path / "index.html").is_file()
    assert "1 checks" in capsys.readouterr().out
    assert res["records"][0]["status"] == "ran" and res["records"][0]["verdict"] == "confirmed"


def test_validate_no_figures(tmp_path):
    assert main(["validate", "--only", "core.processes.moments", "--out", str(tmp_path),
                 "--no-progress", "--no-figures"]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["records"][0]["figures"] == [] and not (tmp_path / "figures").exists()


def test_docs_unreadable_claims_md_is_a_usage_error(tmp_path, capsys):
    assert main(["docs", "--out", str(tmp_path), "--claims-md", str(tmp_path / "missing.md")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_validate_unknown_pattern_is_a_usage_error(tmp_path, capsys):
    out = tmp_path / "not-created"
    assert main(["validate", "--only", "no.such.claim", "--out", str(out), "--no-progress"]) == 2
    assert "no check matches" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("kind", ["proc", "file", "file-parent"])
def test_validate_unwritable_out_is_a_usage_error(tmp_path, capsys, kind):
    if kind == "proc":
        out = "/proc/x"
    elif kind == "file":
        out = tmp_path / "results.txt"
        out.write_text("not a directory")
    else:
        (tmp_path / "f").write_text("a file")
        out = tmp_path / "f" / "report"
    rc = main(["validate", "--only", "core.processes.time_change", "--out", str(out),
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "Traceback" not in err, err
    assert str(out) in err


def test_validate_unwritable_out_from_a_shell_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sftheory.cli", "validate", "--only",
                           "core.processes.time_change", "--out", "/proc/x", "--no-progress"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr


def _register(monkeypatch, cid, fn, **kw):
    from sftheory.claims import registry

    registry.load_all()
    monkeypatch.setitem(registry.REGISTRY, cid, registry.Check(cid, "test check", "none", fn, **kw))


def _refuted(ctx):
    from sftheory.claims import within

    return ctx.verdict(within(float("nan")), compared=[("a", "b")], claimed={"x": 1})


def test_validate_refuted_core_check_exits_one(tmp_path, monkeypatch, capsys):
    _register(monkeypatch, "core.zz.broken", _refuted)
    assert main(["validate", "--only", "core.zz.broken", "--out", str(tmp_path), "--no-progress"]) == 1
    assert "core.zz.broken" in capsys.readouterr().err


def test_validate_refuted_paper_claim_is_a_finding(tmp_path, monkeypatch):
    _register(monkeypatch, "sm.zz.finding", _refuted)
    assert main(["validate", "--only", "sm.zz.finding", "--out", str(tmp_path), "--no-progress"]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["records"][0]["verdict"] == "refuted"


def test_validate_reports_skipped_slow_checks_with_the_reason(tmp_path, monkeypatch, capsys):
    _register(monkeypatch, "core.zz.slow", _refuted, slow=True)
    assert main(["validate", "--only", "core.zz.slow", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "skipped" in out and "--full" in out
    rec = json.loads((tmp_path / "results.json").read_text())["records"][0]
    assert rec["status"] == "skipped" and rec["verdict"] is None


@pytest.mark.parametrize("cid", ["core.zz.boom", "sm.zz.boom"])
def test_validate_crash_exits_nonzero(tmp_path, monkeypatch, cid):
    def boom(ctx):
        raise RuntimeError("kaput")

    _register(monkeypatch, cid, boom)
    assert main(["validate", "--only", cid, "--out", str(tmp_path), "--no-progress"]) == 1
    rec = json.loads((tmp_path / "results.json").read_text())["records"][0]
    assert rec["status"] == "crashed" and "kaput" in rec["error"]


def test_list_names_every_check(capsys):
    from sftheory.claims import load_all

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for cid in load_all():
        assert cid in out


def test_console_script_entry_point():
    proc = subprocess.run([sys.executable, "-m", "sftheory.cli", "list", "--only", "sm."],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "sm.esf" in proc.stdout


def test_validate_rejects_negative_seed(tmp_path, capsys):
    assert main(["validate", "--only", "sm.esf", "--out", str(tmp_path), "--seed", "-1",
                 "--no-progress"]) == 2
    assert "--seed" in capsys.readouterr().err


def test_results_record_catalogue_coverage_and_git_state(tmp_path):
    from sftheory.claims.catalogue import load_catalogue

    assert main(["validate", "--only", "sm.esf", "--out", str(tmp_path), "--no-progress"]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    cov = res["catalogue"]
    assert cov["paper_claims"] == len(load_catalogue())
    assert cov["checked"] + len(cov["unchecked"]) == cov["paper_claims"]
    assert "sm.esf" not in {u["id"] for u in cov["unchecked"]}
    assert "dirty" in res["env"] and "commit" in res["env"]
    assert f"{cov['checked']} of {cov['paper_claims']}" in (tmp_path / "index.html").read_text()
