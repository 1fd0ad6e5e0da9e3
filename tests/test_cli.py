"""The `sftheory` command line."""
from __future__ import annotations

import json
import subprocess
import sys

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


def test_validate_unknown_pattern_is_a_usage_error(tmp_path, capsys):
    assert main(["validate", "--only", "no.such.claim", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "no check matches" in capsys.readouterr().err


def test_validate_crash_exits_nonzero(tmp_path, monkeypatch):
    from sftheory.claims import registry

    registry.load_all()

    def boom(ctx):
        raise RuntimeError("kaput")

    monkeypatch.setitem(registry.REGISTRY, "core.zz.boom",
                        registry.Check("core.zz.boom", "boom", "none", boom))
    assert main(["validate", "--only", "core.zz.boom", "--out", str(tmp_path), "--no-progress"]) == 1


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
