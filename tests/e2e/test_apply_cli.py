"""`recompute apply` and `recompute relay` as operators call them: the blast-radius guard, limits,
JSON, and `explain` showing past corrections."""

from __future__ import annotations

import orjson
import psycopg
import pytest

from simulation.harness.apply_fleet import NOW, snapshot

pytestmark = pytest.mark.integration
AS_OF = ("--as-of", NOW.isoformat())


def audited(fleet) -> int:
    with psycopg.connect(fleet.dsns["eventstore"]) as conn:
        return conn.execute("SELECT count(*) FROM correction_audit").fetchone()[0]


def test_apply_refuses_to_change_more_than_the_allowed_share_and_writes_nothing(fleet):
    before = snapshot(fleet.dsns)
    refused = fleet.recompute("apply", *AS_OF, expect=1)
    assert "refusing to change 25 of 120 accounts checked (20.8%), more than --max-share 0.1" in refused.stderr
    assert snapshot(fleet.dsns) == before and audited(fleet) == 0
    fleet.recompute("apply", *AS_OF, "--max-share", "0.2", expect=1)
    fleet.recompute("apply", *AS_OF, "--max-share", "0.25", "--json")
    assert audited(fleet) > 0


def test_max_accounts_changes_only_the_first_disagreeing_accounts_and_the_guard_counts_only_those(fleet):
    planned = orjson.loads(fleet.recompute("plan", *AS_OF, "--json").stdout)
    first = sorted({c["account_id"] for c in planned["corrections"]})[:5]
    done = orjson.loads(fleet.recompute("apply", *AS_OF, "--max-accounts", "5", "--json").stdout)
    assert done["accounts_checked"] == 120 and done["accounts_disagreeing"] == 25 and done["accounts_changed"] == 5
    assert sorted({c["account_id"] for c in done["corrections"]}) == first
    assert done["applied"] == len([c for c in planned["corrections"] if c["account_id"] in first])
    assert {c["status"] for c in done["corrections"]} == {"applied"}
    assert done["events"]["published"] == done["events"]["ready"] > 0 and done["events"]["waiting"] == 0
    left = orjson.loads(fleet.recompute("plan", *AS_OF, "--json").stdout)
    assert left["accounts_disagreeing"] == 20


def test_one_named_account_is_applied_without_the_share_guard_and_explain_shows_its_past_corrections(fleet):
    planned = orjson.loads(fleet.recompute("plan", *AS_OF, "--json").stdout)
    account = planned["corrections"][0]["account_id"]
    mine = [c for c in planned["corrections"] if c["account_id"] == account]
    done = fleet.recompute("apply", *AS_OF, "--account", account)
    assert f"{len(mine)} corrections applied, 0 stale" in done.stdout
    explained = orjson.loads(fleet.recompute("explain", account, *AS_OF, "--json").stdout)
    past = explained["past_corrections"]
    assert sorted(_shape(p) for p in past) == sorted(_shape(c) for c in mine)
    assert all(p["rules_version"] == "v1" and p["causes"] and p["applied_at"] for p in past)
    text = fleet.recompute("explain", account, *AS_OF).stdout
    assert f"past corrections ({len(mine)})" in text


def test_without_a_broker_apply_says_events_wait_and_relay_names_the_missing_variable(fleet):
    done = fleet.recompute("apply", *AS_OF, "--force", RECOMPUTE_BROKER_URL="")
    assert "RECOMPUTE_BROKER_URL is not set; they wait in the outbox" in done.stdout
    assert "RECOMPUTE_BROKER_URL" in fleet.recompute("relay", RECOMPUTE_BROKER_URL="", expect=2).stderr
    assert "published" in fleet.recompute("relay").stdout


def _shape(correction: dict) -> bytes:
    return orjson.dumps({k: correction[k] for k in ("table", "op", "key", "column", "from", "to")},
                        option=orjson.OPT_SORT_KEYS)
