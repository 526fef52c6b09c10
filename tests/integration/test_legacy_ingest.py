"""Snapshot ingestion of the legacy stores into the account event log, on the real PostgreSQL."""

from __future__ import annotations

from datetime import datetime

import orjson
import psycopg
import pytest

from domain.events import CATALOG_STREAM, LegacyRowObserved
from eventlog.account_log import open_log
from eventlog.own_tables import ensure_own_schema
from eventlog.stores import Stores
from ingestion.legacy.snapshot import LegacySnapshotIngester
from tests.support.legacy import a_customer_mapping, a_plan, an_account, an_invoice, create_stores, execute

pytestmark = pytest.mark.integration


@pytest.fixture
def world(stores):
    create_stores(stores)
    ensure_own_schema(stores["eventstore"])
    an_account(stores)
    a_plan(stores)
    an_invoice(stores)
    a_customer_mapping(stores)
    return stores


def ingest_all(dsns) -> dict[str, int]:
    appended = {}
    for store in ("cf_prod", "billing_prod", "subs"):
        report = LegacySnapshotIngester(store=store, stores=Stores.from_dsns(dsns)).run()
        appended[store] = report.appended
    return appended


def log_of(dsns, stream="acc_000042") -> list[LegacyRowObserved]:
    log = open_log(dsns["eventstore"])
    try:
        return log.stream(stream)
    finally:
        log.close()


def count_events(dsns) -> int:
    with psycopg.connect(dsns["eventstore"]) as conn:
        return conn.execute("SELECT count(*) FROM recompute_events").fetchone()[0]


def test_the_first_ingest_records_every_row_on_its_account_stream(world):
    assert ingest_all(world) == {"cf_prod": 3, "billing_prod": 1, "subs": 1}
    events = log_of(world)
    assert [(e.store, e.table) for e in events] == [
        ("cf_prod", "accounts"), ("billing_prod", "invoices"), ("subs", "subs_customer")]
    invoice = events[1]
    assert invoice.key == {"invoice_id": "inv_000042_01"}
    assert invoice.row["amount_due"] == 2900 and invoice.row["due_at"] == "2026-02-20T00:00:00+00:00"
    assert invoice.source_time.isoformat() == "2026-03-01T00:00:00+00:00"
    assert invoice.position.startswith("billing_prod@")
    assert [e.row["feature"] for e in log_of(world, CATALOG_STREAM)] == ["api", "sso"]


def test_a_second_ingest_appends_nothing(world):
    ingest_all(world)
    before = count_events(world)
    assert ingest_all(world) == {"cf_prod": 0, "billing_prod": 0, "subs": 0}
    assert count_events(world) == before


def test_an_update_an_insert_and_a_delete_each_append_exactly_one_event(world):
    ingest_all(world)
    execute(world["billing_prod"], "UPDATE invoices SET status = 'paid', amount_paid = 2900, "
            "updated_at = '2026-03-02T00:00:00Z'")
    assert ingest_all(world) == {"cf_prod": 0, "billing_prod": 1, "subs": 0}
    an_invoice(world, "inv_000042_02")
    assert ingest_all(world) == {"cf_prod": 0, "billing_prod": 1, "subs": 0}
    execute(world["subs"], "DELETE FROM subs_customer")
    assert ingest_all(world) == {"cf_prod": 0, "billing_prod": 0, "subs": 1}

    *_, paid, added, deleted = log_of(world)
    assert (paid.row["status"], paid.source_time.isoformat()) == ("paid", "2026-03-02T00:00:00+00:00")
    assert added.key == {"invoice_id": "inv_000042_02"}
    assert (deleted.table, deleted.row, deleted.key) == ("subs_customer", None, {"id": 1})


def test_a_change_the_row_does_not_date_is_timed_at_the_read(world):
    ingest_all(world)
    execute(world["subs"], "UPDATE subs_customer SET stripe_customer_id = 'cus_other'")
    ingest_all(world)
    changed = log_of(world)[-1]
    assert changed.row["stripe_customer_id"] == "cus_other"
    # subs_customer has only created_at: the change happened after it, at or before the read
    assert changed.source_time > datetime.fromisoformat(changed.row["created_at"])
    assert changed.source_time <= changed.recorded_at


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ("INSERT INTO invoices VALUES ('inv_bad_1', 'acc_000042', NULL, 'pending', 'usd', 100, 0, "
         "'2026-02-01Z', '2026-01-01Z', '2026-01-01Z')", "unknown status 'pending'"),
        ("INSERT INTO invoices VALUES ('inv_bad_2', 'acc_000042', NULL, 'open', 'usd', -100, 0, "
         "'2026-02-01Z', '2026-01-01Z', '2026-01-01Z')", "negative money: amount_due = -100"),
        ("INSERT INTO invoices VALUES ('inv_bad_3', '', NULL, 'open', 'usd', 100, 0, "
         "'2026-02-01Z', '2026-01-01Z', '2026-01-01Z')", "belongs to no account"),
        ("INSERT INTO invoices VALUES ('inv_bad_4', 'acc_000042', NULL, 'open', 'usd', 100, 0, "
         "'infinity', '2026-01-01Z', '2026-01-01Z')", "bad timestamp: due_at = 'infinity'"),
        ("INSERT INTO invoices VALUES (' ', 'acc_000042', NULL, 'open', 'usd', 100, 0, "
         "'2026-02-01Z', '2026-01-01Z', '2026-01-01Z')", "missing key: invoice_id is empty"),
    ],
)
def test_a_bad_row_is_parked_with_its_reason_and_ingest_goes_on(world, statement, reason):
    execute(world["billing_prod"], statement)
    report = LegacySnapshotIngester(store="billing_prod", stores=Stores.from_dsns(world)).run()
    assert (report.parked, report.appended) == (1, 1)  # the good invoice is still recorded
    with psycopg.connect(world["eventstore"]) as conn:
        parked = conn.execute("SELECT source, tbl, reason, record FROM parked_record").fetchall()
    assert len(parked) == 1 and parked[0][:2] == ("billing_prod", "invoices")
    assert reason in parked[0][2]
    again = LegacySnapshotIngester(store="billing_prod", stores=Stores.from_dsns(world)).run()
    assert (again.parked, again.appended) == (0, 0)  # parked once, not at every run


def test_the_spliced_state_reads_back_as_the_event_the_generic_encoder_would_store(world):
    from eventlog.account_log import encode_event

    ingest_all(world)
    with psycopg.connect(world["eventstore"]) as conn:
        stored = conn.execute("SELECT originator_id, originator_version, state FROM recompute_events "
                              "WHERE originator_id = 'acc_000042' ORDER BY originator_version").fetchall()
    for event, (_, _, state) in zip(log_of(world), stored, strict=True):
        assert orjson.loads(bytes(state)) == orjson.loads(encode_event(event))


def test_a_recorded_row_that_turns_bad_and_is_then_deleted_still_gets_its_deletion(world):
    """The log holds the row's last good version; when the row goes, the log must see it go."""
    ingest_all(world)
    execute(world["billing_prod"], "UPDATE invoices SET status = 'pending'")  # unknown status: parked
    assert ingest_all(world)["billing_prod"] == 0
    execute(world["billing_prod"], "DELETE FROM invoices")
    assert ingest_all(world)["billing_prod"] == 1
    deleted = log_of(world)[-1]
    assert (deleted.table, deleted.key, deleted.row) == ("invoices", {"invoice_id": "inv_000042_01"}, None)
