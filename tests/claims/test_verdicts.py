"""The verdict layer: helpers, aggregates, records and run statuses cannot report a success they
did not measure."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sftheory.claims import (
    Check,
    Context,
    Record,
    Worst,
    corrected,
    not_checkable,
    not_run,
    reproduced,
    run_check,
    within,
    worst_of,
)
from sftheory.claims.verdicts import Verdict

NAN, INF = math.nan, math.inf
PAIR = [("measured route", "reference route")]


# ---- aggregates ---------------------------------------------------------------------------------
def test_python_max_drops_nan_which_is_why_worst_exists():
    assert max(0.5, NAN) == 0.5  # the bug issue 6 found in every check
    assert math.isnan(worst_of([0.5, NAN]))
    assert math.isnan(worst_of([NAN, 0.5]))


@pytest.mark.parametrize("values", [[0.1, NAN, 0.2], [NAN], [np.array([0.1, NAN]), 0.3],
                                    [0.2, np.array([[0.1], [NAN]])]])
def test_worst_of_keeps_nan(values):
    assert math.isnan(worst_of(values))


def test_worst_of_plain_and_infinite():
    assert worst_of([0.1, np.array([0.3, 0.2]), 0.25]) == 0.3
    assert worst_of([0.1, INF]) == INF


def test_worst_of_nothing_is_nan():
    assert math.isnan(worst_of([]))


def test_worst_keeps_first_nan_and_where():
    w = Worst()
    w.add(0.5, "a")
    w.add(NAN, "b")
    w.add(7.0, "c")  # larger, but the NaN stays
    assert math.isnan(w.value) and w.where == "b" and w.non_finite == ["b"]
    assert w.count == 3
    assert math.isnan(w.summary()["worst"])


def test_worst_tracks_the_maximum_and_its_case():
    w = Worst()
    for v, where in ((0.1, "a"), (np.array([0.2, 0.9]), "b"), (0.3, "c")):
        w.add(v, where)
    assert w.value == 0.9 and w.where == "b" and w.count == 4 and w.non_finite == []


def test_worst_rejects_not_run_and_empty():
    w = Worst()
    with pytest.raises(ValueError, match="did not run"):
        w.add(not_run("torch missing"))
    with pytest.raises(ValueError, match="empty"):
        w.add(np.array([]))
    assert math.isnan(w.value)  # nothing added: no success to report


# ---- within -------------------------------------------------------------------------------------
@pytest.mark.parametrize("excess", [0.0, 0.999, 1.0, np.array([0.2, 1.0])])
def test_within_confirms_finite_errors_within_tolerance(excess):
    assert within(excess).verdict == "confirmed"


@pytest.mark.parametrize("excess", [1.0001, NAN, INF, -INF, np.array([0.1, NAN]), Worst()])
def test_within_refutes_large_or_non_finite(excess):
    v = within(excess)
    assert v.verdict == "refuted"
    if not (isinstance(excess, float) and excess == 1.0001):
        assert "non-finite" in v.reason


def test_within_mapping_names_the_failing_entry():
    w = Worst()
    w.add(0.1, "case A")
    w.add(NAN, "case B")
    v = within({"ode": 0.5, "drift": w})
    assert v.verdict == "refuted"
    assert "drift" in v.reason and "case B" in v.reason and "ode" not in v.reason
    assert v.measured["ode"] == 0.5 and math.isnan(v.measured["drift"])
    assert within({}).verdict == "refuted"  # nothing compared


# ---- corrected ----------------------------------------------------------------------------------
def test_corrected_lets_the_numbers_decide():
    assert corrected(paper=0.5, fixed=0.5, fix="f").verdict == "confirmed"
    v = corrected(paper=NAN, fixed=0.5, fix="i in {2..d}")
    assert v.verdict == "corrected" and "i in {2..d}" in v.reason
    assert math.isnan(v.measured["paper_version"]) and v.measured["fixed_version"] == 0.5
    assert corrected(paper=3.0, fixed=0.5, fix="f").verdict == "corrected"
    assert corrected(paper=3.0, fixed=NAN, fix="f").verdict == "refuted"
    assert corrected(paper=NAN, fixed=2.0, fix="f").verdict == "refuted"
    v = corrected(paper=0.2, fixed=5.0, fix="f")
    assert v.verdict == "confirmed" and "does not hold" in v.reason
    with pytest.raises(ValueError):
        corrected(paper=0.1, fixed=0.1, fix="")


def test_corrected_with_mappings():
    v = corrected(paper={"eq6": 0.1, "eq19": NAN}, fixed={"eq6": 0.1, "eq19": 0.3}, fix="f")
    assert v.verdict == "corrected" and "eq19" in v.reason
    v = corrected(paper={"eq6": 2.0, "eq19": NAN}, fixed={"eq6": 2.0, "eq19": 0.3}, fix="f")
    assert v.verdict == "refuted"  # a shared part that fails cannot be fixed by the fix


# ---- reproduced ---------------------------------------------------------------------------------
def test_reproduced_row_by_row():
    rows = [{"cell": "a", "paper": 1.23, "measured": 1.231}, {"cell": "b", "paper": 4.0, "measured": 4.004}]
    v = reproduced(rows, atol=0.005)
    assert v.verdict == "reproduced" and all(r["agrees"] for r in v.rows)
    assert v.rows[0]["abs_diff"] == pytest.approx(0.001)
    assert reproduced(rows, atol=0.002).verdict == "refuted"


@pytest.mark.parametrize("bad", [NAN, INF, not_run("needs the checkpoint"), None])
def test_reproduced_fails_rows_without_a_finite_measurement(bad):
    rows = [{"paper": 1.0, "measured": 1.0}, {"paper": 2.0, "measured": bad}]
    v = reproduced(rows, atol=10.0)
    assert v.verdict == "refuted" and v.rows[1]["agrees"] is False and v.rows[0]["agrees"] is True


def test_reproduced_needs_rows():
    assert reproduced([], atol=1.0).verdict == "refuted"


def test_not_checkable_and_not_run_need_a_reason():
    v = not_checkable("needs a pretrained CIFAR-10 checkpoint")
    assert v.verdict == "not-checkable-here" and "checkpoint" in v.reason
    with pytest.raises(ValueError):
        not_checkable("")
    assert not_run("torch is not installed") == "not run: torch is not installed"
    with pytest.raises(ValueError):
        not_run("")
    with pytest.raises(ValueError):
        Verdict("probably-fine", "because")


# ---- records ------------------------------------------------------------------------------------
def test_record_rejects_unknown_verdict_and_status():
    with pytest.raises(ValueError, match="verdict"):
        Record("core.x", "ran", "probably-fine")
    with pytest.raises(ValueError, match="status"):
        Record("core.x", "finished", "confirmed")


def test_record_status_and_verdict_are_separate():
    with pytest.raises(ValueError, match="no verdict"):
        Record("core.x", "crashed", "refuted", error="tb")
    with pytest.raises(ValueError, match="traceback"):
        Record("core.x", "crashed")
    with pytest.raises(ValueError, match="says why"):
        Record("core.x", "skipped")
    assert Record("core.x", "needs-gpu", reason="CUDA").verdict is None


def test_numeric_verdict_needs_what_was_compared_and_numbers():
    with pytest.raises(ValueError, match="compared"):
        Record("core.x", "ran", "confirmed", reason="ok", measured={"err": 0.1})
    with pytest.raises(ValueError, match="numbers"):
        Record("core.x", "ran", "confirmed", reason="ok", compared=PAIR)
    with pytest.raises(ValueError, match="names its measured and its reference"):
        Record("core.x", "ran", "confirmed", reason="ok", compared=[("only one",)], measured={"e": 1})
    rec = Record("core.x", "ran", "confirmed", reason="ok", compared=PAIR, measured={"e": 0.1})
    assert rec.to_json()["compared"] == [{"measured": "measured route", "reference": "reference route"}]


def test_not_checkable_record_needs_reason_not_numbers():
    with pytest.raises(ValueError, match="reason"):
        Record("os.table1", "ran", "not-checkable-here")
    Record("os.table1", "ran", "not-checkable-here", reason="needs a checkpoint")


@pytest.mark.parametrize("measured", [{"torch": None}, {"a": {"b": None}}, {"a": [0.1, None]}])
def test_record_refuses_none_as_a_measured_value(measured):
    with pytest.raises(ValueError, match="not_run"):
        Record("core.x", "ran", "confirmed", reason="ok", compared=PAIR, measured=measured)


def test_record_json_writes_non_finite_as_strings():
    rec = Record("core.x", "ran", "refuted", reason="nan", compared=PAIR,
                 measured={"err": NAN, "big": INF, "torch": not_run("not installed"),
                           "arr": np.array([1.0, NAN]), "flag": np.bool_(True)})
    js = rec.to_json()["measured"]
    assert js == {"err": "nan", "big": "inf", "torch": "not run: not installed",
                  "arr": [1.0, "nan"], "flag": True}


def test_context_verdict_merges_numbers_and_refuses_conflicts():
    ctx = Context(check_id="core.x")
    rec = ctx.verdict(within({"ode": 0.5}), compared=PAIR, claimed={"x": 1}, measured={"cases": 3})
    assert rec.verdict == "confirmed" and rec.measured == {"ode": 0.5, "cases": 3}
    assert rec.reason
    with pytest.raises(ValueError, match="twice"):
        ctx.verdict(within({"ode": 0.5}), compared=PAIR, claimed={}, measured={"ode": 0.1})


# ---- run statuses -------------------------------------------------------------------------------
def _check(fn, **kw):
    return Check("core.test.x", "title", "source", fn, **kw)


def _ok(ctx):
    return ctx.verdict(within(0.1), compared=PAIR, claimed={"x": 1})


def test_run_check_statuses(tmp_path):
    rec = run_check(_check(_ok), Context(out_dir=tmp_path))
    assert (rec.status, rec.verdict, rec.title, rec.source) == ("ran", "confirmed", "title", "source")

    rec = run_check(_check(_ok, slow=True), Context(quick=True))
    assert rec.status == "skipped" and rec.verdict is None and "--full" in rec.reason
    assert run_check(_check(_ok, slow=True), Context(quick=False)).status == "ran"

    rec = run_check(_check(_ok, needs_gpu=True), Context(device="cpu"))
    assert rec.status == "needs-gpu" and "cuda" in rec.reason.lower()

    def skipper(ctx):
        ctx.skip("the data set is not installed")

    rec = run_check(_check(skipper), Context())
    assert rec.status == "skipped" and rec.reason == "the data set is not installed"


def test_run_check_crashes_are_reported(tmp_path):
    def boom(ctx):
        raise RuntimeError("kaput")

    rec = run_check(_check(boom), Context(out_dir=tmp_path))
    assert rec.status == "crashed" and rec.verdict is None and "kaput" in rec.error

    rec = run_check(_check(lambda ctx: {"verdict": "confirmed"}), Context())
    assert rec.status == "crashed" and "not Record" in rec.error

    other = Record("core.other", "ran", "confirmed", reason="ok", compared=PAIR, measured={"e": 0})
    rec = run_check(_check(lambda ctx: other), Context())
    assert rec.status == "crashed" and "core.other" in rec.error

    def none_measured(ctx):
        return ctx.verdict(within(0.1), compared=PAIR, claimed={}, measured={"torch": None})

    assert run_check(_check(none_measured), Context()).status == "crashed"


def test_figures_are_skippable_and_relative(tmp_path):
    def draw(path):
        path.write_bytes(b"png")

    def with_figure(ctx):
        ctx.figure("f", draw)
        return _ok(ctx)

    rec = run_check(_check(with_figure), Context(out_dir=tmp_path))
    assert rec.figures == ["figures/core.test.x/f.png"] and (tmp_path / rec.figures[0]).is_file()
    assert run_check(_check(with_figure), Context(out_dir=None)).figures == []


def test_a_hand_built_confirmed_record_cannot_carry_nan():
    """Found by review: a check could bypass the helpers with Record(..., 'confirmed') and NaN."""
    from sftheory.claims import Record

    with pytest.raises(ValueError, match="NaN or infinite"):
        Record("core.x", "ran", "confirmed", reason="r", compared=[("a", "b")],
               measured={"worst": float("nan")})
    with pytest.raises(ValueError, match="NaN or infinite"):
        Record("core.x", "ran", "confirmed", reason="r", compared=[("a", "b")],
               measured={"rows": [1.0, float("inf")]})


def test_empty_comparisons_are_not_a_pass():
    """Found by review: np.max(..., initial=0.0) turned 'nothing compared' into an error of 0."""
    from sftheory.testing import asserts

    with pytest.raises(ValueError, match="nothing to compare"):
        asserts.compare(np.zeros((0, 3)), np.zeros((0, 3)))
    assert np.isnan(asserts._rel_pair(np.zeros(0), np.zeros((0, 2)), np.zeros(0), np.zeros((0, 2))))
