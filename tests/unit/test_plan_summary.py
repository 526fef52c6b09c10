"""`plan`'s text when stdout is not a terminal: one line per drifting column, then the first few corrections."""

from __future__ import annotations

from domain.diff import Correction, Drift
from projections.plan import PlanResult
from recompute.cli.plan import FIRST, _summary
from tests.support.builders import T0


def a_stage_fix(account: str) -> Correction:
    return Correction(account_id=account, table="subs.subs_dunning", op="update", key={"account_id": account},
                      column="stage", **{"from": "none"}, to="retrying")


def test_the_plain_summary_keeps_its_column_lines_and_lists_the_first_corrections():
    result = PlanResult(as_of=T0, rules_version="v1", rules_digest="d1", accounts_checked=9,
                        corrections=[a_stage_fix(f"acc_{i}") for i in range(1, 8)])
    lines = _summary(result).splitlines()
    assert lines[0].endswith("9 accounts checked, 7 disagreeing, 7 corrections")
    assert lines[1] == f"  {'subs.subs_dunning.stage':<48} {7:>6} update in 7 accounts"
    assert lines[2] == f"first corrections ({FIRST} of 7; --json lists them all):"
    assert lines[3] == "  acc_1  subs.subs_dunning.stage  'none' -> 'retrying'" and len(lines) == 3 + FIRST


def test_a_plan_with_nothing_to_correct_is_one_line():
    assert len(_summary(PlanResult(as_of=T0, rules_version="v1", accounts_checked=3)).splitlines()) == 1


def test_the_plain_summary_says_where_the_drift_comes_from_by_owner_and_cause():
    said = Drift(cause="missed_change", since=T0, owner="A3", by="evt_1")
    wrong = Drift(cause="wrong_write", since=T0, owner="A3", by="subs.subs_dunning[acc_3]@snap:1")
    result = PlanResult(as_of=T0, rules_version="v1", accounts_checked=9, corrections=[
        a_stage_fix("acc_1").model_copy(update={"drift": said}), a_stage_fix("acc_2").model_copy(update={"drift": said}),
        a_stage_fix("acc_3").model_copy(update={"drift": wrong})])
    lines = _summary(result).splitlines()
    assert lines[2:4] == ["where the drift comes from (corrections by owner and cause):",
                          f"  {'A3':<20} 2 missed_change, 1 wrong_write"]
