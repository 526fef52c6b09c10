"""The saved plan's document (domain/saved_plan.py): its digest covers every value but itself."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from domain.saved_plan import SavedPlanError, read_document, saved_document

T = datetime(2026, 3, 1, tzinfo=UTC)
PLAN = {"as_of": T.isoformat(), "rules_version": "v1", "rules_digest": "abc", "accounts_checked": 10,
        "accounts_disagreeing": 1, "held": [],
        "corrections": [{"account_id": "acc_000042", "table": "subs.subs_dunning", "op": "update",
                         "key": {"account_id": "acc_000042"}, "column": "stage", "from": "none", "to": "retrying",
                         "drift": {"cause": "missed_change", "since": "2026-02-11T09:30:00+00:00", "owner": "A3",
                                   "by": "evt_1", "rewrites": 0}}]}


def a_saved_plan() -> dict:
    return orjson.loads(orjson.dumps(saved_document(PLAN, T, 1234)))


def test_a_saved_plan_reads_back_with_its_corrections_rules_and_position():
    saved = read_document(a_saved_plan(), "p.json")
    assert (saved.rules_version, saved.rules_digest, saved.log_position, saved.as_of) == ("v1", "abc", 1234, T)
    assert [c.as_json()["to"] for c in saved.corrections] == ["retrying"] and saved.accounts == ["acc_000042"]


def test_a_saved_plan_keeps_each_corrections_drift_for_the_audit():
    [correction] = read_document(a_saved_plan(), "p.json").corrections
    assert correction.drift is not None and correction.drift.as_json() == PLAN["corrections"][0]["drift"]


def test_reindenting_the_file_keeps_its_digest():
    document = a_saved_plan()
    assert read_document(orjson.loads(orjson.dumps(document, option=orjson.OPT_INDENT_2)), "p.json")


@pytest.mark.parametrize("edit", [
    lambda d: d["corrections"][0].update(to="suspended"),
    lambda d: d["corrections"][0]["drift"].update(cause="wrong_write"),
    lambda d: d.update(rules_digest="abd"),
    lambda d: d.update(extra=1),
    lambda d: d["corrections"].append(dict(d["corrections"][0])),
])
def test_any_edit_of_the_content_breaks_the_digest(edit):
    document = a_saved_plan()
    edit(document)
    with pytest.raises(SavedPlanError, match="^p.json: its content does not match its plan_digest"):
        read_document(document, "p.json")


def test_a_file_that_is_not_a_saved_plan_says_so():
    with pytest.raises(SavedPlanError, match=r"not a saved plan \(no plan_digest"):
        read_document(PLAN, "p.json")
    with pytest.raises(SavedPlanError, match="not a saved plan"):
        read_document([1, 2], "p.json")


def test_a_plan_of_one_account_says_so_and_reads_back_with_it():
    document = orjson.loads(orjson.dumps(saved_document(PLAN, T, 1, account="acc_000042")))
    assert document["account"] == "acc_000042" and read_document(document, "p.json").account == "acc_000042"
    assert "account" not in a_saved_plan() and read_document(a_saved_plan(), "p.json").account is None
