"""The decisions of the apply protocol (projections/apply), as pure functions: no database.

    recovered        an interrupted run's pending intent: applied if its write committed and its row holds what
                     it writes, stale if it committed without, else abandoned
    pending_by_store which store recovery asks about which intents, waiting for which runs
    choose_accounts  the accounts a run changes (--max-accounts N: the first N by id) and the blast-radius guard
    finished_events  which held outbox events become ready (with their body) or void once settled
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.diff import Correction
from projections.apply.audit import Intent, Outcome, finished_events
from projections.apply.protocol import ApplyOptions, ApplyRefused, choose_accounts, pending_by_store
from projections.apply.writes import recovered

T = datetime(2026, 3, 1, tzinfo=UTC)


def a_correction(account: str = "acc_000042", table: str = "subs.subs_dunning", column: str = "stage",
                 from_: object = "none", to: object = "retrying") -> Correction:
    return Correction(account_id=account, table=table, op="update", key={"account_id": account}, column=column,
                      from_=from_, to=to)


def an_intent(audit_id: int, table: str = "subs.subs_dunning", account: str = "acc_000042") -> Intent:
    return Intent(a_correction(account, table), sets={}, causes=("evt_1",), event_id=f"ev-{audit_id}",
                  audit_id=audit_id)


# -- recovery of an interrupted run -------------------------------------------------------------

def test_a_pending_intent_whose_write_committed_and_whose_row_holds_what_it_writes_was_applied():
    intents = [an_intent(1), an_intent(2), an_intent(3)]
    assert recovered(intents, [True, True, True], [True, False, True], T) == [
        Outcome(1, "applied", T), Outcome(2, "stale", T), Outcome(3, "applied", T)]


def test_a_row_that_holds_what_the_intent_writes_is_no_proof_when_its_write_never_committed():
    """The intent `delinquent null -> false` was planned from a renamed column; the row held false all
    along. Its write failed (or never began): abandoned, not applied, and no event is announced."""
    assert recovered([an_intent(1), an_intent(2)], [False, False], [True, False], T) == [
        Outcome(1, "abandoned", T), Outcome(2, "abandoned", T)]


def test_recovery_needs_a_verdict_for_every_intent():
    with pytest.raises(ValueError):
        recovered([an_intent(1), an_intent(2)], [True, True], [True], T)


def test_recovery_asks_each_store_about_its_own_intents_and_waits_for_the_runs_that_wrote_them():
    cf, subs_a, subs_b = (an_intent(1, "cf_prod.accounts"), an_intent(2, "subs.subs_dunning"),
                          an_intent(3, "subs.subs_account"))
    left = [(subs_a, "run-b"), (cf, "run-a"), (subs_b, "run-a"), (an_intent(4, "subs.subs_dunning"), "run-b")]
    by_store = pending_by_store(left)
    assert list(by_store) == ["cf_prod", "subs"]  # STORES order; billing_prod has nothing left
    assert by_store["cf_prod"] == (["run-a"], [cf])
    assert by_store["subs"] == (["run-a", "run-b"], [subs_a, subs_b, left[3][0]])
    assert pending_by_store([]) == {}


# -- the accounts a run changes, and the blast-radius guard -------------------------------------

def corrections_of(*accounts: str) -> list[Correction]:
    return [a_correction(a) for a in accounts]


def test_the_disagreeing_accounts_are_chosen_once_each_in_id_order():
    disagreeing, chosen = choose_accounts(corrections_of("acc_3", "acc_1", "acc_2", "acc_1"), 100, ApplyOptions())
    assert disagreeing == chosen == ["acc_1", "acc_2", "acc_3"]


def test_max_accounts_takes_the_first_n_disagreeing_accounts_by_id_and_the_guard_counts_only_those():
    corrections = corrections_of(*(f"acc_{i:02d}" for i in range(30, 0, -1)))
    disagreeing, chosen = choose_accounts(corrections, 100, ApplyOptions(max_accounts=10))
    assert len(disagreeing) == 30 and chosen == [f"acc_{i:02d}" for i in range(1, 11)]
    with pytest.raises(ApplyRefused, match="refusing to change 11 of 100 accounts"):
        choose_accounts(corrections, 100, ApplyOptions(max_accounts=11))


def test_more_than_the_share_is_refused_unless_forced():
    corrections = corrections_of(*(f"acc_{i:02d}" for i in range(11)))
    with pytest.raises(ApplyRefused, match=r"refusing to change 11 of 100 accounts checked \(11.0%\)"):
        choose_accounts(corrections, 100, ApplyOptions())
    assert len(choose_accounts(corrections, 100, ApplyOptions(force=True))[1]) == 11
    assert len(choose_accounts(corrections, 100, ApplyOptions(max_share=0.11))[1]) == 11


def test_one_account_named_with_account_is_not_subject_to_the_share():
    assert choose_accounts(corrections_of("acc_000042"), 1, ApplyOptions(account="acc_000042")) == (
        ["acc_000042"], ["acc_000042"])
    with pytest.raises(ApplyRefused):
        choose_accounts(corrections_of("acc_000042"), 1, ApplyOptions())


def test_nothing_disagreeing_chooses_nothing_and_is_never_refused():
    assert choose_accounts([], 0, ApplyOptions()) == ([], [])


# -- which outbox events settling finishes ------------------------------------------------------

def audit_row(audit_id: int, event_id: str, status: str, *, settled_at: datetime | None = None,
              table: str = "subs.subs_dunning", to: str = "retrying") -> dict:
    """An audit row joined with its held event and its run, as `settle` reads it."""
    return {"id": audit_id, "event_id": event_id, "status": status, "settled_at": settled_at,
            "account_id": "acc_000042", "tbl": table, "op": "update", "key": {"account_id": "acc_000042"},
            "col": "stage", "from_value": "none", "to_value": to, "causes": [f"evt_{audit_id}"],
            "type": "account.dunning_stage_changed", "subject": "", "rules_version": "v1",
            "rules_digest": "2742993c6f6b6a8b", "run_id": "run-1", "run_as_of": T}


def test_an_event_with_an_applied_correction_is_ready_with_a_body_of_what_was_applied():
    first, later = T + timedelta(seconds=5), T + timedelta(seconds=9)
    rows = [audit_row(1, "e1", "applied", settled_at=first, table="billing_prod.dunning"),
            audit_row(2, "e1", "stale", settled_at=later),
            audit_row(3, "e1", "applied", settled_at=later, table="subs.subs_dunning")]
    ((event_id, status, body),) = finished_events(rows)
    assert (event_id, status) == ("e1", "ready")
    assert body is not None
    assert body["occurred_at"] == later.isoformat() and body["as_of"] == T.isoformat()
    assert [c["table"] for c in body["corrections"]] == ["billing_prod.dunning", "subs.subs_dunning"]
    assert body["causes"] == ["evt_1", "evt_3"] and body["run_id"] == "run-1"


def test_an_event_with_no_applied_correction_is_void():
    rows = [audit_row(1, "e2", "stale", settled_at=T), audit_row(2, "e2", "abandoned", settled_at=T)]
    assert finished_events(rows) == [("e2", "void", None)]


def test_an_event_with_a_part_still_pending_on_another_store_waits():
    rows = [audit_row(1, "e3", "applied", settled_at=T), audit_row(2, "e3", "pending"),
            audit_row(3, "e4", "stale", settled_at=T)]
    assert finished_events(rows) == [("e4", "void", None)]
    assert finished_events([]) == []
