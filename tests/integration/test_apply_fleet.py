"""`apply` on a generated fleet with drift, against the real PostgreSQL and RabbitMQ.

One fleet (300 accounts, 40 drifting) is applied once; each test checks one promise of it.
"""

from __future__ import annotations

from collections import Counter

import orjson
import psycopg
import pytest

from domain.diff import WRITABLE
from domain.rules import RULES_V1
from eventlog.stores import Stores
from projections.apply.protocol import ApplyOptions, apply
from projections.apply.relay import relay
from projections.plan import plan
from simulation.harness.apply_fleet import BROKER_URL, KEYS, NOW, a_consumer, a_drifting_fleet, drain, snapshot
from simulation.harness.databases import STORES, scratch_databases
from simulation.readback import oracle_corrections

pytestmark = [pytest.mark.integration, pytest.mark.broker]
BOOKKEEPING = {"updated_at", "stage_since", "source"}
# The change of meaning each table's corrections belong to (an independent, coarse restatement).
MEANING = {"billing_prod.dunning": "dunning", "subs.subs_dunning": "dunning", "subs.subs_account": "flags",
           "subs.subs_subscription": "subscription", "subs.subs_customer": "customer", "cf_prod.accounts": "status",
           "cf_prod.entitlements": "entitlements"}


@pytest.fixture(scope="module")
def applied(tmp_path_factory):
    with scratch_databases(*STORES) as dsns:
        fleet = a_drifting_fleet(dsns, tmp_path_factory.mktemp("stripe"))
        before = snapshot(dsns)
        planned = plan(Stores.from_dsns(dsns), RULES_V1, NOW, workers=1)
        with a_consumer() as queue:
            result = apply(Stores.from_dsns(dsns), RULES_V1, NOW, ApplyOptions(force=True))
            report = relay(stores=Stores.from_dsns(dsns), broker_url=BROKER_URL)
            received = drain(queue)
        after = snapshot(dsns)
        fleet.ingest()
        replanned = plan(Stores.from_dsns(dsns), RULES_V1, NOW, workers=1)
        with psycopg.connect(dsns["eventstore"]) as conn:
            audit = conn.execute("SELECT tbl, op, key, col, from_value, to_value, status, event_id::text, causes "
                                 "FROM correction_audit ORDER BY id").fetchall()
            outbox = conn.execute("SELECT event_id::text, type, status, body FROM outbox_event").fetchall()
        yield dict(fleet=fleet, before=before, after=after, planned=planned, result=result, report=report,
                   received=received, replanned=replanned, audit=audit, outbox=outbox)


def test_apply_writes_every_planned_correction_and_then_ingest_and_plan_find_nothing(applied):
    planned, result = applied["planned"], applied["result"]
    assert planned.corrections and len(planned.corrections) == len(applied["fleet"].manifest.expected_corrections)
    assert result.count("applied") == len(planned.corrections) and result.count("stale") == 0
    assert sorted(c.as_json().items().__repr__() for c, _ in result.done) == \
        sorted(c.as_json().items().__repr__() for c in planned.corrections)
    assert applied["replanned"].corrections == []
    assert oracle_corrections(applied["fleet"].dsns, applied["fleet"].stripe_dir, NOW) == []


