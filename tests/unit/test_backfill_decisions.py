"""backfill's pure decisions: which fields a change of rules changes, which pending generation a rerun
resumes, and the inline executor."""

from __future__ import annotations

from datetime import timedelta

from domain.rules import RULES_V1
from projections.executor import InlineExecutor
from projections.read_model.changes import state_changes
from projections.read_model.generations import Generation, resume_or_drop
from tests.support.states import T, a_state


def a_generation(gid: int, *, digest: str = RULES_V1.digest, version: str = "v1", as_of=T) -> Generation:
    return Generation(gid, version, digest, "", as_of, 32)


def test_an_account_the_new_rules_suspend_later_changes_stage_status_delinquency_and_entitlements():
    before = a_state(stage="suspended", status="suspended", delinquent=True, entitlements={"api": False})
    after = a_state(stage="final_notice", status="active", delinquent=True, entitlements={"api": True})
    assert state_changes(before, after) == [
        {"account_id": "acc_000042", "field": "stage", "from": "suspended", "to": "final_notice"},
        {"account_id": "acc_000042", "field": "status", "from": "suspended", "to": "active"},
        {"account_id": "acc_000042", "field": "entitlements.api", "from": False, "to": True}]


def test_a_next_action_at_that_alone_moves_is_a_change_since_subs_dunning_holds_it():
    later = T + timedelta(days=30)
    changes = state_changes(a_state(next_action_at=T + timedelta(days=21)), a_state(next_action_at=later))
    assert [(c["field"], c["to"]) for c in changes] == [("next_action_at", later.isoformat())]


def test_an_account_the_rules_do_not_move_has_no_changes_whatever_else_its_state_holds():
    assert state_changes(a_state(days_overdue=5), a_state(days_overdue=5, rules_version="v2")) == []


def test_a_rerun_resumes_the_pending_generation_of_the_same_rules_and_drops_the_others():
    mine, other = a_generation(2), a_generation(3, digest="ffff", version="v9")
    assert resume_or_drop([mine, other], RULES_V1, None) == (mine, [other])


def test_a_rerun_at_another_instant_resumes_nothing_and_drops_the_generation_at_the_old_one():
    old = a_generation(2)
    assert resume_or_drop([old], RULES_V1, T + timedelta(days=1)) == (None, [old])


def test_a_rerun_at_the_same_instant_resumes_the_latest_of_its_rules():
    first, second = a_generation(2), a_generation(5)
    assert resume_or_drop([first, second], RULES_V1, T) == (second, [first])


def test_the_inline_executor_runs_each_piece_in_order():
    assert list(InlineExecutor().map(lambda n: n * n, [3, 1, 2])) == [9, 1, 4]