def test_untouched_rows_and_never_written_columns_are_byte_for_byte_unchanged(applied):
    before, after = applied["before"], applied["after"]
    changed_columns: dict[tuple, set[str]] = {}
    inserted, deleted = set(), set()
    for c, _ in applied["result"].done:
        table = c.table.split(".", 1)[1]
        if c.op == "update":
            changed_columns.setdefault((c.table, _key(table, c.key)), set()).update({c.column} | BOOKKEEPING)
        elif c.op == "insert":
            inserted.add((c.table, c.to.get("account_id"), c.to.get("stripe_customer_id")) if c.key is None
                         else (c.table, _key(table, c.key)))
        else:
            deleted.add((c.table, _key(table, c.key)))
    for table in before:
        for key in before[table].keys() | after[table].keys():
            old, new = before[table].get(key), after[table].get(key)
            if old is None:
                assert (table, key) in inserted or table == "subs.subs_customer", (table, key)
                continue
            if new is None:
                assert (table, key) in deleted, (table, key)
                continue
            allowed = changed_columns.get((table, key), set())
            assert _without(old, allowed) == _without(new, allowed), (table, key)
            assert (old == new) == (not allowed), (table, key)
    new_mappings = [key for key in after["subs.subs_customer"].keys() - before["subs.subs_customer"].keys()]
    assert len(new_mappings) == sum(1 for t, *_ in inserted if t == "subs.subs_customer")


def test_only_writable_columns_changed(applied):
    for c, _ in applied["result"].done:
        if c.op == "update":
            assert c.column in WRITABLE[c.table]


def test_every_applied_correction_is_audited_once_with_its_causes_and_event(applied):
    audit, outbox = applied["audit"], applied["outbox"]
    assert len(audit) == len(applied["planned"].corrections)
    assert {row[6] for row in audit} == {"applied"}
    assert len({(r[0], str(r[2]), r[3], str(r[4]), str(r[5])) for r in audit}) == len(audit)
    assert all(row[8] for row in audit), "every correction names the events that justified it"
    events = {row[0]: row for row in outbox}
    assert {row[7] for row in audit} == events.keys()


def test_a_consumer_receives_exactly_one_event_per_change_of_meaning(applied):
    received, outbox = applied["received"], applied["outbox"]
    stripe_id_of = {key[0]: orjson.loads(text)["stripe_invoice_id"]
                    for key, text in applied["before"]["billing_prod.invoices"].items()}
    changes = set()
    for c, _ in applied["result"].done:
        if c.table == "subs.subs_invoice":
            changes.add((c.account_id, "invoice", c.key["stripe_invoice_id"]))
        elif c.table == "billing_prod.invoices":
            changes.add((c.account_id, "invoice", stripe_id_of[c.key["invoice_id"]]))
        else:
            changes.add((c.account_id, MEANING[c.table], None))
    announced = [(m["body"]["account_id"], MEANING_OF_TYPE[m["type"]], m["body"]["subject"]) for m in received]
    assert len(announced) == len(set(announced)) == len(changes)
    assert set(announced) == changes
    assert len({m["id"] for m in received}) == len(received), "no duplicates"
    assert {m["id"] for m in received} == {row[0] for row in outbox} == {m["body"]["id"] for m in received}
    assert {row[2] for row in outbox} == {"sent"}
    assert all(m["routing_key"] == m["type"] and m["delivery_mode"] == 2 for m in received)
    assert applied["report"].published == len(received) and applied["report"].waiting == 0
    assert Counter(m["type"] for m in received)["account.dunning_stage_changed"] > 0


MEANING_OF_TYPE = {"account.invoice_state_corrected": "invoice", "account.dunning_stage_changed": "dunning", "account.dunning_schedule_corrected": "dunning",
                   "account.flags_changed": "flags", "account.subscription_corrected": "subscription",
                   "account.customer_mapping_corrected": "customer", "account.status_changed": "status",
                   "account.entitlements_changed": "entitlements"}


def test_an_event_says_what_changed_why_and_under_which_rules(applied):
    event = next(m["body"] for m in applied["received"] if m["type"] == "account.dunning_stage_changed")
    assert event["rules_version"] == "v1" and event["as_of"] == NOW.isoformat()
    assert event["causes"] and event["corrections"]
    for correction in event["corrections"]:
        assert correction["account_id"] == event["account_id"]
    assert set(event["before"]) == set(event["after"])


def _key(table: str, key: dict) -> tuple:
    return tuple(key[k] for k in KEYS[table])


def _without(text: str, columns: set[str]) -> dict:
    return {k: v for k, v in orjson.loads(text).items() if k not in columns}
